"""Augmentation: DiffAugment ops, the ADA pipelines (exact integer ops, supersampled general ones, differentiable
for R1) and ADA's p."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from runtime.pipeline.stylegan2.augment import (
    ada_adjust,
    ada_augment,
    apply_color,
    apply_geometric,
    apply_geometric_1x,
    apply_geometric_supersampled,
    color_matrix,
    cutout,
    diff_augment,
    translate,
)
from runtime.pipeline.stylegan2.training_loop import Trainer, TrainOptions


def test_augment_keeps_shape_and_is_differentiable() -> None:
    x = torch.randn(6, 3, 16, 16, requires_grad=True)
    y = diff_augment(x)
    assert y.shape == x.shape
    (grad,) = torch.autograd.grad(y.square().sum(), x)
    assert grad.abs().sum() > 0
    assert not torch.equal(diff_augment(x), diff_augment(x)), "augmentations are random per call"


def test_translation_shifts_content_and_pads_with_zeros() -> None:
    x = torch.ones(64, 1, 16, 16)
    y = translate(x, ratio=0.125)
    zero_fraction = (y == 0).float().mean(dim=(1, 2, 3))
    assert zero_fraction.max() <= 1 - (14 * 14) / 256 + 1e-6  # at most 2 px shift each way
    assert (zero_fraction > 0).any() and (y.sum(dim=(1, 2, 3)) > 0).all()


def test_cutout_zeroes_at_most_a_quarter() -> None:
    x = torch.ones(64, 3, 16, 16)
    y = cutout(x, ratio=0.5)
    zeroed = (y == 0).float().mean(dim=(1, 2, 3))
    assert zeroed.max() <= 0.25 + 1e-6 and zeroed.mean() > 0.05


def test_ada_pipelines_are_differentiable_for_r1() -> None:
    torch.manual_seed(0)
    x = torch.randn(6, 3, 16, 16, requires_grad=True)
    d = torch.nn.Conv2d(3, 1, 3)
    for pipe in ("bg", "bgc"):
        y = ada_augment(x, pipe=pipe, p=0.8)
        assert y.shape == x.shape
        (grad,) = torch.autograd.grad(d(y).sum(), x, create_graph=True)
        d.zero_grad()
        grad.square().sum().backward()  # R1's double backward reaches D's weights through the augmentation
        assert d.weight.grad is not None and d.weight.grad.abs().sum() > 0


def test_ada_with_p_zero_is_the_identity_and_p_one_changes_every_image() -> None:
    x = torch.randn(16, 3, 8, 8)
    assert torch.equal(ada_augment(x, pipe="bgc", p=0.0), x)
    y = ada_augment(x, pipe="bgc", p=1.0)
    assert all(not torch.allclose(a, b) for a, b in zip(x, y, strict=True))
    assert torch.equal(ada_augment(x, pipe="noaug", p=1.0), x)


def test_integer_transforms_are_exact() -> None:
    x = torch.randn(2, 3, 8, 8)
    quarter = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]).repeat(2, 1, 1)
    rotated = apply_geometric(x, quarter)
    assert any(torch.equal(rotated, torch.rot90(x, k, (2, 3))) for k in (1, 3))
    flip = torch.diag(torch.tensor([-1.0, 1.0, 1.0])).repeat(2, 1, 1)
    assert torch.equal(apply_geometric(x, flip), x.flip(3))
    shift = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]).repeat(2, 1, 1)
    shifted = apply_geometric(x, shift)  # output(c) = input(c + 2), reflected at the border
    assert torch.equal(shifted[..., :6], x[..., 2:]) and torch.equal(shifted[..., 6], x[..., 6])


def _rotation(degrees: float) -> torch.Tensor:
    t = math.radians(degrees)
    return torch.tensor([[math.cos(t), -math.sin(t), 0.0], [math.sin(t), math.cos(t), 0.0], [0.0, 0.0, 1.0]])[None]


def _alias_fraction(image: torch.Tensor, frequency: tuple[float, float]) -> float:
    """Share of the (Hann-windowed) spectrum's energy away from +-frequency (cycles per pixel)."""
    size = image.shape[-1]
    window = torch.hann_window(size, periodic=False, dtype=torch.float64)
    power = torch.fft.fft2(image.double() * window[:, None] * window[None]).abs().square()
    fy, fx = torch.meshgrid(torch.fft.fftfreq(size), torch.fft.fftfreq(size), indexing="ij")
    near = torch.zeros_like(power, dtype=torch.bool)
    for sign in (1, -1):
        near |= ((fx - sign * frequency[0]).abs() < 0.06) & ((fy - sign * frequency[1]).abs() < 0.06)
    return float(power[~near].sum() / power.sum())


