"""Resampling ops against closed forms derived by hand on small tensors (interior and border), in float64.

Derivations (per axis; 2D is the outer product since the blur is separable, f = [1, 3, 3, 1] / 8):
- skip-image up-sampling (zero insertion, pad 2/1, blur with gain 2 per axis):
  y[2i] = x[i-1] / 4 + 3 x[i] / 4 and y[2i+1] = 3 x[i] / 4 + x[i+1] / 4, with x = 0 outside the image.
- up-sampling conv: T[p] = sum_a x[a] w[p - 2a] (0 <= p - 2a < 3), length 2n + 1; then y[m] = sum_k 2 f[k] T[m + k - 1].
- down-sampling 3x3 conv: B[r] = sum_k f[k] x[r + k - 2] (zero pad 2); y[m] = sum_a w[a] B[2m + a].
- 1x1 skip: y[m] = w * sum_k f[k] x[2m + k - 1] (zero pad 1).
"""

from __future__ import annotations

import itertools

import pytest
import torch

from runtime.pipeline.stylegan2 import onnx_graph
from runtime.pipeline.stylegan2.networks import (
    EqualConv2d,
    conv_transpose_stride2,
    fir_kernel,
    upsample2x,
    upsample_conv2d,
)

F1 = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64) / 8


def _at(x: torch.Tensor, *index: int) -> torch.Tensor:
    """x[..., index] or zero outside the last len(index) dims (zero padding)."""
    dims = x.shape[-len(index) :]
    if all(0 <= i < n for i, n in zip(index, dims, strict=True)):
        return x[(..., *index)]
    return torch.zeros(x.shape[: -len(index)], dtype=x.dtype)


def _upsample_matrix(n: int) -> torch.Tensor:
    u = torch.zeros(2 * n, n, dtype=torch.float64)
    for i in range(n):
        u[2 * i, i] = 0.75
        u[2 * i + 1, i] = 0.75
        if i >= 1:
            u[2 * i, i - 1] = 0.25
        if i + 1 < n:
            u[2 * i + 1, i + 1] = 0.25
    return u


def test_fir_kernel_is_the_normalized_outer_product() -> None:
    torch.testing.assert_close(fir_kernel().double(), torch.outer(F1, F1))
    assert float(fir_kernel().sum()) == 1.0


def test_skip_image_upsampling_matches_the_closed_form() -> None:
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    y = upsample2x(x, fir_kernel().double())
    expected = _upsample_matrix(5) @ x @ _upsample_matrix(4).T
    assert y.shape == (2, 3, 10, 8)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)
    # Border: zero padding, not edge copy (bilinear would give x[0, 0] in the corner).
    torch.testing.assert_close(y[..., 0, 0], 0.75 * 0.75 * x[..., 0, 0], rtol=0, atol=1e-12)
    # Interior sample y[3, 5]: rows 2i+1 (i=1) and columns 2j+1 (j=2).
    interior = sum(
        a * b * x[..., r, c] for (r, a), (c, b) in itertools.product(((1, 0.75), (2, 0.25)), ((2, 0.75), (3, 0.25)))
    )
    torch.testing.assert_close(y[..., 3, 5], interior, rtol=0, atol=1e-12)


def _upsample_conv_closed_form(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    n, _, h, wd = x.shape
    c_out = w.shape[0]
    t = torch.zeros(n, c_out, 2 * h + 1, 2 * wd + 1, dtype=x.dtype)
    for a, b, ky, kx in itertools.product(range(h), range(wd), range(3), range(3)):
        t[:, :, 2 * a + ky, 2 * b + kx] += torch.einsum("ni,oi->no", x[:, :, a, b], w[:, :, ky, kx])
    f2 = 2 * F1
    y = torch.zeros(n, c_out, 2 * h, 2 * wd, dtype=x.dtype)
    for m, q in itertools.product(range(2 * h), range(2 * wd)):
        for k, j in itertools.product(range(4), range(4)):
            y[:, :, m, q] += f2[k] * f2[j] * _at(t, m + k - 1, q + j - 1)
    return y


@pytest.mark.parametrize("polyphase", [False, True])
def test_upsampling_conv_matches_the_closed_form(polyphase: bool) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 3, dtype=torch.float64)
    w = torch.randn(2, 3, 3, 3, dtype=torch.float64)
    y = upsample_conv2d(x, w, fir_kernel().double(), polyphase=polyphase)
    expected = _upsample_conv_closed_form(x, w)
    assert y.shape == (2, 2, 8, 6)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)  # every pixel: interior and border


