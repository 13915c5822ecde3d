"""Images: JPEG/PNG/WebP in and out, EXIF orientation applied, alpha kept, long side capped, clear 4xx errors."""

from __future__ import annotations

import dataclasses
import io
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .engine import Cartoonizer
from .errors import CorruptMediaError, TooLargeError, UnsupportedMediaError

# Pillow's names of what we read (MPO is how Pillow sees many camera and phone JPEGs).
INPUT_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP"})
OUTPUT_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
# Refused before decoding: pixel bombs would exhaust memory long before the long-side cap could help.
MAX_PIXELS = 100_000_000
DEFAULT_MAX_BYTES = 30 * 1024 * 1024
JPEG_QUALITY = 92
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF")


@dataclasses.dataclass(frozen=True)
class DecodedImage:
    """An upright RGB image (uint8 [H, W, 3]) with its alpha plane when it had one, and where it came from."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    source_format: str
    source_size: tuple[int, int]  # width, height as displayed, before any downscale
    icc_profile: bytes | None = None


@dataclasses.dataclass(frozen=True)
class ImageResult:
    """What one image job produced."""

    width: int
    height: int
    source_width: int
    source_height: int
    format: str
    alpha: bool
    bytes: int
    seconds: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return dataclasses.asdict(self)


def looks_like_image(head: bytes) -> bool:
    """True when the first bytes are a JPEG, PNG or WebP signature."""
    return head.startswith(_MAGIC[:2]) or (head.startswith(_MAGIC[2]) and head[8:12] == b"WEBP")


def output_format(path: str) -> str:
    """Pillow format name for an output path or key by its suffix; UnsupportedMediaError otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise UnsupportedMediaError(
            f"output {path!r}: images are written as {', '.join(sorted(OUTPUT_FORMATS))}", field="output"
        )
    return OUTPUT_FORMATS[suffix]


def fit_within(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Size with the long side at most max_side, aspect kept (unchanged when it already fits)."""
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    scale = max_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def decode_image(data: bytes, *, max_side: int, max_bytes: int = DEFAULT_MAX_BYTES) -> DecodedImage:
    """Decode, apply EXIF orientation, split alpha, and downscale so the long side is at most max_side."""
    if len(data) > max_bytes:
        raise TooLargeError(f"input is {len(data)} bytes; the limit is {max_bytes}", field="input")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in INPUT_FORMATS:
                raise UnsupportedMediaError(f"input is {image.format}; images must be JPEG, PNG or WebP", field="input")
            if image.width * image.height > MAX_PIXELS:
                raise TooLargeError(
                    f"input is {image.width}x{image.height} pixels; the limit is {MAX_PIXELS} pixels", field="input"
                )
            source_format = "JPEG" if image.format == "MPO" else str(image.format)
            icc = image.info.get("icc_profile")
            target = fit_within(image.width, image.height, max_side)
            if source_format == "JPEG" and target != image.size:
                image.draft("RGB", target)  # decode JPEGs at a reduced scale when they will be shrunk anyway
            image.load()
            upright = ImageOps.exif_transpose(image)
    except (TooLargeError, UnsupportedMediaError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooLargeError(f"input has too many pixels: {exc}", field="input") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise CorruptMediaError(f"input is not a readable JPEG, PNG or WebP image ({exc})", field="input") from None
    source_size = upright.size
    has_alpha = upright.mode in ("RGBA", "LA", "PA") or (upright.mode == "P" and "transparency" in upright.info)
    if has_alpha:
        rgba = upright.convert("RGBA")
    elif upright.mode in ("I;16", "I;16B", "I;16L", "I"):
        rgba = Image.fromarray((np.asarray(upright, dtype=np.float64) / 257).clip(0, 255).astype(np.uint8)).convert(
            "RGBA"
        )
    else:
        rgba = upright.convert("RGB").convert("RGBA")
    target = fit_within(*source_size, max_side)
    if rgba.size != target:
        rgba = rgba.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    array = np.asarray(rgba)
    alpha = np.ascontiguousarray(array[..., 3]) if has_alpha else None
    return DecodedImage(np.ascontiguousarray(array[..., :3]), alpha, source_format, source_size, icc)


def encode_image(
    rgb: np.ndarray, alpha: np.ndarray | None, *, image_format: str, icc_profile: bytes | None = None
) -> bytes:
    """Encode RGB (+ alpha where the format holds it; JPEG gets the image flattened onto white)."""
    if alpha is not None and image_format == "JPEG":
        weight = alpha[..., None].astype(np.float32) / 255.0
        rgb = (rgb * weight + 255.0 * (1.0 - weight) + 0.5).astype(np.uint8)
        alpha = None
    image = Image.fromarray(rgb, "RGB")
    if alpha is not None:
        image.putalpha(Image.fromarray(alpha, "L"))
    options: dict[str, Any] = {}
    if icc_profile:
        options["icc_profile"] = icc_profile
    if image_format == "JPEG":
        options.update(quality=JPEG_QUALITY, subsampling=0, optimize=True)
    elif image_format == "WEBP":
        options.update(quality=JPEG_QUALITY, method=4)
    elif image_format == "PNG":
        options.update(compress_level=6)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def cartoonize_image_bytes(
    data: bytes,
    *,
    engine: Cartoonizer,
    image_format: str,
    max_side: int,
    max_bytes: int = DEFAULT_MAX_BYTES,
    side_by_side: bool = False,
) -> tuple[bytes, ImageResult]:
    """The whole image path: decode, cartoonize (RGB only), reattach alpha, encode (original | cartoon if asked)."""
    started = time.perf_counter()
    decoded = decode_image(data, max_side=max_side, max_bytes=max_bytes)
    decoded_at = time.perf_counter()
    cartoon = engine.cartoonize(decoded.rgb)
    alpha = decoded.alpha
    if side_by_side:
        cartoon = np.concatenate([decoded.rgb, cartoon], axis=1)
        alpha = None if alpha is None else np.concatenate([alpha, alpha], axis=1)
    inferred_at = time.perf_counter()
    encoded = encode_image(cartoon, alpha, image_format=image_format, icc_profile=decoded.icc_profile)
    done = time.perf_counter()
    height, width = cartoon.shape[:2]
    result = ImageResult(
        width=width,
        height=height,
        source_width=decoded.source_size[0],
        source_height=decoded.source_size[1],
        format=image_format,
        alpha=decoded.alpha is not None and image_format != "JPEG",
        bytes=len(encoded),
        seconds={
            "decode": round(decoded_at - started, 4),
            "inference": round(inferred_at - decoded_at, 4),
            "encode": round(done - inferred_at, 4),
            "total": round(done - started, 4),
        },
    )
    return encoded, result
