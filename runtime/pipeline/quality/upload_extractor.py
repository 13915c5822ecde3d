"""One-time upload of the quality gate's feature extractor into the models bucket (nothing is fetched at run time).

    python -m runtime.pipeline.quality.upload_extractor --bucket <ModelsBucketName> --file inception-2015-12-05.pt
    python -m runtime.pipeline.quality.upload_extractor --bucket <ModelsBucketName> --tiny   # smoke tests only

The file must be TorchScript called as extractor(uint8 images [N, 3, H, W], return_features=True) -> [N, D], as
NVIDIA's Inception-v3 port for StyleGAN2-ADA's metrics is (download it yourself from NVIDIA; docs/pipeline.md).
The helper checks it on random images, then uploads it with its SHA-256 and feature size as object metadata.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...common.hashing import sha256_of
from ..stylegan2.contract import FEATURE_EXTRACTOR_KEY
from .extractor import ExtractorError, check_extractor, tiny_extractor


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """CLI flags: the bucket and either a file or --tiny."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bucket", required=True, help="the Storage stack's ModelsBucketName output")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", type=Path, help="TorchScript feature extractor, e.g. inception-2015-12-05.pt")
    source.add_argument(
        "--tiny", action="store_true", help="a small random extractor: scores only compare runs scored with it"
    )
    parser.add_argument("--key", default=FEATURE_EXTRACTOR_KEY, help="the pipeline's FeatureExtractorUri key")
    parser.add_argument("--dry-run", action="store_true", help="check the file and print what would be uploaded")
    return parser.parse_args(argv)


def upload(*, path: Path, bucket: str, key: str, s3: Any, dry_run: bool = False) -> dict[str, str]:
    """Check path, then upload it to s3://bucket/key with its digest and feature size; returns the metadata."""
    feature_dim = check_extractor(path)
    metadata = {"sha256": sha256_of(path), "feature-dim": str(feature_dim), "source-name": path.name}
    if not dry_run:
        s3.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": metadata})
    return metadata


def main(argv: Sequence[str] | None = None, *, s3: Any = None) -> int:
    """Run the helper; exit 1 with the reason when the file is not a usable extractor."""
    args = parse_args(argv)
    if s3 is None and not args.dry_run:
        import boto3  # noqa: PLC0415 (only this operator tool needs boto3; the step image has none)

        s3 = boto3.client("s3")
    with tempfile.TemporaryDirectory() as scratch:
        path = tiny_extractor(Path(scratch) / "tiny.pt") if args.tiny else args.file
        try:
            metadata = upload(path=path, bucket=args.bucket, key=args.key, s3=s3, dry_run=args.dry_run)
        except (ExtractorError, OSError) as error:
            print(f"not uploaded: {error}", file=sys.stderr)
            return 1
    verb = "would upload" if args.dry_run else "uploaded"
    print(
        f"{verb} {path.name} to s3://{args.bucket}/{args.key} "
        f"(sha256 {metadata['sha256']}, {metadata['feature-dim']} features)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
