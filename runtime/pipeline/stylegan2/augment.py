"""Differentiable augmentation: the ADA pipelines (bg, bgc) with probability p, and DiffAugment as an option.

Every op is a gather or an affine map of the pixels, so gradients (and R1's double backward) flow to the input.
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


def apply_geometric(images: torch.Tensor, g_inv: torch.Tensor) -> torch.Tensor:
    """Resample each image through its inverse transform (reflect padding, bilinear)."""
    n, _, h, w = images.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=images.device, dtype=torch.float32) - (h - 1) / 2,
        torch.arange(w, device=images.device, dtype=torch.float32) - (w - 1) / 2,
        indexing="ij",
    )
    grid = torch.stack([xs.flatten(), ys.flatten(), torch.ones(h * w, device=images.device)])  # [3, HW]
    src = g_inv.float() @ grid  # [N, 3, HW]
    src_x = (src[:, 0] + (w - 1) / 2).reshape(n, h, w)
    src_y = (src[:, 1] + (h - 1) / 2).reshape(n, h, w)
    return sample_bilinear_reflect(images, src_x, src_y)


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
