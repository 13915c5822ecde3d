"""Pure-NumPy reference of the cartoonizer, written in TF's layout (NHWC, HWIO kernels) from the model's facts.

Slow and memory-hungry (im2col); it exists so tests can check the exported ONNX graph at small sizes, including
TF "SAME" padding, TF1 `resize_bilinear` (asymmetric, no half-pixel centres) and the guided filter.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .network import GUIDED_EPS, GUIDED_RADIUS, LAYERS, LEAKY_SLOPE, SCOPE, ConvSpec


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME": output ceil(size / stride), total padding split with the extra pixel at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv2d_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, *, stride: int = 1) -> np.ndarray:
    """x [N, H, W, Cin] (*) kernel [k, k, Cin, Cout] + bias with zero "SAME" padding."""
    k = kernel.shape[0]
    top, bottom = _same_pads(x.shape[1], k, stride)
    left, right = _same_pads(x.shape[2], k, stride)
    padded = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(1, 2))[:, ::stride, ::stride]
    # windows: [N, Ho, Wo, Cin, kh, kw]
    out: np.ndarray = np.einsum("nhwcij,ijco->nhwo", windows, kernel, optimize=True)
    result: np.ndarray = (out + bias).astype(np.float32)
    return result


def leaky_relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0.2 x)."""
    result: np.ndarray = np.where(x >= 0, x, LEAKY_SLOPE * x).astype(np.float32)
    return result


def resize_bilinear_tf1(x: np.ndarray, factor: int = 2) -> np.ndarray:
    """TF1 `resize_bilinear` (align_corners=False, half_pixel_centers=False): source = destination / factor."""

    def axis_weights(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        source = np.arange(size * factor, dtype=np.float64) / factor
        low = np.floor(source).astype(np.int64)
        high = np.minimum(low + 1, size - 1)
        return low, high, (source - low).astype(np.float32)

    top, bottom, fy = axis_weights(x.shape[1])
    left, right, fx = axis_weights(x.shape[2])
    rows: np.ndarray = x[:, top] * (1 - fy)[None, :, None, None] + x[:, bottom] * fy[None, :, None, None]
    result: np.ndarray = rows[:, :, left] * (1 - fx)[None, None, :, None] + rows[:, :, right] * fx[None, None, :, None]
    return result.astype(np.float32)


def box_mean(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean over the (2r+1)^2 window of each pixel, counting only pixels inside the image."""
    size = 2 * radius + 1

    def window_sum(values: np.ndarray) -> np.ndarray:
        padded = np.pad(values, ((0, 0), (radius, radius), (radius, radius), (0, 0)))
        windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size), axis=(1, 2))
        total: np.ndarray = windows.sum(axis=(-1, -2))
        return total

    counts = window_sum(np.ones((1, *x.shape[1:3], 1), dtype=np.float64))
    mean: np.ndarray = (window_sum(x.astype(np.float64)) / counts).astype(np.float32)
    return mean


def guided_filter(guide: np.ndarray, source: np.ndarray, *, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter, per channel: source smoothed along the edges of guide."""
    mean_i = box_mean(guide, radius)
    mean_p = box_mean(source, radius)
    cov_ip = box_mean(guide * source, radius) - mean_i * mean_p
    var_i = box_mean(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    filtered: np.ndarray = (box_mean(a, radius) * guide + box_mean(b, radius)).astype(np.float32)
    return filtered


def generator(x: np.ndarray, weights: Mapping[str, np.ndarray], *, scope: str = SCOPE) -> np.ndarray:
    """The generator on x [N, H, W, 3] (BGR in [-1, 1], H and W multiples of 4); weights keyed by TF name."""

    def conv(spec: ConvSpec, value: np.ndarray) -> np.ndarray:
        kernel, bias = weights[f"{scope}/{spec.weights}"], weights[f"{scope}/{spec.biases}"]
        return conv2d_same(value, kernel, bias, stride=spec.stride)

    layers = iter(LAYERS)
    x0 = leaky_relu(conv(next(layers), x))
    x1 = leaky_relu(conv(next(layers), x0))
    x1 = leaky_relu(conv(next(layers), x1))
    x2 = leaky_relu(conv(next(layers), x1))
    x2 = leaky_relu(conv(next(layers), x2))
    for _ in range(4):
        inner = leaky_relu(conv(next(layers), x2))
        x2 = conv(next(layers), inner) + x2
    x2 = leaky_relu(conv(next(layers), x2))
    x3 = leaky_relu(conv(next(layers), resize_bilinear_tf1(x2) + x1))
    x3 = leaky_relu(conv(next(layers), x3))
    x4 = leaky_relu(conv(next(layers), resize_bilinear_tf1(x3) + x0))
    return conv(next(layers), x4)


def cartoonize(x: np.ndarray, weights: Mapping[str, np.ndarray], *, scope: str = SCOPE) -> np.ndarray:
    """Generator then guided filter guided by the input, clipped to [-1, 1]: NHWC BGR in [-1, 1] both ways."""
    raw = generator(x, weights, scope=scope)
    result: np.ndarray = np.clip(guided_filter(x, raw, radius=GUIDED_RADIUS, eps=GUIDED_EPS), -1.0, 1.0)
    return result
