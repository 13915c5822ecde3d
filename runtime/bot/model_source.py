"""Where the generator comes from: a local file, or the models bucket cached on local disk."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from . import contract
from .errors import ConfigError

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSource:
    """A local ONNX file, or s3://bucket/key downloaded to cache_path (re-fetched when the ETag changes)."""

    local_path: Path | None = None
    bucket: str | None = None
    key: str = contract.DEFAULT_MODEL_KEY
    cache_path: Path = Path(contract.MODEL_CACHE_PATH)
    region: str | None = None

    def describe(self) -> str:
        """Return a short human description of the source."""
        if self.local_path is not None:
            return str(self.local_path)
        return f"s3://{self.bucket}/{self.key}"

    def fetch(self, *, s3_client: Any | None = None) -> Path:
        """Return a local path holding the current model, downloading it from S3 when needed."""
        if self.local_path is not None:
            if not self.local_path.is_file():
                raise ConfigError(f"model file not found: {self.local_path}")
            return self.local_path
        if not self.bucket:
            raise ConfigError("no model configured: set GENART_MODEL_PATH or GENART_MODELS_BUCKET (or pass --model)")
        try:
            return self._download(s3_client)
        except ConfigError:
            if self.cache_path.is_file():
                cache = str(self.cache_path)
                LOG.warning("model download failed; using the cached copy", extra={"fields": {"cache": cache}})
                return self.cache_path
            raise

    def _download(self, s3_client: Any | None) -> Path:
        client = s3_client or boto3.client("s3", region_name=self.region)
        uri = self.describe()
        etag_file = self.cache_path.with_name(self.cache_path.name + ".etag")
        try:
            etag = str(client.head_object(Bucket=self.bucket, Key=self.key)["ETag"])
            if self.cache_path.is_file() and etag_file.is_file() and etag_file.read_text() == etag:
                LOG.info("model cache is current", extra={"fields": {"source": uri, "cache": str(self.cache_path)}})
                return self.cache_path
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.cache_path.with_name(f".{self.cache_path.name}.{os.getpid()}.part")
            LOG.info("downloading model", extra={"fields": {"source": uri, "cache": str(self.cache_path)}})
            client.download_file(self.bucket, self.key, str(partial))
            os.replace(partial, self.cache_path)
            etag_file.write_text(etag)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            hint = {
                "404": "the pipeline has not published a model yet",
                "NoSuchKey": "the pipeline has not published a model yet",
                "403": "the instance role may not read this object",
                "AccessDenied": "the instance role may not read this object",
            }.get(str(code), "check the bucket name and region")
            raise ConfigError(f"cannot fetch model {uri}: {code} ({hint})") from exc
        except BotoCoreError as exc:
            raise ConfigError(f"cannot fetch model {uri}: {exc}") from exc
        except OSError as exc:
            raise ConfigError(f"cannot write model cache {self.cache_path}: {exc}") from exc
        return self.cache_path
