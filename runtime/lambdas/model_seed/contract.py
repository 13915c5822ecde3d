"""Names the ModelSeed/ModelPrefixCheck constructs and their functions share: properties, markers, limits (stdlib only).

A seed copies a list of files (URL, key relative to a prefix, sha256, size) into an S3 prefix. A file counts as
*verified* when its object has the size in the list and the tag TAG_VERIFIED with the list's sha256, a tag the
seeder sets only after it hashed every byte of that object; the object metadata META_SHA256 marks objects the
seeder wrote (and may therefore replace or delete), so anything else under the prefix is never overwritten.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

SEED_RESOURCE_TYPE = "Custom::ModelSeed"
CHECK_RESOURCE_TYPE = "Custom::ModelPrefixCheck"

# Resource properties (CloudFormation hands every value to the function as a string).
PROP_BUCKET = "Bucket"
PROP_PREFIX = "Prefix"
PROP_FILES = "Files"
PROP_MARKER = "Marker"
PROP_REQUIRED = "Required"
PROP_HOW_TO_FIX = "HowToFix"
FILE_URL = "Url"
FILE_KEY = "Key"
FILE_SHA256 = "Sha256"
FILE_SIZE = "Size"
# Added to the event by on_event (wall-clock epoch seconds): is_complete gives up with a clear message after it.
EVENT_DEADLINE = "SeedDeadline"

# User metadata on every object the seeder writes (x-amz-meta-genart-seed-sha256): the sha256 it must have.
META_SHA256 = "genart-seed-sha256"
# Object tag set once the whole object was hashed and matched; its value is that sha256.
TAG_VERIFIED = "genart-seed-verified"

# Function settings (environment variables) and their defaults.
ENV_PART_SIZE = "GENART_SEED_PART_SIZE"
ENV_READ_TIMEOUT = "GENART_SEED_READ_TIMEOUT_S"
ENV_ATTEMPTS = "GENART_SEED_ATTEMPTS"
ENV_LOG_LEVEL = "GENART_LOG_LEVEL"
DEFAULT_PART_SIZE = 64 * 1024 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's smallest part except the last one
DEFAULT_READ_TIMEOUT_S = 60
DEFAULT_ATTEMPTS = 3

# Timing of the asynchronous custom resource (CDK Provider framework: on_event once, then is_complete every
# QUERY_INTERVAL_S until it reports complete). CloudFormation waits at most one hour for a custom resource, so
# is_complete gives up at DEADLINE_S with a message naming the file it was on; a new deploy resumes.
QUERY_INTERVAL_S = 30
TOTAL_TIMEOUT_S = 3600
DEADLINE_S = 55 * 60
FUNCTION_TIMEOUT_S = 900
# Each is_complete call stops copying this long before its function timeout: one stalled read (the read timeout)
# plus uploading the part in hand.
SAFETY_MARGIN_S = 150
FUNCTION_MEMORY_MB = 2048

HANDLER_ON_EVENT = "runtime.lambdas.model_seed.handler.on_event"
HANDLER_IS_COMPLETE = "runtime.lambdas.model_seed.handler.is_complete"
HANDLER_CHECK = "runtime.lambdas.model_seed.handler.check"
# The functions' code asset: the repository's runtime/ folder cut down to the `runtime` package, this function's
# folder and the stdlib-only shared modules (glob excludes, later patterns win).
CODE_ASSET_DIR = "runtime"
CODE_ASSET_EXCLUDE = (
    "*",
    "!__init__.py",
    "!lambdas",
    "!lambdas/__init__.py",
    "!lambdas/model_seed",
    "!lambdas/model_seed/**",
    "!common",
    "!common/**",
    "common/settings.py",
    "**/__pycache__",
    "**/*.pyc",
)

_SHA256 = re.compile(r"[0-9a-f]{64}")
_KEY = re.compile(r"[A-Za-z0-9!_.*'()/-]+")


class ManifestError(ValueError):
    """A file entry or a resource property is malformed; the message names it."""


def check_key(key: str, what: str) -> str:
    """A key relative to the seed's prefix: S3-safe characters, no leading '/', no empty or '..' segment."""
    if not key or not _KEY.fullmatch(key) or key.startswith("/") or key.endswith("/"):
        raise ManifestError(f"{what}: {key!r} is not a relative S3 key")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ManifestError(f"{what}: {key!r} has an empty, '.' or '..' segment")
    return key


def check_prefix(prefix: str) -> str:
    """A key prefix ending in '/', not starting with one."""
    if not prefix.endswith("/") or prefix.startswith("/") or not _KEY.fullmatch(prefix):
        raise ManifestError(f"prefix: {prefix!r} must be an S3 key prefix ending in '/'")
    return prefix


@dataclass(frozen=True)
class SeedFile:
    """One file to copy: where it comes from, its key below the prefix, and the sha256 and size it must have."""

    url: str
    key: str
    sha256: str
    size: int

    def __post_init__(self) -> None:
        what = f"file {self.key!r}"
        check_key(self.key, what)
        if not self.url.startswith(("https://", "http://")):
            raise ManifestError(f"{what}: url must be http(s)://..., got {self.url!r}")
        if not _SHA256.fullmatch(self.sha256):
            raise ManifestError(f"{what}: sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise ManifestError(f"{what}: size must be a whole number of bytes, got {self.size!r}")

    def to_property(self) -> dict[str, str]:
        """The file as a resource property (strings, as CloudFormation passes them anyway)."""
        return {FILE_URL: self.url, FILE_KEY: self.key, FILE_SHA256: self.sha256, FILE_SIZE: str(self.size)}

    @classmethod
    def from_property(cls, value: Any, index: int) -> SeedFile:
        """Parse one entry of the Files property; errors name the entry."""
        what = f"{PROP_FILES}[{index}]"
        if not isinstance(value, dict):
            raise ManifestError(f"{what}: expected an object, got {type(value).__name__}")
        missing = [name for name in (FILE_URL, FILE_KEY, FILE_SHA256, FILE_SIZE) if not value.get(name)]
        if missing:
            raise ManifestError(f"{what}: missing {', '.join(missing)}")
        try:
            size = int(str(value[FILE_SIZE]))
        except ValueError:
            raise ManifestError(f"{what}.{FILE_SIZE}: not a whole number: {value[FILE_SIZE]!r}") from None
        return cls(url=str(value[FILE_URL]), key=str(value[FILE_KEY]), sha256=str(value[FILE_SHA256]), size=size)


def check_files(files: tuple[SeedFile, ...], marker: str | None) -> tuple[SeedFile, ...]:
    """At least one file, each key once, and the marker (when given) one of the keys."""
    if not files:
        raise ManifestError(f"{PROP_FILES}: needs at least one file")
    keys = [f.key for f in files]
    for key in keys:
        if keys.count(key) > 1:
            raise ManifestError(f"{PROP_FILES}: key {key!r} is listed more than once")
    if marker is not None and marker not in keys:
        raise ManifestError(f"{PROP_MARKER}: {marker!r} is not one of the files' keys")
    return files


def total_size(files: tuple[SeedFile, ...]) -> int:
    """Bytes of all files together."""
    return sum(f.size for f in files)
