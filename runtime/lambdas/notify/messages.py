"""Plain-text notifications of the StyleGAN2 pipeline: published, trained but not published, failed or stopped.

One "Label: value" line per fact, links on lines of their own: what an email client shows as-is (no JSON quoting).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .contract import PUBLISHED_MODEL_KEY

SUBJECT_LIMIT = 100
_CONSOLE = "https://{region}.console.aws.amazon.com"
_JOB_PAGES = {"ProcessingJob": "processing-jobs", "TrainingJob": "jobs"}
_JOB_LOG_GROUPS = {"ProcessingJob": "/aws/sagemaker/ProcessingJobs", "TrainingJob": "/aws/sagemaker/TrainingJobs"}


@dataclass(frozen=True)
class Message:
    """An SNS subject (ASCII, one line, at most 100 characters) and a plain-text body."""

    subject: str
    body: str


def subject_line(text: str) -> str:
    """SNS subjects: printable ASCII on one line, under the length limit."""
    cleaned = re.sub(r"[^\x20-\x7e]+", " ", text).strip()
    return cleaned[:SUBJECT_LIMIT]


def _block(pairs: Sequence[tuple[str, Any]]) -> list[str]:
    return [f"{label}: {value}" for label, value in pairs if value not in (None, "")]


def expiry_text(seconds: int) -> str:
    """'6 h 0 min' for a link lifetime."""
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _finite(fields: Mapping[str, str]) -> bool:
    return str(fields.get("finite", "1")) not in ("0", "0.0", "False", "false")


def score_text(fields: Mapping[str, str]) -> str:
    """'FID 23.41, KID 0.01234' (or 'not measured' when the images were not finite)."""
    if not _finite(fields):
        return "not measured: the generated images are not finite"
    try:
        return f"FID {float(fields['fid']):.2f}, KID {float(fields['kid']):.5f}"
    except (KeyError, ValueError):
        return "not reported"


def threshold_text(fields: Mapping[str, str]) -> str:
    """'MaxFid 50' or 'MaxFid -1 (publish always)'."""
    try:
        max_fid = float(fields["max_fid"])
    except (KeyError, ValueError):
        return "not reported"
    return f"MaxFid {max_fid:g}" + (" (negative: publish always)" if max_fid < 0 else "")


def not_published_reason(fields: Mapping[str, str]) -> str:
    """Why the quality gate held the generator back, in the gate's own terms."""
    if not _finite(fields):
        return "the generated images are not finite (NaN or infinity): training diverged"
    try:
        return f"FID {float(fields['fid']):.2f} is not below MaxFid {float(fields['max_fid']):g}"
    except (KeyError, ValueError):
        return "the quality gate did not pass"


def _header(fields: Mapping[str, str], status: str) -> list[str]:
    return [
        f"GenArt StyleGAN2 pipeline {fields['pipeline_name']}",
        *_block([("Execution", fields["execution_id"]), ("Status", status)]),
    ]


def _run_links(fields: Mapping[str, str], *, grid_url: str, expiry_seconds: int) -> list[str]:
    return [
        "",
        "Links",
        f"Sample grid (link valid for {expiry_text(expiry_seconds)}): {grid_url}",
        *_block(
            [
                ("Samples and generator.onnx", fields.get("samples_uri")),
                ("Training artifacts", fields.get("training_artifacts_uri")),
                ("Prepared dataset", fields.get("dataset_uri")),
                ("Execution ARN", fields.get("execution_arn")),
            ]
        ),
    ]


def published(fields: Mapping[str, str], *, grid_url: str, expiry_seconds: int) -> Message:
    """The run passed the quality gate and its generator is now stylegan/latest.onnx."""
    version = fields.get("version_id")
    lines = [
        *_header(fields, "Succeeded, generator published"),
        *_block(
            [
                ("Quality", score_text(fields)),
                ("Threshold", threshold_text(fields)),
                ("Training length", f"{fields['kimg']} kimg" if fields.get("kimg") else None),
                ("Published generator", fields["model_uri"] + (f" (version {version})" if version else "")),
            ]
        ),
        *_run_links(fields, grid_url=grid_url, expiry_seconds=expiry_seconds),
        "",
        f"The bot picks up {PUBLISHED_MODEL_KEY} by itself within minutes.",
    ]
    subject = subject_line(f"GenArt StyleGAN2 run {fields['execution_id']} published ({score_text(fields)})")
    return Message(subject, "\n".join(lines))


