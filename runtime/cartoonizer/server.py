"""SageMaker container contract for the asynchronous video endpoint: GET /ping, POST /invocations (a job manifest).

SageMaker hands the manifest it read from S3 to /invocations and stores the JSON answer (or the error) under the
endpoint's async output (or failure) prefix; the cartoonized file and its progress go where the manifest says.
`serve` runs this with uvicorn on port 8080 (`docker run IMAGE serve`); it also runs locally on CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ..common.errors import ConfigError, InputError
from ..common.jsonlog import configure_logging
from .engine import Cartoonizer
from .errors import MediaError
from .jobs import Job, run_job
from .model_store import ModelInfo, load_model_info
from .settings import Settings

log = logging.getLogger(__name__)

EngineFactory = Callable[[], tuple[Cartoonizer, ModelInfo | None]]


@dataclasses.dataclass
class ServerState:
    """What the routes share: the engine once loaded, and one lock so jobs run one at a time on the device."""

    status: str = "loading"
    engine: Cartoonizer | None = None
    model: ModelInfo | None = None
    error: str | None = None
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


def default_factory(settings: Settings) -> EngineFactory:
    """Load model.onnx (checked against manifest.json) from SM_MODEL_DIR."""

    def load() -> tuple[Cartoonizer, ModelInfo | None]:
        model = load_model_info(settings.model_dir)
        return Cartoonizer(model.path, device=settings.device), model

    return load


def error_response(exc: Exception) -> JSONResponse:
    """4xx JSON for client errors (the message says what to fix), 500 without details for anything else."""
    if isinstance(exc, MediaError):
        status = exc.status
    elif isinstance(exc, InputError):
        status = 400
    else:
        return JSONResponse({"error": "internal_error", "message": "internal error; see the endpoint's logs"}, 500)
    body = {"error": exc.code, "message": exc.message, "field": exc.field}
    return JSONResponse(body, status_code=status)


def create_app(
    *,
    settings: Settings,
    factory: EngineFactory | None = None,
    s3: Any = None,
    on_load_failure: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """The FastAPI app; the model loads in the background so /ping answers 503 until it can serve.

    on_load_failure is called when loading fails (serve then exits non-zero instead of waiting to be killed).
    """
    state = ServerState()
    load = factory or default_factory(settings)

    def load_engine() -> None:
        try:
            state.engine, state.model = load()
            state.status = "ready"
            log.info("model loaded", extra={"fields": {"device": state.engine.device}})
        except Exception as exc:
            state.status, state.error = "failed", str(exc)
            log.exception("model load failed")
            if on_load_failure is not None:
                on_load_failure(exc)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        loader = asyncio.get_running_loop().run_in_executor(None, load_engine)
        yield
        await loader

    app = FastAPI(title="GenArt Cartoonizer", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.cartoonizer = state

    def client() -> Any:
        nonlocal s3
        if s3 is None:
            import boto3  # noqa: PLC0415

            s3 = boto3.client("s3")
        return s3

    @app.get("/ping")
    def ping() -> JSONResponse:
        if state.status == "ready":
            return JSONResponse({"status": "healthy", "device": state.engine.device if state.engine else None})
        return JSONResponse({"status": state.status, "error": state.error}, status_code=503)

    @app.post("/invocations")
    async def invocations(request: Request) -> JSONResponse:
        if state.engine is None:
            return JSONResponse({"error": "loading", "message": f"model is {state.status}"}, status_code=503)
        engine = state.engine
        try:
            job = Job.parse(await request.body())

            def work() -> dict[str, Any]:
                with state.lock:
                    return run_job(job, engine=engine, model=state.model, settings=settings, s3=client())

            return JSONResponse(await run_in_threadpool(work))
        except Exception as exc:
            if not isinstance(exc, InputError):
                log.exception("job failed")
            else:
                log.info("job refused", extra={"fields": {"error": str(exc)}})
            return error_response(exc)

    return app


def main(argv: Sequence[str] | None = None) -> int:
    """`serve`: read settings, configure JSON logs and run uvicorn until stopped."""
    parser = argparse.ArgumentParser(prog="serve", description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, help="folder with model.onnx (default: SM_MODEL_DIR)")
    parser.add_argument("--port", type=int, help="port (default: SAGEMAKER_BIND_TO_PORT or 8080)")
    parser.add_argument("--host", default="0.0.0.0", help="bind address (default 0.0.0.0)")  # noqa: S104
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default: GENART_DEVICE or auto")
    parser.add_argument("--tiny-random", action="store_true", help="serve random weights (no model needed)")
    parser.add_argument("command", nargs="?", choices=("serve",), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {
        key: value
        for key, value in (("model_dir", args.model_dir), ("port", args.port), ("device", args.device))
        if value
    }
    try:
        settings = Settings.from_env(**overrides)
    except ConfigError as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return 2
    configure_logging(level=settings.log_level)
    factory = None
    if args.tiny_random:

        def factory() -> tuple[Cartoonizer, ModelInfo | None]:
            return Cartoonizer.random(device=settings.device), None

    import uvicorn  # noqa: PLC0415

    server: uvicorn.Server | None = None

    def stop(_exc: BaseException) -> None:
        # SageMaker would otherwise wait out the whole health-check timeout on a process that can never serve.
        if server is not None:
            server.should_exit = True

    app = create_app(settings=settings, factory=factory, on_load_failure=stop)
    config = uvicorn.Config(
        app, host=args.host, port=settings.port, log_config=None, access_log=False, timeout_keep_alive=75
    )
    server = uvicorn.Server(config)
    server.run()
    if app.state.cartoonizer.status == "failed":
        print(f"serve: model load failed: {app.state.cartoonizer.error}", file=sys.stderr, flush=True)
        return 3
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
