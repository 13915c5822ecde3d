"""Where the generator comes from (a local file, or the models bucket), and the copy on local disk the bot serves."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from . import contract
from .errors import ConfigError, ModelUnavailable, UnavailableState

LOG = logging.getLogger(__name__)
# HeadObject answers with the bare status code; GetObject and ListObjectsV2 with a named code.
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_FORBIDDEN_CODES = frozenset({"403", "AccessDenied", "Forbidden"})
ProbeState = Literal["present", "missing", "forbidden", "error"]


@dataclass(frozen=True)
class Probe:
    """What one cheap look at the source found: a version (S3 ETag, or mtime and size of a file) or why not."""

    state: ProbeState
    version: str | None = None
    detail: str = ""

    def require(self) -> str:
        """Return the version, or raise ModelUnavailable saying why there is none."""
        if self.state == "present" and self.version is not None:
            return self.version
        state = "error" if self.state == "present" else self.state
        raise ModelUnavailable(self.detail or f"model {self.state}", state=state)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "?"))


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

    def check(self) -> None:
        """Raise ConfigError when no source is configured at all (the one model problem the bot does not wait out)."""
        if self.local_path is None and not self.bucket:
            raise ConfigError("no model configured: set GENART_MODEL_PATH or GENART_MODELS_BUCKET (or pass --model)")

    def client(self) -> Any:
        """Return a new S3 client for the source's region."""
        return boto3.client("s3", region_name=self.region)

    def probe(self, *, s3_client: Any | None = None) -> Probe:
        """Look once (one HeadObject, or one stat of the file) without downloading anything."""
        if self.local_path is not None:
            return self._probe_file(self.local_path)
        return self._probe_s3(s3_client or self.client())

    def download_to(self, dest: Path, *, s3_client: Any | None = None) -> None:
        """Copy the current model to dest (overwritten); raises ModelUnavailable."""
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if self.local_path is not None:
                shutil.copyfile(self.local_path, dest)
                return
            (s3_client or self.client()).download_file(self.bucket, self.key, str(dest))
        except ClientError as exc:
            code = _code(exc)
            state: UnavailableState = (
                "missing" if code in _MISSING_CODES else "forbidden" if code in _FORBIDDEN_CODES else "error"
            )
            raise ModelUnavailable(f"cannot download {self.describe()}: {code}", state=state) from exc
        except BotoCoreError as exc:
            raise ModelUnavailable(f"cannot download {self.describe()}: {exc}", state="error") from exc
        except FileNotFoundError as exc:
            raise ModelUnavailable(f"model file not found: {self.local_path}", state="missing") from exc
        except OSError as exc:
            raise ModelUnavailable(f"cannot write the model to {dest}: {exc}", state="error") from exc

    def fetch(self, *, s3_client: Any | None = None) -> Path:
        """Return a local path holding the current model (blocking); S3 models go through the cache."""
        self.check()
        if self.local_path is not None:
            self.probe().require()
            return self.local_path
        store = ModelStore(source=self, s3_client=s3_client)
        return store.commit(store.stage(fallback_to_cache=True))

    def _probe_file(self, path: Path) -> Probe:
        try:
            info = path.stat()
        except FileNotFoundError:
            return Probe("missing", detail=f"model file not found: {path}")
        except PermissionError as exc:
            return Probe("forbidden", detail=f"cannot read the model file {path}: {exc}")
        except OSError as exc:
            return Probe("error", detail=f"cannot read the model file {path}: {exc}")
        if not stat.S_ISREG(info.st_mode):
            return Probe("error", detail=f"the model path {path} is not a file")
        return Probe("present", version=f"{info.st_mtime_ns}-{info.st_size}")

    def _probe_s3(self, client: Any) -> Probe:
        uri = self.describe()
        try:
            head = client.head_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            code = _code(exc)
            if code in _MISSING_CODES:
                return Probe("missing", detail=f"{uri} not found: the pipeline has not published a model yet")
            if code in _FORBIDDEN_CODES:
                return self._why_forbidden(client)
            return Probe("error", detail=f"cannot read {uri}: {code} (check the bucket name and region)")
        except BotoCoreError as exc:
            return Probe("error", detail=f"cannot read {uri}: {exc}")
        return Probe("present", version=str(head["ETag"]))

    def _why_forbidden(self, client: Any) -> Probe:
        """Tell a missing key from a permission problem after a 403 (what S3 says for a missing key without List)."""
        uri = self.describe()
        try:
            listing = client.list_objects_v2(Bucket=self.bucket, Prefix=self.key, MaxKeys=1)
        except ClientError as exc:
            return Probe(
                "forbidden",
                detail=f"{uri}: HeadObject 403 and ListObjectsV2 {_code(exc)}: the instance role needs s3:GetObject on "
                "the key and s3:ListBucket on its prefix (the Bot stack grants both; was the role changed?)",
            )
        except BotoCoreError as exc:
            return Probe("error", detail=f"cannot read {uri}: {exc}")
        if any(item.get("Key") == self.key for item in listing.get("Contents", [])):
            return Probe("forbidden", detail=f"{uri} exists but the instance role may not read it (s3:GetObject)")
        return Probe("missing", detail=f"{uri} not found: the pipeline has not published a model yet")


