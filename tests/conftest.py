"""Shared pytest fixtures for the whole suite."""

from __future__ import annotations

from pathlib import Path

import pytest

# Fast tests outside tests/infra/components and tests/runtime that never synthesize the app.
_UNIT = (
    "tests/infra/test_config.py",
    "tests/infra/test_doctor.py",
    "tests/test_gpu_suite.py",
    "tests/test_locks.py",
)
_TIERS = (
    *((path, "unit") for path in _UNIT),
    ("tests/infra/components/", "components"),
    ("tests/infra/", "app"),
    ("tests/runtime/", "runtime"),
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its tier (by folder), so `-m components` and friends select whole tiers."""
    root = Path(__file__).resolve().parent.parent
    for item in items:
        relative = item.path.resolve().relative_to(root).as_posix()
        for prefix, marker in _TIERS:
            if relative.startswith(prefix):
                item.add_marker(marker)
                break


@pytest.fixture(scope="session")
def tiny_generator_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random StyleGAN2 generator exported per the ONNX contract (resolution 16, latents [N, 512])."""
    from runtime.pipeline.stylegan2.export_onnx import export_random_generator

    return export_random_generator(tmp_path_factory.mktemp("onnx") / "generator.onnx", resolution=16)
