"""Differentiable augmentation (DiffAugment-style color, translation, cutout) applied to reals and fakes alike."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
