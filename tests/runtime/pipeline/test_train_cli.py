"""The training CLI takes the seed's StyleGAN2-ADA hyperparameters with their meaning; unknown ones fail by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.pipeline.container import sagemaker_train as entry
from runtime.pipeline.stylegan2 import train

from .conftest import write_synthetic_dataset

BASE = ["--data", "d", "--outdir", "o", "--checkpoint-dir", "c"]


def _error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as raised:
        train.parse_args([*BASE, *args])
    assert raised.value.code == 2
    return capsys.readouterr().err


def test_snap_counts_ticks_of_four_kimg() -> None:
    assert train.parse_args([*BASE, "--snap", "10"]).snapshot_kimg == 40.0
    assert train.parse_args([*BASE, "--snap", "2", "--tick-kimg", "1"]).snapshot_kimg == 2.0
    assert train.parse_args(BASE).snapshot_kimg == 50.0


def test_no_prefix_matching_and_unknown_keys_are_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert "unknown hyperparameter 'snapsh'" in _error(capsys, "--snapsh", "10")
    assert "unknown hyperparameter 'augm'" in _error(capsys, "--augm", "0")
    assert "unknown hyperparameter 'resume'" in _error(capsys, "--resume", "x.pkl")
    args = train.parse_args([*BASE, "--aug", "fixed", "--p", "0.2", "--augpipe", "bg"])
    assert (args.aug, args.p, args.augpipe, args.augment) == ("fixed", 0.2, "bg", True)


def test_seed_values_are_validated(capsys: pytest.CaptureFixture[str]) -> None:
    assert "only 'none'" in _error(capsys, "--metrics", "fid50k_full")
    assert "not both" in _error(capsys, "--snap", "1", "--snapshot-kimg", "4")
    assert "--augpipe" in _error(capsys, "--augpipe", "bgcfnc")
    assert train.parse_args([*BASE, "--metrics", "none", "--gpus", "1", "--mirror", "1"]).mirror is True


def test_gpus_are_checked_against_the_visible_ones() -> None:
    with pytest.raises(ValueError, match="gpus=4 but only 2 GPU"):
        train.check_gpus(4, 2)
    train.check_gpus(2, 2)
    train.check_gpus(1, 0)  # no GPU: a local CPU run, with a warning


@pytest.mark.timeout(60)
def test_the_seed_hyperparameters_run_the_sagemaker_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = {"GENART_OPT_ML": str(tmp_path)}  # the container layout under tmp_path instead of /opt/ml
    monkeypatch.delenv("SM_CHANNEL_TRAIN", raising=False)
    monkeypatch.delenv("SM_MODEL_DIR", raising=False)
    write_synthetic_dataset(tmp_path / "input" / "data" / "train" / "faces")
    seed = {
        "data": "faces", "gpus": "1", "augpipe": "bg", "gamma": "10", "cfg": "tiny", "mirror": "1",
        "snap": "10", "kimg": "0.064", "metrics": "none", "outdir": "run",
    }  # fmt: skip
    args = [*entry.path_args(environ, seed), *entry.hyperparameter_args(seed)]
    assert train.main(args) == 0
    summary = json.loads((tmp_path / "model" / "run" / "config.json").read_text())
    options = summary["options"]
    assert (options["augpipe"], options["gamma"], options["mirror"], options["snapshot_kimg"]) == (
        "bg",
        10.0,
        True,
        40.0,
    )
    assert summary["kimg"] == 0.064 and options["resolution"] == 16  # resolution from the dataset
    assert (tmp_path / "model" / "run" / "generator.pt").is_file()
    assert "augment_p=" in capsys.readouterr().out
