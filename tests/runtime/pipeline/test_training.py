"""Training: it learns on a synthetic dataset, resumes bit-exactly after a kill, and stops cleanly on SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from runtime.pipeline.stylegan2 import train
from runtime.pipeline.stylegan2.checkpoint import checkpoint_path, list_checkpoints, load_state, save_atomic
from runtime.pipeline.stylegan2.metrics import METRIC_DEFINITIONS
from runtime.pipeline.stylegan2.training_loop import Trainer, TrainOptions

from .conftest import PIPELINE_DIR, step_command, step_env, tiny_train_options


def _options(root: Path, data: Path, **overrides: Any) -> TrainOptions:
    values: dict[str, Any] = {
        "batch": 4,
        "kimg": 0.024,  # 6 steps
        "snapshot_kimg": 0.012,  # a checkpoint after step 3
        "tick_kimg": 0.008,
        "r1_interval": 2,
        "mirror": True,
    }
    return tiny_train_options(root, data, **(values | overrides))


def _assert_same(a: Any, b: Any, where: str = "state") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_training_learns_the_synthetic_data(synthetic_dataset: Path, tmp_path: Path) -> None:
    trainer = Trainer(_options(tmp_path, synthetic_dataset, batch=8, augment=False, gamma=0.1, mirror=False))
    target = torch.from_numpy(np.array(trainer.dataset.images)).float().div(127.5).sub(1).mean(dim=(0, 2, 3))
    z = torch.randn(32, 512, generator=torch.Generator().manual_seed(1))

    def color_gap() -> float:
        with torch.no_grad():
            return float((trainer.G_ema(z, noise_mode="const").mean(dim=(0, 2, 3)) - target).abs().mean())

    start_gap = color_gap()
    losses_d = []
    for _ in range(30):
        losses_d.append(float(trainer.train_step()["loss_D"]))
        trainer.step += 1
        trainer.nimg += trainer.opts.batch
    assert sum(losses_d[-10:]) / 10 < sum(losses_d[:3]) / 3, losses_d
    assert color_gap() < 0.5 * start_gap


def test_resume_after_kill_matches_an_uninterrupted_run(synthetic_dataset: Path, tmp_path: Path) -> None:
    straight = Trainer(_options(tmp_path / "straight", synthetic_dataset))
    assert straight.run() is True

    class Killed(Exception):
        pass

    def kill(_: Trainer) -> None:
        raise Killed

    with pytest.raises(Killed):
        Trainer(_options(tmp_path / "interrupted", synthetic_dataset)).run(on_snapshot=kill)
    assert [p.name for p in list_checkpoints(tmp_path / "interrupted" / "checkpoints")] == [
        "checkpoint-000000000012.pt"
    ]

    resumed = Trainer(_options(tmp_path / "interrupted", synthetic_dataset))
    assert resumed.resumed_from is not None and (resumed.step, resumed.nimg) == (3, 12)
    assert resumed.run() is True

    final_straight, final_resumed = straight.state_dict(), resumed.state_dict()
    assert final_straight["step"] == 6
    for key in ("step", "nimg", "G", "D", "G_ema", "opt_G", "opt_D", "rng"):
        _assert_same(final_straight[key], final_resumed[key], key)
    start = Trainer(_options(tmp_path / "fresh", synthetic_dataset))
    assert not torch.equal(
        start.G_ema.state_dict()["synthesis.blocks.0.const"], final_straight["G_ema"]["synthesis.blocks.0.const"]
    )
    _assert_same(
        load_state(tmp_path / "straight" / "model" / "generator.pt")["G_ema"],
        load_state(tmp_path / "interrupted" / "model" / "generator.pt")["G_ema"],
        "generator.pt",
    )


def test_keeps_only_the_newest_checkpoints(synthetic_dataset: Path, tmp_path: Path) -> None:
    trainer = Trainer(_options(tmp_path, synthetic_dataset, kimg=0.02, snapshot_kimg=0.004, keep_checkpoints=2))
    assert trainer.run()
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["checkpoint-000000000016.pt", "checkpoint-000000000020.pt"]
    assert (tmp_path / "model" / "config.json").is_file()


def test_mismatched_checkpoint_config_is_refused(synthetic_dataset: Path, tmp_path: Path) -> None:
    assert Trainer(_options(tmp_path, synthetic_dataset, kimg=0.004)).run()
    with pytest.raises(ValueError, match="fresh --checkpoint-dir"):
        Trainer(_options(tmp_path, synthetic_dataset, cfg="small"))


def _metrics(line: str) -> dict[str, float]:
    values = {}
    for definition in METRIC_DEFINITIONS:
        match = re.search(definition["Regex"], line)
        assert match, (definition, line)
        values[definition["Name"]] = float(match.group(1))
    return values


@pytest.mark.timeout(90)
def test_cli_sigterm_checkpoints_then_resumes(
    synthetic_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "--data", str(synthetic_dataset), "--outdir", str(tmp_path / "model"),
        "--checkpoint-dir", str(tmp_path / "ck"), "--batch", "4", "--gamma", "1", "--lr", "0.002",
        "--resolution", "16", "--mirror", "1", "--snapshot-kimg", "1000", "--seed", "3", "--cfg", "tiny",
        "--augment", "true", "--compile", "0", "--bf16", "0", "--tick-kimg", "0.004",
    ]  # fmt: skip
    proc = subprocess.Popen(
        step_command("train", *args, "--kimg", "1000"),
        env=step_env(),
        cwd=PIPELINE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("[metrics] "):
            values = _metrics(line)
            assert values["kimg"] > 0 and values["sec_per_kimg"] > 0
            break
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, "".join(seen) + rest
    assert "stop requested" in rest
    (saved,) = list_checkpoints(tmp_path / "ck")
    state = load_state(saved)
    assert state["step"] >= 1 and state["nimg"] == 4 * state["step"]
    assert not (tmp_path / "model" / "generator.pt").exists()

    target_kimg = (state["nimg"] + 8) / 1000
    handler_before = signal.getsignal(signal.SIGTERM)
    assert train.main([*args, "--kimg", str(target_kimg)]) == 0  # in-process: saves a second interpreter start
    resumed = capsys.readouterr()
    assert f"resumed from {saved}" in resumed.err  # JSON log lines on stderr, metric lines alone on stdout
    assert re.search(
        r"^\[metrics\] kimg=\S+ loss_G=\S+ loss_D=\S+ r1=\S+ sec_per_kimg=\S+ pl=\S+ augment_p=\S+$", resumed.out, re.M
    )
    assert signal.getsignal(signal.SIGTERM) is handler_before, "train.main must restore signal handlers"
    final = load_state(tmp_path / "model" / "generator.pt")
    assert final["nimg"] == state["nimg"] + 8
    assert (tmp_path / "model" / "config.json").is_file()


def test_cli_rejects_resolution_mismatch(synthetic_dataset: Path, tmp_path: Path) -> None:
    args = ["--data", str(synthetic_dataset), "--outdir", str(tmp_path / "m"), "--checkpoint-dir", str(tmp_path / "c")]
    assert train.main([*args, "--resolution", "32", "--cfg", "tiny", "--kimg", "0.004"]) == 1


def test_checkpoints_from_before_the_resampling_change_are_refused(synthetic_dataset: Path, tmp_path: Path) -> None:
    trainer = Trainer(_options(tmp_path, synthetic_dataset))
    state = trainer.state_dict()
    state["format"] = 1
    save_atomic(state, checkpoint_path(tmp_path / "checkpoints", 12))
    with pytest.raises(ValueError, match=r"checkpoint format 1 predates .* fresh --checkpoint-dir"):
        Trainer(_options(tmp_path, synthetic_dataset))
