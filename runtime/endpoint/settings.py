"""Server settings read from GENART_* / SageMaker environment variables with pydantic-settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import NoDecode

from ..common.errors import ConfigError
from ..common.settings import EnvSettings
from . import contract

DTYPES = ("fp16", "bf16", "fp32")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
DEFAULT_COMPILE_CACHE_DIR = contract.COMPILE_CACHE_DIR
# The documented buckets: every one is warmed (each batch size, with and without CFG) before /ping is healthy.
Sizes = tuple[tuple[int, int], ...]
DEFAULT_SIZES: Sizes = ((512, 512), (768, 768), (512, 768), (768, 512))
# SageMaker refuses real-time responses over 6 MB; keep a margin for the JSON around the images.
DEFAULT_MAX_INLINE_BYTES = 5_500_000

__all__ = ["COMPILE_MODES", "DTYPES", "ConfigError", "Settings"]


class Settings(EnvSettings):
    """Everything the server reads from its environment, validated once at start (ConfigError names the variable)."""

    model_dir: Path = Field(Path(contract.MODEL_DIR), validation_alias=contract.ENV_MODEL_DIR)
    port: int = Field(contract.PORT, ge=1, le=65535, validation_alias=contract.ENV_PORT)
    device: str = Field("auto", validation_alias=contract.ENV_DEVICE)
    dtype: Literal["fp16", "bf16", "fp32"] = Field("fp16", validation_alias=contract.ENV_DTYPE)
    outputs_bucket: str = Field("", validation_alias=contract.ENV_OUTPUTS_BUCKET)
    outputs_prefix: str = Field(contract.OUTPUTS_PREFIX, validation_alias=contract.ENV_OUTPUTS_PREFIX)
    max_side: int = Field(768, ge=64, multiple_of=8, validation_alias=contract.ENV_MAX_SIDE)
    max_images: int = Field(4, ge=1, validation_alias=contract.ENV_MAX_IMAGES)
    max_steps: int = Field(100, ge=1, validation_alias=contract.ENV_MAX_STEPS)
    max_prompt_chars: int = Field(1000, ge=1, validation_alias=contract.ENV_MAX_PROMPT_CHARS)
    max_batch: int = Field(8, ge=1, validation_alias=contract.ENV_MAX_BATCH)
    batch_window_ms: int = Field(20, ge=0, validation_alias=contract.ENV_BATCH_WINDOW_MS)
    max_queue: int = Field(32, ge=1, validation_alias=contract.ENV_MAX_QUEUE, description="queued images")
    # Width x height buckets a request may ask for; empty ("any") allows every multiple of 8 (uncompiled only).
    sizes: Annotated[tuple[tuple[int, int], ...], NoDecode] = Field(DEFAULT_SIZES, validation_alias=contract.ENV_SIZES)
    queue_timeout_s: float = Field(60.0, ge=0, allow_inf_nan=False, validation_alias=contract.ENV_QUEUE_TIMEOUT_S)
    unhealthy_after_failed_batches: int = Field(3, ge=1, validation_alias=contract.ENV_UNHEALTHY_AFTER_FAILED_BATCHES)
    max_inline_bytes: int = Field(DEFAULT_MAX_INLINE_BYTES, ge=1024, validation_alias=contract.ENV_MAX_INLINE_BYTES)
    max_body_bytes: int = Field(65536, ge=1024, validation_alias=contract.ENV_MAX_BODY_BYTES)
    body_timeout_s: float = Field(30.0, gt=0, allow_inf_nan=False, validation_alias=contract.ENV_BODY_TIMEOUT_S)
    compile: bool = Field(False, validation_alias=contract.ENV_COMPILE)
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = Field(
        "reduce-overhead", validation_alias=contract.ENV_COMPILE_MODE
    )
    compile_cache_dir: Path = Field(Path(DEFAULT_COMPILE_CACHE_DIR), validation_alias=contract.ENV_COMPILE_CACHE_DIR)
    compile_cache_s3_uri: str = Field("", validation_alias=contract.ENV_COMPILE_CACHE_S3_URI)
    channels_last: bool = Field(True, validation_alias=contract.ENV_CHANNELS_LAST)
    fuse_qkv: bool = Field(True, validation_alias=contract.ENV_FUSE_QKV)
    warmup_sizes: Annotated[tuple[int, ...], NoDecode] = Field((512,), validation_alias=contract.ENV_WARMUP_SIZES)
    warmup_batches: Annotated[tuple[int, ...], NoDecode] = Field(
        (1, 2, 4, 8), validation_alias=contract.ENV_WARMUP_BATCHES
    )
    warmup_steps: int = Field(2, ge=1, validation_alias=contract.ENV_WARMUP_STEPS)
    safety_checker: bool = Field(True, validation_alias=contract.ENV_SAFETY_CHECKER)
    log_level: str = Field("INFO", validation_alias=contract.ENV_LOG_LEVEL)

    @field_validator("dtype", "log_level", mode="before")
    @classmethod
    def _fold_case(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value
        return value.strip().upper() if info.field_name == "log_level" else value.strip().lower()

    @field_validator("outputs_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip()
        return (value if not value or value.endswith("/") else value + "/").lstrip("/")

    @field_validator("warmup_sizes", "warmup_batches", mode="before")
    @classmethod
    def _int_list(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        parts = [part.strip() for part in value.split(",") if part.strip()]
        if not parts:
            raise ValueError(f"must list positive integers, got {value!r}")
        return parts

    @field_validator("warmup_sizes", "warmup_batches")
    @classmethod
    def _sorted_positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        values = tuple(sorted(set(value)))
        if not values or values[0] < 1:
            raise ValueError(f"must list positive integers, got {list(value)}")
        return values

    @field_validator("compile_cache_s3_uri")
    @classmethod
    def _s3_uri(cls, value: str) -> str:
        if value and (not value.startswith("s3://") or len(value) <= len("s3://")):
            raise ValueError("must be an s3://bucket/prefix/ URI")
        return value if not value or value.endswith("/") else value + "/"

    @field_validator("sizes", mode="before")
    @classmethod
    def _parse_sizes(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if value.strip().lower() == "any":
            return ()
        sizes = []
        for part in (piece.strip().lower() for piece in value.split(",") if piece.strip()):
            width, sep, height = part.partition("x")
            if not (width.isdigit() and (height.isdigit() if sep else True)):
                raise ValueError(f"must list WIDTHxHEIGHT sizes (e.g. 512x512,768x512) or 'any', got {part!r}")
            sizes.append((int(width), int(height or width)))
        if not sizes:
            raise ValueError("must list WIDTHxHEIGHT sizes or 'any'")
        return sizes

    @field_validator("sizes")
    @classmethod
    def _sizes_within_limits(cls, value: Sizes, info: ValidationInfo) -> Sizes:
        max_side = info.data.get("max_side", 768)
        if value == DEFAULT_SIZES:  # the default keeps the buckets that fit GENART_MAX_SIDE
            return tuple((w, h) for w, h in value if max(w, h) <= max_side) or ((max_side, max_side),)
        for width, height in value:
            for side in (width, height):
                if side < 64 or side > max_side or side % 8:
                    limits = f"64..{contract.ENV_MAX_SIDE} ({max_side})"
                    message = f"{width}x{height}: sides must be multiples of 8 in {limits}"
                    raise ValueError(message)
        return tuple(dict.fromkeys(value))

    @field_validator("max_queue")
    @classmethod
    def _queue_holds_one_request(cls, value: int, info: ValidationInfo) -> int:
        max_images = info.data.get("max_images", 1)
        if value < max_images:
            raise ValueError(f"counts images and must be >= {contract.ENV_MAX_IMAGES} ({max_images})")
        return value

    @field_validator("compile")
    @classmethod
    def _compiled_sizes_are_buckets(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("sizes") == ():
            raise ValueError(f"needs {contract.ENV_SIZES} buckets ('any' is for uncompiled servers only)")
        return value

    @field_validator("warmup_batches", mode="after")
    @classmethod
    def _compiled_batches_cover_a_request(cls, value: tuple[int, ...], info: ValidationInfo) -> tuple[int, ...]:
        max_images, max_batch = info.data.get("max_images", 1), info.data.get("max_batch", 1)
        capped = tuple(b for b in value if b <= max_batch) or (1,)
        if info.data.get("compile") and capped[-1] < max_images:
            raise ValueError(
                f"needs a batch size >= {contract.ENV_MAX_IMAGES} ({max_images}) within {contract.ENV_MAX_BATCH}"
                f" ({max_batch}) when compiled: larger batches would not be warmed"
            )
        return value

    @model_validator(mode="after")
    def _warmup_within_max_batch(self) -> Self:
        batches = tuple(b for b in self.warmup_batches if b <= self.max_batch) or (1,)
        object.__setattr__(self, "warmup_batches", batches)
        return self
