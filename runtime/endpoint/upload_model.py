"""Upload a local diffusers model folder to s3://BUCKET/diffusion/<name>/ (what the SageMaker model reads)."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig

from ..common.errors import InputError
from . import contract

MODEL_PREFIX = contract.MODELS_PREFIX
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


class UploadError(InputError):
    """The source folder or model name cannot be uploaded."""


def model_files(source: Path) -> list[Path]:
    """Return every file of a diffusers folder (hidden files and caches skipped), checking its layout.

    model_index.json comes last: uploaded after everything else, its presence in S3 means a complete folder
    (what the Diffusion deploy's prefix check and `make doctor` look for).
    """
    index = source / "model_index.json"
    if not index.is_file():
        raise UploadError(f"{source} is not a diffusers folder: model_index.json is missing")
    files = [
        path
        for path in sorted(source.rglob("*"))
        if path.is_file() and path != index and not any(part.startswith(".") for part in path.relative_to(source).parts)
    ]
    files.append(index)
    for component in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        if not (source / component).is_dir():
            raise UploadError(f"{source} lacks the {component}/ folder a Stable Diffusion pipeline needs")
    return files


def upload_model(
    *,
    source: Path,
    bucket: str,
    name: str,
    client: Any = None,
    progress: Callable[[str, int], None] | None = None,
) -> list[str]:
    """Upload every file of source under diffusion/<name>/ and return the keys written."""
    if not _NAME.match(name):
        raise UploadError(f"model name {name!r} must match {_NAME.pattern}")
    s3 = client or boto3.client("s3")
    prefix = f"{MODEL_PREFIX}{name}/"
    config = TransferConfig(multipart_threshold=64 * 1024 * 1024, multipart_chunksize=64 * 1024 * 1024)
    keys = []
    for path in model_files(source):
        key = prefix + path.relative_to(source).as_posix()
        s3.upload_file(str(path), bucket, key, Config=config)
        keys.append(key)
        if progress is not None:
            progress(key, path.stat().st_size)
    return keys


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: --source DIR --bucket B --name sd15."""
    parser = argparse.ArgumentParser(prog="python -m runtime.endpoint.upload_model", description=__doc__)
    parser.add_argument("--source", type=Path, required=True, help="local diffusers folder (has model_index.json)")
    parser.add_argument("--bucket", required=True, help="models bucket (Storage stack output)")
    parser.add_argument("--name", required=True, help="model name; the endpoint's model_name setting")
    args = parser.parse_args(argv)

    def show(key: str, size: int) -> None:
        print(f"uploaded s3://{args.bucket}/{key} ({size / 1e6:.1f} MB)", flush=True)

    try:
        keys = upload_model(source=args.source, bucket=args.bucket, name=args.name, progress=show)
    except UploadError as exc:
        print(f"upload_model: {exc}", file=sys.stderr)
        return 2
    print(f"done: {len(keys)} files under s3://{args.bucket}/{MODEL_PREFIX}{args.name}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
