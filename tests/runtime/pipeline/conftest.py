"""Fixtures for the StyleGAN2 step tests: a synthetic dataset and a one-thread torch (the CI box has 2 shared cores)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from runtime.pipeline.stylegan2.contract import step_module
from runtime.pipeline.stylegan2.dataset_tool import IMAGES_FILE, MANIFEST_FILE
from runtime.pipeline.stylegan2.training_loop import TrainOptions

REPO = Path(__file__).resolve().parents[3]
PIPELINE_DIR = REPO / "runtime" / "pipeline"


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """Step mains configure root logging onto the captured stderr; put the previous handlers back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def write_synthetic_dataset(directory: Path, *, count: int = 32, resolution: int = 16, seed: int = 0) -> Path:
    """Red images with one blue square each, as the dataset tool would write them."""
    rng = np.random.default_rng(seed)
    images = np.zeros((count, 3, resolution, resolution), dtype=np.uint8)
    images[:, 0], images[:, 1], images[:, 2] = 220, 40, 40
    side = resolution // 3
    for image in images:
        y, x = rng.integers(0, resolution - side, size=2)
        image[:, y : y + side, x : x + side] = np.array([30, 30, 230], dtype=np.uint8)[:, None, None]
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / IMAGES_FILE, images)
    (directory / MANIFEST_FILE).write_text(f'{{"written": {count}, "resolution": {resolution}}}\n')
    return directory


@pytest.fixture
def synthetic_dataset(tmp_path: Path) -> Path:
    """A 16 px synthetic dataset folder."""
    return write_synthetic_dataset(tmp_path / "dataset")


def step_env() -> dict[str, str]:
    """Environment for `python -m runtime.pipeline.stylegan2.<step>` the way the container runs it."""
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def step_command(module: str, *args: str) -> list[str]:
    """Command line for one step script."""
    return [sys.executable, "-m", step_module(module), *args]


def tiny_train_options(root: Path, data: Path, **overrides: Any) -> TrainOptions:
    """Training options for the tiny 16 px config, writing under root; overrides win."""
    values: dict[str, Any] = {
        "data": data,
        "outdir": root / "model",
        "checkpoint_dir": root / "checkpoints",
        "resolution": 16,
        "cfg": "tiny",
    }
    return TrainOptions(**(values | overrides))
