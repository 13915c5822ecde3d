"""Request and response models of /invocations; limits come from Settings so the OpenAPI schema shows them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from .schedulers import SCHEDULER_NAMES
from .settings import Settings

MAX_SEED = 2**32 - 1
MAX_GUIDANCE = 30.0
MIN_SIDE = 64


def _json_integer(value: Any) -> Any:
    """Accept JSON integers (2 or 2.0) but not booleans or numeric strings, as JSON Schema "integer" does."""
    if isinstance(value, bool | str):
        raise ValueError("Input should be a valid integer")
    return value


JsonInt = Annotated[int, BeforeValidator(_json_integer)]
SeedInt = Annotated[int, Field(ge=0, le=MAX_SEED), BeforeValidator(_json_integer)]


class GenerationRequest(BaseModel):
    """Validated text-to-image request (the per-deployment limits live on the subclass made by build_request_model)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str
    negative_prompt: str | None = None
    num_inference_steps: int
    guidance_scale: float
    width: int
    height: int
    num_images: int
    seed: int | None = None
    scheduler: str
    output: Literal["inline", "s3"] = "inline"
    image_format: Literal["png", "jpeg"] = "png"
    deterministic: bool = Field(
        default=False,
        strict=True,
        description="serve alone (not batched), uncompiled, with deterministic kernels: see docs/diffusion.md",
    )


def build_request_model(settings: Settings) -> type[GenerationRequest]:
    """Return a GenerationRequest subclass whose fields carry this deployment's explicit limits."""
    width_default, height_default = settings.sizes[0] if settings.sizes else (min(512, settings.max_side),) * 2
    allowed = ", ".join(f"{w}x{h}" for w, h in settings.sizes) or "any"
    note = f"pixels; width x height must be one of: {allowed}"
    width = Field(default=width_default, ge=MIN_SIDE, le=settings.max_side, multiple_of=8, description=note)
    height = Field(default=height_default, ge=MIN_SIDE, le=settings.max_side, multiple_of=8, description=note)
    fields: dict[str, Any] = {
        "prompt": (str, Field(min_length=1, max_length=settings.max_prompt_chars, strict=True)),
        "negative_prompt": (str | None, Field(default=None, max_length=settings.max_prompt_chars, strict=True)),
        "num_inference_steps": (
            JsonInt,
            Field(default=min(30, settings.max_steps), ge=1, le=settings.max_steps),
        ),
        "guidance_scale": (float, Field(default=7.5, ge=0.0, le=MAX_GUIDANCE, allow_inf_nan=False, strict=True)),
        "width": (JsonInt, width),
        "height": (JsonInt, height),
        "num_images": (JsonInt, Field(default=1, ge=1, le=settings.max_images)),
        "seed": (SeedInt | None, Field(default=None, description="seed of image 0; image i uses seed + i")),
        "scheduler": (Literal[SCHEDULER_NAMES], Field(default="default")),
    }
    model: type[GenerationRequest] = create_model("InvocationRequest", __base__=GenerationRequest, **fields)
    return model


class ImageResult(BaseModel):
    """One generated image: inline base64 bytes or an S3 URI, and the seed that made it."""

    seed: int
    format: Literal["png", "jpeg"]
    nsfw: bool = Field(description="flagged by the safety checker: the image is then all black (kept, not omitted)")
    b64: str | None = None
    s3_uri: str | None = None


class InvocationResponse(BaseModel):
    """What /invocations returns as JSON."""

    request_id: str
    images: list[ImageResult]
    width: int
    height: int
    num_inference_steps: int
    guidance_scale: float
    scheduler: str
    batch_size: int = Field(description="images generated in the pipeline call that served this request")
    queue_ms: float
    inference_ms: float
    safety_checker: bool = Field(description="whether a safety checker ran (false: every nsfw is false unchecked)")


class FieldError(BaseModel):
    """One invalid field of a request."""

    field: str
    message: str


class ErrorResponse(BaseModel):
    """Every non-2xx JSON body: an error code, a message and the request id; never a traceback."""

    error: str
    message: str
    request_id: str
    fields: list[FieldError] = Field(default_factory=list)


class PingResponse(BaseModel):
    """Health state reported by /ping."""

    status: Literal["healthy", "loading", "failed", "unhealthy"]
