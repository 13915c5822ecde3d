"""Short synthetic clips made with PyAV: moving shapes, optional tone, rotation tag or variable frame rate.

Used by `make cartoonize-local`, the tests and the benchmark, so nothing is ever downloaded:
    python -m runtime.cartoonizer.synthetic OUT.mp4 [--width 320 --height 180 --seconds 2 --audio aac]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

NTSC_RATE = Fraction(30000, 1001)


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """What to generate: size and frame count, rate, audio codec (None: no audio), rotation tag, VFR."""

    width: int = 64
    height: int = 48
    frames: int = 12
    rate: Fraction = NTSC_RATE
    audio: str | None = "aac"
    sample_rate: int = 48000
    channels: int = 2
    rotation: int = 0  # display matrix, degrees counter-clockwise (as PyAV's VideoFrame.rotation reads it)
    vfr: bool = False  # frame durations alternate 1x and 2x the nominal one
    video_codec: str = "libx264"
    pix_fmt: str = "yuv420p"


def frame_image(index: int, width: int, height: int) -> np.ndarray:
    """A colourful test picture that moves with index: gradient background, a disc and a bar (uint8 RGB)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    shift = index * 3.0
    red = 127 + 120 * np.sin((x + shift) / max(width, 1) * 2 * math.pi)
    green = 127 + 120 * np.cos((y - shift) / max(height, 1) * 2 * math.pi)
    blue = np.full_like(x, 60 + (index * 17) % 160)
    image = np.stack([red, green, blue], axis=-1)
    cx, cy, radius = (width / 2 + shift) % width, height / 2, max(min(width, height) / 5, 2)
    image[(x - cx) ** 2 + (y - cy) ** 2 < radius**2] = (250, 240, 40)
    image[:, : max(width // 8, 1)] = (30, 30, 200)  # a left-edge bar shows orientation
    image[: max(height // 8, 1), :] = (230, 30, 30)  # and a top bar
    result: np.ndarray = np.clip(image, 0, 255).astype(np.uint8)
    return result


def frame_times(spec: ClipSpec, time_base: Fraction) -> list[int]:
    """pts of every frame in time_base units (variable durations when spec.vfr)."""
    step = 1 / spec.rate / time_base
    if step.denominator != 1:
        raise ValueError(f"time base {time_base} cannot express frame rate {spec.rate} exactly")
    pts, times = 0, []
    for index in range(spec.frames):
        times.append(pts)
        pts += int(step) * (2 if spec.vfr and index % 2 else 1)
    return times


def make_clip(path: Path, spec: ClipSpec | None = None) -> Path:
    """Write the clip described by spec to path (container from the suffix); return path."""
    spec = spec or ClipSpec()
    path.parent.mkdir(parents=True, exist_ok=True)
    time_base = Fraction(1, 90000) if spec.rate == NTSC_RATE or spec.vfr else 1 / spec.rate
    if (1 / spec.rate / time_base).denominator != 1:
        time_base = 1 / (spec.rate * 2)
    times = frame_times(spec, time_base)
    with av.open(str(path), "w") as container:
        video: Any = container.add_stream(spec.video_codec, rate=spec.rate)
        video.width, video.height, video.pix_fmt = spec.width, spec.height, spec.pix_fmt
        video.time_base = time_base
        video.codec_context.time_base = time_base
        if spec.video_codec == "libx264":
            video.options = {"preset": "ultrafast", "crf": "20"}
        if spec.rotation:
            video.set_display_rotation(spec.rotation)
        audio: Any = None
        if spec.audio:
            audio = container.add_stream(spec.audio, rate=spec.sample_rate)
            audio.layout = "stereo" if spec.channels == 2 else "mono"
        for index, pts in enumerate(times):
            frame = av.VideoFrame.from_ndarray(frame_image(index, spec.width, spec.height), format="rgb24")
            frame.pts, frame.time_base = pts, time_base
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None:
            end = float(
                (times[-1] + (times[-1] - times[-2] if len(times) > 1 else 1 / spec.rate / time_base)) * time_base
            )
            _write_tone(container, audio, seconds=end, spec=spec)
    return path


def _write_tone(container: av.container.OutputContainer, stream: Any, *, seconds: float, spec: ClipSpec) -> None:
    """A 440 Hz tone as long as the video, in frames of the encoder's size."""
    codec = stream.codec_context
    frame_size = codec.frame_size or 1024
    total = round(seconds * spec.sample_rate)
    layout = "stereo" if spec.channels == 2 else "mono"
    fmt = codec.format.name if codec.format else "s16"
    done = 0
    while done < total:
        count = min(frame_size, total - done)
        t = (np.arange(done, done + count) / spec.sample_rate).astype(np.float32)
        tone = 0.3 * np.sin(2 * math.pi * 440 * t)
        planar = fmt.endswith("p")
        if fmt.startswith("s16"):
            samples: np.ndarray = (tone * 32767).astype(np.int16)
        elif fmt.startswith("s32"):
            samples = (tone * 2147483647).astype(np.int32)
        else:
            samples = tone
        data = np.tile(samples, (spec.channels, 1)) if planar else np.repeat(samples, spec.channels)[None, :]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt, layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = spec.sample_rate, done, Fraction(1, spec.sample_rate)
        container.mux(stream.encode(frame))
        done += count
    container.mux(stream.encode(None))


def main(argv: Sequence[str] | None = None) -> int:
    """Write one clip from command-line options."""
    parser = argparse.ArgumentParser(prog="python -m runtime.cartoonizer.synthetic", description=__doc__)
    parser.add_argument("output", type=Path)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--fps", default="30000/1001", help="frame rate as a fraction (default 30000/1001)")
    parser.add_argument("--audio", default="aac", help="audio codec, or 'none' (default aac)")
    parser.add_argument("--rotation", type=int, default=0, help="display rotation tag, degrees counter-clockwise")
    args = parser.parse_args(argv)
    rate = Fraction(args.fps)
    spec = ClipSpec(
        width=args.width,
        height=args.height,
        frames=max(1, round(args.seconds * rate)),
        rate=rate,
        audio=None if args.audio == "none" else args.audio,
        rotation=args.rotation,
    )
    make_clip(args.output, spec)
    print(f"wrote {args.output}: {spec.width}x{spec.height}, {spec.frames} frames at {rate} fps, audio {spec.audio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
