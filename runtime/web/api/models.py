"""Typed request models of the API; each `parse` checks a JSON object and reports the first bad field by name."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

from .. import contract
from ..settings import WebSettings
from .errors import InvalidError, TooLargeError, UnsupportedTypeError

MAX_SEED = 2**32 - 1  # the Diffusion endpoint's seed range (runtime/endpoint/schemas.py)
MAX_PROMPT_CHARS = 1000  # the Diffusion endpoint's default GENART_MAX_PROMPT_CHARS
MAX_FILENAME_CHARS = 255
UPLOAD_ID = re.compile(r"^u-[0-9a-f]{8,40}$")
JOB_ID = re.compile(r"^j-[0-9a-f]{8,40}$")


def parse_json_body(body: str | None) -> dict[str, Any]:
    """The request body as a JSON object; InvalidError naming `body` otherwise."""
    if body is None or not body.strip():
        raise InvalidError("the request body must be a JSON object", field="body")
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise InvalidError(f"the request body is not valid JSON: {exc}", field="body") from None
    if not isinstance(data, dict):
        raise InvalidError("the request body must be a JSON object", field="body")
    return data


def _only(data: Mapping[str, Any], allowed: tuple[str, ...], *, prefix: str = "") -> None:
    for key in data:
        if key not in allowed:
            raise InvalidError(
                f"unknown field {prefix + key!r}; expected one of {', '.join(allowed)}", field=prefix + key
            )


def _string(data: Mapping[str, Any], name: str, *, max_chars: int, optional: bool = False) -> str | None:
    value = data.get(name)
    if value is None:
        if optional:
            return None
        raise InvalidError(f"{name} is required", field=name)
    if not isinstance(value, str):
        raise InvalidError(f"{name} must be a string", field=name)
    value = value.strip()
    if not value and not optional:
        raise InvalidError(f"{name} must not be empty", field=name)
    if len(value) > max_chars:
        raise InvalidError(f"{name} must be at most {max_chars} characters (got {len(value)})", field=name)
    return value or None


def _integer(data: Mapping[str, Any], name: str, *, low: int, high: int, default: int | None = None) -> int:
    value = data.get(name, default)
    if value is None:
        raise InvalidError(f"{name} is required", field=name)
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise InvalidError(f"{name} must be an integer", field=name)
    if not low <= value <= high:
        raise InvalidError(f"{name} must be between {low} and {high} (got {int(value)})", field=name)
    return int(value)


def _boolean(data: Mapping[str, Any], name: str, *, field: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise InvalidError(f"{field} must be true or false", field=field)
    return value


def media_of(content_type: str) -> str | None:
    """ "image" or "video" for a content type the studio takes; None otherwise."""
    if content_type in contract.IMAGE_CONTENT_TYPES:
        return "image"
    if content_type in contract.VIDEO_CONTENT_TYPES:
        return "video"
    return None


def max_bytes_of(media: str, settings: WebSettings) -> int:
    """The size limit of a medium."""
    return settings.max_image_bytes if media == "image" else settings.max_video_bytes


@dataclasses.dataclass(frozen=True, kw_only=True)
class UploadRequest:
    """POST /api/uploads: what the browser is about to upload."""

    filename: str
    content_type: str
    size: int
    media: str

    @classmethod
    def parse(cls, data: Mapping[str, Any], *, settings: WebSettings) -> UploadRequest:
        """Validate the body: 415 for a type the studio does not take, 413 over the medium's limit."""
        _only(data, ("filename", "content_type", "size"))
        filename = _string(data, "filename", max_chars=MAX_FILENAME_CHARS) or ""
        filename = filename.replace("\\", "/").rsplit("/", 1)[-1] or "upload"
        content_type = (_string(data, "content_type", max_chars=100) or "").lower()
        media = media_of(content_type)
        if media is None:
            accepted = ", ".join([*contract.IMAGE_CONTENT_TYPES, *contract.VIDEO_CONTENT_TYPES])
            raise UnsupportedTypeError(
                f"{content_type} is not supported; upload one of: {accepted}", field="content_type"
            )
        size = _integer(data, "size", low=1, high=2**63 - 1)
        limit = max_bytes_of(media, settings)
        if size > limit:
            raise TooLargeError(
                f"the {media} is {size} bytes; {media}s may be at most {limit} bytes ({limit / 1e6:g} MB)",
                field="size",
            )
        return cls(filename=filename, content_type=content_type, size=size, media=media)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CartoonizeRequest:
    """POST /api/jobs with kind "cartoonize": an uploaded image or video and the cartoonizer's options."""

    upload_id: str
    smooth: bool = False
    side_by_side: bool = False

    kind = "cartoonize"

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> CartoonizeRequest:
        """Validate the body (options may be left out)."""
        _only(data, ("kind", "upload_id", "options"))
        upload_id = _string(data, "upload_id", max_chars=64) or ""
        if not UPLOAD_ID.match(upload_id):
            raise InvalidError("upload_id is not an id POST /api/uploads returned", field="upload_id")
        options = data.get("options") or {}
        if not isinstance(options, dict):
            raise InvalidError("options must be an object", field="options")
        _only(options, ("smooth", "side_by_side"), prefix="options.")
        return cls(
            upload_id=upload_id,
            smooth=_boolean(options, "smooth", field="options.smooth"),
            side_by_side=_boolean(options, "side_by_side", field="options.side_by_side"),
        )

    def public(self) -> dict[str, Any]:
        """The validated request as jobs report it."""
        return {"upload_id": self.upload_id, "options": {"smooth": self.smooth, "side_by_side": self.side_by_side}}


