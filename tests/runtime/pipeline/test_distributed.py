"""Data-parallel training with 2 CPU ranks (gloo): ranks stay in sync, only rank 0 writes.

The ranks are forked from the test process with the environment torchrun sets (RANK, WORLD_SIZE, MASTER_*),
which exercises train.main exactly as under torchrun without paying for three fresh interpreters.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import sys
from pathlib import Path

import pytest

from runtime.pipeline.stylegan2 import train
from runtime.pipeline.stylegan2.checkpoint import list_checkpoints, load_state


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rank_main(rank: int, port: int, args: list[str], log_dir: str) -> None:
    """One rank, with the environment torchrun would give it."""
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2"})
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    log = open(Path(log_dir) / f"rank{rank}.log", "w")  # noqa: SIM115
    sys.stdout = sys.stderr = log
    code = train.main(args)
    log.flush()
    os._exit(code)


@pytest.mark.timeout(120)
def test_two_rank_training_stays_in_sync(synthetic_dataset: Path, tmp_path: Path) -> None:
    args = [
        "--data", str(synthetic_dataset), "--outdir", str(tmp_path / "model"), "--checkpoint-dir", str(tmp_path / "ck"),
        "--kimg", "0.024", "--batch", "8", "--resolution", "16", "--cfg", "tiny", "--snapshot-kimg", "0.016",
        "--tick-kimg", "0.008", "--device", "cpu", "--batch-gpu", "2",
    ]  # fmt: skip
    port = _free_port()
    ctx = multiprocessing.get_context("fork")
    ranks = [ctx.Process(target=_rank_main, args=(r, port, args, str(tmp_path))) for r in range(2)]
    for p in ranks:
        p.start()
    for p in ranks:
        p.join(timeout=100)
        if p.is_alive():
            p.kill()
    logs = [log.read_text() if (log := tmp_path / f"rank{r}.log").exists() else "" for r in range(2)]
    assert [p.exitcode for p in ranks] == [0, 0], logs
    # Each snapshot runs a cross-rank equality check of G, D and G_ema; a divergence would fail the run.
    # Each rank takes its 4 images in 2 rounds of 2, accumulating, before the one all-reduce of each phase.
    assert "batch 8 (2 GPU(s) x 2 round(s) x 2" in logs[0] and "diverged" not in logs[0] + logs[1]
    assert logs[0].count("[metrics] ") == 3 and "[metrics]" not in logs[1], "only rank 0 logs"
    checkpoints = list_checkpoints(tmp_path / "ck")
    assert [p.name for p in checkpoints] == ["checkpoint-000000000016.pt", "checkpoint-000000000024.pt"]
    state = load_state(checkpoints[-1])
    assert state["step"] == 3 and len(state["rng"]) == 2
    assert not list((tmp_path / "ck").glob("*.tmp"))
    assert load_state(tmp_path / "model" / "generator.pt")["nimg"] == 24
