"""Reading objects of the outputs bucket where "not there (yet)" is an answer, not an error."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

# Without s3:ListBucket on the prefix, S3 answers a missing key with 403 instead of 404; both read as "not there".
MISSING = frozenset({"404", "NoSuchKey", "NotFound", "403", "AccessDenied"})


def is_missing(exc: Exception) -> bool:
    """Whether a botocore error says the object is not there."""
    return isinstance(exc, ClientError) and str(exc.response.get("Error", {}).get("Code")) in MISSING


def head(s3: Any, *, bucket: str, key: str) -> dict[str, Any] | None:
    """HeadObject's answer, or None when the object is not there."""
    try:
        return dict(s3.head_object(Bucket=bucket, Key=key))
    except ClientError as exc:
        if is_missing(exc):
            return None
        raise


def read_text(s3: Any, *, bucket: str, key: str) -> str | None:
    """The object as text, or None when it is not there."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if is_missing(exc):
            return None
        raise
    return str(body.decode("utf-8", errors="replace"))
