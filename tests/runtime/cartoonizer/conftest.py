"""Fixtures for the Cartoonizer tests: random weights of the real architecture, the exported model, an engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runtime.cartoonizer.engine import Cartoonizer
from runtime.cartoonizer.network import random_weights
from runtime.cartoonizer.onnx_model import build_model


@pytest.fixture(scope="session")
def tf_weights() -> dict[str, np.ndarray]:
    """Random weights keyed by the checkpoint's TF names (generator/<layer>/weights|biases)."""
    return {f"generator/{name}": value for name, value in random_weights(seed=7).items()}


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory, tf_weights: dict[str, np.ndarray]) -> Path:
    """The exported ONNX model of those weights."""
    path = tmp_path_factory.mktemp("cartoonizer") / "model.onnx"
    path.write_bytes(build_model(tf_weights).SerializeToString())
    return path


@pytest.fixture(scope="session")
def engine(model_path: Path) -> Cartoonizer:
    """A CPU engine on the exported model."""
    return Cartoonizer(model_path, device="cpu")
