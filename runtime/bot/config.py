"""Settings from environment variables (the deployment contract) with command-line overrides."""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from . import contract
from .errors import ConfigError
from .generator import available_cores
from .imaging import ImageFormat
from .model_source import ModelSource
from .parsing import GRID_MAX
from .token_source import TokenSource

DEFAULT_MODEL_KEY = contract.DEFAULT_MODEL_KEY
DEFAULT_MODEL_CACHE = contract.MODEL_CACHE_PATH
DEFAULT_IMDS_URL = "http://169.254.169.254"


def plan_workers(cores: int) -> tuple[int, int]:
    """Return (worker threads, intra-op threads per call): one worker per 4 cores, cores split between them."""
    workers = max(1, cores // 4)
    return workers, max(1, cores // workers)


@dataclass(frozen=True)
class BotSettings:
    """Everything the bot needs to start, validated."""

    token_source: TokenSource
    model_source: ModelSource
    imds_url: str = DEFAULT_IMDS_URL
    operator_ids: frozenset[str] = frozenset()
    log_level: str = "INFO"
    image_format: ImageFormat = "png"
    cooldown_s: float = 5.0
    max_batch: int | None = None
    batch_window_s: float = 0.015
    max_queue: int = 32
    workers: int = field(default_factory=lambda: plan_workers(available_cores())[0])
    intra_op_threads: int = field(default_factory=lambda: plan_workers(available_cores())[1])
    tuned_session: bool = True
    cpu_arena: bool = False
    prefix: str = "$"
    prefix_commands: bool = True
    sync_commands: bool = True
    on_rebalance: Literal["warn", "exit"] = "warn"
    spot_poll_s: float = 5.0
    drain_timeout_s: float = 60.0
    console: bool = False
    out_dir: Path = Path("waifus")


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be 0/1/true/false, got {raw!r}")


def _number(env: Mapping[str, str], name: str, default: float, *, low: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {raw!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser (flags override environment variables)."""
    parser = argparse.ArgumentParser(prog="python -m bot", description="GenArt Discord bot (StyleGAN2 faces on CPU).")
    parser.add_argument("--console", action="store_true", help="read commands from stdin instead of Discord")
    parser.add_argument("--out", type=Path, help="console mode: folder for generated images (default ./waifus)")
    parser.add_argument("--model", type=Path, help="local generator .onnx (overrides GENART_MODEL_PATH and the bucket)")
    parser.add_argument("--models-bucket", help="models bucket (overrides GENART_MODELS_BUCKET)")
    parser.add_argument("--model-key", help=f"object key in the models bucket (default {DEFAULT_MODEL_KEY})")
    parser.add_argument("--model-cache", type=Path, help=f"download cache (default {DEFAULT_MODEL_CACHE})")
    parser.add_argument("--token-secret", help="Secrets Manager secret ARN/name (overrides GENART_TOKEN_SECRET_ARN)")
    parser.add_argument("--token-file", type=Path, help="file holding the token (overrides DISCORD_TOKEN_FILE)")
    parser.add_argument("--imds-url", help=f"instance metadata base URL (default {DEFAULT_IMDS_URL})")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default INFO)")
    parser.add_argument("--format", choices=["png", "jpeg"], help="image format of replies (default png)")
    parser.add_argument("--cooldown", type=float, help="seconds between generations per user (default 5; console 0)")
    parser.add_argument("--workers", type=int, help="generation worker threads (default: one per 4 cores)")
    parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads per call (default: cores/workers)")
    parser.add_argument(
        "--max-batch", type=int, help="most images per ONNX call (default: 8 to 128 px, 2 to 256 px, else 1)"
    )
    parser.add_argument("--max-queue", type=int, help="most images queued or running before replying busy (default 32)")
    parser.add_argument("--default-session", action="store_true", help="use onnxruntime default session options")
    parser.add_argument("--no-prefix-commands", action="store_true", help="slash commands only (no message content)")
    return parser


def settings_from(env: Mapping[str, str], args: argparse.Namespace) -> BotSettings:
    """Combine environment variables and parsed flags into validated settings."""
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
    model_path = args.model or (Path(env["GENART_MODEL_PATH"]) if env.get("GENART_MODEL_PATH") else None)
    model_source = ModelSource(
        local_path=model_path,
        bucket=args.models_bucket or env.get("GENART_MODELS_BUCKET") or None,
        key=args.model_key or env.get("GENART_MODEL_KEY") or DEFAULT_MODEL_KEY,
        cache_path=args.model_cache or Path(env.get("GENART_MODEL_CACHE") or DEFAULT_MODEL_CACHE),
        region=region,
    )
    token_file = args.token_file or (Path(env["DISCORD_TOKEN_FILE"]) if env.get("DISCORD_TOKEN_FILE") else None)
    token_source = TokenSource(
        secret_id=args.token_secret or env.get("GENART_TOKEN_SECRET_ARN") or None,
        env_token=env.get("DISCORD_TOKEN") if args.token_file is None else None,
        token_file=token_file,
        region=region,
    )
    operators = frozenset(part.strip() for part in env.get("GENART_OPERATOR_IDS", "").split(",") if part.strip())
    bad = sorted(op for op in operators if not op.isdigit())
    if bad:
        raise ConfigError(f"GENART_OPERATOR_IDS must be comma-separated numeric Discord user ids, got {bad}")
    cores = available_cores()
    default_workers, _ = plan_workers(cores)
    workers = args.workers or int(_number(env, "GENART_WORKERS", default_workers, low=1, high=64))
    threads = args.threads or int(_number(env, "GENART_THREADS", max(1, cores // workers), low=1, high=256))
    rebalance = (env.get("GENART_ON_REBALANCE") or "warn").strip().lower()
    if rebalance not in {"warn", "exit"}:
        raise ConfigError(f"GENART_ON_REBALANCE must be 'warn' or 'exit', got {rebalance!r}")
    image_format = args.format or (env.get("GENART_IMAGE_FORMAT") or "png").strip().lower()
    if image_format == "jpg":
        image_format = "jpeg"
    if image_format not in {"png", "jpeg"}:
        raise ConfigError(f"GENART_IMAGE_FORMAT must be png or jpeg, got {image_format!r}")
    cooldown_default = 0.0 if args.console else 5.0
    for name, value in (("--workers", args.workers), ("--threads", args.threads), ("--max-batch", args.max_batch)):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be at least 1")
    if args.max_queue is not None and args.max_queue < GRID_MAX:
        raise ConfigError(f"--max-queue must be at least {GRID_MAX} (the largest grid)")
    return BotSettings(
        token_source=token_source,
        model_source=model_source,
        imds_url=args.imds_url or env.get("GENART_IMDS_URL") or DEFAULT_IMDS_URL,
        operator_ids=operators,
        log_level=(args.log_level or env.get("GENART_LOG_LEVEL") or "INFO").upper(),
        image_format="jpeg" if image_format == "jpeg" else "png",
        cooldown_s=args.cooldown
        if args.cooldown is not None
        else _number(env, "GENART_COOLDOWN_S", cooldown_default, low=0, high=3600),
        max_batch=args.max_batch or (int(_number(env, "GENART_MAX_BATCH", 0, low=1, high=64)) or None),
        max_queue=args.max_queue or int(_number(env, "GENART_MAX_QUEUE", 32, low=GRID_MAX, high=1024)),
        workers=workers,
        intra_op_threads=threads,
        tuned_session=not args.default_session,
        cpu_arena=_flag(env, "GENART_CPU_ARENA", False),
        prefix_commands=not args.no_prefix_commands and _flag(env, "GENART_PREFIX_COMMANDS", True),
        sync_commands=_flag(env, "GENART_SYNC_COMMANDS", True),
        on_rebalance="exit" if rebalance == "exit" else "warn",
        console=bool(args.console),
        out_dir=args.out or Path("waifus"),
    )
