"""--cfg presets: the reference's documented values, the auto rule, the docs table, and the trainer using them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from runtime.pipeline.container.sagemaker_train import hyperparameter_args
from runtime.pipeline.stylegan2.config import CFG_NAMES, auto_spec, preset, training_preset
from runtime.pipeline.stylegan2.train import parse_args
from runtime.pipeline.stylegan2.training_loop import Trainer

from .conftest import tiny_train_options

REPO = Path(__file__).resolve().parents[3]

# stylegan2-ada-pytorch's documented --cfg values (ADA paper, appendix D): channel base (fmaps * 32768), mapping
# layers, minibatch-stddev group, batch, gamma, lr, EMA kimg, EMA ramp-up (0: none).
REFERENCE = {
    "stylegan2": (32768, 8, 4, 32, 10.0, 0.002, 10.0, 0.0),
    "paper256": (16384, 8, 8, 64, 1.0, 0.0025, 20.0, 0.0),
    "paper512": (32768, 8, 8, 64, 0.5, 0.0025, 20.0, 0.0),
    "paper1024": (32768, 8, 4, 32, 2.0, 0.002, 10.0, 0.0),
    "cifar": (32768, 2, 32, 64, 0.01, 0.0025, 500.0, 0.05),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_fixed_presets_carry_the_reference_values(name: str) -> None:
    model, train = preset(name, resolution=256), training_preset(name, resolution=256)
    values = (model.channel_base, model.mapping_layers, model.mbstd_group)
    values += (train.batch, train.gamma, train.lr, train.ema_kimg, train.ema_rampup)
    assert values == REFERENCE[name]
    assert (model.w_dim, model.channel_max, model.z_dim) == (512, 512, 512)
    # cifar alone turns off path-length regularization and style mixing
    assert (train.pl_weight, train.mixing_prob) == ((0.0, 0.0) if name == "cifar" else (2.0, 0.9))


@pytest.mark.parametrize(
    ("resolution", "gpus", "batch", "group", "base", "lr", "gamma", "ema"),
    [
        (32, 1, 32, 4, 16384, 0.0025, 0.0064, 10.0),
        (256, 1, 16, 4, 16384, 0.0025, 0.8192, 5.0),
        (256, 8, 64, 4, 16384, 0.0025, 0.2048, 20.0),
        (512, 2, 16, 4, 32768, 0.0025, 3.2768, 5.0),
        (1024, 8, 32, 4, 32768, 0.002, 6.5536, 10.0),
        (2048, 1, 2, 2, 32768, 0.002, 419.4304, 0.625),  # fewer than 4 images per GPU: the group shrinks
    ],
)
def test_auto_follows_the_ada_rule(
    resolution: int, gpus: int, batch: int, group: int, base: int, lr: float, gamma: float, ema: float
) -> None:
    spec = auto_spec(resolution=resolution, gpus=gpus)
    assert (spec.batch, spec.mbstd_group, spec.channel_base, spec.lr, spec.ema_kimg) == (batch, group, base, lr, ema)
    assert spec.gamma == pytest.approx(gamma)
    model = preset("auto", resolution=resolution, gpus=gpus)
    assert (model.mapping_layers, model.w_dim, model.channel_base, model.mbstd_group) == (2, 512, base, group)
    train = training_preset("auto", resolution=resolution, gpus=gpus)
    assert (train.batch, train.lr, train.ema_kimg, train.ema_rampup) == (batch, lr, ema, 0.05)


def _docs_rows() -> dict[str, list[str]]:
    text = (REPO / "docs" / "stylegan2.md").read_text()
    table = text.split("<!-- cfg-table")[1].split("<!-- /cfg-table -->")[0]
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines() if line.startswith("|")
    ]
    return {row[0]: row[1:] for row in rows[2:]}


def _number(cell: str) -> float:
    return float(re.match(r"[0-9.]+", cell).group(0)) if re.match(r"[0-9.]+", cell) else 0.0  # type: ignore[union-attr]


def test_docs_cfg_table_matches_the_code() -> None:
    rows = _docs_rows()
    assert set(rows) == set(CFG_NAMES) - {"auto"}
    for name, cells in rows.items():
        model, train = preset(name, resolution=256), training_preset(name, resolution=256)
        w_dim, mapping, base, group, batch, gamma, lr, ema, ramp, pl_weight, mixing = cells
        assert (int(w_dim), int(mapping), int(_number(base)), int(group)) == (
            model.w_dim,
            model.mapping_layers,
            model.channel_base,
            model.mbstd_group,
        ), name
        assert (int(batch), float(gamma), float(lr)) == (train.batch, train.gamma, train.lr), name
        assert (None if "batch" in ema else float(ema)) == train.ema_kimg, name
        assert _number(ramp) == train.ema_rampup and float(pl_weight) == train.pl_weight, name
        assert float(mixing) == train.mixing_prob, name


@pytest.mark.parametrize("name", CFG_NAMES)
def test_every_cfg_is_a_training_hyperparameter(name: str) -> None:
    assert parse_args(["--cfg", name]).cfg == name
    # as SageMaker hands it to the container (some SDKs JSON-quote strings)
    assert parse_args(hyperparameter_args({"cfg": f'"{name}"', "kimg": "10"})).cfg == name


def test_an_unknown_cfg_is_refused_with_the_accepted_names() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--cfg", "paper2048"])
    with pytest.raises(ValueError, match="auto"):
        preset("paper2048", resolution=256)


def test_trainer_takes_auto_and_cifar_values(synthetic_dataset: Path, tmp_path: Path) -> None:
    def trainer(**overrides: Any) -> Trainer:
        return Trainer(tiny_train_options(tmp_path / str(len(overrides)), synthetic_dataset, **overrides))

    auto = trainer(cfg="auto", batch=None, gamma=None)  # 16 px on the CPU (one "GPU")
    assert (auto.batch, auto.gamma, auto.lr, auto.ema_kimg, auto.ema_rampup) == (
        32,
        pytest.approx(0.0016),
        0.0025,
        10.0,
        0.05,
    )
    assert (auto.cfg.mapping_layers, auto.cfg.mbstd_group, auto.cfg.channel_base) == (2, 4, 16384)
    assert auto.opt_G.param_groups[0]["lr"] == pytest.approx(0.0025 * 4 / 5)  # lazy-regularization correction
    cifar = trainer(cfg="cifar", batch=8, gamma=None, kimg=1.0)
    assert (cifar.pl_weight, cifar.mixing_prob, cifar.gamma, cifar.batch) == (0.0, 0.0, 0.01, 8)
    assert cifar.opt_G.param_groups[0]["lr"] == pytest.approx(0.0025)  # no G regularization: no correction
    paper1024 = trainer(cfg="paper1024", batch=8, gamma=None)
    assert (paper1024.lr, paper1024.gamma, paper1024.cfg.mbstd_group) == (0.002, 2.0, 4)
    assert trainer(cfg="tiny", batch=8, lr=0.001, seed=1).lr == 0.001  # an explicit --lr wins
