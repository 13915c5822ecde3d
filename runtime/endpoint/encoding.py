"""Encode PIL images to PNG/JPEG bytes."""

from __future__ import annotations

import io

from PIL import Image

CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg"}


def encode_image(image: Image.Image, image_format: str) -> bytes:
    """Return image as PNG (fast compression level) or JPEG (quality 92) bytes."""
    buffer = io.BytesIO()
    if image_format == "png":
        image.save(buffer, format="PNG", compress_level=1)
    elif image_format == "jpeg":
        image.convert("RGB").save(buffer, format="JPEG", quality=92)
    else:
        raise ValueError(f"unsupported image format {image_format!r}")
    return buffer.getvalue()
