"""DiffAugment ops: shapes kept, gradients reach the input, translation and cutout behave as specified."""

from __future__ import annotations

import torch

from runtime.pipeline.stylegan2.augment import cutout, diff_augment, translate


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
