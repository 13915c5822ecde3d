"""Settings from environment variables (the deployment contract, read with pydantic-settings) and command-line flags."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode

from ..common.settings import EnvSettings
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
# Micro-batching knobs (same names as the endpoint's; docs/decisions.md says why the batchers stay two).
DEFAULT_BATCH_WINDOW_MS = 15.0
DEFAULT_MAX_QUEUE = 32
DEFAULT_USER_BURST = 16
DEFAULT_USER_MAX_PENDING = 16
DEFAULT_MAX_WAIT_S = 60.0
DEFAULT_MODEL_POLL_S = float(contract.MODEL_POLL_S)


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
    batch_window_ms: float = DEFAULT_BATCH_WINDOW_MS
    max_queue: int = DEFAULT_MAX_QUEUE
    user_burst: int = DEFAULT_USER_BURST
    user_max_pending: int = DEFAULT_USER_MAX_PENDING
    max_wait_s: float = DEFAULT_MAX_WAIT_S
    workers: int = field(default_factory=lambda: plan_workers(available_cores())[0])
    intra_op_threads: int = field(default_factory=lambda: plan_workers(available_cores())[1])
    tuned_session: bool = True
    cpu_arena: bool = False
    prefix: str = "$"
    prefix_commands: bool = True
    sync_commands: bool = True
    on_rebalance: Literal["warn", "exit"] = "warn"
    spot_poll_s: float = float(contract.SPOT_POLL_S)
    drain_timeout_s: float = float(contract.DRAIN_DEADLINE_S)
    model_poll_s: float = DEFAULT_MODEL_POLL_S
    console: bool = False
    out_dir: Path = Path("waifus")


def _csv(value: object) -> object:
    """Split a comma-separated environment value; other inputs pass through."""
    return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value


class BotEnvironment(EnvSettings):
    """The bot's environment variables (names from the contract), validated; flags override them in settings_from."""

    region: str | None = Field(None, validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"))
    model_path: Path | None = Field(None, validation_alias=contract.ENV_MODEL_PATH)
    models_bucket: str | None = Field(None, validation_alias=contract.ENV_MODELS_BUCKET)
    model_key: str = Field(DEFAULT_MODEL_KEY, validation_alias=contract.ENV_MODEL_KEY)
    model_cache: Path = Field(Path(DEFAULT_MODEL_CACHE), validation_alias=contract.ENV_MODEL_CACHE)
    token_secret_arn: str | None = Field(None, validation_alias=contract.ENV_TOKEN_SECRET_ARN)
    token: SecretStr | None = Field(None, validation_alias=contract.ENV_TOKEN)
    token_file: Path | None = Field(None, validation_alias=contract.ENV_TOKEN_FILE)
    imds_url: str = Field(DEFAULT_IMDS_URL, validation_alias=contract.ENV_IMDS_URL)
    operator_ids: Annotated[frozenset[str], NoDecode] = Field(frozenset(), validation_alias=contract.ENV_OPERATOR_IDS)
    log_level: str = Field("INFO", validation_alias=contract.ENV_LOG_LEVEL)
    image_format: str = Field("png", validation_alias=contract.ENV_IMAGE_FORMAT)
    cooldown_s: float | None = Field(None, ge=0, le=3600, allow_inf_nan=False, validation_alias=contract.ENV_COOLDOWN_S)
    workers: int | None = Field(None, ge=1, le=64, validation_alias=contract.ENV_WORKERS)
    threads: int | None = Field(None, ge=1, le=256, validation_alias=contract.ENV_THREADS)
    max_batch: int | None = Field(None, ge=1, le=64, validation_alias=contract.ENV_MAX_BATCH)
    batch_window_ms: float = Field(
        DEFAULT_BATCH_WINDOW_MS, ge=0, le=1000, allow_inf_nan=False, validation_alias=contract.ENV_BATCH_WINDOW_MS
    )
    max_queue: int = Field(DEFAULT_MAX_QUEUE, ge=GRID_MAX, le=1024, validation_alias=contract.ENV_MAX_QUEUE)
    user_burst: int = Field(DEFAULT_USER_BURST, ge=GRID_MAX, le=1024, validation_alias=contract.ENV_USER_BURST)
    user_max_pending: int = Field(
        DEFAULT_USER_MAX_PENDING, ge=GRID_MAX, le=1024, validation_alias=contract.ENV_USER_MAX_PENDING
    )
    max_wait_s: float = Field(
        DEFAULT_MAX_WAIT_S, ge=1, le=3600, allow_inf_nan=False, validation_alias=contract.ENV_MAX_WAIT_S
    )
    model_poll_s: float = Field(
        DEFAULT_MODEL_POLL_S, ge=0, le=3600, allow_inf_nan=False, validation_alias=contract.ENV_MODEL_POLL_S
    )
    cpu_arena: bool = Field(False, validation_alias=contract.ENV_CPU_ARENA)
    prefix_commands: bool = Field(True, validation_alias=contract.ENV_PREFIX_COMMANDS)
    sync_commands: bool = Field(True, validation_alias=contract.ENV_SYNC_COMMANDS)
    on_rebalance: Literal["warn", "exit"] = Field("warn", validation_alias=contract.ENV_ON_REBALANCE)

    @field_validator("operator_ids", mode="before")
    @classmethod
    def _operator_ids(cls, value: object) -> object:
        ids = _csv(value)
        bad = sorted(str(op) for op in ids if not str(op).isdigit()) if isinstance(ids, list | set | frozenset) else []
        if bad:
            raise ValueError(f"must be comma-separated numeric Discord user ids, got {bad}")
        return ids

    @field_validator("log_level", "on_rebalance", "image_format", mode="before")
    @classmethod
    def _fold_case(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value
        return value.strip().upper() if info.field_name == "log_level" else value.strip().lower()

    @field_validator("image_format")
    @classmethod
    def _image_format(cls, value: str) -> str:
        value = "jpeg" if value == "jpg" else value
        if value not in {"png", "jpeg"}:
            raise ValueError(f"must be png or jpeg, got {value!r}")
        return value


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser (flags override environment variables)."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {contract.ENTRY_MODULE}", description="GenArt Discord bot (StyleGAN2 faces on CPU)."
    )
    parser.add_argument("--console", action="store_true", help="read commands from stdin instead of Discord")
    parser.add_argument("--out", type=Path, help="console mode: folder for generated images (default ./waifus)")
    parser.add_argument("--model", type=Path, help="local generator .onnx (overrides GENART_MODEL_PATH and the bucket)")
    parser.add_argument("--models-bucket", help="models bucket (overrides GENART_MODELS_BUCKET)")
    parser.add_argument("--model-key", help=f"object key in the models bucket (default {DEFAULT_MODEL_KEY})")
    parser.add_argument("--model-cache", type=Path, help=f"download cache (default {DEFAULT_MODEL_CACHE})")
    parser.add_argument(
        "--model-poll",
        type=float,
        help=f"seconds between checks for a newly published model (default {DEFAULT_MODEL_POLL_S:g}; 0: never)",
    )
    parser.add_argument("--token-secret", help="Secrets Manager secret ARN/name (overrides GENART_TOKEN_SECRET_ARN)")
    parser.add_argument("--token-file", type=Path, help="file holding the token (overrides DISCORD_TOKEN_FILE)")
    parser.add_argument("--imds-url", help=f"instance metadata base URL (default {DEFAULT_IMDS_URL})")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default INFO)")
    parser.add_argument("--format", choices=["png", "jpeg"], help="image format of replies (default png)")
    parser.add_argument("--cooldown", type=float, help="seconds a user waits per image drawn (default 5; console 0)")
    parser.add_argument("--workers", type=int, help="generation worker threads (default: one per 4 cores)")
    parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads per call (default: cores/workers)")
    parser.add_argument(
        "--max-batch", type=int, help="most images per ONNX call (default: 8 to 128 px, 2 to 256 px, else 1)"
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        help=f"most images queued or running before replying busy (default {DEFAULT_MAX_QUEUE})",
    )
    parser.add_argument("--default-session", action="store_true", help="use onnxruntime default session options")
    parser.add_argument("--no-prefix-commands", action="store_true", help="slash commands only (no message content)")
    return parser


