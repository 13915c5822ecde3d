"""Lambda step of the StyleGAN2 pipeline: publish the run's S3 locations and a sample-grid link to SNS."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.config import Config

from ...common.errors import ConfigError, InputError
from ...common.jsonlog import configure_logging
from .contract import (
    DEFAULT_LINK_EXPIRY_SECONDS,
    ENV_LINK_EXPIRY_SECONDS,
    ENV_LOG_LEVEL,
    ENV_TOPIC_ARN,
    SAMPLE_GRID_FILE,
)

logger = logging.getLogger(__name__)
_logging_configured = False

REQUIRED_FIELDS = ("pipeline_name", "execution_id", "samples_uri", "model_uri", "training_artifacts_uri")
# SigV4 presigned URLs are capped at 7 days (and by the Lambda role session, whichever ends first).
MAX_LINK_EXPIRY_SECONDS = 7 * 24 * 3600
SUBJECT_LIMIT = 100


def configure_function_logging() -> None:
    """Once per execution environment: the shared JSON lines on stdout (CloudWatch Logs) instead of Lambda's text."""
    global _logging_configured  # noqa: PLW0603 - one switch per warm execution environment
    if not _logging_configured:
        configure_logging(level=os.environ.get(ENV_LOG_LEVEL) or "INFO", stream=sys.stdout)
        _logging_configured = True


@dataclass(frozen=True)
class S3Location:
    """A bucket and key parsed from an s3:// URI."""

    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str, field: str) -> S3Location:
        """Parse s3://bucket/key, naming the event field in the error."""
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise InputError(f"{field}: expected an s3://bucket/key URI, got {uri!r}", field=field)
        return cls(bucket=parsed.netloc, key=parsed.path.lstrip("/"))

    def child(self, name: str) -> S3Location:
        """The object `name` under this prefix."""
        prefix = self.key.rstrip("/")
        return S3Location(bucket=self.bucket, key=f"{prefix}/{name}" if prefix else name)


def validate_event(event: Any) -> dict[str, str]:
    """The event's fields as strings; raises InputError naming every missing field."""
    if not isinstance(event, dict):
        raise InputError(f"event: expected a JSON object, got {type(event).__name__}")
    missing = [name for name in REQUIRED_FIELDS if event.get(name) in (None, "")]
    if missing:
        raise InputError(f"event is missing required field(s): {', '.join(missing)}")
    return {str(key): str(value) for key, value in event.items() if value is not None}


def link_expiry_seconds() -> int:
    """Presigned link lifetime from LINK_EXPIRY_SECONDS, clamped to what SigV4 allows."""
    raw = os.environ.get(ENV_LINK_EXPIRY_SECONDS, str(DEFAULT_LINK_EXPIRY_SECONDS))
    try:
        value = int(raw)
    except ValueError as error:
        raise ConfigError(f"{ENV_LINK_EXPIRY_SECONDS} must be an integer, got {raw!r}") from error
    return max(60, min(value, MAX_LINK_EXPIRY_SECONDS))


def build_message(fields: dict[str, str], *, grid_url: str, expiry_seconds: int) -> tuple[str, str]:
    """Subject and plain-text body of the success notification."""
    subject = f"GenArt StyleGAN2 run {fields['execution_id']} succeeded"[:SUBJECT_LIMIT]
    lines = [
        f"The SageMaker pipeline {fields['pipeline_name']} finished execution {fields['execution_id']}.",
        "",
        f"Published generator: {fields['model_uri']}",
        f"Sample grid (link valid for {expiry_seconds // 3600} h {expiry_seconds % 3600 // 60} min): {grid_url}",
        f"Samples and generator.onnx: {fields['samples_uri']}",
        f"Training artifacts: {fields['training_artifacts_uri']}",
    ]
    if "dataset_uri" in fields:
        lines.append(f"Prepared dataset: {fields['dataset_uri']}")
    if "kimg" in fields:
        lines.append(f"Training length: {fields['kimg']} kimg")
    if "execution_arn" in fields:
        lines.append(f"Execution: {fields['execution_arn']}")
    lines += ["", "The bot loads the published generator on its next start or reload command."]
    return subject, "\n".join(lines)


def handler(event: Any, context: Any) -> dict[str, str]:
    """Publish the notification; a bad event or a failed publish fails the pipeline step."""
    configure_function_logging()
    fields = validate_event(event)
    topic_arn = os.environ.get(ENV_TOPIC_ARN)
    if not topic_arn:
        raise ConfigError(f"{ENV_TOPIC_ARN} is not set; the stack passes the notification topic's ARN")
    grid = S3Location.parse(fields["samples_uri"], "samples_uri").child(SAMPLE_GRID_FILE)
    S3Location.parse(fields["model_uri"], "model_uri")
    expiry = link_expiry_seconds()

    s3 = boto3.client("s3", config=Config(signature_version="s3v4"))
    grid_url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": grid.bucket, "Key": grid.key}, ExpiresIn=expiry
    )
    subject, body = build_message(fields, grid_url=grid_url, expiry_seconds=expiry)

    sns = boto3.client("sns")
    try:
        response = sns.publish(TopicArn=topic_arn, Subject=subject, Message=body)
    except Exception:
        logger.exception("publishing the notification for execution %s failed", fields["execution_id"])
        raise
    message_id = str(response["MessageId"])
    logger.info("published notification %s for execution %s", message_id, fields["execution_id"])
    return {"message_id": message_id}
