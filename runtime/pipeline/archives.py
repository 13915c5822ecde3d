"""Images inside zip and tar archives, read member by member into memory: nothing is unpacked onto the disk.

Guards: a member whose name is absolute or climbs out with `..` rejects its archive (path traversal); a member over
`max_member_bytes`, a zip member that inflates more than `max_ratio` times, or more than `max_total_bytes` or
`max_members` in one archive reject it too (zip bombs). A corrupt or truncated archive fails naming the file.
"""

from __future__ import annotations

import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..common.errors import InputError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
# Compression ratios at which a zip member is a bomb rather than an image (JPEG/PNG/WebP hardly compress).
_RATIO_CHECK_FROM_BYTES = 1 << 20
_READ_ERRORS = (OSError, EOFError, zlib.error, zipfile.BadZipFile, tarfile.TarError, RuntimeError, ValueError)


class ArchiveError(InputError):
    """An archive is corrupt, unsafe (path traversal) or too large when inflated (zip bomb); names the file."""


@dataclass(frozen=True)
class ArchiveLimits:
    """How much one archive may hold once inflated."""

    max_member_bytes: int = 256 << 20
    max_total_bytes: int = 400 << 30
    max_members: int = 5_000_000
    max_ratio: int = 100


DEFAULT_LIMITS = ArchiveLimits()


def is_archive(path: Path) -> bool:
    """Whether the file name says zip or (compressed) tar."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _check_name(archive: Path, name: str) -> None:
    parts = PurePosixPath(name.replace("\\", "/"))
    if parts.is_absolute() or ".." in parts.parts or (parts.parts and parts.parts[0].endswith(":")):
        raise ArchiveError(f"archive {archive}: member {name!r} points outside the archive (path traversal); refused")


def _check_size(archive: Path, name: str, size: int, total: int, limits: ArchiveLimits) -> None:
    if size > limits.max_member_bytes:
        raise ArchiveError(
            f"archive {archive}: member {name!r} inflates to {size} bytes, over the {limits.max_member_bytes}-byte "
            "limit for one image (zip bomb?); refused"
        )
    if total > limits.max_total_bytes:
        raise ArchiveError(
            f"archive {archive}: members inflate to more than {limits.max_total_bytes} bytes (zip bomb?); refused"
        )


def list_members(archive: Path, wanted: Callable[[str], bool], limits: ArchiveLimits = DEFAULT_LIMITS) -> list[str]:
    """Names of the wanted regular-file members, in the order read_members yields them (checks every member)."""
    try:
        if archive.name.lower().endswith(".zip"):
            return _list_zip(archive, wanted, limits)
        return _list_tar(archive, wanted, limits)
    except ArchiveError:
        raise
    except _READ_ERRORS as error:
        raise ArchiveError(f"archive {archive} is corrupt or truncated: {error}") from error


def _list_zip(archive: Path, wanted: Callable[[str], bool], limits: ArchiveLimits) -> list[str]:
    if not zipfile.is_zipfile(archive):
        raise ArchiveError(f"archive {archive} is not a readable zip file (corrupt or truncated)")
    names: list[str] = []
    total = 0
    with zipfile.ZipFile(archive) as opened:
        infos = [info for info in opened.infolist() if not info.is_dir()]
        if len(infos) > limits.max_members:
            raise ArchiveError(f"archive {archive}: {len(infos)} members, over the limit of {limits.max_members}")
        for info in infos:
            _check_name(archive, info.filename)
            total += info.file_size
            _check_size(archive, info.filename, info.file_size, total, limits)
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size >= _RATIO_CHECK_FROM_BYTES and ratio > limits.max_ratio:
                raise ArchiveError(
                    f"archive {archive}: member {info.filename!r} inflates {ratio:.0f} times (zip bomb?); refused"
                )
            if wanted(info.filename):
                names.append(info.filename)
    return sorted(names)


def _list_tar(archive: Path, wanted: Callable[[str], bool], limits: ArchiveLimits) -> list[str]:
    names: list[str] = []
    total = count = 0
    with tarfile.open(archive, mode="r:*") as opened:
        for member in opened:
            _check_name(archive, member.name)
            count += 1
            if count > limits.max_members:
                raise ArchiveError(f"archive {archive}: more than {limits.max_members} members")
            if not member.isfile():
                continue  # folders, links and devices are never read
            total += member.size
            _check_size(archive, member.name, member.size, total, limits)
            if wanted(member.name):
                names.append(member.name)
    return names


def read_members(
    archive: Path, names: Sequence[str], limits: ArchiveLimits = DEFAULT_LIMITS
) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of the listed members in list_members' order; corrupt data raises ArchiveError naming both."""
    current = ""
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as opened:
                for current in names:
                    with opened.open(current) as handle:
                        data = handle.read(limits.max_member_bytes + 1)  # the header's size may lie
                    _check_size(archive, current, len(data), 0, limits)
                    yield current, data
            return
        wanted = set(names)
        with tarfile.open(archive, mode="r:*") as opened:
            for member in opened:
                if member.isfile() and member.name in wanted:
                    current = member.name
                    member_file = opened.extractfile(member)
                    if member_file is None:
                        raise ArchiveError(f"archive {archive}: member {current!r} cannot be read")
                    yield current, member_file.read(limits.max_member_bytes + 1)
    except ArchiveError:
        raise
    except _READ_ERRORS as error:
        where = f" at member {current!r}" if current else ""
        raise ArchiveError(f"archive {archive} is corrupt or truncated{where}: {error}") from error
