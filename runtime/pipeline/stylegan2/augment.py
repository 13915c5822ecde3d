"""Differentiable augmentation: the ADA pipelines (bg, bgc) with probability p, and DiffAugment as an option.

Every op is a gather, a convolution or an affine map of the pixels, so gradients (and R1's double backward) flow
to the input. General geometric transforms (scaling, rotation, fractional translation) are resampled at 2x with
an anti-aliasing filter, as in the ADA paper; pixel-exact ones (flips, 90-degree rotations, integer shifts) are not.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

GEOMETRIC = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
PIPES: dict[str, tuple[str, ...]] = {"bg": GEOMETRIC, "bgc": GEOMETRIC + COLOR, "noaug": ()}
AUGPIPES = ("bg", "bgc", "noaug", "diffaugment")

# Strengths as in the ADA paper: integer translation up to 1/8 of the size, scale and aniso lognormal with
# std 0.2 * ln 2, fractional translation normal with std 1/8, brightness std 0.2, contrast std 0.5 * ln 2,
# saturation std 1 * ln 2, hue and arbitrary rotation uniform over the full circle.
XINT_MAX = 0.125
SCALE_STD = 0.2
ANISO_STD = 0.2
XFRAC_STD = 0.125
BRIGHTNESS_STD = 0.2
CONTRAST_STD = 0.5
SATURATION_STD = 1.0
# Anti-aliasing filter of the 2x supersampling: Lanczos-3 (sinc windowed by a 3x wider sinc) sampled at the 2x
# rate, 12 taps, normalized to sum 1. Its stop band starts near the 1x Nyquist frequency.
AA_TAPS = 12
LANCZOS_A = 3


def _gate(values: torch.Tensor, prob: float, neutral: float) -> torch.Tensor:
    """Keep each sample's value with probability prob, else the neutral (identity) value."""
    keep = torch.rand(values.shape[0], device=values.device) < prob
    return torch.where(keep, values, torch.full_like(values, neutral))


def _matrix(rows: list[list[torch.Tensor | float]], n: int, device: torch.device) -> torch.Tensor:
    """Stack per-sample entries (tensors [N] or floats) into matrices [N, R, C]."""
    out = [
        torch.stack([v if isinstance(v, torch.Tensor) else torch.full((n,), float(v), device=device) for v in row], -1)
        for row in rows
    ]
    return torch.stack(out, dim=1)


def _translate(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], tx.shape[0], tx.device)


def _scale(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], sx.shape[0], sx.device)


def _rotate(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return _matrix([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]], cos.shape[0], cos.device)


def _random_rotation(n: int, prob: float, device: torch.device) -> torch.Tensor:
    theta = _gate((torch.rand(n, device=device) * 2 - 1) * math.pi, prob, 0.0)
    return _rotate(torch.cos(-theta), torch.sin(-theta))


