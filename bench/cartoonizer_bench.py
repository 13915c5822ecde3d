"""Cartoonizer benchmark: CPU 720p image end to end and frames/s of the tuned session vs onnxruntime defaults
(one frame at a time, interleaved in the same run), or on a GPU a 10 s 1280x720 30 fps clip with audio end to end.

Random weights of the real architecture (speed does not depend on the values), built in the run.
    CPU:   python bench/cartoonizer_bench.py --frames 4 --json cartoonizer.json
    GPU:   python bench/cartoonizer_bench.py --device cuda --clip-seconds 10 --json cartoonizer.json
    proof: python bench/cartoonizer_bench.py --tiny
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import onnxruntime as ort
from bot_bench import cpu_model  # bench/ is the script's folder, so its sibling imports as a module
from PIL import Image

from runtime.cartoonizer.engine import Cartoonizer, SessionTuning
from runtime.cartoonizer.images import cartoonize_image_bytes
from runtime.cartoonizer.network import random_weights
from runtime.cartoonizer.onnx_model import build_model
from runtime.cartoonizer.synthetic import ClipSpec, frame_image, make_clip


def _machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cpus": len(os.sched_getaffinity(0)),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
        "date": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "weights": "random (real architecture; speed does not depend on the values)",
    }


def _timed(engine: Cartoonizer, frame: np.ndarray) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    engine.cartoonize(frame)
    return time.perf_counter() - wall, time.process_time() - cpu


def cpu_benchmark(*, width: int, height: int, frames: int, image_runs: int) -> dict[str, Any]:
    """720p image end to end (tuned), then tuned vs default sessions one frame at a time, interleaved."""
    model = build_model({f"generator/{k}": v for k, v in random_weights(seed=0).items()}).SerializeToString()
    tuned = Cartoonizer(model, device="cpu", tuning=SessionTuning())
    default = Cartoonizer(model, device="cpu")
    default.session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])  # onnxruntime's defaults
    frame = frame_image(5, width, height)
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=92)
    jpeg = buffer.getvalue()

    cartoonize_image_bytes(jpeg, engine=tuned, image_format="JPEG", max_side=1920)  # warm-up
    image_runs_s = []
    for _ in range(image_runs):
        _, result = cartoonize_image_bytes(jpeg, engine=tuned, image_format="JPEG", max_side=1920)
        image_runs_s.append(result.seconds)
        print(f"[image] {width}x{height} JPEG end to end: {result.seconds}", flush=True)

    samples: dict[str, list[tuple[float, float]]] = {"tuned": [], "default": []}
    for engine in (tuned, default):
        _timed(engine, frame)  # warm-up (allocations, kernel selection)
    for index in range(frames):
        order = (("tuned", tuned), ("default", default)) if index % 2 == 0 else (("default", default), ("tuned", tuned))
        for name, engine in order:
            samples[name].append(_timed(engine, frame))
            print(f"[frames] {name} frame {index + 1}/{frames}: {samples[name][-1][0]:.2f} s", flush=True)

    def summary(name: str) -> dict[str, float]:
        walls = [wall for wall, _ in samples[name]]
        cpus = [cpu for _, cpu in samples[name]]
        return {
            "median_s_per_frame": round(statistics.median(walls), 3),
            "frames_per_s": round(1 / statistics.median(walls), 4),
            "cpu_s_per_frame": round(statistics.median(cpus), 3),
        }

    tuned_summary, default_summary = summary("tuned"), summary("default")
    return {
        "image_end_to_end": {
            "size": f"{width}x{height}",
            "median_total_s": round(statistics.median(r["total"] for r in image_runs_s), 3),
            "runs": image_runs_s,
        },
        "frames": {
            "size": f"{width}x{height}",
            "frames_per_session": frames,
            "tuned": tuned_summary,
            "default": default_summary,
            "tuned_vs_default_speed": round(
                default_summary["median_s_per_frame"] / tuned_summary["median_s_per_frame"], 3
            ),
            "tuned_vs_default_cpu": round(default_summary["cpu_s_per_frame"] / tuned_summary["cpu_s_per_frame"], 3),
        },
    }


def clip_benchmark(*, device: str, width: int, height: int, seconds: float, fps: int) -> dict[str, Any]:
    """A generated clip with AAC audio, cartoonized end to end (decode + infer + encode, audio kept)."""
    from runtime.cartoonizer.video import VideoOptions, cartoonize_video  # noqa: PLC0415

    engine = Cartoonizer.random(device=device)
    with tempfile.TemporaryDirectory() as work:
        spec = ClipSpec(width=width, height=height, frames=round(seconds * fps), rate=Fraction(fps), audio="aac")
        started = time.perf_counter()
        source = make_clip(Path(work) / "clip.mp4", spec)
        print(f"[clip] generated {spec.frames} frames in {time.perf_counter() - started:.1f} s", flush=True)
        warm = make_clip(Path(work) / "warm.mp4", ClipSpec(width=width, height=height, frames=4, audio=None))
        cartoonize_video(warm, Path(work) / "warm-out.mp4", engine=engine)  # session and encoder warm-up
        started = time.perf_counter()
        result = cartoonize_video(source, Path(work) / "out.mp4", engine=engine, options=VideoOptions(batch_frames=8))
        wall = time.perf_counter() - started
    return {
        "clip": f"{width}x{height} {fps} fps {seconds:g} s with AAC audio",
        "device": engine.device,
        "wall_s": round(wall, 3),
        "frames": result.frames,
        "frames_per_s": round(result.frames / wall, 2),
        "encoder": result.encoder,
        "audio": result.audio,
        "stage_seconds": result.seconds,
        "target_s": 2.0 if (width, height, fps, seconds) == (1280, 720, 30, 10) else None,
    }


def main(argv: list[str] | None = None) -> int:
    """Parse options, run, print and optionally save JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--frames", type=int, default=4, help="CPU: timed frames per session (interleaved)")
    parser.add_argument("--image-runs", type=int, default=2, help="CPU: timed end-to-end image runs")
    parser.add_argument("--clip-seconds", type=float, default=10.0, help="GPU: length of the generated clip")
    parser.add_argument("--fps", type=int, default=30, help="GPU: frame rate of the generated clip")
    parser.add_argument("--tiny", action="store_true", help="proof run in seconds: 128x72, both parts on CPU")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"machine": _machine()}
    if args.tiny:
        results["cpu"] = cpu_benchmark(width=128, height=72, frames=2, image_runs=1)
        results["clip"] = clip_benchmark(device="cpu", width=128, height=72, seconds=0.5, fps=30)
    elif args.device == "cpu":
        results["cpu"] = cpu_benchmark(
            width=args.width, height=args.height, frames=args.frames, image_runs=args.image_runs
        )
    else:
        results["clip"] = clip_benchmark(
            device="cuda", width=args.width, height=args.height, seconds=args.clip_seconds, fps=args.fps
        )
    results["machine"]["load_average_after"] = os.getloadavg()
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
