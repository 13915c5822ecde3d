"""Write generated images to the outputs bucket and return their S3 URIs."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import boto3

from .encoding import CONTENT_TYPES


class OutputStore:
    """Puts images under s3://bucket/prefix/YYYY/MM/DD/<request id>/; the boto3 client is made on first use."""

    def __init__(self, *, bucket: str, prefix: str, client: Any = None) -> None:
        """Remember where to write; client defaults to boto3's s3 client."""
        self.bucket = bucket
        self.prefix = prefix
        self._client = client
        self._lock = threading.Lock()

    def _s3(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = boto3.client("s3")
            return self._client

    def put(self, *, request_id: str, index: int, seed: int, data: bytes, image_format: str) -> str:
        """Upload one encoded image and return its s3:// URI."""
        day = dt.datetime.now(dt.UTC).strftime("%Y/%m/%d")
        ext = "jpg" if image_format == "jpeg" else image_format
        key = f"{self.prefix}{day}/{request_id}/{index:02d}-{seed}.{ext}"
        self._s3().put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=CONTENT_TYPES[image_format])
        return f"s3://{self.bucket}/{key}"