def settings_from(env: Mapping[str, str], args: argparse.Namespace) -> BotSettings:
    """Combine environment variables and parsed flags into validated settings."""
    values = BotEnvironment.from_env(env)
    model_source = ModelSource(
        local_path=args.model or values.model_path,
        bucket=args.models_bucket or values.models_bucket,
        key=args.model_key or values.model_key,
        cache_path=args.model_cache or values.model_cache,
        region=values.region,
    )
    env_token = values.token.get_secret_value() if values.token is not None else None
    token_source = TokenSource(
        secret_id=args.token_secret or values.token_secret_arn,
        env_token=env_token if args.token_file is None else None,
        token_file=args.token_file or values.token_file,
        region=values.region,
    )
    for name, value in (("--workers", args.workers), ("--threads", args.threads), ("--max-batch", args.max_batch)):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be at least 1")
    if args.model_poll is not None and not 0 <= args.model_poll <= 3600:
        raise ConfigError("--model-poll must be from 0 to 3600 seconds")
    if args.max_queue is not None and args.max_queue < GRID_MAX:
        raise ConfigError(f"--max-queue must be at least {GRID_MAX} (the largest grid)")
    cores = available_cores()
    workers = args.workers or values.workers or plan_workers(cores)[0]
    threads = args.threads or values.threads or max(1, cores // workers)
    cooldown_default = 0.0 if args.console else 5.0
    cooldown = values.cooldown_s if values.cooldown_s is not None else cooldown_default
    return BotSettings(
        token_source=token_source,
        model_source=model_source,
        imds_url=args.imds_url or values.imds_url,
        operator_ids=values.operator_ids,
        log_level=(args.log_level or values.log_level).upper(),
        image_format="jpeg" if (args.format or values.image_format) == "jpeg" else "png",
        cooldown_s=args.cooldown if args.cooldown is not None else cooldown,
        max_batch=args.max_batch or values.max_batch,
        batch_window_ms=values.batch_window_ms,
        max_queue=args.max_queue or values.max_queue,
        user_burst=values.user_burst,
        user_max_pending=values.user_max_pending,
        max_wait_s=values.max_wait_s,
        workers=workers,
        intra_op_threads=threads,
        tuned_session=not args.default_session,
        cpu_arena=values.cpu_arena,
        prefix_commands=not args.no_prefix_commands and values.prefix_commands,
        sync_commands=values.sync_commands,
        on_rebalance=values.on_rebalance,
        model_poll_s=args.model_poll if args.model_poll is not None else values.model_poll_s,
        console=bool(args.console),
        out_dir=args.out or Path("waifus"),
    )
