"""Local CLI: cartoonize an image or a video on this machine, with a progress bar and progress JSON beside it.

python -m runtime.cartoonizer INPUT OUTPUT [--model PATH] [--device cpu|cuda] [--smooth] [--side-by-side]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..common.errors import ConfigError, InputError
from . import contract
from .engine import Cartoonizer
from .model_store import load_model_info
from .process import JobOptions, Limits, cartoonize_file
from .progress import ProgressTracker, file_sink, terminal_bar

DEFAULT_MODEL = Path("models") / "cartoonizer" / contract.MODEL_FILE
NO_MODEL_HELP = """no cartoonizer model at {path}.
Get one (once, on a machine with internet; the weights are CC BY-NC-SA 4.0, non-commercial use only):
  1. download model-33999.index and model-33999.data-00000-of-00001 from
     https://github.com/SystemErrorWang/White-box-Cartoonization/tree/master/test_code/saved_models
  2. python -m runtime.cartoonizer.convert --checkpoint DIR --out {path}
Or pass --model PATH (any ONNX with the same I/O contract, docs/cartoonizer.md), or --tiny-random for a demo
with random weights (the output then looks like coloured noise)."""


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runtime.cartoonizer", description=__doc__.split("\n")[0])
    parser.add_argument("input", type=Path, help="image (JPEG/PNG/WebP) or video (anything ffmpeg decodes)")
    parser.add_argument("output", type=Path, help="image: .jpg/.png/.webp; video: .mp4/.mov/.m4v/.mkv")
    parser.add_argument("--model", type=Path, help=f"model.onnx (default: {DEFAULT_MODEL})")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default auto")
    parser.add_argument("--tiny-random", action="store_true", help="random weights instead of a model (demo)")
    parser.add_argument("--smooth", action="store_true", help="videos: motion-gated temporal smoothing")
    parser.add_argument("--side-by-side", action="store_true", help="original on the left, cartoon on the right")
    parser.add_argument("--max-side", type=int, default=contract.DEFAULT_MAX_VIDEO_SIDE, help="cap of the long side")
    parser.add_argument("--max-seconds", type=float, help="refuse videos longer than this")
    parser.add_argument("--no-progress-json", action="store_true", help="do not write OUTPUT.progress.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one file; exit 2 with a clear message for bad input or a missing model."""
    args = _parse(argv)
    if not args.input.is_file():
        print(f"cartoonizer: input {args.input} does not exist", file=sys.stderr)
        return 2
    try:
        if args.tiny_random:
            engine, licence = Cartoonizer.random(device="cpu" if args.device == "auto" else args.device), None
        else:
            path = args.model or DEFAULT_MODEL
            if not path.exists():
                print(f"cartoonizer: {NO_MODEL_HELP.format(path=path)}", file=sys.stderr)
                return 2
            model = load_model_info(path)
            engine, licence = Cartoonizer(model.path, device=args.device), model
    except ConfigError as exc:
        print(f"cartoonizer: {exc}", file=sys.stderr)
        return 2
    sinks = [terminal_bar()]
    if not args.no_progress_json:
        sinks.append(file_sink(args.output.with_name(args.output.name + contract.PROGRESS_SUFFIX)))
    tracker = ProgressTracker(sinks=sinks, interval_s=1.0)
    limits = Limits(
        max_image_side=args.max_side,
        max_video_side=args.max_side,
        max_video_seconds=args.max_seconds,
    )
    options = JobOptions(smooth=args.smooth, side_by_side=args.side_by_side)
    try:
        result = cartoonize_file(
            args.input, args.output, engine=engine, limits=limits, options=options, progress=tracker
        )
    except InputError as exc:
        tracker.fail(str(exc))
        print(f"cartoonizer: {exc}", file=sys.stderr)
        return 2
    result["device"] = engine.device
    if licence is not None and licence.notice:
        result["notice"] = licence.notice
    print(json.dumps(result, indent=2))
    return 0
