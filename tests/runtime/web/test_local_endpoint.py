"""The emulated async endpoint: scale-out from zero after the warm-up, answers to the output or failure location."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from runtime.web.local.backends import EmulatedEndpoint

BUCKET = "outputs"


@dataclasses.dataclass
class Answer:
    status_code: int
    content: bytes


@dataclasses.dataclass
class FakeContainer:
    """Answers /invocations with the status the request body asks for, and remembers the headers."""

    headers: list[dict[str, str]] = dataclasses.field(default_factory=list)

    def get(self, path: str) -> Answer:
        return Answer(200 if path == "/ping" else 404, b"{}")

    def post(self, path: str, *, content: bytes, headers: dict[str, str]) -> Answer:
        self.headers.append(headers)
        status = int(json.loads(content)["status"])
        return Answer(status, json.dumps({"error": "bad", "message": f"status {status}"}).encode())


@pytest.fixture
def s3(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def _wait_for(s3: Any, uri: str, timeout_s: float = 10) -> bytes | None:
    key = uri.split("/", 3)[3]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return bytes(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        except s3.exceptions.NoSuchKey:
            time.sleep(0.02)
    return None


def test_scales_out_after_warmup_and_routes_answers_like_sagemaker(s3: Any) -> None:
    container = FakeContainer()
    endpoint = EmulatedEndpoint(
        name="ep",
        start_app=lambda: container,
        s3=s3,
        bucket=BUCKET,
        output_prefix="async/out/",
        failure_prefix="async/failed/",
        warmup_s=0.5,
    )
    endpoint.start()
    try:
        time.sleep(0.2)
        assert endpoint.instance_count() == 0  # healthy, but nothing asked it to scale out yet
        s3.put_object(Bucket=BUCKET, Key="in/ok.json", Body=b'{"status": 200}')
        s3.put_object(Bucket=BUCKET, Key="in/bad.json", Body=b'{"status": 400}')
        started = time.monotonic()
        ok = endpoint.invoke_async(input_location=f"s3://{BUCKET}/in/ok.json", inference_id="j-1")
        bad = endpoint.invoke_async(input_location=f"s3://{BUCKET}/in/bad.json", inference_id="j-2")
        assert ok.output_location.startswith(f"s3://{BUCKET}/async/out/") and ok.output_location.endswith(".out")
        assert ok.failure_location.startswith(f"s3://{BUCKET}/async/failed/")
        assert endpoint.instance_count() == 0
        assert _wait_for(s3, ok.output_location) is not None
        assert time.monotonic() - started >= 0.45 and endpoint.instance_count() == 1
        assert json.loads(_wait_for(s3, bad.failure_location) or b"{}")["message"] == "status 400"
        assert _wait_for(s3, bad.output_location, timeout_s=0.3) is None
        assert _wait_for(s3, ok.failure_location, timeout_s=0.1) is None
        assert [h["X-Amzn-SageMaker-Inference-Id"] for h in container.headers] == ["j-1", "j-2"]
    finally:
        endpoint.stop()
