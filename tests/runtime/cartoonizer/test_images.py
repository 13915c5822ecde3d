"""Images: formats in and out, EXIF orientation, alpha, the long-side cap, and 4xx errors for bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from runtime.cartoonizer.engine import Cartoonizer
from runtime.cartoonizer.errors import CorruptMediaError, MediaError, TooLargeError, UnsupportedMediaError
from runtime.cartoonizer.images import cartoonize_image_bytes, decode_image, output_format


def _encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _picture(width: int, height: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(width * height)
    array = rng.integers(0, 256, (height, width, len(mode)), dtype=np.uint8)
    array[: height // 4, :, :3] = (255, 0, 0)  # red top band: shows orientation
    return Image.fromarray(array, mode)


@pytest.mark.parametrize(("out_suffix", "fmt"), [(".png", "PNG"), (".jpg", "JPEG"), (".webp", "WEBP")])
@pytest.mark.parametrize("in_fmt", ["PNG", "JPEG", "WEBP"])
def test_every_input_format_to_every_output_format(engine: Cartoonizer, in_fmt: str, out_suffix: str, fmt: str) -> None:
    data = _encoded(_picture(40, 30), in_fmt)
    out, result = cartoonize_image_bytes(
        data, engine=engine, image_format=output_format("x" + out_suffix), max_side=1920
    )
    decoded = Image.open(io.BytesIO(out))
    assert decoded.format == fmt and decoded.size == (40, 30)
    assert (result.width, result.height) == (40, 30)


def test_exif_orientation_is_applied(engine: Cartoonizer) -> None:
    image = _picture(40, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    data = _encoded(image, "JPEG", exif=exif.tobytes(), quality=95)
    decoded = decode_image(data, max_side=1920)
    assert decoded.rgb.shape == (40, 20, 3)
    # The red band that was on top is on the right once the image is upright.
    assert decoded.rgb[:, -3:, 0].mean() > 200 and decoded.rgb[:, -3:, 1].mean() < 60
    out, _ = cartoonize_image_bytes(data, engine=engine, image_format="PNG", max_side=1920)
    assert Image.open(io.BytesIO(out)).size == (20, 40)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_alpha_is_kept_exactly(engine: Cartoonizer, fmt: str) -> None:
    rgba = _picture(24, 18, "RGBA")
    alpha = np.asarray(rgba)[..., 3].copy()
    out, result = cartoonize_image_bytes(_encoded(rgba, "PNG"), engine=engine, image_format=fmt, max_side=1920)
    decoded = Image.open(io.BytesIO(out))
    assert decoded.mode == "RGBA" and result.alpha
    if fmt == "PNG":
        np.testing.assert_array_equal(np.asarray(decoded)[..., 3], alpha)
    assert Image.open(io.BytesIO(_encoded(_picture(8, 8), "PNG"))).mode == "RGB"


def test_alpha_into_jpeg_is_flattened_onto_white(engine: Cartoonizer) -> None:
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., :3] = 30
    out, result = cartoonize_image_bytes(
        _encoded(Image.fromarray(rgba, "RGBA"), "PNG"), engine=engine, image_format="JPEG", max_side=1920
    )
    assert not result.alpha
    assert np.asarray(Image.open(io.BytesIO(out))).mean() > 245  # fully transparent -> white


def test_long_side_is_capped_keeping_the_aspect(engine: Cartoonizer) -> None:
    out, result = cartoonize_image_bytes(
        _encoded(_picture(200, 100), "PNG"), engine=engine, image_format="PNG", max_side=64
    )
    assert Image.open(io.BytesIO(out)).size == (64, 32)
    assert (result.source_width, result.source_height) == (200, 100)


def test_side_by_side_puts_the_original_left(engine: Cartoonizer) -> None:
    source = _picture(20, 12)
    out, _ = cartoonize_image_bytes(
        _encoded(source, "PNG"), engine=engine, image_format="PNG", max_side=1920, side_by_side=True
    )
    both = np.asarray(Image.open(io.BytesIO(out)))
    assert both.shape == (12, 40, 3)
    np.testing.assert_array_equal(both[:, :20], np.asarray(source))


@pytest.mark.parametrize(
    ("data", "error", "status"),
    [
        (b"\xff\xd8\xff\xe0 this is not really a jpeg", CorruptMediaError, 400),
        (b"hello", CorruptMediaError, 400),
        (_encoded(_picture(8, 8), "PNG")[:60], CorruptMediaError, 400),
        (_encoded(_picture(8, 8), "GIF"), UnsupportedMediaError, 415),
    ],
)
def test_bad_input_is_a_clear_4xx(data: bytes, error: type[MediaError], status: int) -> None:
    with pytest.raises(error) as raised:
        decode_image(data, max_side=1920)
    assert raised.value.status == status
    assert str(raised.value).startswith(f"{status} ")
    assert raised.value.field == "input"


def test_oversized_input_is_413() -> None:
    with pytest.raises(TooLargeError) as raised:
        decode_image(b"x" * 2048, max_side=1920, max_bytes=1024)
    assert raised.value.status == 413 and "2048 bytes" in raised.value.message
    huge = _encoded(Image.new("L", (12000, 9000)), "PNG")  # 108 MP, compresses to a few hundred KB
    with pytest.raises(TooLargeError, match="pixels"):
        decode_image(huge, max_side=1920)


def test_unknown_output_suffix_is_415() -> None:
    with pytest.raises(UnsupportedMediaError) as raised:
        output_format("out.gif")
    assert raised.value.status == 415 and raised.value.field == "output"