def geometric_matrix(n: int, size: tuple[int, int], p: float, device: torch.device) -> torch.Tensor:
    """Per-sample inverse transforms [N, 3, 3] (output pixel -> input pixel, centered coordinates)."""
    h, w = size
    g_inv = torch.eye(3, device=device).repeat(n, 1, 1)
    ones = torch.ones(n, device=device)
    # x-flip, 90-degree rotations and integer translation map pixel centers onto pixel centers: exact.
    flip = _gate(torch.randint(0, 2, (n,), device=device).float(), p, 0.0)
    g_inv = g_inv @ _scale(1 - 2 * flip, ones)
    quarter = _gate(torch.randint(0, 4, (n,), device=device).float(), p, 0.0)
    g_inv = g_inv @ _rotate(torch.cos(quarter * math.pi / 2).round(), -torch.sin(quarter * math.pi / 2).round())
    t = (torch.rand(n, 2, device=device) * 2 - 1) * XINT_MAX
    tx, ty = _gate((t[:, 0] * w).round(), p, 0.0), _gate((t[:, 1] * h).round(), p, 0.0)
    g_inv = g_inv @ _translate(-tx, -ty)
    # General transforms; the two rotations together happen with probability p.
    s = _gate(torch.exp2(torch.randn(n, device=device) * SCALE_STD), p, 1.0)
    g_inv = g_inv @ _scale(1 / s, 1 / s)
    p_rot = 1 - math.sqrt(max(1 - p, 0.0))
    g_inv = g_inv @ _random_rotation(n, p_rot, device)
    a = _gate(torch.exp2(torch.randn(n, device=device) * ANISO_STD), p, 1.0)
    g_inv = g_inv @ _scale(1 / a, a)
    g_inv = g_inv @ _random_rotation(n, p_rot, device)
    t = torch.randn(n, 2, device=device) * XFRAC_STD
    g_inv = g_inv @ _translate(-_gate(t[:, 0] * w, p, 0.0), -_gate(t[:, 1] * h, p, 0.0))
    return g_inv


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Mirror integer indices into [0, size) without repeating the edge (numpy's 'reflect')."""
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    m = torch.remainder(index, period)
    return torch.where(m > size - 1, period - m, m)


def sample_bilinear_reflect(images: torch.Tensor, src_x: torch.Tensor, src_y: torch.Tensor) -> torch.Tensor:
    """Bilinear samples at pixel coordinates src_x/src_y [N, H', W'] of the reflect-extended images (a gather)."""
    n, c, h, w = images.shape
    x0, y0 = src_x.floor(), src_y.floor()
    fx, fy = (src_x - x0).to(images.dtype), (src_y - y0).to(images.dtype)
    flat = images.reshape(n, c, h * w)
    out = torch.zeros(n, c, src_x.shape[1] * src_x.shape[2], device=images.device, dtype=images.dtype)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yi = _reflect(y0.long() + dy, h)
            xi = _reflect(x0.long() + dx, w)
            index = (yi * w + xi).reshape(n, 1, -1).expand(n, c, -1)
            out = out + flat.gather(2, index) * (wy * wx).reshape(n, 1, -1)
    return out.reshape(n, c, *src_x.shape[1:])


def _source_coords(
    g_inv: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Input pixel coordinates of output positions xs [W'] x ys [H'] (pixel units) under g_inv: [N, H', W'] each."""
    h, w = size
    gy, gx = torch.meshgrid(ys - (h - 1) / 2, xs - (w - 1) / 2, indexing="ij")
    grid = torch.stack([gx.flatten(), gy.flatten(), torch.ones_like(gx).flatten()])  # [3, H'W']
    src = g_inv.float() @ grid  # [N, 3, H'W']
    shape = (g_inv.shape[0], ys.shape[0], xs.shape[0])
    return (src[:, 0] + (w - 1) / 2).reshape(shape), (src[:, 1] + (h - 1) / 2).reshape(shape)


def apply_geometric_1x(images: torch.Tensor, g_inv: torch.Tensor) -> torch.Tensor:
    """Resample each image through its inverse transform at its own resolution (reflect padding, bilinear).

    Exact for transforms that map pixel centers onto pixel centers; aliases for the others (see supersampled).
    """
    _, _, h, w = images.shape
    xs = torch.arange(w, device=images.device, dtype=torch.float32)
    ys = torch.arange(h, device=images.device, dtype=torch.float32)
    src_x, src_y = _source_coords(g_inv, xs, ys, (h, w))
    return sample_bilinear_reflect(images, src_x, src_y)


def lanczos_filter(*, taps: int = AA_TAPS, a: int = LANCZOS_A) -> torch.Tensor:
    """1-D anti-aliasing low-pass for 2x resampling: Lanczos-a at half-pixel steps, even length, sum 1."""
    t = (torch.arange(taps, dtype=torch.float64) - (taps - 1) / 2) / 2
    h = torch.sinc(t) * torch.sinc(t / a)
    return (h / h.sum()).float()


def _filter_separable(x: torch.Tensor, h: torch.Tensor, *, stride: int = 1) -> torch.Tensor:
    """Depthwise 1-D filter h along H, then along W (no padding), keeping every stride-th output."""
    c = x.shape[1]
    k = h.to(device=x.device, dtype=x.dtype)
    x = F.conv2d(x, k.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), stride=(stride, 1), groups=c)
    return F.conv2d(x, k.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), stride=(1, stride), groups=c)


def upsample2x_lowpass(images: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """2x up-sampling (zero insertion, low-pass h with gain 2 per axis); sample k sits at input position k/2 - 1/4.

    The input is reflect-padded first so the borders are filtered against mirrored content, not zeros.
    """
    n, c, height, width = images.shape
    taps = h.shape[0]
    r = taps // 4 + 1  # input pixels the filter reaches beyond an edge, rounded up
    x = F.pad(images, [r, r, r, r], mode="reflect")
    hp, wp = height + 2 * r, width + 2 * r
    x = F.pad(x.reshape(n, c, hp, 1, wp, 1), [0, 1, 0, 0, 0, 1]).reshape(n, c, 2 * hp, 2 * wp)
    # Centered on zero-inserted index k - 1/2: pad taps/2 before and taps/2 - 1 after, then crop the margin.
    x = _filter_separable(F.pad(x, [taps // 2, taps // 2 - 1, taps // 2, taps // 2 - 1]), h * 2)
    return x[:, :, 2 * r : 2 * r + 2 * height, 2 * r : 2 * r + 2 * width]


def apply_geometric_supersampled(images: torch.Tensor, g_inv: torch.Tensor) -> torch.Tensor:
    """Resample at 2x: low-pass up-sample, bilinear through g_inv at twice the density, low-pass down-sample.

    The output's 2x grid is extended by the down-sampling filter's reach, so its borders need no padding: every
    sample there is the transformed image itself (reflected beyond the input's edges).
    """
    _, _, h, w = images.shape
    aa = lanczos_filter()
    up = upsample2x_lowpass(images, aa)
    q = AA_TAPS // 2 - 1  # 2x samples the down-sampling filter reads beyond each output edge
    # 2x sample k of the output sits at output position k/2 - 1/4; the up-sampled input's sample m at m/2 - 1/4.
    xs = (torch.arange(-q, 2 * w + q, device=images.device, dtype=torch.float32)) / 2 - 0.25
    ys = (torch.arange(-q, 2 * h + q, device=images.device, dtype=torch.float32)) / 2 - 0.25
    src_x, src_y = _source_coords(g_inv, xs, ys, (h, w))
    dense = sample_bilinear_reflect(up, 2 * src_x + 0.5, 2 * src_y + 0.5)
    return _filter_separable(dense, aa, stride=2)


def is_pixel_exact(g_inv: torch.Tensor) -> torch.Tensor:
    """[N] bool: the transform maps pixel centers onto pixel centers (flips, 90-degree rotations, integer shifts)."""
    m = g_inv[:, :2, :3]
    return ((m - m.round()).abs() < 1e-6).all(dim=(1, 2)) & (g_inv[:, :2, :2].abs().round().sum(dim=(1, 2)) == 2)


def apply_geometric(images: torch.Tensor, g_inv: torch.Tensor) -> torch.Tensor:
    """Resample each image through its inverse transform: exactly at 1x where that is exact, else supersampled."""
    out = apply_geometric_1x(images, g_inv)
    general = (~is_pixel_exact(g_inv)).nonzero().flatten()
    if general.numel() == 0:
        return out
    resampled = apply_geometric_supersampled(images[general], g_inv[general]).to(out.dtype)
    return out.index_put((general,), resampled)


def color_matrix(n: int, p: float, device: torch.device) -> torch.Tensor:
    """Per-sample 4x4 color transforms: brightness, contrast, luma flip, hue rotation, saturation."""
    eye = torch.eye(4, device=device)
    c = eye.repeat(n, 1, 1)
    b = _gate(torch.randn(n, device=device) * BRIGHTNESS_STD, p, 0.0)
    shift = eye.repeat(n, 1, 1)
    shift[:, :3, 3] = b[:, None]
    c = shift @ c
    k = _gate(torch.exp2(torch.randn(n, device=device) * CONTRAST_STD), p, 1.0)
    c = torch.diag_embed(torch.stack([k, k, k, torch.ones_like(k)], -1)) @ c
    v = torch.tensor([1.0, 1.0, 1.0, 0.0], device=device) / math.sqrt(3)  # luma axis
    vv = torch.outer(v, v)
    flip = _gate(torch.randint(0, 2, (n,), device=device).float(), p, 0.0)
    c = (eye - 2 * vv * flip[:, None, None]) @ c
    theta = _gate((torch.rand(n, device=device) * 2 - 1) * math.pi, p, 0.0)
    cross = torch.zeros(4, 4, device=device)
    cross[0, 1], cross[0, 2], cross[1, 0], cross[1, 2], cross[2, 0], cross[2, 1] = (
        -v[2],
        v[1],
        v[2],
        -v[0],
        -v[1],
        v[0],
    )
    cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    rot = cos * eye + sin * cross + (1 - cos) * vv  # Rodrigues, about the luma axis
    rot[:, 3, :] = eye[3]
    rot[:, :, 3] = eye[:, 3]
    c = rot @ c
    s = _gate(torch.exp2(torch.randn(n, device=device) * SATURATION_STD), p, 1.0)
    c = (vv + (eye - vv) * s[:, None, None]) @ c
    return c


def apply_color(images: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Apply 4x4 color matrices to RGB images [N, 3, H, W]."""
    n, ch, h, w = images.shape
    c = c.to(images.dtype)
    flat = images.reshape(n, ch, h * w)
    return (c[:, :3, :3] @ flat + c[:, :3, 3:]).reshape(n, ch, h, w)


def ada_augment(images: torch.Tensor, *, pipe: str, p: float) -> torch.Tensor:
    """One ADA pipeline ('bg', 'bgc' or 'noaug'), each transform applied with probability p per sample."""
    ops = PIPES[pipe]
    if p <= 0 or not ops:
        return images
    n, _, h, w = images.shape
    images = apply_geometric(images, geometric_matrix(n, (h, w), p, images.device))
    if any(op in COLOR for op in ops):
        images = apply_color(images, color_matrix(n, p, images.device))
    return images


def ada_adjust(p: float, *, sign_mean: float, target: float, batch: int, interval: int, ada_kimg: float) -> float:
    """New p: step toward target by batch * interval / (ada_kimg * 1000) (0 -> 1 in ada_kimg k images); p >= 0."""
    step = math.copysign(1.0, sign_mean - target) if sign_mean != target else 0.0
    return max(p + step * batch * interval / (ada_kimg * 1000), 0.0)


def adjust_color(x: torch.Tensor) -> torch.Tensor:
    """Random brightness, saturation and contrast per sample."""
    n = x.shape[0]
    x = x + (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean


def translate(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each sample by up to ratio of its size, filling with zeros (an index gather, so gradients flow)."""
    n, _, h, w = x.shape
    max_y, max_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    shift_y = torch.randint(-max_y, max_y + 1, (n, 1, 1), device=x.device)
    shift_x = torch.randint(-max_x, max_x + 1, (n, 1, 1), device=x.device)
    grid_y, grid_x = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    grid_y = (grid_y + shift_y + 1).clamp(0, h + 1)
    grid_x = (grid_x + shift_x + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded[batch, grid_y, grid_x].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero a random square of ratio * size per sample."""
    n, _, h, w = x.shape
    size_y, size_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    offset_y = torch.randint(0, h + (1 - size_y % 2), (n, 1, 1), device=x.device)
    offset_x = torch.randint(0, w + (1 - size_x % 2), (n, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device)[None, :, None]
    cols = torch.arange(w, device=x.device)[None, None, :]
    rel_y = rows - offset_y + size_y // 2
    rel_x = cols - offset_x + size_x // 2
    inside = (rel_y >= 0) & (rel_y < size_y) & (rel_x >= 0) & (rel_x < size_x)
    return x * (~inside).to(x.dtype).unsqueeze(1)


def diff_augment(x: torch.Tensor) -> torch.Tensor:
    """Apply color, translation and cutout; every op is differentiable with respect to x."""
    return cutout(translate(adjust_color(x)))
