"""Fill an S3 prefix from a list of files: streamed, verified by sha256, resumable across calls (stdlib + S3 client).

One `Seeder.run()` works until its deadline and reports whether every file is in place and verified; the next run
carries on where it stopped. Per file (see contract.py for "verified" and "written by the seeder"):

- verified already: skipped (a list request, a HEAD and a tag read; nothing is downloaded);
- absent, or written by the seeder for other content: copied. Files up to one part are read into memory (at most
  the part size), hashed, then put with the verified tag in the same request. Larger files go through a multipart
  upload, one part at a time from an HTTP range request, each part sent with its own SHA-256 checksum, the whole
  file hashed as it streams; the upload is completed only when that hash matches, and aborted otherwise. A run
  that stops inside a file leaves its uploaded parts, and the next run resumes after them: it cannot carry the
  running hash over, so it completes the upload and then hashes the object back from S3 before tagging it;
- present but not verified (a run stopped between completing and tagging, or someone uploaded it): hashed back
  from S3. A match is tagged verified; a mismatch is deleted when the seeder wrote it, and left alone (with an
  error) when it did not.

When the marker file exists and the seeder did not write it, the prefix belongs to someone else (an operator's
upload, a pipeline's output) and nothing is touched. Every failure names the file and says what went wrong.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from ...common.errors import GenArtError
from . import contract
from .contract import SeedFile

LOG = logging.getLogger(__name__)

CHUNK = 1024 * 1024
USER_AGENT = "genart-model-seed/1"


class SeedError(GenArtError):
    """Seeding failed; the message names the file and the cause, and says what was kept."""

    code = "seed_error"


class _OutOfTime(Exception):
    """The run's deadline passed; whatever is in hand (a partial part, a partial hash) is dropped."""


class _Transient(Exception):
    """A failure worth another attempt: timeout, dropped connection, HTTP 408/429/5xx, a stream that ended early."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class HttpStream(Protocol):
    """What the seeder needs of an HTTP response (http.client.HTTPResponse has it)."""

    status: int

    def read(self, amt: int, /) -> bytes: ...

    def getheader(self, name: str, default: str | None = None, /) -> str | None: ...

    def close(self) -> None: ...


HttpGet = Callable[[str, int, float], HttpStream]


def http_get(url: str, start: int, timeout: float) -> HttpStream:
    """GET url from byte `start` (a Range request unless 0); redirects are followed, HTTP errors raised."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http(s) only, checked by SeedFile
    response: HttpStream = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310
    return response


class State(Enum):
    """Where one file stands in the bucket."""

    ABSENT = "absent"
    VERIFIED = "verified"
    OURS_UNVERIFIED = "written by the seeder, not verified yet"
    STALE = "written by the seeder for other content"
    FOREIGN = "not written by the seeder"


@dataclass
class Report:
    """What one run did; complete means every file is in place and verified (or the prefix was left alone)."""

    complete: bool = False
    left_alone: bool = False
    copied: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    current: str | None = None


@dataclass(frozen=True)
class SeedSpec:
    """The resource's properties: the bucket, the prefix, the files in order and the optional marker key."""

    bucket: str
    prefix: str
    files: tuple[SeedFile, ...]
    marker: str | None = None

    def __post_init__(self) -> None:
        if not self.bucket:
            raise contract.ManifestError(f"{contract.PROP_BUCKET}: missing")
        contract.check_prefix(self.prefix)
        contract.check_files(self.files, self.marker)

    @property
    def location(self) -> str:
        """s3://bucket/prefix"""
        return f"s3://{self.bucket}/{self.prefix}"

    @classmethod
    def from_properties(cls, properties: Any) -> SeedSpec:
        """Parse the custom resource's ResourceProperties; errors name the property."""
        if not isinstance(properties, dict):
            raise contract.ManifestError("ResourceProperties: expected an object")
        files = properties.get(contract.PROP_FILES)
        if not isinstance(files, list):
            raise contract.ManifestError(f"{contract.PROP_FILES}: expected a list")
        return cls(
            bucket=str(properties.get(contract.PROP_BUCKET) or ""),
            prefix=str(properties.get(contract.PROP_PREFIX) or ""),
            files=tuple(SeedFile.from_property(value, index) for index, value in enumerate(files)),
            marker=str(properties[contract.PROP_MARKER]) if properties.get(contract.PROP_MARKER) else None,
        )


