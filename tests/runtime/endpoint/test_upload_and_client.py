"""upload_model (moto S3) and the client CLI: local server, real-time and async endpoint flows."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from moto import mock_aws
from PIL import Image

from runtime.endpoint import client, upload_model
from runtime.endpoint.app import create_app

from .conftest import make_settings, real_server, tiny_factory

REGION = "us-east-1"


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        s3_client = boto3.client("s3", region_name=REGION)
        s3_client.create_bucket(Bucket="models")
        s3_client.create_bucket(Bucket="outputs")
        yield s3_client


def _png_b64(color: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _response(seed: int = 42) -> dict[str, Any]:
    return {"request_id": "r1", "images": [{"seed": seed, "format": "png", "b64": _png_b64((255, 0, 0))}]}


def test_upload_model_writes_every_file_under_diffusion_name(s3: Any, tiny_model_dir: Path) -> None:
    seen: list[str] = []
    keys = upload_model.upload_model(
        source=tiny_model_dir, bucket="models", name="sd15", client=s3, progress=lambda key, _size: seen.append(key)
    )
    listed = sorted(obj["Key"] for obj in s3.list_objects_v2(Bucket="models")["Contents"])
    expected = sorted(
        f"diffusion/sd15/{p.relative_to(tiny_model_dir).as_posix()}" for p in tiny_model_dir.rglob("*") if p.is_file()
    )
    assert listed == expected == sorted(keys) == sorted(seen)
    assert "diffusion/sd15/model_index.json" in listed
    assert any(key.startswith("diffusion/sd15/unet/") for key in listed)
    # Written last, so a folder whose upload broke off never looks complete to the deploy's check or doctor.
    assert seen[-1] == keys[-1] == "diffusion/sd15/model_index.json"


def test_upload_model_rejects_non_diffusers_folder_and_bad_names(s3: Any, tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(upload_model.UploadError, match=r"model_index\.json"):
        upload_model.upload_model(source=tmp_path, bucket="models", name="sd15", client=s3)
    with pytest.raises(upload_model.UploadError, match="model name"):
        upload_model.upload_model(source=tiny_model_dir, bucket="models", name="../evil", client=s3)
    assert upload_model.main(["--source", str(tmp_path), "--bucket", "models", "--name", "sd15"]) == 2


@pytest.fixture
def local_server() -> Iterator[str]:
    app = create_app(settings=make_settings(), factory=tiny_factory, devices=["cpu"], load_before_serving=True)
    with real_server(app) as url:
        yield url


def test_client_cli_against_local_server_saves_images(local_server: str, tmp_path: Path) -> None:
    argv = ["--url", local_server, "--prompt", "a red cat", "--steps", "2", "--width", "64", "--height", "72"]
    argv += ["--num-images", "2", "--seed", "5", "--out", str(tmp_path)]
    assert client.main(argv) == 0
    files = sorted(tmp_path.glob("*.png"))
    assert [f.name.split("-seed")[1] for f in files] == ["5.png", "6.png"]
    assert all(Image.open(f).size == (64, 72) for f in files)
    assert client.main([*argv[:-2], "--width", "65", "--out", str(tmp_path)]) == 1


def test_client_local_non_json_error_is_a_one_line_failure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(client.httpx, "post", lambda *_a, **_k: httpx.Response(502, text="<html>Bad gateway</html>"))
    with pytest.raises(client.EndpointCallError, match="HTTP 502"):
        client.invoke_local("http://localhost:8080", {"prompt": "a cat"})
    assert client.main(["--url", "http://localhost:8080", "--prompt", "a cat", "--out", str(tmp_path)]) == 1


def test_client_realtime_invokes_endpoint_and_saves(tmp_path: Path) -> None:
    runtime = boto3.client("sagemaker-runtime", region_name=REGION)
    data = json.dumps(_response()).encode()
    with Stubber(runtime) as stub:
        stub.add_response(
            "invoke_endpoint",
            {"Body": StreamingBody(io.BytesIO(data), len(data)), "ContentType": "application/json"},
            {"EndpointName": "sd", "ContentType": "application/json", "Accept": "application/json", "Body": ANY},
        )
        body = client.invoke_realtime(runtime, endpoint="sd", payload={"prompt": "a cat"})
    paths = client.save_images(body, tmp_path)
    assert [p.name for p in paths] == ["r1-00-seed42.png"]
    assert Image.open(paths[0]).getpixel((0, 0)) == (255, 0, 0)


def _async_stub(runtime: Any) -> Stubber:
    stub = Stubber(runtime)
    stub.add_response(
        "invoke_endpoint_async",
        {
            "InferenceId": "x",
            "OutputLocation": "s3://outputs/async/diffusion/out/x.out",
            "FailureLocation": "s3://outputs/async/diffusion/failed/x-error.out",
        },
        {
            "EndpointName": "sd-async",
            "InputLocation": ANY,
            "ContentType": "application/json",
            "Accept": "application/json",
            "InferenceId": ANY,
        },
    )
    return stub


def test_client_async_uploads_payload_polls_output_and_downloads_s3_images(s3: Any, tmp_path: Path) -> None:
    s3.put_object(Bucket="outputs", Key="diffusion/img.png", Body=base64.b64decode(_png_b64((0, 0, 255))))
    result = {"request_id": "r2", "images": [{"seed": 9, "format": "png", "s3_uri": "s3://outputs/diffusion/img.png"}]}
    polls: list[float] = []

    def sagemaker_finishes(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 2:
            s3.put_object(Bucket="outputs", Key="async/diffusion/out/x.out", Body=json.dumps(result).encode())

    runtime = boto3.client("sagemaker-runtime", region_name=REGION)
    with _async_stub(runtime):
        body = client.invoke_async(
            runtime,
            s3,
            endpoint="sd-async",
            payload={"prompt": "a cat"},
            input_bucket="outputs",
            poll_seconds=0.5,
            sleep=sagemaker_finishes,
        )
    assert body == result
    assert len(polls) == 2
    inputs = s3.list_objects_v2(Bucket="outputs", Prefix="async/diffusion/in/")["Contents"]
    assert json.loads(s3.get_object(Bucket="outputs", Key=inputs[0]["Key"])["Body"].read()) == {"prompt": "a cat"}
    paths = client.save_images(body, tmp_path, s3=s3)
    assert Image.open(paths[0]).getpixel((0, 0)) == (0, 0, 255)


def test_client_async_reports_failure_object(s3: Any) -> None:
    def sagemaker_fails(_seconds: float) -> None:
        s3.put_object(Bucket="outputs", Key="async/diffusion/failed/x-error.out", Body=b'{"error":"invalid_request"}')

    runtime = boto3.client("sagemaker-runtime", region_name=REGION)
    with _async_stub(runtime), pytest.raises(client.EndpointCallError, match="invalid_request"):
        client.invoke_async(
            runtime,
            s3,
            endpoint="sd-async",
            payload={"prompt": "a cat"},
            input_bucket="outputs",
            poll_seconds=0.1,
            sleep=sagemaker_fails,
        )
