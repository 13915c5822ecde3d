"""The SageMaker container contract: /ping, /invocations, limits, raw images, S3 output, errors."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient
from moto import mock_aws
from PIL import Image

from runtime.endpoint.app import create_app
from runtime.endpoint.output_store import OutputStore

from .conftest import BASE_REQUEST, make_settings, tiny_factory, wait_healthy

StartApp = Callable[..., TestClient]


def _decode(item: dict[str, Any]) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(item["b64"])))


def test_ping_is_503_until_model_loaded_then_200(start_app: StartApp) -> None:
    release = threading.Event()

    def slow_factory(device: str) -> Any:
        release.wait(10)
        return tiny_factory(device)

    app = create_app(settings=make_settings(), factory=slow_factory, devices=["cpu"])
    client = start_app(app, healthy=False)
    before = client.get("/ping")
    assert before.status_code == 503
    assert before.json() == {"status": "loading"}
    early = client.post("/invocations", json=BASE_REQUEST)
    assert early.status_code == 503
    assert early.json()["error"] == "loading"
    release.set()
    wait_healthy(client)
    assert client.get("/ping").json() == {"status": "healthy"}
    assert client.get("/metrics").json()["seconds_to_healthy"] > 0


def test_failed_load_keeps_ping_unhealthy(start_app: StartApp, tmp_path: Path) -> None:
    app = create_app(settings=make_settings(SM_MODEL_DIR=str(tmp_path)), devices=["cpu"])
    client = start_app(app, healthy=False)
    for _ in range(200):
        if client.get("/ping").json()["status"] == "failed":
            break
        threading.Event().wait(0.02)
    response = client.get("/ping")
    assert response.status_code == 503
    assert response.json() == {"status": "failed"}


def test_serves_diffusers_folder_from_model_dir(start_app: StartApp, tiny_model_dir: Path) -> None:
    app = create_app(settings=make_settings(SM_MODEL_DIR=str(tiny_model_dir)), devices=["cpu"])
    client = start_app(app)
    response = client.post("/invocations", json={**BASE_REQUEST, "num_images": 3, "width": 64, "height": 80, "seed": 7})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["seed"] for item in body["images"]] == [7, 8, 9]
    assert [_decode(item).size for item in body["images"]] == [(64, 80)] * 3
    assert response.headers["x-request-id"] == body["request_id"]


def test_same_seed_gives_identical_bytes_and_other_seeds_differ(shared_client: TestClient) -> None:
    request = {**BASE_REQUEST, "seed": 1234, "scheduler": "euler_a"}
    first = shared_client.post("/invocations", json=request).json()["images"][0]
    second = shared_client.post("/invocations", json=request).json()["images"][0]
    other = shared_client.post("/invocations", json={**request, "seed": 99}).json()["images"][0]
    assert first["b64"] == second["b64"]
    assert first["b64"] != other["b64"]


def test_random_seed_is_reported(shared_client: TestClient) -> None:
    body = shared_client.post("/invocations", json={**BASE_REQUEST, "num_images": 2}).json()
    seeds = [item["seed"] for item in body["images"]]
    assert seeds[1] == (seeds[0] + 1) % 2**32
    replay = shared_client.post("/invocations", json={**BASE_REQUEST, "num_images": 2, "seed": seeds[0]}).json()
    assert [item["b64"] for item in replay["images"]] == [item["b64"] for item in body["images"]]


@pytest.mark.parametrize("scheduler", ["default", "ddim", "dpmpp_2m", "lms", "jpeg"])
def test_schedulers_and_jpeg(shared_client: TestClient, scheduler: str) -> None:
    request = {**BASE_REQUEST, "seed": 5}
    if scheduler == "jpeg":
        request["image_format"] = "jpeg"
    else:
        request["scheduler"] = scheduler
    body = shared_client.post("/invocations", json=request).json()
    image = _decode(body["images"][0])
    assert image.format == ("JPEG" if scheduler == "jpeg" else "PNG")
    assert image.size == (64, 64)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x" * 201}, "prompt"),
        ({"prompt": 5}, "prompt"),
        ({"negative_prompt": "x" * 201}, "negative_prompt"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"num_inference_steps": 4}, "num_inference_steps"),
        ({"num_inference_steps": True}, "num_inference_steps"),
        ({"guidance_scale": -1}, "guidance_scale"),
        ({"guidance_scale": 31}, "guidance_scale"),
        ({"width": 60}, "width"),
        ({"width": 70}, "width"),
        ({"width": 104}, "width"),
        ({"height": 56}, "height"),
        ({"height": 104}, "height"),
        ({"num_images": 0}, "num_images"),
        ({"num_images": 4}, "num_images"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**32}, "seed"),
        ({"scheduler": "karras_magic"}, "scheduler"),
        ({"output": "ftp"}, "output"),
        ({"image_format": "gif"}, "image_format"),
        ({"steps": 2}, "steps"),
        ({"output": "s3"}, "output"),
    ],
)
def test_every_limit_violation_is_4xx_naming_the_field(
    shared_client: TestClient, change: dict[str, Any], field: str
) -> None:
    response = shared_client.post("/invocations", json={**BASE_REQUEST, **change})
    assert 400 <= response.status_code < 500
    body = response.json()
    assert field in [item["field"] for item in body["fields"]]
    assert body["request_id"] == response.headers["x-request-id"]


def test_missing_prompt_and_malformed_json(shared_client: TestClient) -> None:
    missing = shared_client.post("/invocations", json={"width": 64})
    assert missing.status_code == 422
    assert [item["field"] for item in missing.json()["fields"]] == ["prompt"]
    broken = shared_client.post("/invocations", content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 422
    assert broken.json()["fields"][0]["field"] == "body"


def test_json_body_without_json_content_type_is_accepted(shared_client: TestClient) -> None:
    response = shared_client.post(
        "/invocations",
        content=b'{"prompt": "a dog", "width": 64, "height": 64, "num_inference_steps": 1}',
        headers={"content-type": "application/octet-stream"},
    )
    assert response.status_code == 200, response.text


def test_accept_image_png_returns_raw_bytes(shared_client: TestClient) -> None:
    response = shared_client.post("/invocations", json={**BASE_REQUEST, "seed": 3}, headers={"Accept": "image/png"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-seed"] == "3"
    assert response.content.startswith(b"\x89PNG")
    assert Image.open(io.BytesIO(response.content)).size == (64, 64)
    as_json = shared_client.post("/invocations", json={**BASE_REQUEST, "seed": 3}).json()
    assert base64.b64decode(as_json["images"][0]["b64"]) == response.content
    too_many = shared_client.post(
        "/invocations", json={**BASE_REQUEST, "num_images": 2}, headers={"Accept": "image/png"}
    )
    assert too_many.status_code == 400
    assert too_many.json()["fields"][0]["field"] == "num_images"


def test_request_id_header_is_echoed(shared_client: TestClient) -> None:
    response = shared_client.post(
        "/invocations", json={**BASE_REQUEST, "prompt": ""}, headers={"X-Request-Id": "abc-123"}
    )
    assert response.headers["x-request-id"] == "abc-123"
    assert response.json()["request_id"] == "abc-123"
    unsafe = shared_client.get("/ping", headers={"X-Request-Id": "bad id\twith spaces"})
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces"


def test_s3_output_writes_images_to_outputs_bucket(start_app: StartApp) -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="genart-outputs")
        store = OutputStore(bucket="genart-outputs", prefix="diffusion/", client=s3)
        app = create_app(settings=make_settings(), factory=tiny_factory, devices=["cpu"], output_store=store)
        client = start_app(app)
        response = client.post("/invocations", json={**BASE_REQUEST, "output": "s3", "num_images": 2, "seed": 11})
        assert response.status_code == 200, response.text
        images = response.json()["images"]
        assert [item["seed"] for item in images] == [11, 12]
        assert all("b64" not in item for item in images)
        for item in images:
            bucket, key = item["s3_uri"].removeprefix("s3://").split("/", 1)
            assert bucket == "genart-outputs"
            assert key.startswith("diffusion/")
            obj = s3.get_object(Bucket=bucket, Key=key)
            assert obj["ContentType"] == "image/png"
            assert Image.open(io.BytesIO(obj["Body"].read())).size == (64, 64)


def test_internal_error_returns_json_500_without_traceback(
    start_app: StartApp, caplog: pytest.LogCaptureFixture
) -> None:
    client = start_app()
    worker = client.app.state.server.workers[0]  # type: ignore[attr-defined]

    def explode(*_args: Any) -> Any:
        raise RuntimeError("secret detail at /opt/ml/model/unet")

    worker.generate = explode
    response = client.post("/invocations", json=BASE_REQUEST, headers={"X-Request-Id": "req-500"})
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error",
        "message": "internal server error",
        "request_id": "req-500",
        "fields": [],
    }
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    assert any("req-500" in record.getMessage() for record in caplog.records)
