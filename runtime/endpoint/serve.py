"""`serve` entry point: what SageMaker runs (`docker run IMAGE serve`), also usable locally on CPU or GPU."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="serve", description=__doc__)
    parser.add_argument("--model-dir", type=Path, help="diffusers folder (default: SM_MODEL_DIR or /opt/ml/model)")
    parser.add_argument("--port", type=int, help="port (default: SAGEMAKER_BIND_TO_PORT or 8080)")
    parser.add_argument("--host", default="0.0.0.0", help="bind address (default 0.0.0.0)")  # noqa: S104
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: GENART_DEVICE or auto)")
    parser.add_argument("--tiny-random", action="store_true", help="serve a tiny random pipeline (no weights needed)")
    parser.add_argument(
        "--random-preset", choices=("tiny", "sd15"), help="serve a random pipeline of this architecture (benchmarks)"
    )
    # SageMaker appends the word "serve" to the container command; accept and ignore it.
    parser.add_argument("command", nargs="?", choices=("serve",), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, configure caches and logging, and run uvicorn until stopped."""
    args = _parse(argv)
    # runtime/endpoint/__init__.py has set HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE before anything imported a hub library.
    from .settings import ConfigError, Settings  # noqa: PLC0415

    overrides: dict[str, Any] = {}
    if args.model_dir is not None:
        overrides["model_dir"] = args.model_dir
    if args.port is not None:
        overrides["port"] = args.port
    if args.device:
        overrides["device"] = args.device
    try:
        settings = Settings.from_env(**overrides)
    except ConfigError as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return 2

    from .compile_cache import configure_cache_env  # noqa: PLC0415

    if settings.compile:
        # Inductor reads its cache settings when torch is imported, so this happens before the heavy imports.
        configure_cache_env(settings.compile_cache_dir)

    from ..common.gpu_check import GpuUnusableError, check_torch_gpu  # noqa: PLC0415

    try:
        # A GPU host whose driver is too old for torch's CUDA build must not quietly serve from the CPU.
        check_torch_gpu(requested_device=settings.device, environ=os.environ)
    except GpuUnusableError as exc:
        print(f"serve: {exc}", file=sys.stderr, flush=True)
        return 4

    import uvicorn  # noqa: PLC0415

    from .app import create_app  # noqa: PLC0415
    from .request_context import configure_logging  # noqa: PLC0415

    configure_logging(level=settings.log_level)
    preset = "tiny" if args.tiny_random else args.random_preset
    factory = None
    if preset is not None:
        from .tiny_pipeline import build_random_pipeline  # noqa: PLC0415

        def factory(_device: str) -> object:
            return build_random_pipeline(preset=preset)

    failures: list[BaseException] = []
    server: uvicorn.Server | None = None

    def stop_on_failure(exc: BaseException) -> None:
        # SageMaker would otherwise wait out the whole startup timeout on a process that can never serve.
        failures.append(exc)
        if server is not None:
            server.should_exit = True

    app = create_app(settings=settings, factory=factory, on_load_failure=stop_on_failure)
    config = uvicorn.Config(
        app, host=args.host, port=settings.port, log_config=None, access_log=False, timeout_keep_alive=75
    )
    server = uvicorn.Server(config)
    server.run()
    if failures:
        print(f"serve: model load failed: {type(failures[0]).__name__}: {failures[0]}", file=sys.stderr, flush=True)
        return 3
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
