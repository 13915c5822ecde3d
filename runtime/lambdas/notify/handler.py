"""The StyleGAN2 pipeline's function: validates a run's parameters, publishes a generator that passed the quality
gate, and tells the SNS topic how a run ended (published, trained but not published, failed or stopped)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ...common.errors import ConfigError, InputError
from ...common.jsonlog import configure_logging
from . import messages
from .contract import (
    ACTION,
    ACTION_NOTIFY_NOT_PUBLISHED,
    ACTION_NOTIFY_PUBLISHED,
    ACTION_PUBLISH,
    ACTION_VALIDATE,
    DEFAULT_LINK_EXPIRY_SECONDS,
    ENV_DATASETS_BUCKET,
    ENV_LINK_EXPIRY_SECONDS,
    ENV_LOG_LEVEL,
    ENV_MODELS_BUCKET,
    ENV_OPS_TOPIC_ARN,
    ENV_TOPIC_ARN,
    EXPORTED_MODEL_FILE,
    PIPELINE_EVENT_SOURCE,
    PIPELINE_EVENT_TYPE,
    PUBLISHED_MODEL_KEY,
    RUNS_PREFIX,
    SAMPLE_GRID_FILE,
)
from .validation import validate_parameters

__all__ = ["ConfigError", "InputError", "handler"]

logger = logging.getLogger(__name__)
_logging_configured = False

RUN_FIELDS = ("pipeline_name", "execution_id")
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    ACTION_VALIDATE: RUN_FIELDS,
    ACTION_PUBLISH: (*RUN_FIELDS, "samples_uri"),
    ACTION_NOTIFY_PUBLISHED: (*RUN_FIELDS, "samples_uri", "model_uri", "training_artifacts_uri"),
    ACTION_NOTIFY_NOT_PUBLISHED: (*RUN_FIELDS, "samples_uri", "training_artifacts_uri"),
}
# SigV4 presigned URLs are capped at 7 days (and by the Lambda role session, whichever ends first).
MAX_LINK_EXPIRY_SECONDS = 7 * 24 * 3600
SUBJECT_LIMIT = messages.SUBJECT_LIMIT


def configure_function_logging() -> None:
    """Once per execution environment: the shared JSON lines on stdout (CloudWatch Logs) instead of Lambda's text."""
    global _logging_configured  # noqa: PLW0603 - one switch per warm execution environment
    if not _logging_configured:
        configure_logging(level=os.environ.get(ENV_LOG_LEVEL) or "INFO", stream=sys.stdout)
        _logging_configured = True


def aws_client(service: str) -> Any:
    """A boto3 client (S3 with SigV4, which presigned links need); tests replace this to stub a service."""
    if service == "s3":
        return boto3.client("s3", config=Config(signature_version="s3v4"))
    return boto3.client(service)


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

    @property
    def uri(self) -> str:
        """s3://bucket/key."""
        return f"s3://{self.bucket}/{self.key}"


def validate_event(event: Any, required: tuple[str, ...]) -> dict[str, str]:
    """The event's fields as strings; raises InputError naming every missing field."""
    if not isinstance(event, dict):
        raise InputError(f"event: expected a JSON object, got {type(event).__name__}")
    missing = [name for name in required if event.get(name) in (None, "")]
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


def _setting(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"{name} is not set; the Pipeline stack sets it on the function")
    return value


def publish_message(message: messages.Message, *topic_arns: str) -> str:
    """Publish to each topic; returns the first message id (a failed publish raises and fails the step)."""
    sns = aws_client("sns")
    ids = []
    for topic_arn in topic_arns:
        try:
            response = sns.publish(TopicArn=topic_arn, Subject=message.subject, Message=message.body)
        except Exception:
            logger.exception("publishing %r to %s failed", message.subject, topic_arn)
            raise
        ids.append(str(response["MessageId"]))
        logger.info("published %r to %s as %s", message.subject, topic_arn, ids[-1])
    return ids[0]


def _grid_link(fields: Mapping[str, str]) -> tuple[str, int]:
    grid = S3Location.parse(fields["samples_uri"], "samples_uri").child(SAMPLE_GRID_FILE)
    expiry = link_expiry_seconds()
    url = aws_client("s3").generate_presigned_url(
        "get_object", Params={"Bucket": grid.bucket, "Key": grid.key}, ExpiresIn=expiry
    )
    return str(url), expiry


