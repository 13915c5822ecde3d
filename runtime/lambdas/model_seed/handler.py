"""Custom resource handlers: seed an S3 prefix (on_event + is_complete, CDK Provider framework) or check one (check).

Delete never removes objects: the seeded files stay in the bucket (they are data, and a later deploy reuses them).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from ...common.errors import ConfigError, GenArtError
from ...common.jsonlog import configure_logging
from . import contract
from .seeder import Report, Seeder, SeedError, SeedSpec, object_exists

LOG = logging.getLogger(__name__)
_logging_configured = False


class PrefixCheckError(GenArtError):
    """The prefix lacks a required object; the message says how to provide it."""

    code = "prefix_check_failed"


def configure_function_logging() -> None:
    """Once per execution environment: the shared JSON lines on stdout (CloudWatch Logs)."""
    global _logging_configured  # noqa: PLW0603 - one switch per warm execution environment
    if not _logging_configured:
        configure_logging(level=os.environ.get(contract.ENV_LOG_LEVEL) or "INFO", stream=sys.stdout)
        _logging_configured = True


def _env_int(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _s3() -> Any:
    import boto3  # noqa: PLC0415 - the Lambda runtime's boto3; imported per call so tests can patch it

    return boto3.client("s3")


def _deleted(event: dict[str, Any], what: str) -> dict[str, Any]:
    physical_id = event.get("PhysicalResourceId")
    LOG.info("%s deleted; its objects stay in the bucket", what, extra={"fields": {"id": physical_id}})
    return {"PhysicalResourceId": physical_id}


def on_event(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Create/Update: validate the file list and start the clock; the copying happens in is_complete."""
    configure_function_logging()
    if event.get("RequestType") == "Delete":
        return _deleted(event, "seed")
    spec = SeedSpec.from_properties(event.get("ResourceProperties"))
    size = contract.total_size(spec.files)
    LOG.info("seeding", extra={"fields": {"location": spec.location, "files": len(spec.files), "bytes": size}})
    return {"PhysicalResourceId": spec.location, contract.EVENT_DEADLINE: str(int(time.time()) + contract.DEADLINE_S)}


def is_complete(event: dict[str, Any], context: Any, *, s3: Any = None) -> dict[str, Any]:
    """Copy until this call's time is up; complete once every file is verified (or the prefix was left alone)."""
    configure_function_logging()
    if event.get("RequestType") == "Delete":
        return {"IsComplete": True}
    spec = SeedSpec.from_properties(event.get("ResourceProperties"))
    now = time.time()
    deadline = float(event.get(contract.EVENT_DEADLINE) or now + contract.DEADLINE_S)
    budget = min(context.get_remaining_time_in_millis() / 1000 - contract.SAFETY_MARGIN_S, deadline - now)
    if budget <= 0:
        raise SeedError(_deadline_message(spec, None))
    seeder = Seeder(
        s3 or _s3(),
        spec,
        deadline=time.monotonic() + budget,
        part_size=_env_int(contract.ENV_PART_SIZE, contract.DEFAULT_PART_SIZE, contract.MIN_PART_SIZE),
        read_timeout=_env_int(contract.ENV_READ_TIMEOUT, contract.DEFAULT_READ_TIMEOUT_S, 1),
        attempts=_env_int(contract.ENV_ATTEMPTS, contract.DEFAULT_ATTEMPTS, 1),
    )
    report = seeder.run()
    if report.complete:
        return {
            "IsComplete": True,
            "Data": {
                "Files": str(len(spec.files)),
                "Bytes": str(contract.total_size(spec.files)),
                "LeftAlone": "true" if report.left_alone else "false",
            },
        }
    if time.time() >= deadline - 1:
        raise SeedError(_deadline_message(spec, report))
    return {"IsComplete": False}


def _deadline_message(spec: SeedSpec, report: Report | None) -> str:
    where = ""
    if report is not None:
        done = len(report.skipped) + len(report.verified) + len(report.copied)
        where = f" ({done} of {len(spec.files)} files verified, stopped at {report.current})"
    return (
        f"seeding {spec.location} did not finish within {contract.DEADLINE_S // 60} minutes{where}. Verified files "
        "and uploaded parts are kept: deploy again to resume."
    )


def check(event: dict[str, Any], context: Any, *, s3: Any = None) -> dict[str, Any]:
    """Create/Update: fail unless every required key exists under the prefix, saying how to provide it."""
    configure_function_logging()
    if event.get("RequestType") == "Delete":
        return _deleted(event, "prefix check")
    properties = event.get("ResourceProperties") or {}
    bucket = str(properties.get(contract.PROP_BUCKET) or "")
    prefix = contract.check_prefix(str(properties.get(contract.PROP_PREFIX) or ""))
    required = properties.get(contract.PROP_REQUIRED)
    if not bucket or not isinstance(required, list) or not required:
        raise contract.ManifestError(f"{contract.PROP_BUCKET} and a non-empty {contract.PROP_REQUIRED} list are needed")
    client = s3 or _s3()
    for key in (contract.check_key(str(k), contract.PROP_REQUIRED) for k in required):
        if not object_exists(client, bucket, prefix + key):
            raise PrefixCheckError(
                f"s3://{bucket}/{prefix}{key} does not exist, so this deploy stops here (nothing that needs it was "
                f"created). {properties.get(contract.PROP_HOW_TO_FIX) or ''}".strip()
            )
    LOG.info("prefix holds what is required", extra={"fields": {"location": f"s3://{bucket}/{prefix}"}})
    return {"PhysicalResourceId": f"s3://{bucket}/{prefix}"}
