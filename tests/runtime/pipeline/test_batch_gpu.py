"""--batch-gpu: the per-GPU batch in rounds whose gradients add up to the whole batch's, one optimizer step a phase."""

from __future__ import annotations

import functools
import itertools
from pathlib import Path
from typing import Any

import pytest
import torch

from runtime.pipeline.stylegan2 import train, training_loop
from runtime.pipeline.stylegan2.config import BATCH_GPU_CAPS, auto_batch_gpu
from runtime.pipeline.stylegan2.networks import MinibatchStdDev
from runtime.pipeline.stylegan2.training_loop import Trainer

from .conftest import tiny_train_options

BASE = ["--data", "d", "--outdir", "o", "--checkpoint-dir", "c"]


def _trainer(root: Path, data: Path, **overrides: Any) -> Trainer:
    """A tiny trainer with every per-round random draw switched off: no mixing, no augmentation, constant noise.

    Synthesis noise, style mixing and augmentation are drawn inside each forward call (per round, as in NVIDIA's
    code), so they cannot match between different splits; what is left random (latents, reals, path-length noise)
    is drawn for the whole batch before the rounds.
    """
    values: dict[str, Any] = {"batch": 8, "kimg": 1.0, "mixing_prob": 0.0, "augment": False, "pl_interval": 2}
    trainer = Trainer(tiny_train_options(root, data, **(values | overrides)))
    synthesis = trainer.G.synthesis
    synthesis.forward = functools.partial(type(synthesis).forward, synthesis, noise_mode="const")  # type: ignore[method-assign]
    trainer.D.mbstd.group_size = 2  # the same groups in one round of 8 and in rounds of 2 (strided split)
    return trainer


def _record_phase_gradients(trainer: Trainer) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """Each optimizer step's (all-reduced) gradients, in the order the phases step."""
    recorded: list[tuple[str, dict[str, torch.Tensor]]] = []
    step = trainer._step

    def recording(optimizer: torch.optim.Adam, module: torch.nn.Module) -> None:
        step(optimizer, module)  # the all-reduce and the NaN guard run first; the step leaves .grad as it is
        name = "G" if module is trainer.G else "D"
        grads = {k: p.grad.clone() for k, p in module.named_parameters() if p.grad is not None}
        recorded.append((name, grads))

    trainer._step = recording  # type: ignore[method-assign]
    return recorded


def _assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], where: str) -> None:
    """Equal to 5e-5 of the module's largest value: float32 sums in another order (measured: G 3e-7, D main 2e-6,
    R1 1.5e-5, where the double backward's terms cancel); a wrong loss scale or split is off by order 1."""
    assert a.keys() == b.keys(), where
    scale = max(float(value.abs().max()) for value in a.values())
    for key, value in a.items():
        diff = float((value - b[key]).abs().max())
        assert diff <= 5e-5 * scale, f"{where} {key}: max difference {diff:.3g}, largest value {scale:.3g}"


def test_rounds_of_two_give_the_updates_of_one_round_of_eight(synthetic_dataset: Path, tmp_path: Path) -> None:
    # Step 0 runs all four phases (G main, G path length, D main, D R1). pl_decay 0:
    # NVIDIA's code moves the mean path length once per round, which changes the PL gradient with the split
    # (test_the_path_length_mean_moves_once_per_round); everything else must not depend on it.
    # One after the other: each trainer seeds the global RNG that draws the latents.
    whole = _trainer(tmp_path / "whole", synthetic_dataset, batch_gpu=8, pl_decay=0.0)
    start = {name: p.detach().clone() for name, p in [*whole.G.named_parameters(), *whole.D.named_parameters()]}
    grads_whole = _record_phase_gradients(whole)
    losses_whole = whole.train_step()
    split = _trainer(tmp_path / "split", synthetic_dataset, batch_gpu=2, pl_decay=0.0)
    grads_split = _record_phase_gradients(split)
    losses_split = split.train_step()
    assert (whole.rounds, split.rounds) == (1, 4)
    assert losses_whole.keys() == {"loss_G", "pl", "loss_D", "r1"}

    assert [name for name, _ in grads_whole] == [name for name, _ in grads_split] == ["G", "G", "D", "D"]
    for i, ((name, a), (_, b)) in enumerate(zip(grads_whole, grads_split, strict=True)):
        _assert_close(a, b, f"phase {i} ({name})")
    for module in ("G", "D"):
        updates = [
            {name: p.detach() - start[name] for name, p in getattr(trainer, module).named_parameters()}
            for trainer in (whole, split)
        ]
        # Adam's first step moves a weight by about lr (0.0025) whatever its gradient's size, so a component whose
        # gradient is ~1e-8 (roundoff-sized) moves differently: measured up to 1.3e-5; the gradients above are
        # the exact check (Adam would hide a wrong loss scale), this one that the step itself matches.
        for name, update in updates[0].items():
            gap = float((updates[1][name] - update).abs().max())
            assert gap <= 5e-5, f"{module} update {name}: max difference {gap:.3g}"
    assert losses_split.keys() == losses_whole.keys()
    for key, value in losses_whole.items():  # the logged values are the whole batch's means
        torch.testing.assert_close(losses_split[key], value, rtol=1e-5, atol=1e-6, msg=key)
    torch.testing.assert_close(whole.ada_signs, split.ada_signs)  # ADA counts every real once
    assert float(split.ada_signs[1]) == 8
    torch.testing.assert_close(whole.pl_mean, split.pl_mean)


