"""Processing step: turn a folder of images and zip/tar archives (or one archive) into a uint8 .npy [N, 3, R, R]."""

from __future__ import annotations

import argparse
import io
import itertools
import json
import logging
import os
import sys
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap
from PIL import Image

from ...common.errors import InputError
from ..archives import ArchiveError, is_archive, list_members, read_members
from .cli import configure_step_logging

# Named explicitly: run as `python -m`, this module's __name__ is "__main__".
LOG = logging.getLogger("stylegan2.dataset_tool")

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})
IMAGES_FILE = "images.npy"
MANIFEST_FILE = "manifest.json"
MAX_LISTED_SKIPS = 50


class DatasetError(InputError):
    """Input that cannot produce a dataset (missing, empty, or without a single usable image)."""


@dataclass
class Report:
    """Counts and examples of what the tool did."""

    found: int = 0
    valid: int = 0
    written: int = 0
    skipped_unreadable: int = 0
    skipped_too_small: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)

    def skip(self, name: str, reason: str) -> None:
        """Count a skipped file and remember the first few for the manifest."""
        if reason == "unreadable":
            self.skipped_unreadable += 1
        else:
            self.skipped_too_small += 1
        if len(self.skipped) < MAX_LISTED_SKIPS:
            self.skipped.append({"file": name, "reason": reason})


def _is_image_name(name: str) -> bool:
    base = os.path.basename(name)
    return not base.startswith(".") and "__MACOSX" not in name and Path(base).suffix.lower() in IMAGE_SUFFIXES


@dataclass(frozen=True)
class SourceEntry:
    """One image: a file under the source folder, or a member of an archive (`name` is what reports show)."""

    name: str
    member: str
    archive: Path | None = None


def list_sources(source: Path) -> list[SourceEntry]:
    """Images of a folder (files, then the members of its zip/tar archives) or of one archive, in a stable order."""
    if not source.exists():
        raise DatasetError(f"source {source} does not exist")
    if source.is_file():
        if not (is_archive(source) or zipfile.is_zipfile(source)):
            raise DatasetError(f"source {source} is a file but not a zip or tar archive")
        return [SourceEntry(name=m, member=m, archive=source) for m in list_members(source, _is_image_name)]
    files = sorted(p for p in source.rglob("*") if p.is_file())
    entries = [
        SourceEntry(name=str(p.relative_to(source)), member=str(p.relative_to(source)))
        for p in files
        if _is_image_name(str(p))
    ]
    for archive in (p for p in files if is_archive(p)):
        label = archive.relative_to(source)
        members = list_members(archive, _is_image_name)
        LOG.info(f"archive {label}: {len(members)} image files")
        entries += [SourceEntry(name=f"{label}:{m}", member=m, archive=archive) for m in members]
    return entries


def iter_bytes(source: Path, entries: Sequence[SourceEntry]) -> Iterator[tuple[str, bytes | None]]:
    """Yield (name, raw bytes) per image; None when a plain file cannot be read (a corrupt archive raises)."""
    for archive, group in itertools.groupby(entries, key=lambda entry: entry.archive):
        batch = list(group)
        if archive is None:
            for entry in batch:
                try:
                    yield entry.name, (source / entry.member).read_bytes()
                except OSError:
                    yield entry.name, None
            continue
        for entry, (_, data) in zip(batch, read_members(archive, [e.member for e in batch]), strict=True):
            yield entry.name, data


