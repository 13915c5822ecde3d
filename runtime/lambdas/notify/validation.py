"""The pipeline's first step: check the run-time parameters together, in seconds, before any instance starts."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import ClientError

from ...common.errors import InputError
from .contract import AUTO_BATCH_GPU, CFG_BATCH, CFG_GAMMA, CFG_LEARNING_RATE, FEATURE_EXTRACTOR_PREFIX, MODEL_PRESETS

_INSTANCE_TYPE = re.compile(r"ml\.[a-z0-9-]+\.[a-z0-9]+")
# CreateTrainingJob's limit on MaxRuntimeInSeconds and MaxWaitTimeInSeconds (28 days).
MAX_TRAINING_SECONDS = 28 * 24 * 3600
MAX_INSTANCE_COUNT = 100


def _number(value: Any) -> float | None:
    """A parameter value as a number (the pipeline passes numbers, a hand-made event may pass strings)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _integer(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number.is_integer() else None


def parameter_problems(params: Mapping[str, Any], *, datasets_bucket: str, models_bucket: str) -> list[str]:
    """Every problem with the run-time parameters, each naming the parameter; empty when they are consistent."""
    problems: list[str] = []

    def need(name: str, ok: Callable[[Any], bool], expected: str) -> None:
        if name not in params:
            problems.append(f"{name} is missing")
        elif not ok(params[name]):
            problems.append(f"{name} must be {expected}, got {params[name]!r}")

    def integer_in(low: int, high: int) -> Callable[[Any], bool]:
        return lambda value: (number := _integer(value)) is not None and low <= number <= high

    for name in ("ProcessingInstanceType", "TrainingInstanceType", "ExportInstanceType"):
        need(
            name,
            lambda value: isinstance(value, str) and _INSTANCE_TYPE.fullmatch(value) is not None,
            "ml.<family>.<size>",
        )
    need("TrainingInstanceCount", integer_in(1, MAX_INSTANCE_COUNT), f"an integer from 1 to {MAX_INSTANCE_COUNT}")
    need(
        "Resolution",
        lambda value: (number := _integer(value)) is not None and 4 <= number <= 1024 and number & (number - 1) == 0,
        "a power of two from 4 to 1024",
    )
    need("ModelPreset", lambda value: value in MODEL_PRESETS, f"one of {', '.join(MODEL_PRESETS)}")
    need("Kimg", lambda value: (number := _number(value)) is not None and number > 0, "a positive number")
    # CFG_BATCH, a negative Gamma and CFG_LEARNING_RATE (the defaults) stand for the ModelPreset's own values.
    need("Batch", integer_in(CFG_BATCH, 4096), f"an integer from 1 to 4096, or {CFG_BATCH} (the preset's)")
    need(
        "BatchGpu",
        integer_in(AUTO_BATCH_GPU, 4096),
        f"an integer from 1 to 4096 (images per GPU per round), or {AUTO_BATCH_GPU} (auto)",
    )
    need("Gamma", lambda value: _number(value) is not None, f"a number (negative, e.g. {CFG_GAMMA}: the preset's)")
    need(
        "LearningRate",
        lambda value: (number := _number(value)) is not None and (number == CFG_LEARNING_RATE or 0 < number < 1),
        f"between 0 and 1, or {CFG_LEARNING_RATE:g} (the preset's)",
    )
    need("Mirror", lambda value: _integer(value) in (0, 1), "0 or 1")
    need("SnapshotKimg", lambda value: (number := _number(value)) is not None and number > 0, "a positive number")
    need("MaxRunSeconds", integer_in(1, MAX_TRAINING_SECONDS), f"an integer from 1 to {MAX_TRAINING_SECONDS}")
    need("QualitySamples", integer_in(2, 1_000_000), "an integer of at least 2")
    need("MaxFid", lambda value: _number(value) is not None, "a number (negative: publish always)")
    if "MaxWaitSeconds" in params:  # only Spot environments have it
        need("MaxWaitSeconds", integer_in(1, MAX_TRAINING_SECONDS), f"an integer from 1 to {MAX_TRAINING_SECONDS}")
        run, wait = _integer(params.get("MaxRunSeconds")), _integer(params["MaxWaitSeconds"])
        if run is not None and wait is not None and run > wait:
            problems.append(
                f"MaxRunSeconds ({run}) is more than MaxWaitSeconds ({wait}): the Spot wait includes the run, "
                "so MaxWaitSeconds must be at least MaxRunSeconds"
            )
    batch, count = _integer(params.get("Batch")), _integer(params.get("TrainingInstanceCount"))
    if batch is not None and batch != CFG_BATCH and count is not None and count > 0 and batch % count:
        problems.append(f"Batch ({batch}) must divide evenly over TrainingInstanceCount ({count}) instances")
    # With the preset's batch (0) the trainer checks BatchGpu against it; its message names --batch-gpu.
    batch_gpu = _integer(params.get("BatchGpu"))
    if batch is not None and batch != CFG_BATCH and count and count > 0 and batch_gpu and batch_gpu > 0:
        per_instance = batch // count if batch % count == 0 else None
        if per_instance is not None and per_instance % batch_gpu:
            problems.append(
                f"BatchGpu ({batch_gpu}) must divide the batch per instance, Batch / TrainingInstanceCount "
                f"({batch} / {count} = {per_instance})"
            )
    for name, bucket, prefix in (
        ("InputDataUri", datasets_bucket, ""),
        ("FeatureExtractorUri", models_bucket, FEATURE_EXTRACTOR_PREFIX),
    ):
        uri = params.get(name)
        parsed = urlparse(str(uri))
        if not isinstance(uri, str) or parsed.scheme != "s3":
            problems.append(f"{name} must be an s3:// URI, got {uri!r}")
        elif parsed.netloc != bucket or not parsed.path.lstrip("/").startswith(prefix):
            problems.append(f"{name} must lie under s3://{bucket}/{prefix} (all the jobs may read), got {uri}")
    return problems


def storage_problems(params: Mapping[str, Any], *, s3: Any) -> list[str]:
    """The input prefix holds objects and the feature extractor exists (after the URIs themselves passed)."""
    problems = []
    inputs = urlparse(str(params["InputDataUri"]))
    listed = s3.list_objects_v2(Bucket=inputs.netloc, Prefix=inputs.path.lstrip("/"), MaxKeys=1)
    if not listed.get("KeyCount"):
        problems.append(
            f"InputDataUri {params['InputDataUri']} holds no objects: upload images or a zip/tar archive first"
        )
    extractor = urlparse(str(params["FeatureExtractorUri"]))
    try:
        s3.head_object(Bucket=extractor.netloc, Key=extractor.path.lstrip("/"))
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code not in ("404", "403", "NoSuchKey", "NotFound", "AccessDenied"):
            raise
        problems.append(
            f"FeatureExtractorUri {params['FeatureExtractorUri']} does not exist: upload it once with "
            "python -m runtime.pipeline.quality.upload_extractor (docs/pipeline.md)"
        )
    return problems


def validate_parameters(params: Mapping[str, Any], *, datasets_bucket: str, models_bucket: str, s3: Any) -> None:
    """Raise InputError listing every problem (the pipeline shows it as the step's FailureReason)."""
    problems = parameter_problems(params, datasets_bucket=datasets_bucket, models_bucket=models_bucket)
    if not problems:
        problems = storage_problems(params, s3=s3)
    if problems:
        raise InputError("invalid pipeline parameters: " + "; ".join(problems))