def test_supersampling_reduces_aliasing_of_a_rotated_high_frequency_pattern() -> None:
    # cos(2 pi f x) rotated by 30 degrees is still below Nyquist: ideally the output holds +-f' only.
    size, f, degrees = 64, 0.42, 30.0
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    pattern = torch.cos(2 * math.pi * f * xx)[None, None].repeat(1, 3, 1, 1)
    t = math.radians(degrees)
    rotated_frequency = (f * math.cos(t), -f * math.sin(t))  # output(c) = input(R c)
    crop = slice(12, -12)  # away from the reflected borders
    plain = _alias_fraction(apply_geometric_1x(pattern, _rotation(degrees))[0, 0, crop, crop], rotated_frequency)
    supersampled = apply_geometric_supersampled(pattern, _rotation(degrees))[0, 0, crop, crop]
    aa = _alias_fraction(supersampled, rotated_frequency)
    assert plain > 0.15  # bilinear at 1x folds much of the pattern onto other frequencies
    assert aa < 0.05 and aa < plain / 4
    ideal = torch.cos(2 * math.pi * (rotated_frequency[0] * xx + rotated_frequency[1] * yy))[crop, crop]
    assert (supersampled - ideal).abs().mean() < (
        apply_geometric_1x(pattern, _rotation(degrees))[0, 0, crop, crop] - ideal
    ).abs().mean()


def test_supersampled_resampling_is_aligned_with_the_pixel_grid() -> None:
    # A low-frequency pattern survives the 2x round trip; a half-pixel shift lands where the closed form says.
    size = 48
    xx = torch.arange(size, dtype=torch.float32)[None].expand(size, -1)
    pattern = torch.cos(2 * math.pi * 0.05 * xx + 0.3)[None, None].repeat(2, 3, 1, 1)
    identity = torch.eye(3)[None].repeat(2, 1, 1)
    inner = slice(8, -8)
    torch.testing.assert_close(
        apply_geometric_supersampled(pattern, identity)[..., inner, inner],
        pattern[..., inner, inner],
        atol=1e-3,
        rtol=0,
    )
    shift = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])[None].repeat(2, 1, 1)
    expected = torch.cos(2 * math.pi * 0.05 * (xx + 0.5) + 0.3)
    torch.testing.assert_close(
        apply_geometric_supersampled(pattern, shift)[0, 0, inner, inner], expected[inner, inner], atol=1e-3, rtol=0
    )


def test_only_general_transforms_take_the_supersampled_path() -> None:
    torch.manual_seed(2)
    x = torch.randn(3, 3, 16, 16)
    g_inv = torch.cat([torch.eye(3)[None], _rotation(90.0).round(), _rotation(17.0)])
    out = apply_geometric(x, g_inv)
    assert torch.equal(out[0], x[0])  # an un-augmented sample is left exactly as it was
    assert torch.equal(out[1], apply_geometric_1x(x[1:2], g_inv[1:2])[0])
    torch.testing.assert_close(out[2], apply_geometric_supersampled(x[2:], g_inv[2:])[0])
    assert not torch.allclose(out[2], apply_geometric_1x(x[2:], g_inv[2:])[0], atol=1e-3)


