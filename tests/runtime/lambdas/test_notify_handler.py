"""The pipeline's notify Lambda against moto SNS/SQS/S3: publishes, rejects bad events, surfaces SNS failures."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from runtime.lambdas.notify import contract
from runtime.lambdas.notify import handler as notify

REGION = "eu-west-1"
MODELS = "genart-models-test"


def good_event() -> dict[str, Any]:
    return {
        "pipeline_name": "genart-dev-stylegan2",
        "execution_arn": "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/genart-dev-stylegan2/execution/abc123",
        "execution_id": "abc123",
        "dataset_uri": f"s3://{MODELS}/stylegan/runs/abc123/dataset",
        "training_artifacts_uri": f"s3://{MODELS}/stylegan/runs/abc123/training/job/output/model.tar.gz",
        "samples_uri": f"s3://{MODELS}/stylegan/runs/abc123/samples",
        "model_uri": f"s3://{MODELS}/stylegan/latest.onnx",
        "kimg": 1000,
    }


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The handler configures root logging on its first call; give every test a fresh first call."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    monkeypatch.setattr(notify, "_logging_configured", False)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Moto account with the topic and a queue subscribed to it (to read what was published)."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LINK_EXPIRY_SECONDS", raising=False)
    with mock_aws():
        sns = boto3.client("sns", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        topic_arn = sns.create_topic(Name="genart-pipeline")["TopicArn"]
        queue_url = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        monkeypatch.setenv("TOPIC_ARN", topic_arn)
        yield {"topic_arn": topic_arn, "queue_url": queue_url}


def received(queue_url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", region_name=REGION)
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def test_good_event_publishes_locations_and_presigned_grid_link(aws: dict[str, str]) -> None:
    result = notify.handler(good_event(), None)

    (envelope,) = received(aws["queue_url"])
    assert result == {"message_id": envelope["MessageId"]}
    assert envelope["Subject"] == "GenArt StyleGAN2 run abc123 succeeded"
    body = envelope["Message"]
    assert f"Published generator: s3://{MODELS}/stylegan/latest.onnx" in body
    assert f"s3://{MODELS}/stylegan/runs/abc123/training/job/output/model.tar.gz" in body
    assert "Training length: 1000 kimg" in body
    url = next(word for word in body.split() if word.startswith("https://"))
    parsed = urlparse(url)
    assert parsed.path.endswith("/stylegan/runs/abc123/samples/grid.png")
    assert MODELS in parsed.netloc + parsed.path
    query = parse_qs(parsed.query)
    assert query["X-Amz-Expires"] == [str(notify.DEFAULT_LINK_EXPIRY_SECONDS)]
    assert "X-Amz-Signature" in query


def test_link_expiry_comes_from_the_environment_and_is_clamped(
    aws: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LINK_EXPIRY_SECONDS", str(30 * 24 * 3600))
    notify.handler(good_event(), None)
    (envelope,) = received(aws["queue_url"])
    assert f"X-Amz-Expires={notify.MAX_LINK_EXPIRY_SECONDS}" in envelope["Message"]
    assert "link valid for 168 h 0 min" in envelope["Message"]


def test_missing_fields_give_a_clear_error_and_publish_nothing(aws: dict[str, str]) -> None:
    event = good_event()
    del event["model_uri"]
    event["samples_uri"] = ""
    with pytest.raises(notify.InputError, match=r"missing required field\(s\): samples_uri, model_uri"):
        notify.handler(event, None)
    assert received(aws["queue_url"]) == []


def test_non_object_event_is_rejected() -> None:
    with pytest.raises(notify.InputError, match="expected a JSON object, got list"):
        notify.validate_event(["samples_uri"])


def test_bad_s3_uri_names_the_field(aws: dict[str, str]) -> None:
    event = good_event()
    event["samples_uri"] = "/opt/ml/processing/output/samples"
    with pytest.raises(notify.InputError, match="samples_uri: expected an s3://bucket/key URI"):
        notify.handler(event, None)


def test_sns_failure_surfaces_as_an_exception(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPIC_ARN", aws["topic_arn"].replace("genart-pipeline", "deleted-topic"))
    with pytest.raises(ClientError) as error:
        notify.handler(good_event(), None)
    assert error.value.response["Error"]["Code"] == "NotFound"


def test_missing_topic_configuration_is_an_error(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOPIC_ARN")
    with pytest.raises(notify.ConfigError, match="TOPIC_ARN is not set"):
        notify.handler(good_event(), None)


def test_subject_stays_within_the_sns_limit() -> None:
    fields = notify.validate_event({**good_event(), "execution_id": "x" * 200})
    subject, _ = notify.build_message(fields, grid_url="https://example", expiry_seconds=3600)
    assert len(subject) == notify.SUBJECT_LIMIT


def test_asset_layout_imports_the_handler_without_pydantic(tmp_path: Path) -> None:
    """The function ships runtime/ cut down by CODE_ASSET_EXCLUDE; its handler imports from that layout alone."""
    root = Path(__file__).resolve().parents[3] / contract.CODE_ASSET_DIR
    for path in root.rglob("*.py"):
        relative = path.relative_to(root).as_posix()
        shipped = relative == "__init__.py" or relative.startswith(("lambdas/", "common/"))
        if shipped and relative != "common/settings.py":
            (tmp_path / "runtime" / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, tmp_path / "runtime" / relative)
    module, _, function = contract.HANDLER.rpartition(".")
    probe = (
        f"import sys, {module} as m\n"
        f"assert callable(m.{function})\n"
        "assert not [n for n in sys.modules if n.startswith('pydantic')], 'pydantic imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
