"""Winograd F(4x4, 3x3): the same cross-correlation as conv2d, and the layers the export gives it to."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from runtime.pipeline.stylegan2.winograd import winograd_conv3x3, winograd_pays


@pytest.mark.parametrize(("batch", "channels", "out", "height", "width"), [(2, 3, 5, 8, 12), (1, 1, 2, 4, 4)])
def test_equals_conv2d_with_padding_one(batch: int, channels: int, out: int, height: int, width: int) -> None:
    """In float64 only rounding separates them: any wrong transform entry shows as an O(1) difference."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, height, width, dtype=torch.float64, generator=generator)
    weight = torch.randn(out, channels, 3, 3, dtype=torch.float64, generator=generator)
    expected = F.conv2d(x, weight, padding=1)
    assert (winograd_conv3x3(x, weight) - expected).abs().max().item() < 1e-10


def test_borders_are_zero_padded_like_conv2d() -> None:
    """A single filter tap at a corner: the output is the input shifted, with zeros where it reads the padding."""
    x = torch.arange(1.0, 65.0, dtype=torch.float64).reshape(1, 1, 8, 8)
    weight = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    weight[0, 0, 0, 0] = 1.0  # out[i, j] = x[i - 1, j - 1]
    out = winograd_conv3x3(x, weight)[0, 0]
    assert out[0].abs().max().item() < 1e-12 and out[:, 0].abs().max().item() < 1e-12
    assert torch.allclose(out[1:, 1:], x[0, 0, :-1, :-1], atol=1e-12)


def test_float32_stays_within_rounding_of_conv2d() -> None:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(1, 64, 16, 16, generator=generator)
    weight = torch.randn(32, 64, 3, 3, generator=generator) / 24.0
    expected = F.conv2d(x, weight, padding=1)
    assert (winograd_conv3x3(x, weight) - expected).abs().max().item() < 1e-4 * expected.abs().max().item()


@pytest.mark.parametrize(
    ("shape", "weight_shape", "message"),
    [
        ((1, 2, 6, 8), (3, 2, 3, 3), "multiples of 4, got 6x8"),
        ((1, 2, 8, 6), (3, 2, 3, 3), "multiples of 4, got 8x6"),
        ((1, 2, 8, 8), (3, 4, 3, 3), "weight must be"),
    ],
)
def test_rejects_shapes_it_cannot_tile(shape: tuple[int, ...], weight_shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        winograd_conv3x3(torch.zeros(shape), torch.zeros(weight_shape))


def test_pays_only_where_it_was_measured_faster() -> None:
    """paper256: 512 ch at 32 px and 256 at 64 px; paper512 adds 512 at 64 px; never 256 at 128 or <= 16 px."""
    assert winograd_pays(channels=512, resolution=32)
    assert winograd_pays(channels=512, resolution=64)
    assert winograd_pays(channels=256, resolution=64)
    assert not winograd_pays(channels=256, resolution=128)
    assert not winograd_pays(channels=128, resolution=128)
    assert not winograd_pays(channels=512, resolution=16)