def test_supersampled_path_carries_r1_double_backward() -> None:
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    d = torch.nn.Conv2d(3, 1, 3)
    y = apply_geometric(x, torch.cat([_rotation(33.0), _rotation(-70.0)]))
    (grad,) = torch.autograd.grad(d(y).sum(), x, create_graph=True)
    grad.square().sum().backward()
    assert d.weight.grad is not None and d.weight.grad.abs().sum() > 0


def test_color_transforms_keep_gray_on_the_luma_axis_for_hue_and_saturation() -> None:
    torch.manual_seed(1)
    gray = torch.full((64, 3, 2, 2), 0.3)
    c = color_matrix(64, 1.0, torch.device("cpu"))
    out = apply_color(gray, c)
    channel_spread = (out.max(dim=1).values - out.min(dim=1).values).abs().max()
    assert channel_spread < 1e-5  # hue rotation and saturation act only off the luma axis
    assert out.std() > 0.05  # brightness/contrast/luma flip still move it


def test_ada_adjust_moves_p_by_the_paper_speed() -> None:
    step = 64 * 4 / 500_000  # batch 64, every 4 steps: 0 -> 1 in 500k images
    assert ada_adjust(0.0, sign_mean=0.9, target=0.6, batch=64, interval=4, ada_kimg=500) == pytest.approx(step)
    assert ada_adjust(0.5, sign_mean=0.1, target=0.6, batch=64, interval=4, ada_kimg=500) == pytest.approx(0.5 - step)
    assert ada_adjust(0.0, sign_mean=-1.0, target=0.6, batch=64, interval=4, ada_kimg=500) == 0.0


class _Memorizer(torch.nn.Module):
    """A toy discriminator that has overfit: +5 for the exact training images, -5 for anything else."""

    def __init__(self, reals: torch.Tensor) -> None:
        super().__init__()
        self.reals = reals.flatten(1)
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distance = torch.cdist(x.flatten(1).float(), self.reals, compute_mode="donot_use_mm_for_euclid_dist")
        distance = distance.min(dim=1).values
        return self.scale * torch.where(distance < 1e-3, 5.0, -5.0)


class _Unsure(torch.nn.Module):
    """A toy discriminator that does not overfit: half the reals look real (very confidently), half fake."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.tensor(-1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # E[sign] = 0 < target, while the mean logit (4.5) is above it: p must follow the signs.
        confident = torch.where(torch.arange(len(x)) % 2 == 0, 11.0, 0.0)
        return self.bias + confident + 0 * x.mean(dim=(1, 2, 3))


def _ada_trainer(root: Path, data: Path, **overrides: Any) -> Trainer:
    options = TrainOptions(
        data=data, outdir=root / "m", checkpoint_dir=root / "c", resolution=16, cfg="tiny", batch=8, kimg=1.0,
        gamma=0.0, pl_weight=0.0, augpipe="bgc", aug="ada", ada_kimg=0.1, **overrides,
    )  # fmt: skip
    return Trainer(options)


def _train(trainer: Trainer, steps: int) -> list[float]:
    history = []
    for _ in range(steps):
        trainer.train_step()
        trainer.step += 1
        trainer.nimg += trainer.batch
        history.append(trainer.augment_p)
    return history


def test_ada_p_rises_when_d_overfits(synthetic_dataset: Path, tmp_path: Path) -> None:
    trainer = _ada_trainer(tmp_path, synthetic_dataset)
    reals = torch.from_numpy(np.array(trainer.dataset.images)).float() / 127.5 - 1
    trainer.D_main = _Memorizer(reals)
    history = _train(trainer, 8)
    assert history[3] == pytest.approx(8 * 4 / 100) and max(history) > 0.3, history


def test_ada_p_falls_when_d_does_not_overfit(synthetic_dataset: Path, tmp_path: Path) -> None:
    trainer = _ada_trainer(tmp_path, synthetic_dataset, augment_p=0.5)
    trainer.D_main = _Unsure()
    history = _train(trainer, 12)
    assert history[3] == pytest.approx(0.5 - 8 * 4 / 100) and history[-1] == 0.0, history
