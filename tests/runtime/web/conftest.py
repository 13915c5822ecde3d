"""Fixtures for the web API tests: moto S3/DynamoDB as the stack creates them, recording backends, event helpers."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.config import Config
from moto import mock_aws
from PIL import Image

from runtime.web import contract
from runtime.web.api.handler import App, handler
from runtime.web.local.services import create_resources, local_settings
from runtime.web.settings import WebSettings

ALICE = "11111111-aaaa-4aaa-8aaa-111111111111"
BOB = "22222222-bbbb-4bbb-8bbb-222222222222"


@dataclasses.dataclass
class RecordingBackends:
    """The Backends Protocol for handler tests: remembers what was started; instance counts are set by the test."""

    images: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    invocations: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    instances: dict[str, int | None] = dataclasses.field(default_factory=dict)
    fail: bool = False

    def start_image(self, *, manifest: dict[str, Any]) -> None:
        if self.fail:
            raise RuntimeError("backend down")
        self.images.append(manifest)

    def start_async(
        self, *, endpoint: str, input_location: str, inference_id: str, timeout_s: int | None
    ) -> tuple[str, str | None]:
        if self.fail:
            raise RuntimeError("backend down")
        number = len(self.invocations)
        bucket = input_location.removeprefix("s3://").split("/", 1)[0]
        output = f"s3://{bucket}/async/{endpoint}/out/{number}.out"
        failure = f"s3://{bucket}/async/{endpoint}/failed/{number}-error.out"
        self.invocations.append(
            {
                "endpoint": endpoint,
                "input_location": input_location,
                "inference_id": inference_id,
                "timeout_s": timeout_s,
                "output": output,
                "failure": failure,
            }
        )
        return output, failure

    def instance_count(self, endpoint: str) -> int | None:
        return self.instances.get(endpoint, 1)


DUMMY_ENV = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials so nothing can reach AWS."""
    for name, value in DUMMY_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


@dataclasses.dataclass
class Api:
    """The handler over moto with recording backends; call() sends one HTTP API event as a user."""

    app: App
    backends: RecordingBackends
    s3: Any
    dynamodb: Any
    settings: WebSettings

    def call(
        self, route: str, *, user: str | None = ALICE, body: Any = None, job_id: str | None = None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        answer = handler(make_event(route, user=user, body=body, job_id=job_id), None, app=self.app)
        return answer["statusCode"], json.loads(answer["body"]), answer["headers"]

    def rebuild(self, **overrides: str) -> None:
        """The same services with other settings (GENART_WEB_* overrides)."""
        self.settings = local_settings({}, **overrides)
        self.app = App.build(settings=self.settings, s3=self.s3, dynamodb=self.dynamodb, backends=self.backends)


def make_event(route: str, *, user: str | None, body: Any = None, job_id: str | None = None) -> dict[str, Any]:
    """A payload v2 event as API Gateway sends it after the JWT authorizer."""
    method, path = route.split(" ", 1)
    if job_id is not None:
        path = path.replace("{id}", job_id)
    claims = {"sub": user, "aud": "client", "token_use": "id"} if user else {}
    return {
        "version": "2.0",
        "routeKey": route,
        "rawPath": path,
        "headers": {"content-type": "application/json"},
        "requestContext": {"http": {"method": method, "path": path}, "authorizer": {"jwt": {"claims": claims}}},
        "pathParameters": {"id": job_id} if job_id is not None else None,
        "body": body if isinstance(body, str) or body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


@contextlib.contextmanager
def fresh_api() -> Iterator[Api]:
    """The API over a fresh moto account holding the local studio's bucket and table."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in DUMMY_ENV.items():
            patch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
            patch.delenv(name, raising=False)
        with mock_aws():
            settings = local_settings({})
            s3 = boto3.client("s3", region_name="us-east-1", config=Config(signature_version="s3v4"))
            dynamodb = boto3.client("dynamodb", region_name="us-east-1")
            create_resources(s3=s3, dynamodb=dynamodb, settings=settings)
            backends = RecordingBackends()
            app = App.build(settings=settings, s3=s3, dynamodb=dynamodb, backends=backends)
            yield Api(app=app, backends=backends, s3=s3, dynamodb=dynamodb, settings=settings)


@pytest.fixture
def api() -> Iterator[Api]:
    """A fresh API per test."""
    with fresh_api() as fresh:
        yield fresh


@pytest.fixture(scope="module")
def refusing_api() -> Api:
    """The API for requests refused before any AWS call (validation): its clients reach nothing (a call is a 500)."""
    settings = local_settings({})
    nowhere = {
        "region_name": "us-east-1",
        "endpoint_url": "http://127.0.0.1:9",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "config": Config(retries={"max_attempts": 1}, connect_timeout=1),
    }
    s3, dynamodb = boto3.client("s3", **nowhere), boto3.client("dynamodb", **nowhere)
    backends = RecordingBackends()
    app = App.build(settings=settings, s3=s3, dynamodb=dynamodb, backends=backends)
    return Api(app=app, backends=backends, s3=s3, dynamodb=dynamodb, settings=settings)


def png_bytes(width: int = 40, height: int = 32) -> bytes:
    """A small random PNG."""
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def upload(api: Api, data: bytes, *, user: str = ALICE, content_type: str = "image/png", name: str = "a.png") -> str:
    """Announce an upload and put the object where its presigned POST would (moto does not enforce policies)."""
    status, body, _ = api.call(
        contract.ROUTE_CREATE_UPLOAD,
        user=user,
        body={"filename": name, "content_type": content_type, "size": len(data)},
    )
    assert status == 201, body
    api.s3.put_object(
        Bucket=api.settings.outputs_bucket, Key=body["fields"]["key"], Body=data, ContentType=content_type
    )
    return str(body["upload_id"])