def publish_generator(fields: Mapping[str, str]) -> dict[str, str]:
    """Copy the run's verified generator.onnx to stylegan/latest.onnx (the only writer of that key)."""
    models_bucket = _setting(ENV_MODELS_BUCKET)
    source = S3Location.parse(fields["samples_uri"], "samples_uri").child(EXPORTED_MODEL_FILE)
    if source.bucket != models_bucket or not source.key.startswith(RUNS_PREFIX):
        raise InputError(f"samples_uri must lie under s3://{models_bucket}/{RUNS_PREFIX}, got {fields['samples_uri']}")
    metadata = {
        "pipeline": fields["pipeline_name"],
        "execution-id": fields["execution_id"],
        "source": source.uri,
        **{name.replace("_", "-"): fields[name] for name in ("fid", "kid", "max_fid") if name in fields},
    }
    response = aws_client("s3").copy_object(
        Bucket=models_bucket,
        Key=PUBLISHED_MODEL_KEY,
        CopySource={"Bucket": source.bucket, "Key": source.key},
        MetadataDirective="REPLACE",
        ContentType="application/octet-stream",
        Metadata=metadata,
    )
    published = S3Location(models_bucket, PUBLISHED_MODEL_KEY)
    logger.info("published %s as %s", source.uri, published.uri)
    return {"model_uri": published.uri, "version_id": str(response.get("VersionId") or "")}


def notify_run(action: str, fields: Mapping[str, str]) -> dict[str, str]:
    """The success-side messages: published, or trained but not published."""
    topic_arn = _setting(ENV_TOPIC_ARN)
    S3Location.parse(fields["training_artifacts_uri"], "training_artifacts_uri")
    grid_url, expiry = _grid_link(fields)
    if action == ACTION_NOTIFY_PUBLISHED:
        S3Location.parse(fields["model_uri"], "model_uri")
        message = messages.published(fields, grid_url=grid_url, expiry_seconds=expiry)
    else:
        exported = S3Location.parse(fields["samples_uri"], "samples_uri").child(EXPORTED_MODEL_FILE)
        message = messages.not_published(fields, grid_url=grid_url, expiry_seconds=expiry, exported_uri=exported.uri)
    return {"message_id": publish_message(message, topic_arn)}


def is_status_event(event: Any) -> bool:
    """An EventBridge pipeline status change (the failure rule sends these)."""
    return (
        isinstance(event, dict)
        and event.get("source") == PIPELINE_EVENT_SOURCE
        and event.get("detail-type") == PIPELINE_EVENT_TYPE
    )


def notify_status(event: Mapping[str, Any]) -> dict[str, str]:
    """A failed or stopped execution: find the failed step and its reason, tell the pipeline and ops topics."""
    topic_arn = _setting(ENV_TOPIC_ARN)
    detail = event.get("detail") or {}
    execution_arn = str(detail.get("pipelineExecutionArn", ""))
    steps: list[dict[str, Any]] = []
    steps_error = None
    try:
        pages = aws_client("sagemaker").get_paginator("list_pipeline_execution_steps")
        for page in pages.paginate(PipelineExecutionArn=execution_arn, SortOrder="Ascending"):
            steps += page.get("PipelineExecutionSteps", [])
    except (BotoCoreError, ClientError) as error:
        # The message still goes out, saying the steps are unknown; the function's log has the details.
        logger.exception("listing the steps of %s failed", execution_arn)
        steps_error = str(error)
    region = str(event.get("region") or os.environ.get("AWS_REGION", ""))
    message = messages.failed(detail, region=region, steps=steps, steps_error=steps_error)
    topics = [topic_arn, *filter(None, [os.environ.get(ENV_OPS_TOPIC_ARN)])]
    return {"message_id": publish_message(message, *topics)}


def handler(event: Any, context: Any) -> dict[str, str]:
    """One entry for the pipeline's Lambda steps (by "action") and the failure rule's status events."""
    configure_function_logging()
    if is_status_event(event):
        return notify_status(event)
    action = event.get(ACTION) if isinstance(event, dict) else None
    if action not in REQUIRED_FIELDS:
        raise InputError(f"{ACTION}: expected one of {', '.join(REQUIRED_FIELDS)}, got {action!r}", field=ACTION)
    fields = validate_event(event, REQUIRED_FIELDS[action])
    if action == ACTION_VALIDATE:
        validate_parameters(
            event,
            datasets_bucket=_setting(ENV_DATASETS_BUCKET),
            models_bucket=_setting(ENV_MODELS_BUCKET),
            s3=aws_client("s3"),
        )
        logger.info("parameters of execution %s are valid", fields["execution_id"])
        return {"status": "valid"}
    if action == ACTION_PUBLISH:
        return publish_generator(fields)
    return notify_run(action, fields)
