"""Fixtures for the bot runtime tests: a loaded tiny generator and settings/engine builders."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from runtime.bot.config import BotSettings
from runtime.bot.generator import FaceGenerator, SessionTuning
from runtime.bot.model_source import ModelSource
from runtime.bot.token_source import TokenSource


@pytest.fixture(scope="session")
def face_generator(tiny_generator_onnx: Path) -> FaceGenerator:
    """The project's tiny exported generator, opened with the tuned session."""
    return FaceGenerator(model_path=tiny_generator_onnx, tuning=SessionTuning(intra_op_threads=1))


@pytest.fixture
def make_settings(tiny_generator_onnx: Path) -> Any:
    """Build BotSettings for the tiny generator with overrides."""

    def build(**overrides: Any) -> BotSettings:
        base = BotSettings(
            token_source=TokenSource(env_token="unused"),
            model_source=ModelSource(local_path=tiny_generator_onnx),
            workers=1,
            intra_op_threads=1,
            cooldown_s=0.0,
            sync_commands=False,
            spot_poll_s=0.05,
            drain_timeout_s=5.0,
        )
        return dataclasses.replace(base, **overrides)

    return build


@pytest.fixture(scope="session")
def generator_256_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random generator at 256 px from the project's exporter: its calls and PNGs take long enough to see lag."""
    from runtime.pipeline.stylegan2.export_onnx import export_random_generator

    return export_random_generator(tmp_path_factory.mktemp("onnx256") / "generator.onnx", resolution=256)