def test_each_round_puts_batch_gpu_images_through_g_and_d(synthetic_dataset: Path, tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, synthetic_dataset, batch_gpu=2, r1_interval=1, pl_interval=1)
    trainer.D.mbstd.group_size = 4  # the preset's group is more than batch_gpu: the rounds use min(4, 2)
    d_inputs: list[int] = []
    groups: list[int] = []
    trainer.D.register_forward_pre_hook(lambda _m, args: d_inputs.append(len(args[0])))
    original = MinibatchStdDev.forward

    def forward(module: MinibatchStdDev, x: torch.Tensor) -> torch.Tensor:
        out = original(module, x)
        groups.append(len(x) // len({round(float(v), 6) for v in out.detach()[:, -1, 0, 0]}))
        return out

    trainer.D.mbstd.forward = functools.partial(forward, trainer.D.mbstd)  # type: ignore[method-assign]
    optimizer_steps: list[str] = []
    step = trainer._step
    trainer._step = lambda opt, module: (optimizer_steps.append(type(module).__name__), step(opt, module))[1]  # type: ignore[method-assign,func-returns-value]
    trainer.train_step()
    # G main: 4 rounds; PL: no D call; D main: 4 rounds of reals + fakes; R1: 4 rounds.
    assert d_inputs == [2] * (4 + 2 * 4 + 4)
    assert set(groups) == {2}
    assert optimizer_steps == ["Generator", "Generator", "Discriminator", "Discriminator"]  # one step a phase


def test_the_path_length_mean_moves_once_per_round(
    synthetic_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = _trainer(tmp_path, synthetic_dataset, batch_gpu=2, pl_interval=1, pl_decay=0.01)
    calls: list[tuple[float, float, int]] = []
    penalty = training_loop.path_length_penalty

    def recording(images: torch.Tensor, ws: torch.Tensor, pl_mean: torch.Tensor, **kwargs: Any) -> Any:
        result = penalty(images, ws, pl_mean, **kwargs)
        # y comes from the trainer, drawn for all rounds at once (per-call draws on a GPU would differ with the split)
        assert kwargs["noise"] is not None and kwargs["noise"].shape == images.shape
        calls.append((float(pl_mean), float(result[1]), len(images)))
        return result

    monkeypatch.setattr(training_loop, "path_length_penalty", recording)
    trainer.train_step()
    # 4 rounds of 2 // pl_batch_shrink 2 = 1 image; each starts from the previous round's mean (NVIDIA's semantics).
    assert [n for _, _, n in calls] == [1, 1, 1, 1]
    assert calls[0][0] == 0.0
    for (_, after, _), (before, _, _) in itertools.pairwise(calls):
        assert before == pytest.approx(after, rel=1e-6)
    assert float(trainer.pl_mean) == pytest.approx(calls[-1][1], rel=1e-6) and calls[-1][1] > 0


def test_auto_takes_the_per_gpu_batch_up_to_the_resolutions_cap() -> None:
    assert auto_batch_gpu(resolution=16, batch_per_gpu=4) == 4
    assert auto_batch_gpu(resolution=128, batch_per_gpu=64) == 32
    assert auto_batch_gpu(resolution=256, batch_per_gpu=64) == 8 == BATCH_GPU_CAPS[256]
    assert auto_batch_gpu(resolution=512, batch_per_gpu=64) == 8
    assert auto_batch_gpu(resolution=1024, batch_per_gpu=32) == 4
    assert auto_batch_gpu(resolution=2048, batch_per_gpu=32) == 4  # above the table: its last cap
    assert auto_batch_gpu(resolution=256, batch_per_gpu=12) == 6  # the largest divisor within the cap
    assert auto_batch_gpu(resolution=256, batch_per_gpu=7) == 7
    assert auto_batch_gpu(resolution=256, batch_per_gpu=5) == 5


def test_the_trainer_resolves_auto_and_refuses_a_split_that_does_not_divide(
    synthetic_dataset: Path, tmp_path: Path
) -> None:
    assert _trainer(tmp_path / "auto", synthetic_dataset).batch_gpu == 8  # 16 px: the whole per-GPU batch
    with pytest.raises(ValueError, match=r"--batch-gpu 3 must divide the per-GPU batch 8"):
        Trainer(tiny_train_options(tmp_path, synthetic_dataset, batch=8, batch_gpu=3))
    with pytest.raises(ValueError, match=r"--batch-gpu must be 0 \(auto\) or positive, got -1"):
        Trainer(tiny_train_options(tmp_path, synthetic_dataset, batch=8, batch_gpu=-1))


def test_the_cli_takes_batch_gpu_and_names_it_when_wrong(capsys: pytest.CaptureFixture[str]) -> None:
    assert train.parse_args(BASE).batch_gpu == 0
    args = train.parse_args([*BASE, "--batch", "64", "--batch-gpu", "16"])
    assert train.train_options(args, on_gpu=False).batch_gpu == 16
    wrong = {
        "--batch-gpu must be positive or 0": ["--batch-gpu", "-2"],
        "--batch-gpu 24 must divide --batch 64": ["--batch", "64", "--batch-gpu", "24"],
        "unknown hyperparameter 'batch-gp'": ["--batch-gp", "8"],
    }
    for message, bad in wrong.items():
        with pytest.raises(SystemExit):
            train.parse_args([*BASE, *bad])
        assert message in capsys.readouterr().err
