"""GPU only: the optimized training path (bf16, TF32, channels_last, torch.compile) trains and resumes on CUDA."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from runtime.pipeline.stylegan2.checkpoint import list_checkpoints
from runtime.pipeline.stylegan2.distributed import init_distributed
from runtime.pipeline.stylegan2.training_loop import Trainer, TrainOptions

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def _options(root: Path, data: Path, kimg: float) -> TrainOptions:
    return TrainOptions(
        data=data,
        outdir=root / "model",
        checkpoint_dir=root / "checkpoints",
        resolution=16,
        cfg="tiny",
        batch=8,
        batch_gpu=4,  # two accumulated rounds per phase through the compiled, bf16, channels_last path
        kimg=kimg,
        snapshot_kimg=0.032,
        tick_kimg=0.032,
        r1_interval=2,
        bf16=True,
        channels_last=True,
        compile=True,
    )


def test_optimized_path_trains_and_resumes_on_cuda(synthetic_dataset: Path, tmp_path: Path) -> None:
    env = init_distributed(device="cuda")
    trainer = Trainer(_options(tmp_path, synthetic_dataset, kimg=0.064), env=env)
    assert trainer.use_bf16 and next(trainer.G.parameters()).is_cuda and trainer.rounds == 2
    losses = trainer.train_step()
    assert all(math.isfinite(float(v)) for v in losses.values()), losses
    assert trainer.run() is True
    assert list_checkpoints(tmp_path / "checkpoints")

    resumed = Trainer(_options(tmp_path, synthetic_dataset, kimg=0.128), env=env)
    assert resumed.resumed_from is not None and resumed.nimg == trainer.nimg
    assert resumed.run() is True
    for p in resumed.G_ema.parameters():
        assert torch.isfinite(p).all()
