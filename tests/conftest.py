"""Shared pytest fixtures for the whole suite."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_generator_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random StyleGAN2 generator exported per the ONNX contract (resolution 16, latents [N, 512])."""
    from runtime.pipeline.stylegan2.export_onnx import export_random_generator

    return export_random_generator(tmp_path_factory.mktemp("onnx") / "generator.onnx", resolution=16)