def test_exported_graph_forms_match_the_closed_forms() -> None:
    """onnx_graph's rewrites (self-padding phase convs, blur as a padded depthwise conv) on every pixel."""
    torch.manual_seed(1)
    kernel = fir_kernel().double()
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    w = torch.randn(2, 3, 3, 3, dtype=torch.float64)
    y = onnx_graph.blur(onnx_graph.phase_conv_transpose(x, w), kernel, pad=(1, 0, 1, 0), gain=4.0)
    assert y.shape == (2, 2, 8, 10)
    torch.testing.assert_close(y, _upsample_conv_closed_form(x, w), rtol=0, atol=1e-12)
    img = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    expected = _upsample_matrix(5) @ img @ _upsample_matrix(4).T
    torch.testing.assert_close(onnx_graph.upsample_image(img, kernel), expected, rtol=0, atol=1e-12)


def test_transposed_conv_does_not_flip_the_weight() -> None:
    x = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    x[0, 0, 1, 1] = 1.0
    w = torch.arange(9, dtype=torch.float64).reshape(1, 1, 3, 3)
    t = conv_transpose_stride2(x, w)
    # A unit impulse at (1, 1) stamps the weight, unflipped, at rows/cols 2..4.
    torch.testing.assert_close(t[0, 0, 2:5, 2:5], w[0, 0], rtol=0, atol=0)
    assert float(t.abs().sum()) == float(w.abs().sum())


def _blur_valid(x: torch.Tensor, pad: int) -> torch.Tensor:
    n, c, h, w = x.shape
    out_h, out_w = h + 2 * pad - 3, w + 2 * pad - 3
    b = torch.zeros(n, c, out_h, out_w, dtype=x.dtype)
    for r, s in itertools.product(range(out_h), range(out_w)):
        for k, j in itertools.product(range(4), range(4)):
            b[:, :, r, s] += F1[k] * F1[j] * _at(x, r + k - pad, s + j - pad)
    return b


def test_downsampling_conv_blurs_at_full_resolution_then_strides() -> None:
    torch.manual_seed(1)
    layer = EqualConv2d(3, 2, 3, down=True).double()
    with torch.no_grad():
        layer.bias.normal_()  # type: ignore[union-attr]
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        y = layer(x)
    b = _blur_valid(x, pad=2)  # [.., 9, 9]
    w = layer.weight.detach() * layer.weight_gain
    expected = torch.zeros(2, 2, 4, 4, dtype=torch.float64) + layer.bias.detach()[None, :, None, None]  # type: ignore[union-attr]
    for m, q, a, c in itertools.product(range(4), range(4), range(3), range(3)):
        expected[:, :, m, q] += torch.einsum("ni,oi->no", b[:, :, 2 * m + a, 2 * q + c], w[:, :, a, c])
    assert y.shape == (2, 2, 4, 4)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)
    # Border pixel (0, 0) sees the zero padding: B[0, 0] only has the taps f[2], f[3] of the image.
    corner = sum(F1[k] * F1[j] * x[:, :, k - 2, j - 2] for k in (2, 3) for j in (2, 3))
    torch.testing.assert_close(b[:, :, 0, 0], corner, rtol=0, atol=1e-12)


def test_one_by_one_skip_blurs_then_decimates() -> None:
    torch.manual_seed(2)
    layer = EqualConv2d(3, 2, 1, bias=False, down=True).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        y = layer(x)
    d = _blur_valid(x, pad=1)[:, :, ::2, ::2]
    expected = torch.einsum("nihw,oi->nohw", d, layer.weight.detach()[:, :, 0, 0] * layer.weight_gain)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)
