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
    max_queue: int = Field(32, ge=1, validation_alias=contract.ENV_MAX_QUEUE)
    compile: bool = Field(False, validation_alias=contract.ENV_COMPILE)
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = Field(
        "reduce-overhead", validation_alias=contract.ENV_COMPILE_MODE
    )
    compile_cache_dir: Path = Field(Path(DEFAULT_COMPILE_CACHE_DIR), validation_alias=contract.ENV_COMPILE_CACHE_DIR)
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

    @model_validator(mode="after")
    def _warmup_within_max_batch(self) -> Self:
        batches = tuple(b for b in self.warmup_batches if b <= self.max_batch) or (1,)
        object.__setattr__(self, "warmup_batches", batches)
        return self
