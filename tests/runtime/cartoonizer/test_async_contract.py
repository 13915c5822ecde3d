"""The async endpoint's container contract and the image Lambda, against S3 under moto."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from fastapi.testclient import TestClient
from moto import mock_aws
from PIL import Image

from runtime.cartoonizer import contract, lambda_handler
from runtime.cartoonizer.engine import Cartoonizer
from runtime.cartoonizer.model_store import LICENCE, ModelInfo, write_manifest
from runtime.cartoonizer.server import create_app
from runtime.cartoonizer.settings import Settings
from runtime.cartoonizer.synthetic import ClipSpec, make_clip

OUTPUTS = "genart-outputs-test"
MODELS = "genart-models-test"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=OUTPUTS)
        client.create_bucket(Bucket=MODELS)
        yield client


def _png(width: int = 32, height: int = 24) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _settings(**values: Any) -> Settings:
    env = {contract.ENV_OUTPUTS_BUCKET: OUTPUTS, contract.ENV_DEVICE: "cpu", contract.ENV_PROGRESS_INTERVAL_S: "0"}
    env.update({key: str(value) for key, value in values.items()})
    return Settings.from_env(env)


def _progress(s3: Any, key: str) -> dict[str, Any]:
    body = s3.get_object(Bucket=OUTPUTS, Key=contract.progress_key(key))["Body"].read()
    return dict(json.loads(body))


@pytest.fixture
def client(s3: Any, engine: Cartoonizer, model_path: Path) -> Iterator[TestClient]:
    model = ModelInfo(model_path, {"name": "test", "licence": LICENCE, "notice": "non-commercial"})
    app = create_app(settings=_settings(), factory=lambda: (engine, model), s3=s3)
    with TestClient(app) as test_client:
        deadline = time.monotonic() + 20
        while test_client.get("/ping").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        yield test_client


def test_ping_is_503_until_the_model_is_loaded(s3: Any, engine: Cartoonizer) -> None:
    def slow_load() -> tuple[Cartoonizer, ModelInfo | None]:
        time.sleep(0.5)
        return engine, None

    with TestClient(create_app(settings=_settings(), factory=slow_load, s3=s3)) as test_client:
        assert test_client.get("/ping").status_code == 503
        body = {"input": f"s3://{OUTPUTS}/a.png", "output": f"s3://{OUTPUTS}/b.png"}
        assert test_client.post("/invocations", json=body).status_code == 503
        deadline = time.monotonic() + 20
        while test_client.get("/ping").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert test_client.get("/ping").json()["status"] == "healthy"


def test_failed_model_load_stays_unhealthy(s3: Any) -> None:
    def broken() -> tuple[Cartoonizer, ModelInfo | None]:
        raise RuntimeError("no model.onnx")

    failures: list[BaseException] = []
    app = create_app(settings=_settings(), factory=broken, s3=s3, on_load_failure=failures.append)
    with TestClient(app) as test_client:
        deadline = time.monotonic() + 10
        while not failures and time.monotonic() < deadline:
            time.sleep(0.05)
        assert test_client.get("/ping").status_code == 503 and failures


def test_video_job_writes_output_and_progress_to_s3(client: TestClient, s3: Any, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", ClipSpec(frames=8))
    s3.upload_file(str(clip), OUTPUTS, "cartoonizer/inputs/job1/clip.mp4")
    out_key = "cartoonizer/results/job1/clip.mp4"
    job = {
        "input": f"s3://{OUTPUTS}/cartoonizer/inputs/job1/clip.mp4",
        "output": f"s3://{OUTPUTS}/{out_key}",
        "options": {"smooth": True},
    }
    response = client.post("/invocations", json=job)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["state"] == "done" and answer["result"]["kind"] == "video" and answer["result"]["frames"] == 8
    assert answer["result"]["audio"] == "copy" and answer["model"]["licence"] == LICENCE
    head = s3.head_object(Bucket=OUTPUTS, Key=out_key)
    assert head["ContentType"] == "video/mp4" and head["Metadata"]["model-licence"] == LICENCE
    progress = _progress(s3, out_key)
    assert progress["state"] == "done" and progress["frames_done"] == progress["frames_total"] == 8
    assert set(progress) >= {"state", "frames_done", "frames_total", "fps", "eta_s"}


def test_image_job_goes_through_the_same_path(client: TestClient, s3: Any) -> None:
    s3.put_object(Bucket=OUTPUTS, Key="in/photo.png", Body=_png())
    job = {"input": f"s3://{OUTPUTS}/in/photo.png", "output": f"s3://{OUTPUTS}/out/photo.webp"}
    response = client.post("/invocations", json=job)
    assert response.status_code == 200, response.text
    data = s3.get_object(Bucket=OUTPUTS, Key="out/photo.webp")["Body"].read()
    assert Image.open(io.BytesIO(data)).format == "WEBP"


@pytest.mark.parametrize(
    ("job", "status", "field"),
    [
        ({"input": "https://example.com/a.png", "output": f"s3://{OUTPUTS}/o.png"}, 400, "input"),
        ({"input": f"s3://{OUTPUTS}/a.png"}, 400, "output"),
        (
            {"input": f"s3://{OUTPUTS}/a.png", "output": f"s3://{OUTPUTS}/o.png", "options": {"smoth": True}},
            400,
            "options.smoth",
        ),
        ({"input": f"s3://{OUTPUTS}/missing.png", "output": f"s3://{OUTPUTS}/o.png"}, 400, "input"),
    ],
)
def test_bad_manifests_are_4xx_naming_the_field(
    client: TestClient, job: dict[str, Any], status: int, field: str
) -> None:
    response = client.post("/invocations", json=job)
    assert response.status_code == status
    assert response.json()["field"] == field


def test_corrupt_input_is_400_and_progress_says_failed(client: TestClient, s3: Any) -> None:
    s3.put_object(Bucket=OUTPUTS, Key="in/broken.mp4", Body=b"\x00\x00\x00\x18ftypmp42" + b"\x01" * 500)
    job = {"input": f"s3://{OUTPUTS}/in/broken.mp4", "output": f"s3://{OUTPUTS}/out/broken.mp4"}
    response = client.post("/invocations", json=job)
    assert response.status_code == 400 and response.json()["error"] == "corrupt_media"
    progress = _progress(s3, "out/broken.mp4")
    assert progress["state"] == "failed" and "not a readable video" in progress["error"]


def test_non_json_body_is_400(client: TestClient) -> None:
    response = client.post("/invocations", content=b"not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["field"] == "body"


def test_internal_errors_do_not_leak_details(s3: Any) -> None:
    class Exploding:
        device = "cpu"

        def cartoonize(self, frames: np.ndarray) -> np.ndarray:
            raise RuntimeError("secret internals /opt/ml/model")

    app = create_app(settings=_settings(), factory=lambda: (Exploding(), None), s3=s3)  # type: ignore[arg-type,return-value]
    s3.put_object(Bucket=OUTPUTS, Key="in/p.png", Body=_png())
    with TestClient(app) as test_client:
        deadline = time.monotonic() + 10
        while test_client.get("/ping").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        response = test_client.post(
            "/invocations", json={"input": f"s3://{OUTPUTS}/in/p.png", "output": f"s3://{OUTPUTS}/o.png"}
        )
    assert response.status_code == 500 and "secret" not in response.text
    assert _progress(s3, "o.png") == {**_progress(s3, "o.png"), "state": "failed", "error": "internal error"}


# ---------------------------------------------------------------- the image Lambda


@pytest.fixture
def lambda_env(s3: Any, model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(model_path.read_bytes())
    write_manifest(folder / "model.onnx", name="test", source="synthetic")
    s3.upload_file(str(folder / "model.onnx"), MODELS, "cartoonizer/test/model.onnx")
    s3.upload_file(str(folder / "manifest.json"), MODELS, "cartoonizer/test/manifest.json")
    monkeypatch.setattr(lambda_handler, "MODEL_CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(lambda_handler, "_loaded", {})
    return _settings(**{contract.ENV_MODELS_BUCKET: MODELS, contract.ENV_MODEL_KEY: "cartoonizer/test/model.onnx"})


def test_lambda_cartoonizes_an_image_and_downloads_the_model_once(s3: Any, lambda_env: Settings) -> None:
    downloads: list[str] = []
    original = s3.download_file

    def counting(bucket: str, key: str, filename: str, **kwargs: Any) -> None:
        downloads.append(key)
        original(bucket, key, filename, **kwargs)

    s3.download_file = counting
    s3.put_object(Bucket=OUTPUTS, Key="cartoonizer/inputs/a.png", Body=_png(40, 30))
    event = {"input": f"s3://{OUTPUTS}/cartoonizer/inputs/a.png", "output": f"s3://{OUTPUTS}/cartoonizer/results/a.jpg"}
    for _ in range(2):
        answer = lambda_handler.handler(event, None, s3=s3, settings=lambda_env)
        assert answer["status"] == 200 and answer["state"] == "done", answer
    assert downloads.count("cartoonizer/test/model.onnx") == 1
    assert answer["result"]["width"] == 40 and set(answer["timings_s"]) >= {"download", "process", "upload", "total"}
    assert answer["model"]["licence"] == LICENCE and "non-commercial" in answer["model"]["notice"].lower()
    data = s3.get_object(Bucket=OUTPUTS, Key="cartoonizer/results/a.jpg")["Body"].read()
    assert Image.open(io.BytesIO(data)).size == (40, 30)


def test_lambda_refuses_videos_and_bad_events_clearly(s3: Any, lambda_env: Settings, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "c.mp4", ClipSpec(frames=3, audio=None))
    s3.upload_file(str(clip), OUTPUTS, "in/c.mp4")
    answer = lambda_handler.handler(
        {"input": f"s3://{OUTPUTS}/in/c.mp4", "output": f"s3://{OUTPUTS}/out/c.jpg"}, None, s3=s3, settings=lambda_env
    )
    assert answer["status"] == 415 and "video endpoint" in answer["error"]["message"]
    assert lambda_handler.handler({"input": "nope"}, None, s3=s3, settings=lambda_env)["status"] == 400
    s3.put_object(Bucket=OUTPUTS, Key="in/junk.png", Body=b"\x89PNG\r\n\x1a\n garbage")
    answer = lambda_handler.handler(
        {"input": f"s3://{OUTPUTS}/in/junk.png", "output": f"s3://{OUTPUTS}/out/j.png"},
        None,
        s3=s3,
        settings=lambda_env,
    )
    assert answer["status"] == 400 and answer["error"]["code"] == "corrupt_media"


def test_lambda_refuses_oversized_objects_before_downloading(s3: Any, lambda_env: Settings) -> None:
    s3.put_object(Bucket=OUTPUTS, Key="in/big.png", Body=b"\x89PNG" + b"0" * 5000)
    settings = Settings.from_env(
        {
            **{
                k: str(v)
                for k, v in {
                    contract.ENV_OUTPUTS_BUCKET: OUTPUTS,
                    contract.ENV_MODELS_BUCKET: MODELS,
                    contract.ENV_MODEL_KEY: "cartoonizer/test/model.onnx",
                    contract.ENV_DEVICE: "cpu",
                    contract.ENV_MAX_IMAGE_BYTES: 2048,
                }.items()
            }
        }
    )
    answer = lambda_handler.handler(
        {"input": f"s3://{OUTPUTS}/in/big.png", "output": f"s3://{OUTPUTS}/out/b.png"}, None, s3=s3, settings=settings
    )
    assert answer["status"] == 413


def test_lambda_without_model_settings_is_a_500_without_details(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lambda_handler, "_loaded", {})
    s3.put_object(Bucket=OUTPUTS, Key="in/a.png", Body=_png())
    answer = lambda_handler.handler(
        {"input": f"s3://{OUTPUTS}/in/a.png", "output": f"s3://{OUTPUTS}/o.png"}, None, s3=s3, settings=_settings()
    )
    assert answer["status"] == 500 and answer["error"]["code"] == "internal_error"


def test_settings_errors_name_the_variable() -> None:
    from runtime.common.errors import ConfigError

    with pytest.raises(ConfigError, match=contract.ENV_MAX_IMAGE_SIDE):
        Settings.from_env({contract.ENV_MAX_IMAGE_SIDE: "huge"})
    with pytest.raises(ConfigError, match=contract.ENV_DEVICE):
        Settings.from_env({contract.ENV_DEVICE: "tpu"})