@dataclasses.dataclass(frozen=True, kw_only=True)
class GenerateRequest:
    """POST /api/jobs with kind "generate": a text-to-image request within the deployment's limits."""

    prompt: str
    negative_prompt: str | None
    width: int
    height: int
    steps: int
    seed: int | None
    num_images: int

    kind = "generate"

    @classmethod
    def parse(cls, data: Mapping[str, Any], *, settings: WebSettings) -> GenerateRequest:
        """Validate the body against the generate limits of settings."""
        _only(data, ("kind", "prompt", "negative_prompt", "width", "height", "steps", "seed", "num_images"))
        prompt = _string(data, "prompt", max_chars=MAX_PROMPT_CHARS) or ""
        negative = _string(data, "negative_prompt", max_chars=MAX_PROMPT_CHARS, optional=True)
        width_default, height_default = settings.generate_sizes[0]
        side = settings.max_generate_side
        width = _integer(data, "width", low=64, high=side, default=width_default)
        height = _integer(data, "height", low=64, high=side, default=height_default)
        if (width, height) not in settings.generate_sizes:
            allowed = ", ".join(f"{w}x{h}" for w, h in settings.generate_sizes)
            field = "height" if width in {w for w, _ in settings.generate_sizes} else "width"
            raise InvalidError(f"size {width}x{height} is not offered; choose one of {allowed}", field=field)
        steps = _integer(
            data, "steps", low=1, high=settings.max_generate_steps, default=min(30, settings.max_generate_steps)
        )
        seed = None if data.get("seed") is None else _integer(data, "seed", low=0, high=MAX_SEED)
        num_images = _integer(data, "num_images", low=1, high=settings.max_generate_images, default=1)
        return cls(
            prompt=prompt,
            negative_prompt=negative,
            width=width,
            height=height,
            steps=steps,
            seed=seed,
            num_images=num_images,
        )

    def public(self) -> dict[str, Any]:
        """The validated request as jobs report it (seed filled in by the server when it picked one)."""
        return {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "width": self.width,
            "height": self.height,
            "steps": self.steps,
            "seed": self.seed,
            "num_images": self.num_images,
        }

    def endpoint_request(self, *, seed: int) -> dict[str, Any]:
        """The Diffusion endpoint's /invocations body (runtime/endpoint/schemas.py), images written to S3."""
        return {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "width": self.width,
            "height": self.height,
            "num_inference_steps": self.steps,
            "num_images": self.num_images,
            "seed": seed,
            "output": "s3",
        }


JobRequest = CartoonizeRequest | GenerateRequest


def parse_job_request(data: Mapping[str, Any], *, settings: WebSettings) -> JobRequest:
    """Dispatch on `kind`; InvalidError names the field."""
    kind = data.get("kind")
    if kind == "cartoonize":
        return CartoonizeRequest.parse(data)
    if kind == "generate":
        return GenerateRequest.parse(data, settings=settings)
    raise InvalidError(f"kind must be one of {', '.join(contract.JOB_KINDS)}", field="kind")
