"""Settings parsing, the container definition, and (on a GPU) the compiled fast path."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from runtime.common.errors import ConfigError
from runtime.endpoint.app import create_app
from runtime.endpoint.settings import Settings

from .conftest import BASE_REQUEST, make_settings, tiny_factory, wait_healthy

ENDPOINT_DIR = Path(__file__).resolve().parents[3] / "runtime" / "endpoint"


def test_defaults_match_the_documented_contract() -> None:
    settings = Settings.from_env({})
    assert settings.model_dir == Path("/opt/ml/model")
    assert settings.port == 8080
    assert (settings.max_side, settings.max_images, settings.max_steps) == (768, 4, 100)
    assert (settings.max_batch, settings.batch_window_ms) == (8, 20)
    assert settings.outputs_prefix == "diffusion/"
    assert settings.compile is False
    assert settings.compile_mode == "reduce-overhead"
    assert settings.dtype == "fp16"


def test_environment_overrides_and_normalisation() -> None:
    settings = Settings.from_env(
        {
            "SM_MODEL_DIR": "/models/sd",
            "SAGEMAKER_BIND_TO_PORT": "9090",
            "GENART_OUTPUTS_BUCKET": "out",
            "GENART_OUTPUTS_PREFIX": "images",
            "GENART_COMPILE": "1",
            "GENART_DTYPE": "BF16",
            "GENART_MAX_BATCH": "4",
            "GENART_WARMUP_BATCHES": "8,1,2,4",
        }
    )
    assert settings.model_dir == Path("/models/sd")
    assert settings.port == 9090
    assert settings.outputs_prefix == "images/"
    assert settings.compile is True
    assert settings.dtype == "bf16"
    assert settings.warmup_batches == (1, 2, 4)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GENART_DTYPE", "int8"),
        ("GENART_MAX_SIDE", "770"),
        ("GENART_MAX_SIDE", "big"),
        ("GENART_MAX_BATCH", "0"),
        ("GENART_COMPILE", "maybe"),
        ("GENART_COMPILE_MODE", "turbo"),
        ("GENART_WARMUP_SIZES", "512,x"),
    ],
)
def test_bad_environment_values_fail_at_start(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_errors_name_the_variable_and_the_rule() -> None:
    with pytest.raises(ConfigError, match=r"^GENART_MAX_BATCH must be >= 1, got '0'$"):
        Settings.from_env({"GENART_MAX_BATCH": "0"})
    overridden = Settings.from_env({"SAGEMAKER_BIND_TO_PORT": "9090"}, port=7070)
    assert overridden.port == 7070  # serve's --port wins over the environment


def test_image_is_built_from_the_runtime_folder_with_common_beside_endpoint() -> None:
    from runtime.endpoint import contract

    context = ENDPOINT_DIR.parents[1] / contract.IMAGE_BUILD_CONTEXT
    dockerfile = context / contract.IMAGE_DOCKERFILE
    assert dockerfile == ENDPOINT_DIR / "Dockerfile"
    text = dockerfile.read_text()
    for line in (
        "COPY endpoint/requirements.txt /tmp/requirements.txt",
        "COPY common /opt/program/runtime/common",
        "COPY endpoint /opt/program/runtime/endpoint",
        "COPY __init__.py /opt/program/runtime/__init__.py",
    ):
        assert line in text, line
    ignore = (ENDPOINT_DIR / "Dockerfile.dockerignore").read_text().splitlines()
    assert [line for line in ignore if line and not line.startswith("#")] == list(contract.IMAGE_EXCLUDES)


def test_dockerfile_installs_the_hashed_lock_and_runs_serve_as_root_on_8080() -> None:
    dockerfile = (ENDPOINT_DIR / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert base is not None
    # Python 3.11 without a CUDA toolkit: torch's nvidia-* wheels carry CUDA (docs/decisions.md).
    assert re.fullmatch(r"python:3\.11-slim-\w+", base.group(1))
    # SageMaker expects containers to run as root (AWS "Custom Inference Code with Hosting Services", cited there).
    assert not re.search(r"^USER ", dockerfile, re.MULTILINE)
    assert "expects all containers to run with root users" in dockerfile
    assert re.search(r"^EXPOSE 8080$", dockerfile, re.MULTILINE)
    assert "runtime.endpoint.serve" in dockerfile
    assert "pip install --require-hashes --no-deps --only-binary=:all: -r /tmp/requirements.txt" in dockerfile
    assert "HF_HUB_OFFLINE=1" in dockerfile


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_fp16_compiled_server_warms_batches_and_serves(tmp_path: Path) -> None:
    settings = make_settings(
        GENART_DEVICE="cuda",
        GENART_DTYPE="fp16",
        GENART_COMPILE="1",
        GENART_COMPILE_MODE="reduce-overhead",
        GENART_COMPILE_CACHE_DIR=str(tmp_path),
        GENART_WARMUP_BATCHES="1,2,4",
    )
    app = create_app(settings=settings, factory=tiny_factory, devices=["cuda:0"])
    with TestClient(app) as client:
        wait_healthy(client, timeout=600)
        worker = client.app.state.server.workers[0]  # type: ignore[attr-defined]
        assert worker.warmed_batches == (1, 2, 4)
        assert worker.padded_size(3) == 4
        body = client.post("/invocations", json={**BASE_REQUEST, "num_images": 3, "seed": 1}).json()
        assert [image["seed"] for image in body["images"]] == [1, 2, 3]
    assert (tmp_path / "mega_cache.bin").is_file()


def test_compile_cache_env_points_inductor_and_triton_at_the_configured_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.endpoint.compile_cache import configure_cache_env

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/tmp/torchinductor_someone")  # inherited from a parent process
    for name in ("TRITON_CACHE_DIR", "TORCHINDUCTOR_FX_GRAPH_CACHE", "TORCHINDUCTOR_AUTOGRAD_CACHE"):
        monkeypatch.setenv(name, "unset-by-test")  # so monkeypatch restores the original state afterwards
    configure_cache_env(tmp_path / "cache")
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache" / "inductor")
    assert os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "cache" / "triton")
    assert os.environ["TORCHINDUCTOR_FX_GRAPH_CACHE"] == "1"
