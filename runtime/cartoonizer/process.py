"""One file in, one file out: the code path the CLI, the endpoint and the Lambda share (image or video by content)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .engine import Cartoonizer
from .errors import TooLargeError, UnsupportedMediaError
from .images import DEFAULT_MAX_BYTES, OUTPUT_FORMATS, cartoonize_image_bytes, looks_like_image, output_format
from .progress import ProgressTracker


@dataclasses.dataclass(frozen=True)
class Limits:
    """Caps from the settings: long sides, image bytes, video seconds."""

    max_image_side: int = 1920
    max_image_bytes: int = DEFAULT_MAX_BYTES
    max_video_side: int = 1920
    max_video_seconds: float | None = None


@dataclasses.dataclass(frozen=True)
class JobOptions:
    """What a caller may choose per job."""

    smooth: bool = False
    side_by_side: bool = False
    max_side: int | None = None  # a smaller cap than the configured one


def media_kind(path: Path) -> str:
    """ "image" for JPEG/PNG/WebP signatures, otherwise "video" (anything ffmpeg decodes)."""
    with path.open("rb") as handle:
        head = handle.read(16)
    return "image" if looks_like_image(head) else "video"


def cartoonize_file(
    input_path: Path,
    output_path: Path,
    *,
    engine: Cartoonizer,
    limits: Limits | None = None,
    options: JobOptions | None = None,
    progress: ProgressTracker | None = None,
    allow_video: bool = True,
) -> dict[str, Any]:
    """Cartoonize input_path into output_path; the result says what was done (kind, sizes, timings)."""
    limits = limits or Limits()
    options = options or JobOptions()
    tracker = progress or ProgressTracker()
    kind = media_kind(input_path)
    suffix = output_path.suffix.lower()
    if kind == "image":
        if suffix not in OUTPUT_FORMATS:
            raise UnsupportedMediaError(
                f"input is an image, so the output must end in one of {', '.join(sorted(OUTPUT_FORMATS))}",
                field="output",
            )
        size = input_path.stat().st_size
        if size > limits.max_image_bytes:
            raise TooLargeError(f"input is {size} bytes; the limit is {limits.max_image_bytes}", field="input")
        max_side = min(options.max_side or limits.max_image_side, limits.max_image_side)
        tracker.start(frames_total=1, kind="image")
        data, result = cartoonize_image_bytes(
            input_path.read_bytes(),
            engine=engine,
            image_format=output_format(str(output_path)),
            max_side=max_side,
            max_bytes=limits.max_image_bytes,
            side_by_side=options.side_by_side,
        )
        output_path.parent.mkdir(parents=True, exist_ok=True)
        output_path.write_bytes(data)
        tracker.advance(1)
        tracker.finish()
        return {"kind": "image", **result.as_dict()}
    if not allow_video:
        raise UnsupportedMediaError(
            "input is not a JPEG, PNG or WebP image (videos go to the video endpoint)", field="input"
        )
    # Imported here so the image Lambda (which ships without PyAV/FFmpeg) never needs it.
    from .video import OUTPUT_CONTAINERS, VideoOptions, cartoonize_video  # noqa: PLC0415

    if suffix not in OUTPUT_CONTAINERS:
        raise UnsupportedMediaError(
            f"input is a video, so the output must end in one of {', '.join(sorted(OUTPUT_CONTAINERS))}",
            field="output",
        )
    video_options = VideoOptions(
        max_side=min(options.max_side or limits.max_video_side, limits.max_video_side),
        max_seconds=limits.max_video_seconds,
        smooth=options.smooth,
        side_by_side=options.side_by_side,
    )
    result_video = cartoonize_video(input_path, output_path, engine=engine, options=video_options, progress=tracker)
    return {"kind": "video", **result_video.as_dict()}