def _b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def object_exists(s3: Any, bucket: str, key: str) -> bool:
    """Whether key exists, by listing it as a prefix (a role without s3:ListBucket would get 403 from HEAD)."""
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    return any(item.get("Key") == key for item in listed.get("Contents", []))


class Seeder:
    """Copies spec.files into spec.bucket/spec.prefix until `deadline` (a `clock()` value); see the module doc."""

    def __init__(
        self,
        s3: Any,
        spec: SeedSpec,
        *,
        deadline: float,
        clock: Callable[[], float] = time.monotonic,
        get: HttpGet = http_get,
        part_size: int = contract.DEFAULT_PART_SIZE,
        read_timeout: float = contract.DEFAULT_READ_TIMEOUT_S,
        attempts: int = contract.DEFAULT_ATTEMPTS,
        backoff_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        chunk: int = CHUNK,
    ) -> None:
        if part_size < 1 or attempts < 1 or chunk < 1:
            raise contract.ManifestError("part_size, attempts and chunk must be positive")
        self.s3 = s3
        self.spec = spec
        self.deadline = deadline
        self.clock = clock
        self.get = get
        self.part_size = part_size
        self.read_timeout = read_timeout
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.chunk = chunk
        self.report = Report()
        self._progress = False
        self._doing = ""

    # ----------------------------------------------------------------------------------------------- the run

    def run(self) -> Report:
        """Work until done or the deadline; a run that made no progress at all raises SeedError instead."""
        spec = self.spec
        if spec.marker is not None and self._marker_is_foreign(spec.marker):
            LOG.info(
                "the prefix holds a model the seeder did not write; leaving it as it is",
                extra={"fields": {"location": spec.location, "marker": spec.marker}},
            )
            self.report.complete = self.report.left_alone = True
            return self.report
        for seed_file in spec.files:
            self.report.current = seed_file.key
            try:
                state = self._state(seed_file)
                if state is State.VERIFIED:
                    self.report.skipped.append(seed_file.key)
                    continue
                self._seed(seed_file, state)
            except _OutOfTime:
                return self._stopped(seed_file)
        self.report.current = None
        self.report.complete = True
        return self.report

    def _stopped(self, seed_file: SeedFile) -> Report:
        if not self._progress:
            raise SeedError(
                f"{self._name(seed_file)}: no progress within one call while {self._doing}: "
                f"{self._too_slow_hint(seed_file)}"
            )
        LOG.info(
            "out of time for this call; the next one resumes",
            extra={"fields": {"file": seed_file.key, "verified": len(self.report.skipped) + len(self.report.verified)}},
        )
        return self.report

    def _too_slow_hint(self, seed_file: SeedFile) -> str:
        if self._doing.startswith("hashing"):
            return "the object is too large to hash back in one call"
        return (
            f"less than {min(self.part_size, seed_file.size)} bytes arrived, so the source is too slow "
            f"(a deploy waits at most {contract.TOTAL_TIMEOUT_S // 60} minutes for all files)"
        )

    def _tick(self) -> None:
        if self.clock() >= self.deadline:
            raise _OutOfTime

    def _key(self, seed_file: SeedFile) -> str:
        return self.spec.prefix + seed_file.key

    def _name(self, seed_file: SeedFile) -> str:
        return f"{seed_file.key} (s3://{self.spec.bucket}/{self._key(seed_file)})"

    # ----------------------------------------------------------------------------------------------- state

    def _marker_is_foreign(self, marker: str) -> bool:
        key = self.spec.prefix + marker
        if not object_exists(self.s3, self.spec.bucket, key):
            return False
        head = self.s3.head_object(Bucket=self.spec.bucket, Key=key)
        return contract.META_SHA256 not in (head.get("Metadata") or {})

    def _state(self, seed_file: SeedFile) -> State:
        bucket, key = self.spec.bucket, self._key(seed_file)
        if not object_exists(self.s3, bucket, key):
            return State.ABSENT
        head = self.s3.head_object(Bucket=bucket, Key=key)
        claim = (head.get("Metadata") or {}).get(contract.META_SHA256)
        tags = self._tags(key)
        if int(head["ContentLength"]) == seed_file.size and tags.get(contract.TAG_VERIFIED) == seed_file.sha256:
            return State.VERIFIED
        if claim == seed_file.sha256:
            return State.OURS_UNVERIFIED
        if claim is not None:
            return State.STALE
        return State.FOREIGN

    def _tags(self, key: str) -> dict[str, str]:
        tag_set = self.s3.get_object_tagging(Bucket=self.spec.bucket, Key=key).get("TagSet", [])
        return {str(tag["Key"]): str(tag["Value"]) for tag in tag_set}

    # ----------------------------------------------------------------------------------------------- per file

    def _seed(self, seed_file: SeedFile, state: State) -> None:
        if state in (State.OURS_UNVERIFIED, State.FOREIGN):
            self._verify_stored(seed_file, ours=state is State.OURS_UNVERIFIED)
        elif seed_file.size <= self.part_size:
            self._copy_small(seed_file)
        else:
            self._copy_multipart(seed_file)

    def _copy_small(self, seed_file: SeedFile) -> None:
        self._doing = f"downloading {seed_file.url}"
        source = _Source(self, seed_file, 0)
        try:
            data = source.read_exactly(seed_file.size)
            source.expect_end()
        finally:
            source.close()
        digest = hashlib.sha256(data).hexdigest()
        if digest != seed_file.sha256:
            raise SeedError(self._mismatch(seed_file, digest, kept="nothing was written"))
        self.s3.put_object(
            Bucket=self.spec.bucket,
            Key=self._key(seed_file),
            Body=data,
            Metadata={contract.META_SHA256: seed_file.sha256},
            Tagging=urllib.parse.urlencode({contract.TAG_VERIFIED: seed_file.sha256}),
            ChecksumSHA256=_b64_sha256(data),
        )
        self._done(seed_file, "copied")

    def _copy_multipart(self, seed_file: SeedFile) -> None:
        bucket, key = self.spec.bucket, self._key(seed_file)
        upload_id, parts = self._resumable_upload(seed_file)
        if upload_id is None:
            upload_id = self.s3.create_multipart_upload(
                Bucket=bucket,
                Key=key,
                Metadata={contract.META_SHA256: seed_file.sha256},
                ChecksumAlgorithm="SHA256",
            )["UploadId"]
            parts = []
        offset = len(parts) * self.part_size
        # The hash runs over the whole file only when this call streams it from the first byte.
        whole = hashlib.sha256() if offset == 0 else None
        self._doing = f"downloading {seed_file.url} from byte {offset}"
        source = _Source(self, seed_file, offset)
        try:
            while offset < seed_file.size:
                data = source.read_exactly(min(self.part_size, seed_file.size - offset))
                checksum = _b64_sha256(data)
                number = len(parts) + 1
                response = self.s3.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data, ChecksumSHA256=checksum
                )
                parts.append({"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": checksum})
                if whole is not None:
                    whole.update(data)
                offset += len(data)
                self._progress = True
            source.expect_end()
        finally:
            source.close()
        if whole is not None and whole.hexdigest() != seed_file.sha256:
            self.s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            raise SeedError(self._mismatch(seed_file, whole.hexdigest(), kept="the upload was aborted, nothing kept"))
        self.s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": [_complete_entry(p) for p in parts]}
        )
        if whole is not None:
            self._tag_verified(seed_file)
            self._done(seed_file, "copied")
            return
        # Resumed: parts from an earlier call are in, but not their running hash. Hash the object back.
        head = self.s3.head_object(Bucket=bucket, Key=key)
        if (head.get("Metadata") or {}).get(contract.META_SHA256) != seed_file.sha256:
            # The resumed upload was started for other content (the file list changed meanwhile): start over.
            self.s3.delete_object(Bucket=bucket, Key=key)
            self._copy_multipart(seed_file)
            return
        self._verify_stored(seed_file, ours=True)

    def _resumable_upload(self, seed_file: SeedFile) -> tuple[str | None, list[dict[str, Any]]]:
        """The newest unfinished upload of this key whose parts are a clean run of full parts; others are aborted."""
        bucket, key = self.spec.bucket, self._key(seed_file)
        uploads = [
            upload
            for page in self.s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=key)
            for upload in page.get("Uploads", [])
            if upload.get("Key") == key
        ]
        uploads.sort(key=lambda upload: upload.get("Initiated") or 0)
        chosen: tuple[str | None, list[dict[str, Any]]] = (None, [])
        for upload in reversed(uploads):
            upload_id = str(upload["UploadId"])
            if chosen[0] is None:
                parts = self._parts(key, upload_id)
                if self._resumable(parts, seed_file):
                    chosen = (upload_id, parts)
                    LOG.info(
                        "resuming an upload",
                        extra={"fields": {"file": seed_file.key, "parts": len(parts)}},
                    )
                    continue
            self.s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        return chosen

    def _parts(self, key: str, upload_id: str) -> list[dict[str, Any]]:
        pages = self.s3.get_paginator("list_parts").paginate(Bucket=self.spec.bucket, Key=key, UploadId=upload_id)
        parts = [part for page in pages for part in page.get("Parts", [])]
        return sorted(parts, key=lambda part: int(part["PartNumber"]))

    def _resumable(self, parts: list[dict[str, Any]], seed_file: SeedFile) -> bool:
        numbers = [int(part["PartNumber"]) for part in parts]
        full = all(int(part["Size"]) == self.part_size for part in parts)
        return numbers == list(range(1, len(parts) + 1)) and full and len(parts) * self.part_size < seed_file.size

    def _verify_stored(self, seed_file: SeedFile, *, ours: bool) -> None:
        """Hash the stored object; tag it verified, or remove it (when the seeder wrote it) and fail."""
        bucket, key = self.spec.bucket, self._key(seed_file)
        self._doing = f"hashing s3://{bucket}/{key} back from S3"
        response = self.s3.get_object(Bucket=bucket, Key=key)
        body = response["Body"]
        digest = hashlib.sha256()
        size = 0
        try:
            # S3 reads are fast and local: whole parts at a time (memory stays bounded by the part size).
            for data in body.iter_chunks(self.part_size):
                self._tick()
                digest.update(data)
                size += len(data)
        finally:
            body.close()
        if size == seed_file.size and digest.hexdigest() == seed_file.sha256:
            self._tag_verified(seed_file)
            self._done(seed_file, "verified")
            return
        got = f"{digest.hexdigest()} ({size} bytes)"
        if ours:
            self.s3.delete_object(Bucket=bucket, Key=key)
            raise SeedError(self._mismatch(seed_file, got, kept="the object was removed"))
        raise SeedError(
            f"{self._name(seed_file)}: exists with other content (sha256 {got}, expected {seed_file.sha256}, "
            f"{seed_file.size} bytes) and the seeder did not write it, so it is left as it is. Remove it to have "
            "it seeded, or seed another prefix (another model name)."
        )

    def _tag_verified(self, seed_file: SeedFile) -> None:
        key = self._key(seed_file)
        tags = self._tags(key)
        tags[contract.TAG_VERIFIED] = seed_file.sha256
        self.s3.put_object_tagging(
            Bucket=self.spec.bucket,
            Key=key,
            Tagging={"TagSet": [{"Key": name, "Value": value} for name, value in tags.items()]},
        )

    def _done(self, seed_file: SeedFile, how: str) -> None:
        self._progress = True
        (self.report.copied if how == "copied" else self.report.verified).append(seed_file.key)
        LOG.info(how, extra={"fields": {"file": seed_file.key, "bytes": seed_file.size}})

    def _mismatch(self, seed_file: SeedFile, got: str, *, kept: str) -> str:
        return (
            f"{self._name(seed_file)}: sha256 mismatch for {seed_file.url}: expected {seed_file.sha256} "
            f"({seed_file.size} bytes), got {got}; {kept}"
        )


