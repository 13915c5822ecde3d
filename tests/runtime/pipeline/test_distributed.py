"""Data-parallel training under torchrun (2 CPU ranks, gloo): ranks stay in sync, only rank 0 writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runtime.pipeline.stylegan2.checkpoint import list_checkpoints, load_state

from .conftest import PIPELINE_DIR, step_env


@pytest.mark.timeout(120)
def test_two_rank_training_stays_in_sync(synthetic_dataset: Path, tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "stylegan2.train",
        "--data", str(synthetic_dataset), "--outdir", str(tmp_path / "model"), "--checkpoint-dir", str(tmp_path / "ck"),
        "--kimg", "0.024", "--batch", "8", "--resolution", "16", "--cfg", "tiny", "--snapshot-kimg", "0.016",
        "--tick-kimg", "0.008", "--device", "cpu",
    ]  # fmt: skip
    result = subprocess.run(
        command, env=step_env(), cwd=PIPELINE_DIR, capture_output=True, text=True, check=False, timeout=110
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    # Each snapshot runs a cross-rank equality check of G, D and G_ema; a divergence would fail the run.
    assert "batch 8 (2 x 4)" in log and "diverged" not in log
    assert log.count("[metrics] ") == 3, "only rank 0 logs metrics"
    checkpoints = list_checkpoints(tmp_path / "ck")
    assert [p.name for p in checkpoints] == ["checkpoint-000000000016.pt", "checkpoint-000000000024.pt"]
    state = load_state(checkpoints[-1])
    assert state["step"] == 3 and len(state["rng"]) == 2
    assert not list((tmp_path / "ck").glob("*.tmp"))
    assert load_state(tmp_path / "model" / "generator.pt")["nimg"] == 24
