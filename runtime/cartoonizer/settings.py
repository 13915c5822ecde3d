"""Settings of both Cartoonizer runtimes, read from the contract's environment variables (errors name them)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from ..common.settings import EnvSettings
from . import contract
from .images import DEFAULT_MAX_BYTES

DEFAULT_MAX_VIDEO_SECONDS = 600.0


class Settings(EnvSettings):
    """Everything the image Lambda and the video endpoint read from their environment."""

    models_bucket: str = Field("", validation_alias=contract.ENV_MODELS_BUCKET)
    model_key: str = Field("", validation_alias=contract.ENV_MODEL_KEY)
    outputs_bucket: str = Field("", validation_alias=contract.ENV_OUTPUTS_BUCKET)
    device: str = Field("auto", validation_alias=contract.ENV_DEVICE)
    max_image_side: int = Field(
        contract.DEFAULT_MAX_IMAGE_SIDE, ge=8, le=8192, validation_alias=contract.ENV_MAX_IMAGE_SIDE
    )
    max_image_bytes: int = Field(DEFAULT_MAX_BYTES, ge=1024, validation_alias=contract.ENV_MAX_IMAGE_BYTES)
    max_video_side: int = Field(
        contract.DEFAULT_MAX_VIDEO_SIDE, ge=16, le=8192, validation_alias=contract.ENV_MAX_VIDEO_SIDE
    )
    max_video_seconds: float = Field(
        DEFAULT_MAX_VIDEO_SECONDS, gt=0, allow_inf_nan=False, validation_alias=contract.ENV_MAX_VIDEO_SECONDS
    )
    progress_interval_s: float = Field(
        contract.DEFAULT_PROGRESS_INTERVAL_S,
        ge=0,
        allow_inf_nan=False,
        validation_alias=contract.ENV_PROGRESS_INTERVAL_S,
    )
    log_level: str = Field("INFO", validation_alias=contract.ENV_LOG_LEVEL)
    model_dir: Path = Field(Path(contract.MODEL_DIR), validation_alias=contract.ENV_MODEL_DIR)
    port: int = Field(contract.PORT, ge=1, le=65535, validation_alias=contract.ENV_PORT)

    @field_validator("device", mode="before")
    @classmethod
    def _device(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().lower()
            if value not in ("auto", "cpu", "cuda"):
                raise ValueError(f"must be one of auto, cpu, cuda, got {value!r}")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value
