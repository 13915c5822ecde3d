"""A job manifest ({"input": "s3://...", "output": "s3://...", "options": {...}}) run against S3.

Downloads the input, runs the same `cartoonize_file` as the CLI, uploads the output and keeps the progress
JSON next to it (s3://<bucket>/<output key>.progress.json). Used by the endpoint and the image Lambda.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..common.errors import InputError
from . import contract
from .engine import Cartoonizer
from .errors import MediaError, TooLargeError
from .images import CONTENT_TYPES, OUTPUT_FORMATS
from .model_store import ModelInfo
from .process import JobOptions, Limits, cartoonize_file
from .progress import ProgressSink, ProgressTracker
from .settings import Settings

log = logging.getLogger(__name__)

VIDEO_CONTENT_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".mkv": "video/x-matroska"}


def parse_s3_uri(uri: str, *, field: str) -> tuple[str, str]:
    """(bucket, key) of an s3://bucket/key URI; InputError naming the field otherwise."""
    if not uri.startswith("s3://"):
        raise InputError(f"{field} must be an s3://bucket/key URI, got {uri!r}", field=field)
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or not key or key.endswith("/"):
        raise InputError(f"{field} must name a bucket and an object key, got {uri!r}", field=field)
    return bucket, key


class JobOptionsModel(BaseModel):
    """The job's `options` object; unknown keys are refused so typos are not silently ignored."""

    model_config = ConfigDict(extra="forbid", strict=True)

    smooth: bool = False
    side_by_side: bool = False
    max_side: int | None = Field(None, ge=16, le=8192)


class Job(BaseModel):
    """The job manifest: S3 input and output URIs and options."""

    model_config = ConfigDict(extra="forbid")

    input: str
    output: str
    options: JobOptionsModel = Field(default_factory=lambda: JobOptionsModel.model_validate({}))

    @field_validator("input", "output")
    @classmethod
    def _s3(cls, value: str, info: Any) -> str:
        parse_s3_uri(value, field=str(info.field_name))
        return value

    @classmethod
    def parse(cls, payload: Mapping[str, Any] | bytes | str) -> Job:
        """Validate a manifest (dict or JSON text); InputError names the first bad field."""
        try:
            data = json.loads(payload) if isinstance(payload, bytes | str) else dict(payload)
        except (ValueError, TypeError) as exc:
            raise InputError(f"job manifest is not a JSON object: {exc}", field="body") from None
        if not isinstance(data, dict):
            raise InputError("job manifest must be a JSON object", field="body")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "body"
            message = first.get("ctx", {}).get("error") or first["msg"]
            raise InputError(f"{field}: {message}", field=field) from None

    def job_options(self) -> JobOptions:
        """The options as the processing code takes them."""
        return JobOptions(**self.options.model_dump())


def s3_progress_sink(s3: Any, *, bucket: str, output_key: str) -> ProgressSink:
    """Write each progress update to s3://bucket/<output key>.progress.json (failures are logged, not raised)."""
    key = contract.progress_key(output_key)

    def write(document: dict[str, Any]) -> None:
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(document).encode(), ContentType="application/json")
        except Exception:  # progress is advisory; the job itself must not fail on it
            log.warning("could not write progress", extra={"fields": {"key": key}}, exc_info=True)

    return write


def limits_from(settings: Settings) -> Limits:
    """The processing limits the settings configure."""
    return Limits(
        max_image_side=settings.max_image_side,
        max_image_bytes=settings.max_image_bytes,
        max_video_side=settings.max_video_side,
        max_video_seconds=settings.max_video_seconds,
    )


def content_type(key: str) -> str:
    """Content-Type of an output by its suffix."""
    suffix = PurePosixPath(key).suffix.lower()
    if suffix in OUTPUT_FORMATS:
        return CONTENT_TYPES[OUTPUT_FORMATS[suffix]]
    return VIDEO_CONTENT_TYPES.get(suffix, "application/octet-stream")


def run_job(
    job: Job,
    *,
    engine: Cartoonizer,
    model: ModelInfo | None,
    settings: Settings,
    s3: Any,
    allow_video: bool = True,
    max_input_bytes: int | None = None,
) -> dict[str, Any]:
    """Run one job end to end; MediaError/InputError for bad input (progress then says "failed")."""
    in_bucket, in_key = parse_s3_uri(job.input, field="input")
    out_bucket, out_key = parse_s3_uri(job.output, field="output")
    tracker = ProgressTracker(
        sinks=[s3_progress_sink(s3, bucket=out_bucket, output_key=out_key)], interval_s=settings.progress_interval_s
    )
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="cartoonizer-") as work:
            source = Path(work) / ("input" + PurePosixPath(in_key).suffix.lower()[:8])
            target = Path(work) / ("output" + PurePosixPath(out_key).suffix.lower())
            try:
                head = s3.head_object(Bucket=in_bucket, Key=in_key)
            except Exception as exc:
                raise InputError(f"input {job.input} cannot be read: {_s3_reason(exc)}", field="input") from None
            if max_input_bytes is not None and int(head.get("ContentLength", 0)) > max_input_bytes:
                raise TooLargeError(
                    f"input is {head['ContentLength']} bytes; the limit is {max_input_bytes}", field="input"
                )
            s3.download_file(in_bucket, in_key, str(source))
            downloaded = time.perf_counter()
            result = cartoonize_file(
                source,
                target,
                engine=engine,
                limits=limits_from(settings),
                options=job.job_options(),
                progress=tracker,
                allow_video=allow_video,
            )
            processed = time.perf_counter()
            metadata = {"model-licence": model.licence} if model is not None else {}
            s3.upload_file(
                str(target),
                out_bucket,
                out_key,
                ExtraArgs={"ContentType": content_type(out_key), "Metadata": metadata},
            )
            uploaded = time.perf_counter()
    except (InputError, MediaError) as exc:
        tracker.fail(str(exc))
        raise
    except Exception:
        tracker.fail("internal error")
        raise
    return {
        contract.PROGRESS_STATE: "done",
        contract.JOB_INPUT: job.input,
        contract.JOB_OUTPUT: job.output,
        "progress": f"s3://{out_bucket}/{contract.progress_key(out_key)}",
        "result": result,
        "timings_s": {
            "download": round(downloaded - started, 3),
            "process": round(processed - downloaded, 3),
            "upload": round(uploaded - processed, 3),
            "total": round(uploaded - started, 3),
        },
        "model": model.public() if model is not None else None,
        "device": engine.device,
    }


def _s3_reason(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return f"{error.get('Code', 'error')} {error.get('Message', '')}".strip()
    return type(exc).__name__
