"""Generate step: sample grid + images, quality score (FID/KID) against the training set, ONNX export + verify.

With --reference and --extractor it writes quality.json (the pipeline's ConditionStep reads it) and puts the
score into the ONNX metadata; a generator whose images are not finite is scored as such and not exported.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ...common.hashing import sha256_of
from ..quality.extractor import ExtractorError
from ..quality.measure import QualityReport, measure_quality
from .checkpoint import load_generator
from .cli import configure_step_logging
from .contract import DEFAULT_QUALITY_SAMPLES, QUALITY_FILE
from .dataset_tool import IMAGES_FILE
from .export_onnx import OnnxMismatchError, export_generator, verify_onnx
from .networks import Generator

# Named explicitly: run as `python -m`, this module's __name__ is "__main__".
LOG = logging.getLogger("stylegan2.generate")

PUBLISHED_NAME = "latest.onnx"


def parse_grid(text: str) -> tuple[int, int]:
    """'4x3' -> (columns 4, rows 3)."""
    try:
        cols, rows = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--grid must look like 4x4, got {text!r}") from None
    if cols <= 0 or rows <= 0:
        raise argparse.ArgumentTypeError(f"--grid sides must be positive, got {text!r}")
    return cols, rows


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, 3, R, R] in [-1, 1] -> [N, R, R, 3] uint8."""
    scaled = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def render(generator: Generator, latents: torch.Tensor, *, truncation: float, batch: int = 16) -> np.ndarray:
    """Render latents with constant noise (the same images the ONNX model gives), in batches, showing progress."""
    chunks = []
    for start in range(0, len(latents), batch):
        chunk = generator(latents[start : start + batch], truncation, noise_mode="const")
        chunks.append(to_uint8(chunk))
        LOG.info(f"rendered {min(start + batch, len(latents))}/{len(latents)} images")
    return np.concatenate(chunks)


def make_grid(images: np.ndarray, *, cols: int, rows: int) -> Image.Image:
    """Tile images [N, R, R, 3] row by row into one picture."""
    size = images.shape[1]
    canvas = np.zeros((rows * size, cols * size, 3), dtype=np.uint8)
    for i, image in enumerate(images[: cols * rows]):
        r, c = divmod(i, cols)
        canvas[r * size : (r + 1) * size, c * size : (c + 1) * size] = image
    return Image.fromarray(canvas)