@dataclass(frozen=True)
class Staged:
    """A model file ready to be loaded: a fresh download (committed only once it loads) or the serving copy itself."""

    path: Path
    version: str
    fresh: bool


class ModelStore:
    """The copy of the model the bot serves, its version, and the staged candidate that may replace it.

    S3 sources are served from cache_path (its ETag beside it, so a restart skips an unchanged download); a local
    file is copied into a private folder first, so that a bad overwrite of the file never leaves the bot without
    the model it was serving. A candidate replaces the serving copy (rename) only after it has loaded.
    """

    def __init__(self, *, source: ModelSource, s3_client: Any | None = None) -> None:
        source.check()
        self.source = source
        self._client = s3_client
        self._client_lock = threading.Lock()
        self._private: tempfile.TemporaryDirectory[str] | None = None
        if source.local_path is not None:
            self._private = tempfile.TemporaryDirectory(prefix="genart-model-")
            self.serving_path = Path(self._private.name) / "model.onnx"
        else:
            self.serving_path = source.cache_path
        self._version_path = self.serving_path.with_name(self.serving_path.name + ".etag")

    @property
    def client(self) -> Any:
        """Return the S3 client, created once (clients are thread-safe; creating one costs more than a HEAD)."""
        with self._client_lock:
            if self._client is None:
                self._client = self.source.client()
            return self._client

    def probe(self) -> Probe:
        """Look at the source once (blocking)."""
        return self.source.probe(s3_client=None if self.source.local_path is not None else self.client)

    def serving_version(self) -> str | None:
        """Return the version of the serving copy, or None when there is none."""
        with contextlib.suppress(OSError):
            if self.serving_path.is_file():
                return self._version_path.read_text().strip() or None
        return None

    def forget_serving_version(self) -> None:
        """Forget the serving copy's version, so the next stage downloads the object again."""
        with contextlib.suppress(FileNotFoundError):
            self._version_path.unlink()

    def stage(self, *, fallback_to_cache: bool = False) -> Staged:
        """Fetch the current model next to the serving copy (blocking); raises ModelUnavailable.

        An unchanged S3 object is not downloaded again. With fallback_to_cache, an S3 source that cannot be read
        (outage, deleted object) gives the serving copy left by an earlier run, with a warning.
        """
        try:
            version = self.probe().require()
            if self.source.local_path is None and self.serving_version() == version:
                LOG.info("model cache is current", extra={"fields": {"source": self.source.describe()}})
                return Staged(path=self.serving_path, version=version, fresh=False)
            partial = self.serving_path.with_name(f".{self.serving_path.name}.{os.getpid()}.part")
            LOG.info("downloading model", extra={"fields": {"source": self.source.describe(), "version": version}})
            self.source.download_to(partial, s3_client=None if self.source.local_path is not None else self.client)
            return Staged(path=partial, version=version, fresh=True)
        except ModelUnavailable as exc:
            cached = self.serving_version()
            if not fallback_to_cache or self.source.local_path is not None or cached is None:
                raise
            LOG.warning(
                "model download failed; using the cached copy",
                extra={"fields": {"cache": str(self.serving_path), "error": str(exc)}},
            )
            return Staged(path=self.serving_path, version=cached, fresh=False)

    def commit(self, staged: Staged) -> Path:
        """Make a loaded candidate the serving copy (atomic rename) and return the serving path."""
        if staged.fresh:
            try:
                os.replace(staged.path, self.serving_path)
                self._version_path.write_text(staged.version)
            except OSError as exc:
                raise ConfigError(f"cannot write model cache {self.serving_path}: {exc}") from exc
        return self.serving_path

    def discard(self, staged: Staged) -> None:
        """Delete a candidate that was not committed (no-op for the serving copy)."""
        if staged.fresh:
            with contextlib.suppress(FileNotFoundError):
                staged.path.unlink()

    def close(self) -> None:
        """Remove the private copy of a local model."""
        if self._private is not None:
            self._private.cleanup()
