"""Jobs through the local studio's backends: the real image Lambda handler, cartoonizer server and tiny diffusion."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import av
import boto3
import pytest
from botocore.config import Config
from moto import mock_aws
from PIL import Image

from runtime.cartoonizer.synthetic import ClipSpec, make_clip
from runtime.web import contract
from runtime.web.api.handler import handler
from runtime.web.local.services import LocalStudio, local_settings, local_studio

from .conftest import ALICE, make_event, png_bytes

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStudio]:
    """One local studio over in-process moto (endpoints scale out from zero in 1 s)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }.items():
            patch.setenv(name, value)
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        with mock_aws():
            s3 = boto3.client("s3", region_name="us-east-1", config=Config(signature_version="s3v4"))
            dynamodb = boto3.client("dynamodb", region_name="us-east-1")
            settings = local_settings({}, **{contract.ENV_GENERATE_SIZES: "64x64,256x256"})
            with local_studio(
                s3=s3,
                dynamodb=dynamodb,
                settings=settings,
                cartoonizer_model=None,
                warmup_s=1.0,
                progress_interval_s=0.0,
            ) as local:
                yield local


def _call(studio: LocalStudio, route: str, *, body: Any = None, job_id: str | None = None) -> tuple[int, Any]:
    answer = handler(make_event(route, user=ALICE, body=body, job_id=job_id), None, app=studio.app)
    return answer["statusCode"], json.loads(answer["body"])


def _upload(studio: LocalStudio, data: bytes, *, content_type: str, name: str) -> str:
    body = {"filename": name, "content_type": content_type, "size": len(data)}
    status, answer = _call(studio, contract.ROUTE_CREATE_UPLOAD, body=body)
    assert status == 201, answer
    bucket = studio.app.settings.outputs_bucket
    studio.app.s3.put_object(Bucket=bucket, Key=answer["fields"]["key"], Body=data, ContentType=content_type)
    return str(answer["upload_id"])


def _poll(
    studio: LocalStudio, job_id: str, *, timeout_s: float = 60, seen: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        status, answer = _call(studio, contract.ROUTE_GET_JOB, job_id=job_id)
        assert status == 200, answer
        job = answer["job"]
        if seen is not None:
            seen(job)
        if job["state"] in ("done", "failed") or time.monotonic() > deadline:
            return dict(job)
        time.sleep(0.03)


def _result(studio: LocalStudio, job: dict[str, Any], index: int = 0) -> bytes:
    bucket = studio.app.settings.outputs_bucket
    key = unquote(urlsplit(job["results"][index]["url"]).path).lstrip("/").removeprefix(f"{bucket}/")
    return bytes(studio.app.s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def test_image_is_cartoonized_by_the_image_lambda_handler(studio: LocalStudio) -> None:
    upload_id = _upload(studio, png_bytes(40, 32), content_type="image/png", name="cat.png")
    status, answer = _call(studio, contract.ROUTE_CREATE_JOB, body={"kind": "cartoonize", "upload_id": upload_id})
    assert status == 202
    job = _poll(studio, answer["job"]["id"])
    assert job["state"] == "done", job["error"]
    assert job["progress"]["fraction"] == 1.0 and job["results"][0]["content_type"] == "image/png"
    assert Image.open(io.BytesIO(_result(studio, job))).size == (40, 32)


def test_video_with_audio_warms_runs_with_progress_and_is_done(studio: LocalStudio, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", ClipSpec(width=64, height=48, frames=36))
    upload_id = _upload(studio, clip.read_bytes(), content_type="video/mp4", name="clip.mp4")
    status, answer = _call(studio, contract.ROUTE_CREATE_JOB, body={"kind": "cartoonize", "upload_id": upload_id})
    assert status == 202
    states: list[str] = []
    frames: list[tuple[int | None, int | None]] = []

    def seen(job: dict[str, Any]) -> None:
        states.append(job["state"])
        if job["state"] == "running":
            frames.append((job["progress"]["frames_done"], job["progress"]["frames_total"]))

    job = _poll(studio, answer["job"]["id"], seen=seen)
    assert job["state"] == "done", job["error"]
    assert states[0] == "warming" and "running" in states, states
    assert frames and all(total == 36 for _, total in frames)
    assert job["progress"] == {"fraction": 1.0, "frames_done": 36, "frames_total": 36, "eta_s": 0.0}
    result = tmp_path / "result.mp4"
    result.write_bytes(_result(studio, job))
    with av.open(str(result)) as container:
        assert container.streams.video and container.streams.audio


def test_a_file_the_cartoonizer_cannot_read_fails_with_its_message(studio: LocalStudio) -> None:
    upload_id = _upload(studio, b"not a video at all" * 10, content_type="video/mp4", name="broken.mp4")
    status, answer = _call(studio, contract.ROUTE_CREATE_JOB, body={"kind": "cartoonize", "upload_id": upload_id})
    assert status == 202
    job = _poll(studio, answer["job"]["id"])
    assert job["state"] == "failed" and job["results"] == [], job
    assert job["error"]["code"] == "corrupt_media" and job["error"]["message"].startswith("input is not a readable")


def test_generate_runs_the_diffusion_server_with_the_tiny_pipeline(studio: LocalStudio) -> None:
    body = {
        "kind": "generate",
        "prompt": "a red cat",
        "width": 64,
        "height": 64,
        "steps": 2,
        "seed": 41,
        "num_images": 2,
    }
    status, answer = _call(studio, contract.ROUTE_CREATE_JOB, body=body)
    assert status == 202
    states: list[str] = []
    job = _poll(studio, answer["job"]["id"], seen=lambda j: states.append(j["state"]))
    assert job["state"] == "done", job["error"]
    assert states[0] == "warming"
    assert [result["seed"] for result in job["results"]] == [41, 42]
    assert Image.open(io.BytesIO(_result(studio, job, 1))).size == (64, 64)