def publish(model: Path, publish_dir: Path) -> Path:
    """Copy the verified model to publish_dir/latest.onnx via a temporary file and rename."""
    publish_dir.mkdir(parents=True, exist_ok=True)
    target = publish_dir / PUBLISHED_NAME
    tmp = publish_dir / (PUBLISHED_NAME + ".tmp")
    shutil.copyfile(model, tmp)
    os.replace(tmp, target)
    return target


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """CLI flags (defaults follow the SageMaker processing layout)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", type=Path, default=Path("/opt/ml/processing/input/model"))
    parser.add_argument("--outdir", type=Path, default=Path("/opt/ml/processing/output/samples"))
    parser.add_argument(
        "--publish-dir",
        type=lambda text: Path(text) if text else None,
        default=Path("/opt/ml/processing/output/publish"),
        help="where latest.onnx goes once verified; an empty value skips publishing",
    )
    parser.add_argument("--num-images", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--truncation", type=float, default=0.7)
    parser.add_argument("--grid", type=parse_grid, default=(4, 4))
    parser.add_argument("--atol", type=float, default=1e-3, help="max |ONNX - PyTorch| accepted before publishing")
    parser.add_argument("--reference", type=Path, default=None, help="prepared training set (images.npy) to score")
    parser.add_argument("--extractor", type=Path, default=None, help="TorchScript feature extractor (file or folder)")
    parser.add_argument("--quality-dir", type=Path, default=None, help="where quality.json goes (default: --outdir)")
    parser.add_argument("--quality-samples", type=int, default=DEFAULT_QUALITY_SAMPLES, help="images per set")
    parser.add_argument("--quality-batch", type=int, default=32)
    args = parser.parse_args(argv)
    if args.num_images < 0:
        parser.error("--num-images must be >= 0")
    if (args.reference is None) != (args.extractor is None):
        parser.error("--reference and --extractor go together (the score needs both)")
    if args.quality_samples < 2 or args.quality_batch < 1:
        parser.error("--quality-samples must be at least 2 and --quality-batch positive")
    return args


def score(generator: Generator, args: argparse.Namespace) -> QualityReport:
    """FID/KID of the generator (no truncation, fixed noise: what the ONNX model renders) against the training set."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = generator.to(device)
    reference_file = args.reference / IMAGES_FILE if args.reference.is_dir() else args.reference
    reference = np.load(reference_file, mmap_mode="r")
    try:
        return measure_quality(
            render=lambda latents: model(latents, 1.0, noise_mode="const"),
            z_dim=generator.z_dim,
            reference=reference,
            extractor_path=args.extractor,
            samples=args.quality_samples,
            seed=args.seed,
            batch=args.quality_batch,
            device=device,
        )
    finally:
        generator.cpu()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the step; non-zero exit when the checkpoint is missing or the ONNX model fails verification."""
    args = parse_args(argv)
    configure_step_logging()
    try:
        generator, info = load_generator(args.checkpoint)
    except (FileNotFoundError, ValueError) as exc:
        LOG.error(f"{exc}")
        return 1
    cols, rows = args.grid
    rng = torch.Generator().manual_seed(args.seed)
    latents = torch.randn(max(args.num_images, cols * rows), generator.z_dim, generator=rng)
    images = render(generator, latents, truncation=args.truncation)

    args.outdir.mkdir(parents=True, exist_ok=True)
    make_grid(images, cols=cols, rows=rows).save(args.outdir / "grid.png")
    image_dir = args.outdir / "images"
    image_dir.mkdir(exist_ok=True)
    for i, image in enumerate(images[: args.num_images]):
        Image.fromarray(image).save(image_dir / f"seed{args.seed:04d}-{i:05d}.png")

    quality: QualityReport | None = None
    if args.reference is not None:
        try:
            quality = score(generator, args)
        except (ExtractorError, FileNotFoundError, ValueError) as exc:
            LOG.error(f"quality score: {exc}")
            return 1
        quality_dir = args.quality_dir or args.outdir
        quality_dir.mkdir(parents=True, exist_ok=True)
        (quality_dir / QUALITY_FILE).write_text(json.dumps(quality.to_json(), indent=2) + "\n")
    summary: dict[str, Any] = {
        "checkpoint": str(args.checkpoint),
        "checkpoint_file": Path(info["file"]).name,
        "kimg": info["kimg"],
        "model_config": info["model_config"],
        "seed": args.seed,
        "truncation": args.truncation,
        "num_images": args.num_images,
        "grid": f"{cols}x{rows}",
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "quality": quality.to_json() if quality is not None else None,
        "onnx": None,
        "published": None,
    }
    if quality is not None and not quality.finite:
        (args.outdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        LOG.warning(f"{quality.note}; no ONNX export")
        return 0
    metadata = {} if quality is None else {"fid": f"{quality.fid:.4f}", "kid": f"{quality.kid:.6f}"}
    if quality is not None:
        metadata["quality_samples"] = str(quality.generated)
    onnx_path = export_generator(generator, args.outdir / "generator.onnx", kimg=info["kimg"], metadata=metadata)
    summary["onnx"] = {"file": onnx_path.name, "sha256": sha256_of(onnx_path), "verified": False}
    try:
        worst = verify_onnx(
            generator, onnx_path, latents=latents[:4], truncations=(0.0, args.truncation, 1.0), atol=args.atol
        )
    except OnnxMismatchError as exc:
        summary["onnx"]["error"] = str(exc)
        (args.outdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        LOG.error(f"{exc}; not publishing")
        return 1
    summary["onnx"].update(verified=True, max_abs_diff=worst)
    LOG.info(f"ONNX matches PyTorch (max abs diff {worst:.2e})")
    if args.publish_dir is not None:
        summary["published"] = str(publish(onnx_path, args.publish_dir))
        LOG.info(f"published {summary['published']}")
    (args.outdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    LOG.info(f"wrote {args.outdir / 'grid.png'}, {args.num_images} images and {onnx_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
