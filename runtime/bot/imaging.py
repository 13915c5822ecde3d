"""Image encoding (PNG/JPEG) and grid composition for replies."""

from __future__ import annotations

import io
import math
from typing import Literal

import numpy as np
import numpy.typing as npt
from PIL import Image

ImageFormat = Literal["png", "jpeg"]


def encode_image(image: npt.NDArray[np.uint8], *, fmt: ImageFormat = "png", jpeg_quality: int = 92) -> bytes:
    """Encode one HWC uint8 RGB image."""
    buffer = io.BytesIO()
    picture = Image.fromarray(np.ascontiguousarray(image), mode="RGB")
    if fmt == "jpeg":
        picture.save(buffer, format="JPEG", quality=jpeg_quality, optimize=True)
    else:
        picture.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def make_grid(images: npt.NDArray[np.uint8], *, columns: int | None = None, padding: int = 2) -> npt.NDArray[np.uint8]:
    """Tile N HWC images into one image (near-square by default), separated by white padding."""
    count, height, width, channels = images.shape
    cols = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    grid = np.full(
        (rows * height + (rows - 1) * padding, cols * width + (cols - 1) * padding, channels), 255, dtype=np.uint8
    )
    for index in range(count):
        row, col = divmod(index, cols)
        top, left = row * (height + padding), col * (width + padding)
        grid[top : top + height, left : left + width] = images[index]
    return grid
