"""Run the StyleGAN2 pipeline's steps locally on CPU, with folders standing in for the S3 buckets.

    python -m runtime.pipeline.local_run --workdir DIR [--images 24] [--kimg 0.05]

Same scripts, same order and the same artifact hand-offs as the SageMaker pipeline, on a small
synthetic dataset of coloured shapes it draws itself; ends with DIR/publish/latest.onnx, which
`python -m runtime.bot --console --model DIR/publish/latest.onnx` loads.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from .stylegan2.contract import step_module

PIPELINE_DIR = Path(__file__).resolve().parent
RUN_ID = "local"
SOURCE_SIZE = 64
SHAPES = ("ellipse", "rectangle", "triangle")


class StepFailed(RuntimeError):
    """A step script exited non-zero; the message names the step and the command."""


@dataclass(frozen=True)
class LocalLayout:
    """Local stand-ins for the pipeline's S3 locations (same key layout under DIR/s3/<bucket>/)."""

    workdir: Path

    @property
    def images(self) -> Path:
        """s3://<datasets>/anime-faces/ (the InputDataUri default)."""
        return self.workdir / "s3" / "datasets" / "anime-faces"

    @property
    def run(self) -> Path:
        """s3://<models>/stylegan/runs/<execution id>/."""
        return self.workdir / "s3" / "models" / "stylegan" / "runs" / RUN_ID

    @property
    def dataset(self) -> Path:
        return self.run / "dataset"

    @property
    def checkpoints(self) -> Path:
        return self.run / "checkpoints"

    @property
    def model(self) -> Path:
        """The training job's model directory (SageMaker tars it into model.tar.gz)."""
        return self.run / "training" / "model"

    @property
    def samples(self) -> Path:
        return self.run / "samples"

    @property
    def publish(self) -> Path:
        """What the export step uploads to s3://<models>/stylegan/ (latest.onnx)."""
        return self.workdir / "publish"


def draw_shapes_dataset(folder: Path, *, count: int, seed: int) -> list[Path]:
    """Write `count` PNGs of one or two random coloured shapes on a coloured background (deterministic per seed)."""
    rng = random.Random(seed)  # noqa: S311 (test images, not secrets)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        background = tuple(rng.randrange(256) for _ in range(3))
        image = Image.new("RGB", (SOURCE_SIZE, SOURCE_SIZE), background)
        draw = ImageDraw.Draw(image)
        for _ in range(rng.randint(1, 2)):
            colour = tuple(rng.randrange(256) for _ in range(3))
            x0, y0 = rng.randrange(0, SOURCE_SIZE // 2), rng.randrange(0, SOURCE_SIZE // 2)
            x1, y1 = x0 + rng.randrange(16, SOURCE_SIZE // 2), y0 + rng.randrange(16, SOURCE_SIZE // 2)
            shape = rng.choice(SHAPES)
            if shape == "ellipse":
                draw.ellipse((x0, y0, x1, y1), fill=colour)
            elif shape == "rectangle":
                draw.rectangle((x0, y0, x1, y1), fill=colour)
            else:
                draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=colour)
        path = folder / f"shape-{index:04d}.png"
        image.save(path)
        paths.append(path)
    return paths


def run_step(name: str, module: str, args: Sequence[str], *, python: str) -> None:
    """Run `python -m runtime.pipeline.stylegan2.<module> ...` from the repository root, as the step image does."""
    command = [python, "-m", step_module(module), *args]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PIPELINE_DIR.parents[1]), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
    started = time.monotonic()
    completed = subprocess.run(command, env=env, check=False)
    if completed.returncode != 0:
        raise StepFailed(f"step {name} failed with exit code {completed.returncode}: {' '.join(command)}")
    print(f"=== {name} done in {time.monotonic() - started:.1f} s", flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """CLI flags; the defaults give a CPU run of well under a minute."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="folder for the fake buckets and outputs")
    parser.add_argument("--images", type=int, default=24, help="synthetic training images to draw")
    parser.add_argument("--kimg", type=float, default=0.05, help="training length in thousands of images")
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--cfg", default="tiny", help="model preset of stylegan2.train (tiny, small, paper256, ...)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--python", default=sys.executable, help="interpreter for the step scripts")
    args = parser.parse_args(argv)
    if args.images < 1 or args.kimg <= 0 or args.batch < 1:
        parser.error("--images, --kimg and --batch must be positive")
    return args


def run_pipeline(args: argparse.Namespace) -> Path:
    """The four pipeline steps in order; returns the published ONNX generator."""
    layout = LocalLayout(args.workdir.resolve())
    drawn = draw_shapes_dataset(layout.images, count=args.images, seed=args.seed)
    print(f"drew {len(drawn)} synthetic images into {layout.images}", flush=True)

    run_step(
        "PrepareDataset",
        "dataset_tool",
        ["--source", str(layout.images), "--dest", str(layout.dataset), "--resolution", str(args.resolution)],
        python=args.python,
    )
    snapshot_kimg = max(args.kimg / 2, 0.001)
    run_step(
        "TrainStyleGAN2",
        "train",
        [
            *("--data", str(layout.dataset), "--outdir", str(layout.model)),
            *("--checkpoint-dir", str(layout.checkpoints), "--kimg", str(args.kimg), "--batch", str(args.batch)),
            *("--resolution", str(args.resolution), "--cfg", args.cfg, "--mirror", "1", "--seed", str(args.seed)),
            *("--snapshot-kimg", str(snapshot_kimg), "--tick-kimg", str(snapshot_kimg)),
        ],
        python=args.python,
    )
    run_step(
        "GenerateAndExport",
        "generate",
        [
            *("--checkpoint", str(layout.model), "--outdir", str(layout.samples)),
            *("--publish-dir", str(layout.publish), "--num-images", "16", "--grid", "4x4"),
        ],
        python=args.python,
    )
    published = layout.publish / "latest.onnx"
    if not published.is_file():
        raise StepFailed(f"step GenerateAndExport published nothing at {published}")

    # The NotifySuccess step's message, with local paths in place of S3 URIs and the presigned link.
    summary = {
        "pipeline_name": "local",
        "execution_id": RUN_ID,
        "dataset": str(layout.dataset),
        "training_artifacts": str(layout.model),
        "samples": str(layout.samples),
        "sample_grid": str(layout.samples / "grid.png"),
        "model": str(published),
    }
    (layout.run / "notification.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n=== NotifySuccess (local): " + json.dumps(summary, indent=2), flush=True)
    print(f"\nTry it: python -m runtime.bot --console --model {published}", flush=True)
    return published


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; exit code 1 names the failed step."""
    args = parse_args(argv)
    started = time.monotonic()
    try:
        run_pipeline(args)
    except StepFailed as error:
        print(f"local run failed: {error}", file=sys.stderr, flush=True)
        return 1
    print(f"local run finished in {time.monotonic() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
