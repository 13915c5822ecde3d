"""The step image's `train` entry point: SageMaker hyperparameters and hosts -> the training command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.pipeline.container import sagemaker_train as entry


def test_hyperparameters_become_sorted_cli_flags() -> None:
    args = entry.hyperparameter_args(
        {"snapshot-kimg": "50", "kimg": "1000", "cfg": '"paper256"', "sagemaker_job_name": "x", "tick_kimg": "4"}
    )
    assert args == ["--cfg", "paper256", "--kimg", "1000", "--snapshot-kimg", "50", "--tick-kimg", "4"]


def test_hyperparameters_cannot_override_the_container_paths() -> None:
    with pytest.raises(ValueError, match="'checkpoint_dir' is set by the container"):
        entry.hyperparameter_args({"checkpoint_dir": "/tmp/elsewhere"})
    with pytest.raises(ValueError, match=r"'outdir'='/tmp/elsewhere' must lie inside /opt/ml/model"):
        entry.path_args({}, {"outdir": "/tmp/elsewhere"})
    with pytest.raises(ValueError, match=r"'data'='\.\./x' must lie inside"):
        entry.path_args({}, {"data": "../x"})


def test_seed_data_and_outdir_resolve_inside_the_sagemaker_folders() -> None:
    args = entry.path_args({}, {"data": "faces", "outdir": '"/opt/ml/model/run1"'})
    assert args[:4] == ["--data", "/opt/ml/input/data/train/faces", "--outdir", "/opt/ml/model/run1"]
    assert entry.hyperparameter_args({"data": "faces", "outdir": "out", "gpus": "1"}) == ["--gpus", "1"]


def test_paths_follow_sagemaker_layout_unless_the_toolkit_variables_say_otherwise() -> None:
    assert entry.path_args({}) == [
        "--data",
        "/opt/ml/input/data/train",
        "--outdir",
        "/opt/ml/model",
        "--checkpoint-dir",
        "/opt/ml/checkpoints",
    ]
    assert entry.path_args({"SM_CHANNEL_TRAIN": "/data", "SM_MODEL_DIR": "/model"})[:4] == [
        "--data",
        "/data",
        "--outdir",
        "/model",
    ]


def test_one_gpu_on_one_host_runs_plain_python() -> None:
    command = entry.launch_command(["--kimg", "1"], gpus=1, hosts=["algo-1"], current_host="algo-1", python="py")
    assert command == ["py", "-m", "runtime.pipeline.stylegan2.train", "--kimg", "1"]


def test_several_gpus_run_one_process_each_under_torchrun() -> None:
    command = entry.launch_command(["--kimg", "1"], gpus=4, hosts=["algo-1"], current_host="algo-1")
    train = "runtime.pipeline.stylegan2.train"
    assert command == ["torchrun", "--nproc_per_node=4", "--standalone", "-m", train, "--kimg", "1"]


def test_several_hosts_rendezvous_on_the_first_host() -> None:
    hosts = ["algo-1", "algo-2", "algo-3"]
    command = entry.launch_command([], gpus=8, hosts=hosts, current_host="algo-2")
    assert command == [
        "torchrun",
        "--nproc_per_node=8",
        "--nnodes=3",
        "--node_rank=1",
        "--master_addr=algo-1",
        f"--master_port={entry.MASTER_PORT}",
        "-m",
        "runtime.pipeline.stylegan2.train",
    ]
    with pytest.raises(ValueError, match="not in the job's hosts"):
        entry.launch_command([], gpus=1, hosts=hosts, current_host="algo-9")


def test_main_reads_sagemaker_config_and_execs_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "hyperparameters.json").write_text(json.dumps({"kimg": "2", "batch": "8"}))
    (tmp_path / "resourceconfig.json").write_text(json.dumps({"hosts": ["algo-1"], "current_host": "algo-1"}))
    monkeypatch.setattr(entry, "CONFIG_DIR", tmp_path)
    monkeypatch.setattr(entry, "gpu_count", lambda: 2)
    monkeypatch.delenv("SM_CHANNEL_TRAIN", raising=False)
    monkeypatch.delenv("SM_MODEL_DIR", raising=False)
    executed: list[list[str]] = []
    monkeypatch.setattr(entry.os, "execvp", lambda file, argv: executed.append([file, *argv]))
    entry.main()
    (call,) = executed
    assert call[:4] == ["torchrun", "torchrun", "--nproc_per_node=2", "--standalone"]
    assert call[-4:] == ["--batch", "8", "--kimg", "2"]
    assert "/opt/ml/checkpoints" in call


def test_the_gpus_hyperparameter_limits_the_launch_to_the_visible_gpus() -> None:
    assert entry.requested_gpus({}, 4) == 4
    assert entry.requested_gpus({"gpus": "2"}, 8) == 2
    assert entry.requested_gpus({"gpus": "1"}, 0) == 0  # CPU-only container: plain python
    with pytest.raises(ValueError, match="'gpus'=9 but 8 GPU"):
        entry.requested_gpus({"gpus": "9"}, 8)


def test_the_layout_root_moves_with_genart_opt_ml(tmp_path: Path) -> None:
    root = tmp_path / "opt" / "ml"
    environ = {"GENART_OPT_ML": str(root)}
    assert entry.config_dir(environ) == root / "input" / "config"
    assert entry.path_args(environ) == [
        *("--data", str(root / "input" / "data" / "train")),
        *("--outdir", str(root / "model")),
        *("--checkpoint-dir", str(root / "checkpoints")),
    ]
    assert entry.config_dir({}) == Path("/opt/ml/input/config")