def _complete_entry(part: dict[str, Any]) -> dict[str, Any]:
    entry = {"PartNumber": int(part["PartNumber"]), "ETag": part["ETag"]}
    if part.get("ChecksumSHA256"):
        entry["ChecksumSHA256"] = part["ChecksumSHA256"]
    return entry


class _Source:
    """One file's bytes from an offset over HTTP, reopened at the current offset after a transient failure."""

    def __init__(self, seeder: Seeder, seed_file: SeedFile, offset: int) -> None:
        self.seeder = seeder
        self.file = seed_file
        self.offset = offset
        self.stream: HttpStream | None = None

    def read_exactly(self, want: int) -> bytes:
        """The next `want` bytes; raises _OutOfTime at the deadline and SeedError once attempts run out."""
        failures = 0
        while True:
            try:
                if self.stream is None:
                    self.seeder._tick()
                    self.stream = self._open()
                data = b"".join(self._chunks(want))
                self.offset += len(data)
                return data
            except _Transient as error:
                self.close()
                failures += 1
                if failures >= self.seeder.attempts:
                    raise SeedError(self._gave_up(error, failures)) from None
                LOG.warning(
                    "retrying", extra={"fields": {"file": self.file.key, "error": str(error), "attempt": failures}}
                )
                self.seeder.sleep(self.seeder.backoff_s * 2 ** (failures - 1))

    def expect_end(self) -> None:
        """The source has no bytes beyond the expected size."""
        if self.stream is None:
            return
        try:
            extra = self.stream.read(1)
        except (OSError, http.client.HTTPException):
            return  # the connection closing after the last byte is not the file's fault
        if extra:
            raise SeedError(
                f"{self.seeder._name(self.file)}: {self.file.url} sent more than the expected {self.file.size} bytes"
            )

    def close(self) -> None:
        """Close the connection (the next read reopens it at the current offset)."""
        if self.stream is not None:
            try:
                self.stream.close()
            finally:
                self.stream = None

    def _chunks(self, want: int) -> Iterator[bytes]:
        assert self.stream is not None
        got = 0
        while got < want:
            self.seeder._tick()
            try:
                data = self.stream.read(min(self.seeder.chunk, want - got))
            except TimeoutError:
                raise _Transient(f"no data for {self.seeder.read_timeout:g} s", timed_out=True) from None
            except (OSError, http.client.HTTPException) as error:
                raise _Transient(f"connection failed: {error!r}") from None
            if not data:
                raise _Transient(f"the stream ended after {self.offset + got} of {self.file.size} bytes")
            got += len(data)
            yield data

    def _open(self) -> HttpStream:
        url, offset = self.file.url, self.offset
        try:
            stream = self.seeder.get(url, offset, self.seeder.read_timeout)
        except urllib.error.HTTPError as error:
            status = f"HTTP {error.code} {error.reason}"
            error.close()
            if error.code in (408, 429) or error.code >= 500:
                raise _Transient(status) from None
            raise SeedError(f"{self.seeder._name(self.file)}: {status} from {url}") from None
        except TimeoutError:
            raise _Transient(f"no answer for {self.seeder.read_timeout:g} s", timed_out=True) from None
        except urllib.error.URLError as error:
            timed_out = isinstance(error.reason, TimeoutError)
            raise _Transient(f"cannot connect: {error.reason}", timed_out=timed_out) from None
        except (OSError, http.client.HTTPException) as error:
            raise _Transient(f"connection failed: {error!r}") from None
        try:
            self._check_response(stream, offset)
        except BaseException:
            stream.close()
            raise
        return stream

    def _check_response(self, stream: HttpStream, offset: int) -> None:
        name = self.seeder._name(self.file)
        ignored_range = bool(offset) and stream.status == 200
        if offset and stream.status == 206:
            content_range = stream.getheader("Content-Range") or ""
            if not content_range.startswith(f"bytes {offset}-"):
                raise SeedError(f"{name}: asked {self.file.url} for bytes {offset}-, got {content_range!r}")
        length = stream.getheader("Content-Length")
        if length is not None and length.isdigit():
            total = int(length) + (0 if ignored_range else offset)
            if total != self.file.size:
                raise SeedError(f"{name}: {self.file.url} has {total} bytes, expected {self.file.size}")
        if ignored_range:
            # The server ignored the Range header and sends the whole file: read past what is already uploaded.
            self._skip(stream, offset)

    def _skip(self, stream: HttpStream, count: int) -> None:
        skipped = 0
        while skipped < count:
            self.seeder._tick()
            data = stream.read(min(self.seeder.chunk, count - skipped))
            if not data:
                raise _Transient(f"the stream ended after {skipped} of {self.file.size} bytes")
            skipped += len(data)

    def _gave_up(self, error: _Transient, attempts: int) -> str:
        name, url = self.seeder._name(self.file), self.file.url
        if error.timed_out:
            return (
                f"{name}: timed out reading {url} ({error}; {attempts} attempts): the source is too slow or "
                "unreachable from the function (it needs internet access to the source)"
            )
        return f"{name}: {error} reading {url} ({attempts} attempts); the function needs internet access to the source"