def not_published(fields: Mapping[str, str], *, grid_url: str, expiry_seconds: int, exported_uri: str) -> Message:
    """The run finished but the quality gate kept its generator from stylegan/latest.onnx."""
    lines = [
        *_header(fields, "Succeeded, trained but not published"),
        *_block(
            [
                ("Why", not_published_reason(fields)),
                ("Quality", score_text(fields)),
                ("Threshold", threshold_text(fields)),
                ("Training length", f"{fields['kimg']} kimg" if fields.get("kimg") else None),
            ]
        ),
        f"{PUBLISHED_MODEL_KEY} is unchanged; the bot keeps serving the generator it has.",
        *_run_links(fields, grid_url=grid_url, expiry_seconds=expiry_seconds),
    ]
    if _finite(fields):  # a diverged generator is not even exported
        lines += [
            "",
            "To publish this generator anyway, copy it yourself:",
            f"aws s3 cp {exported_uri} s3://<ModelsBucketName>/{PUBLISHED_MODEL_KEY}",
        ]
    subject = subject_line(f"GenArt StyleGAN2 run {fields['execution_id']} trained but not published")
    return Message(subject, "\n".join(lines))


def _job_links(region: str, metadata: Mapping[str, Any]) -> list[tuple[str, str]]:
    links = []
    console = _CONSOLE.format(region=region)
    for kind, page in _JOB_PAGES.items():
        arn = (metadata.get(kind) or {}).get("Arn")
        if not arn:
            continue
        name = str(arn).rsplit("/", 1)[-1]
        links.append(("Job", f"{console}/sagemaker/home?region={region}#/{page}/{name}"))
        # The console's own escaping: the group name encoded twice, the stream filter once, "%" written as "$".
        group = quote(quote(_JOB_LOG_GROUPS[kind], safe=""), safe="").replace("%", "$")
        stream_filter = quote(f"?logStreamNameFilter={name}", safe="").replace("%", "$")
        logs = f"{console}/cloudwatch/home?region={region}#logsV2:log-groups/log-group/{group}{stream_filter}"
        links.append(("Logs", logs))
    lambda_arn = (metadata.get("Lambda") or {}).get("Arn")
    if lambda_arn:
        name = str(lambda_arn).split(":")[6] if str(lambda_arn).count(":") >= 6 else str(lambda_arn)
        links.append(("Function", f"{console}/lambda/home?region={region}#/functions/{name}"))
    return links


def failed(
    detail: Mapping[str, Any], *, region: str, steps: Sequence[Mapping[str, Any]], steps_error: str | None
) -> Message:
    """A failed or stopped execution: which step failed, its FailureReason, and links to the job and its logs."""
    status = str(detail.get("currentPipelineExecutionStatus", "Failed"))
    arn = str(detail.get("pipelineExecutionArn", ""))
    pipeline = str(detail.get("pipelineArn", "")).rsplit("/", 1)[-1] or "(unknown pipeline)"
    execution = str(detail.get("pipelineExecutionDisplayName") or arn.rsplit("/", 1)[-1])
    failed_step = next((s for s in steps if s.get("StepStatus") == "Failed"), None)
    lines = [
        f"GenArt StyleGAN2 pipeline {pipeline}",
        *_block(
            [
                ("Execution", execution),
                ("Status", status),
                ("Started", detail.get("executionStartTime")),
                ("Ended", detail.get("executionEndTime")),
            ]
        ),
    ]
    if failed_step is not None:
        reason = " ".join(str(failed_step.get("FailureReason") or "not given").split())
        lines += _block([("Failed step", failed_step.get("StepName")), ("Failure reason", reason)])
        lines += _block(_job_links(region, failed_step.get("Metadata") or {}))
    elif steps_error is not None:
        lines.append(f"Failed step: unknown (the steps could not be listed: {steps_error})")
    elif status == "Stopped":
        lines.append("Failed step: none (the execution was stopped)")
    if steps:
        lines.append("Steps: " + ", ".join(f"{s.get('StepName')} {s.get('StepStatus')}" for s in steps))
    lines += [
        "",
        "Every step and its reason:",
        f"aws sagemaker list-pipeline-execution-steps --pipeline-execution-arn {arn}",
    ]
    where = f"failed at {failed_step.get('StepName')}" if failed_step is not None else status.lower()
    subject = subject_line(f"GenArt StyleGAN2 {pipeline}: execution {execution} {where}")
    return Message(subject, "\n".join(lines))
