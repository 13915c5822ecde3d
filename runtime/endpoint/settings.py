"""Server settings read from GENART_* / SageMaker environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import contract

DTYPES = ("fp16", "bf16", "fp32")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
DEFAULT_COMPILE_CACHE_DIR = contract.COMPILE_CACHE_DIR


class SettingsError(ValueError):
    """An environment variable holds a value the server cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be 0/1, got {raw!r}")


def _int_list(env: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        values = tuple(sorted({int(part) for part in raw.split(",") if part.strip()}))
    except ValueError as exc:
        raise SettingsError(f"{name} must be a comma-separated list of integers, got {raw!r}") from exc
    if not values or values[0] < 1:
        raise SettingsError(f"{name} must list positive integers, got {raw!r}")
    return values


@dataclass(frozen=True)
class Settings:
    """Everything the server reads from its environment, validated once at start."""

    model_dir: Path = Path("/opt/ml/model")
    port: int = 8080
    device: str = "auto"
    dtype: str = "fp16"
    outputs_bucket: str = ""
    outputs_prefix: str = "diffusion/"
    max_side: int = 768
    max_images: int = 4
    max_steps: int = 100
    max_prompt_chars: int = 1000
    max_batch: int = 8
    batch_window_ms: int = 20
    max_queue: int = 32
    compile: bool = False
    compile_mode: str = "reduce-overhead"
    compile_cache_dir: Path = Path(DEFAULT_COMPILE_CACHE_DIR)
    channels_last: bool = True
    fuse_qkv: bool = True
    warmup_sizes: tuple[int, ...] = (512,)
    warmup_batches: tuple[int, ...] = (1, 2, 4, 8)
    warmup_steps: int = 2
    safety_checker: bool = True
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Parse settings from env (os.environ when None)."""
        env = os.environ if env is None else env
        dtype = env.get("GENART_DTYPE", "fp16").strip().lower() or "fp16"
        if dtype not in DTYPES:
            raise SettingsError(f"GENART_DTYPE must be one of {DTYPES}, got {dtype!r}")
        prefix = env.get(contract.ENV_OUTPUTS_PREFIX, contract.OUTPUTS_PREFIX).strip()
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        max_batch = _int(env, "GENART_MAX_BATCH", 8, minimum=1)
        settings = cls(
            model_dir=Path(env.get("SM_MODEL_DIR", "").strip() or "/opt/ml/model"),
            port=_int(env, "SAGEMAKER_BIND_TO_PORT", 8080, minimum=1),
            device=env.get("GENART_DEVICE", "auto").strip() or "auto",
            dtype=dtype,
            outputs_bucket=env.get("GENART_OUTPUTS_BUCKET", "").strip(),
            outputs_prefix=prefix.lstrip("/"),
            max_side=_int(env, "GENART_MAX_SIDE", 768, minimum=64),
            max_images=_int(env, "GENART_MAX_IMAGES", 4, minimum=1),
            max_steps=_int(env, "GENART_MAX_STEPS", 100, minimum=1),
            max_prompt_chars=_int(env, "GENART_MAX_PROMPT_CHARS", 1000, minimum=1),
            max_batch=max_batch,
            batch_window_ms=_int(env, "GENART_BATCH_WINDOW_MS", 20),
            max_queue=_int(env, "GENART_MAX_QUEUE", 32, minimum=1),
            compile=_bool(env, "GENART_COMPILE", False),
            compile_mode=env.get("GENART_COMPILE_MODE", "").strip() or "reduce-overhead",
            compile_cache_dir=Path(env.get(contract.ENV_COMPILE_CACHE_DIR, "").strip() or DEFAULT_COMPILE_CACHE_DIR),
            channels_last=_bool(env, "GENART_CHANNELS_LAST", True),
            fuse_qkv=_bool(env, "GENART_FUSE_QKV", True),
            warmup_sizes=_int_list(env, "GENART_WARMUP_SIZES", (512,)),
            warmup_batches=tuple(b for b in _int_list(env, "GENART_WARMUP_BATCHES", (1, 2, 4, 8)) if b <= max_batch)
            or (1,),
            warmup_steps=_int(env, "GENART_WARMUP_STEPS", 2, minimum=1),
            safety_checker=_bool(env, "GENART_SAFETY_CHECKER", True),
            log_level=env.get("GENART_LOG_LEVEL", "INFO").strip().upper() or "INFO",
        )
        if settings.compile_mode not in COMPILE_MODES:
            raise SettingsError(f"GENART_COMPILE_MODE must be one of {COMPILE_MODES}, got {settings.compile_mode!r}")
        if settings.max_side % 8:
            raise SettingsError(f"GENART_MAX_SIDE must be a multiple of 8, got {settings.max_side}")
        return settings
