"""Path-length regularization, lazy-regularization optimizer settings, R1 placement, NaN guard and presets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from runtime.pipeline.stylegan2.config import TRAINING_PRESETS, preset
from runtime.pipeline.stylegan2.distributed import DistEnv, average_gradients
from runtime.pipeline.stylegan2.loss import path_length_penalty
from runtime.pipeline.stylegan2.training_loop import Trainer, TrainOptions

from .conftest import tiny_train_options


def _options(root: Path, data: Path, **overrides: Any) -> TrainOptions:
    return tiny_train_options(root, data, **({"batch": 8, "kimg": 1.0} | overrides))


def test_path_length_penalty_on_a_linear_toy_generator() -> None:
    # images = sum_l c_l * ws[:, l] reshaped to 4x4, so d sum(images * y) / d ws[:, l] = c_l * y and
    # |J^T y| = |y| * sqrt(mean_l c_l^2); the running mean moves by decay toward the batch mean.
    c = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)  # the toy generator's weights
    ws = torch.randn(4, 3, 16, requires_grad=True)
    images = (ws * c[None, :, None]).sum(dim=1).reshape(4, 1, 4, 4)
    pl_mean = torch.tensor(0.5)
    torch.manual_seed(3)
    penalty, new_mean = path_length_penalty(images, ws, pl_mean, decay=0.01)
    torch.manual_seed(3)
    y = torch.randn(4, 1, 4, 4) / 4.0
    lengths = y.flatten(1).norm(dim=1) * c.detach().square().mean().sqrt()
    expected_mean = 0.5 + 0.01 * (lengths.mean() - 0.5)
    torch.testing.assert_close(new_mean, expected_mean)
    torch.testing.assert_close(penalty, (lengths - expected_mean).square())
    (grad,) = torch.autograd.grad(penalty.sum(), c)  # differentiable in G's weights: the regularizer trains G
    assert grad.abs().sum() > 0


def test_lazy_regularization_scales_learning_rates_and_betas(synthetic_dataset: Path, tmp_path: Path) -> None:
    trainer = Trainer(_options(tmp_path, synthetic_dataset, gamma=1.0))
    (g_group,) = trainer.opt_G.param_groups
    (d_group,) = trainer.opt_D.param_groups
    assert g_group["lr"] == pytest.approx(0.0025 * 4 / 5) and g_group["betas"] == pytest.approx((0.0, 0.99**0.8))
    assert d_group["lr"] == pytest.approx(0.0025 * 16 / 17)
    assert d_group["betas"] == pytest.approx((0.0, 0.99 ** (16 / 17)))


def test_regularization_steps_run_on_their_intervals(synthetic_dataset: Path, tmp_path: Path) -> None:
    trainer = Trainer(_options(tmp_path, synthetic_dataset, pl_interval=2, r1_interval=3, augpipe="noaug"))
    seen = []
    for step in range(6):
        trainer.step = step
        losses = trainer.train_step()
        seen.append(("pl" in losses, "r1" in losses))
    assert seen == [(s % 2 == 0, s % 3 == 0) for s in range(6)]
    assert float(trainer.pl_mean) > 0  # the running mean of the path lengths moved off zero


def test_r1_is_taken_at_the_unaugmented_reals(synthetic_dataset: Path, tmp_path: Path) -> None:
    trainer = Trainer(_options(tmp_path, synthetic_dataset, augpipe="noaug"))
    trainer._augment = lambda images: images * 3.0  # type: ignore[method-assign]
    captured: dict[str, torch.Tensor] = {}

    def r1_spy(real_images: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
        (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
        x = real_images.detach().clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(trainer.D(x * 3.0).sum(), x)  # chain rule through the augmentation
        captured["input"], captured["grad"], captured["expected"] = x.detach(), grad.detach(), expected
        return grad.square().sum(dim=(1, 2, 3)).mean()

    import runtime.pipeline.stylegan2.training_loop as loop

    original = loop.r1_penalty
    loop.r1_penalty = r1_spy
    try:
        trainer.step = 0
        trainer.train_step()
    finally:
        loop.r1_penalty = original
    assert captured["input"].abs().max() <= 1.0  # the un-augmented reals, in [-1, 1]
    torch.testing.assert_close(captured["grad"], captured["expected"])


def test_nan_guard_runs_on_a_single_device() -> None:
    param = torch.nn.Parameter(torch.zeros(3))
    param.grad = torch.tensor([float("nan"), float("inf"), 1.0])
    average_gradients([param], DistEnv())
    assert param.grad.tolist() == [0.0, 1e5, 1.0]


def test_paper_presets_carry_the_reference_values(synthetic_dataset: Path, tmp_path: Path) -> None:
    for name, gamma in (("paper256", 1.0), ("paper512", 0.5)):
        values = TRAINING_PRESETS[name]
        assert (values.batch, values.gamma, values.ema_kimg, values.ema_rampup) == (64, gamma, 20.0, 0.0)
        assert preset(name, resolution=256).mbstd_group == 8
    trainer = Trainer(_options(tmp_path, synthetic_dataset, batch=None, gamma=None))
    assert (trainer.batch, trainer.gamma, trainer.ema_rampup) == (32, 1.0, 0.05)  # tiny keeps its own


def test_mapping_and_affines_stay_float32_under_autocast() -> None:
    from runtime.pipeline.stylegan2.networks import Generator

    g = Generator(preset("tiny", resolution=8))
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        w = g.mapping(torch.randn(2, 512))
        styles = g.synthesis.blocks[0].conv1.conv.affine  # type: ignore[union-attr]
        from runtime.pipeline.stylegan2.networks import fp32_affine

        s = fp32_affine(styles, w)
        plain = styles(w)
    assert w.dtype == torch.float32 and s.dtype == torch.float32
    assert plain.dtype == torch.bfloat16  # what autocast would have done without the guard