def decode(data: bytes) -> Image.Image:
    """Fully decode image bytes to RGB (raises on truncated or corrupt data)."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.convert("RGB")


def center_crop_resize(img: Image.Image, resolution: int) -> np.ndarray:
    """Largest centered square, resized with Lanczos to resolution, as uint8 [3, R, R]."""
    width, height = img.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = img.crop((left, top, left + side, top + side))
    if side != resolution:
        square = square.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return np.asarray(square, dtype=np.uint8).transpose(2, 0, 1)


class Progress:
    """Prints a progress line at most every `every` seconds (and at the end)."""

    def __init__(self, *, total: int, every: float = 5.0) -> None:
        self.total = total
        self.every = every
        self.start = self.last = time.monotonic()

    def update(self, done: int, *, force: bool = False) -> None:
        """Report progress if enough time passed."""
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else 0.0
        pct = 100.0 * done / max(self.total, 1)
        LOG.info(f"{done}/{self.total} files ({pct:.0f}%), {rate:.0f} files/s, eta {eta:.0f}s")


def build_dataset(*, source: Path, dest: Path, resolution: int, mirror: bool, min_size: int) -> Report:
    """Convert source into dest/images.npy + dest/manifest.json and return the report."""
    entries = list_sources(source)
    if not entries:
        suffixes = "/".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES))
        raise DatasetError(f"no image files ({suffixes}) found in {source}, nor in zip/tar archives there")
    report = Report(found=len(entries))
    copies = 2 if mirror else 1
    dest.mkdir(parents=True, exist_ok=True)
    tmp_path = dest / (IMAGES_FILE + ".tmp")
    buffer = open_memmap(tmp_path, mode="w+", dtype=np.uint8, shape=(len(entries) * copies, 3, resolution, resolution))
    progress = Progress(total=len(entries))
    try:
        for i, (name, data) in enumerate(iter_bytes(source, entries)):
            _add(report, buffer, name, data, resolution=resolution, mirror=mirror, min_size=min_size)
            progress.update(i + 1)
    except ArchiveError:
        del buffer
        tmp_path.unlink()
        raise
    progress.update(len(entries), force=True)
    if report.valid == 0:
        del buffer
        tmp_path.unlink()
        raise DatasetError(
            f"none of the {report.found} image files in {source} is usable: "
            f"{report.skipped_unreadable} unreadable, {report.skipped_too_small} smaller than {min_size}px"
        )
    _finalize(buffer, tmp_path, dest / IMAGES_FILE, report.written)
    manifest = {
        "found": report.found,
        "valid": report.valid,
        "written": report.written,
        "skipped_unreadable": report.skipped_unreadable,
        "skipped_too_small": report.skipped_too_small,
        "resolution": resolution,
        "mirror": mirror,
        "min_size": min_size,
        "images_file": IMAGES_FILE,
        "shape": [report.written, 3, resolution, resolution],
        "source": str(source),
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "skipped": report.skipped,
    }
    (dest / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return report


def _add(
    report: Report, buffer: np.memmap, name: str, data: bytes | None, *, resolution: int, mirror: bool, min_size: int
) -> None:
    """Decode one image into the next row(s) of buffer, or count it as skipped."""
    try:
        img = decode(data) if data is not None else None
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        img = None
    if img is None:
        report.skip(name, "unreadable")
    elif min(img.size) < min_size:
        report.skip(name, f"too small ({img.size[0]}x{img.size[1]} < {min_size})")
    else:
        array = center_crop_resize(img, resolution)
        buffer[report.written] = array
        report.written += 1
        if mirror:
            buffer[report.written] = array[:, :, ::-1]
            report.written += 1
        report.valid += 1


def _finalize(buffer: np.memmap, tmp_path: Path, final_path: Path, count: int) -> None:
    """Move the first `count` rows of the temporary array into the final .npy, copying in chunks if it shrank."""
    if count == buffer.shape[0]:
        buffer.flush()
        del buffer
        os.replace(tmp_path, final_path)
        return
    final = open_memmap(final_path, mode="w+", dtype=np.uint8, shape=(count, *buffer.shape[1:]))
    for start in range(0, count, 1024):
        final[start : start + 1024] = buffer[start : min(start + 1024, count)]
    final.flush()
    del final, buffer
    tmp_path.unlink()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """CLI flags (defaults follow the SageMaker processing layout)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--source",
        type=Path,
        default=Path("/opt/ml/processing/input/data"),
        help="folder (images and zip/tar archives) or one archive",
    )
    parser.add_argument("--dest", type=Path, default=Path("/opt/ml/processing/output/dataset"))
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--mirror", action="store_true", help="also write a horizontally flipped copy of each image")
    parser.add_argument("--min-size", type=int, default=32, help="skip images whose shorter side is below this")
    args = parser.parse_args(argv)
    if args.resolution < 4 or args.resolution & (args.resolution - 1):
        parser.error(f"--resolution must be a power of two >= 4, got {args.resolution}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool; returns the process exit code."""
    args = parse_args(argv)
    configure_step_logging()
    try:
        report = build_dataset(
            source=args.source, dest=args.dest, resolution=args.resolution, mirror=args.mirror, min_size=args.min_size
        )
    except (DatasetError, ArchiveError) as exc:
        LOG.error(f"{exc}")
        return 1
    LOG.info(
        f"found {report.found} image files: {report.valid} used, {report.skipped_unreadable} unreadable, "
        f"{report.skipped_too_small} too small; wrote {report.written} images at {args.resolution}px to {args.dest}"
    )
    for skipped in report.skipped[:10]:
        LOG.info(f"skipped {skipped['file']}: {skipped['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
