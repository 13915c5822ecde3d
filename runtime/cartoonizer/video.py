"""Videos with PyAV: original timing, audio kept, rotation applied, bounded memory, decode/infer/encode overlapped.

Three stages joined by bounded queues: a decode thread (demux, decode, rotate/scale to RGB, batches of frames with
the audio that arrived meanwhile), an inference thread (the model, then optional temporal smoothing) and the
caller's thread (encode, mux, progress). At most `queue_batches` batches wait between stages, so memory does
not grow with the length of the video. Output frames carry the input frames' pts in the input's time base.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from .engine import Cartoonizer
from .errors import CorruptMediaError, TooLargeError, UnsupportedMediaError
from .images import fit_within
from .progress import ProgressTracker

log = logging.getLogger(__name__)

OUTPUT_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
# Copied into MP4 as they are (players and browsers handle them); anything else is transcoded to AAC there.
MP4_COPY_AUDIO = frozenset({"aac", "mp3", "ac3", "eac3", "alac", "flac", "opus"})
AAC_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000})
ENCODERS = ("auto", "libx264", "h264_nvenc")
ENCODER_OPTIONS = {
    "libx264": {"preset": "medium", "crf": "18"},
    "h264_nvenc": {"preset": "p4", "rc": "vbr", "cq": "19"},
}


@dataclasses.dataclass(frozen=True)
class VideoOptions:
    """How a video is processed: size cap, length cap, batching, smoothing and encoder."""

    max_side: int = 1920
    max_seconds: float | None = None
    batch_frames: int = 4
    queue_batches: int = 2
    smooth: bool = False
    side_by_side: bool = False  # original on the left, cartoon on the right
    encoder: str = "auto"  # "auto": NVENC when the startup probe passes, else libx264


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What the probe learned from the first frame and the container."""

    stored_width: int
    stored_height: int
    rotation: int  # quarter turns counter-clockwise applied to show the frame upright
    scaled_width: int  # decoded frames are scaled to this (before rotation)
    scaled_height: int
    width: int  # output size (upright, even)
    height: int
    frames_total: int | None
    duration_s: float | None
    rate: Fraction
    time_base: Fraction
    audio_codec: str | None

    @property
    def scaled_upright_width(self) -> int:
        """Width of a decoded frame once upright (before padding to an even size)."""
        return self.scaled_height if self.rotation % 2 else self.scaled_width


@dataclasses.dataclass(frozen=True)
class VideoResult:
    """What one video job produced."""

    frames: int
    width: int
    height: int
    source_width: int
    source_height: int
    rotation_degrees: int
    audio: str | None  # "copy", "aac" or None (the input had no audio)
    encoder: str
    skipped_packets: int
    seconds: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return dataclasses.asdict(self)


@functools.cache
def nvenc_available() -> bool:
    """Startup probe: can this process open h264_nvenc and encode one frame? (GPU with NVENC and its driver.)"""
    try:
        context = av.CodecContext.create("h264_nvenc", "w")
        context.width, context.height, context.pix_fmt = 256, 256, "yuv420p"
        context.time_base = Fraction(1, 30)
        context.open()
        frame = av.VideoFrame(256, 256, "yuv420p")
        frame.pts = 0
        context.encode(frame)
        context.encode(None)
    except Exception as exc:  # any failure means "use libx264"
        log.info("NVENC unavailable, using libx264", extra={"fields": {"reason": str(exc)[:200]}})
        return False
    return True


def choose_encoder(requested: str) -> str:
    """The H.264 encoder to use for a job."""
    if requested not in ENCODERS:
        raise ValueError(f"encoder must be one of {ENCODERS}, got {requested!r}")
    if requested == "auto":
        return "h264_nvenc" if nvenc_available() else "libx264"
    return requested


def container_format(path: Path) -> str:
    """Muxer for an output path by its suffix; UnsupportedMediaError otherwise."""
    fmt = OUTPUT_CONTAINERS.get(path.suffix.lower())
    if fmt is None:
        raise UnsupportedMediaError(
            f"output {path.name!r}: videos are written as {', '.join(sorted(OUTPUT_CONTAINERS))}", field="output"
        )
    return fmt


def audio_plan(output_format: str, codec_name: str | None) -> str | None:
    """ "copy" when the output container takes the audio codec as it is, "aac" to transcode, None without audio."""
    if codec_name is None:
        return None
    with contextlib.suppress(Exception):
        probe = av.open("probe." + ("mkv" if output_format == "matroska" else output_format), "w", format=output_format)
        try:
            accepted = codec_name in probe.supported_codecs
        finally:
            probe.close()
        if accepted and (output_format != "mp4" or codec_name in MP4_COPY_AUDIO):
            return "copy"
    return "aac"


def _open_input(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), "r", metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise CorruptMediaError(f"input is not a readable video ({exc.strerror or exc})", field="input") from None


def _best_audio(container: av.container.InputContainer) -> int:
    """Position among the audio streams of the one ffmpeg picks as best."""
    best = container.streams.best("audio")
    return next((i for i, stream in enumerate(container.streams.audio) if stream is best), 0)


def _quarter_turns(rotation: float) -> int:
    return round(rotation / 90) % 4


def _even(value: int) -> int:
    return value + value % 2


def probe_video(path: Path, *, max_side: int, max_seconds: float | None) -> VideoInfo:
    """Open the input, decode its first frame, and fix the output geometry and timing (clear errors otherwise)."""
    with _open_input(path) as container:
        if not container.streams.video:
            raise UnsupportedMediaError("input has no video stream", field="input")
        stream = container.streams.video[0]
        audio = container.streams.best("audio")
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        if max_seconds is not None and duration is not None and duration > max_seconds:
            raise TooLargeError(f"input is {duration:.1f} s long; the limit is {max_seconds:g} s", field="input")
        first = None
        try:
            for frame in container.decode(stream):
                first = frame
                break
        except av.FFmpegError as exc:
            raise CorruptMediaError(f"input video cannot be decoded ({exc.strerror or exc})", field="input") from None
        if first is None:
            raise CorruptMediaError("input video has no decodable frames", field="input")
        turns = _quarter_turns(first.rotation)
        upright = (first.height, first.width) if turns % 2 else (first.width, first.height)
        target = fit_within(*upright, max_side)
        if target != upright:  # scaled: pick even sizes directly
            target = (max(2, target[0] - target[0] % 2), max(2, target[1] - target[1] % 2))
        scaled = (target[1], target[0]) if turns % 2 else target
        rate = stream.average_rate or stream.guessed_rate or Fraction(30)
        frames = stream.frames or (round(duration * rate) if duration else None)
        return VideoInfo(
            stored_width=first.width,
            stored_height=first.height,
            rotation=turns,
            scaled_width=scaled[0],
            scaled_height=scaled[1],
            width=_even(target[0]),
            height=_even(target[1]),
            frames_total=frames,
            duration_s=duration,
            rate=Fraction(rate),
            time_base=Fraction(stream.time_base or Fraction(1, 90000)),
            audio_codec=audio.codec_context.name if audio is not None else None,
        )


@dataclasses.dataclass
class _Batch:
    """Frames (RGB uint8 [N, H, W, 3]) with their timing, plus the audio demuxed while they were collected."""

    frames: np.ndarray
    pts: list[int]
    durations: list[int]
    audio: list[Any]
    sources: np.ndarray | None = None


class _Stopped(Exception):
    """Another stage failed; this one stops quietly."""


def _put(channel: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            channel.put(item, timeout=0.1)
            return
        except queue.Full:
            continue
    raise _Stopped


def _get(channel: queue.Queue[Any], stop: threading.Event) -> Any:
    while not stop.is_set():
        try:
            return channel.get(timeout=0.1)
        except queue.Empty:
            continue
    raise _Stopped


class TemporalSmoother:
    """Cheap anti-flicker: blend each cartoon frame with the previous output where the input did not move.

    The blend weight falls from `strength` to 0 as the per-pixel input change rises to `motion_threshold`
    (grey levels), so moving parts never ghost; a mean change above `cut_threshold` is a scene cut and resets.
    """

    def __init__(self, *, strength: float = 0.6, motion_threshold: float = 12.0, cut_threshold: float = 40.0) -> None:
        self.strength, self.motion_threshold, self.cut_threshold = strength, motion_threshold, cut_threshold
        self._previous_source: np.ndarray | None = None
        self._previous_output: np.ndarray | None = None
        self.cuts = 0

    def __call__(self, source: np.ndarray, cartoon: np.ndarray) -> np.ndarray:
        """Smoothed cartoon of one frame (uint8 [H, W, 3] both)."""
        grey = source.astype(np.float32).mean(axis=2)
        previous = self._previous_source
        output = cartoon.astype(np.float32)
        if previous is not None and previous.shape == grey.shape and self._previous_output is not None:
            change = np.abs(grey - previous)
            if float(change.mean()) > self.cut_threshold:
                self.cuts += 1
            else:
                weight = self.strength * np.clip(1.0 - change / self.motion_threshold, 0.0, 1.0)[..., None]
                output = output * (1.0 - weight) + self._previous_output * weight
        self._previous_source, self._previous_output = grey, output
        smoothed: np.ndarray = np.clip(output + 0.5, 0, 255).astype(np.uint8)
        return smoothed


class _AudioTranscoder:
    """Decoded audio frames -> AAC packets (resampled to float planar, re-chunked to the encoder's frame size)."""

    def __init__(self, container: av.container.OutputContainer, *, rate: int, channels: int) -> None:
        self.rate = rate if rate in AAC_RATES else 48000
        layout = "mono" if channels == 1 else "stereo"
        self.stream: Any = container.add_stream("aac", rate=self.rate)
        self.stream.layout = layout
        self.stream.bit_rate = 192_000 if layout == "stereo" else 128_000
        self._container = container
        self._resampler = av.AudioResampler(format="fltp", layout=layout, rate=self.rate)
        self._fifo = av.AudioFifo()
        self._next_pts: int | None = None

    def _drain(self, *, final: bool) -> None:
        size = self.stream.codec_context.frame_size or 1024
        while self._fifo.samples >= size or (final and self._fifo.samples):
            chunk: Any = self._fifo.read(min(size, self._fifo.samples))
            chunk.pts, chunk.time_base = self._next_pts, Fraction(1, self.rate)
            self._next_pts = (self._next_pts or 0) + chunk.samples
            self._container.mux(self.stream.encode(chunk))

    def feed(self, frame: av.AudioFrame | None) -> None:
        """Add one decoded frame (None flushes everything)."""
        if frame is not None and self._next_pts is None:
            start = frame.time if frame.time is not None else 0.0
            self._next_pts = round(start * self.rate)
        for resampled in self._resampler.resample(frame):
            resampled.pts = None  # the FIFO wants continuous timestamps; ours are counted from the first frame
            self._fifo.write(resampled)
        self._drain(final=frame is None)
        if frame is None:
            self._container.mux(self.stream.encode(None))


def _to_rgb(frame: av.VideoFrame, info: VideoInfo) -> np.ndarray:
    kwargs: dict[str, Any] = {"format": "rgb24"}
    if (frame.width, frame.height) != (info.scaled_width, info.scaled_height):
        kwargs.update(width=info.scaled_width, height=info.scaled_height, interpolation="AREA")
    rgb = frame.to_ndarray(**kwargs)
    return np.rot90(rgb, info.rotation) if info.rotation else rgb


def _decode_batches(
    path: Path, info: VideoInfo, options: VideoOptions, *, audio_mode: str | None, skipped: list[int]
) -> Iterator[_Batch]:
    """Decode the input into batches of upright RGB frames, with audio packets ("copy") or frames ("aac")."""
    default_duration = max(1, round(1 / info.rate / info.time_base))
    with _open_input(path) as container:
        video = container.streams.video[0]
        video.thread_type = "AUTO"
        audio = container.streams.best("audio") if audio_mode else None
        streams = [video] + ([audio] if audio is not None else [])
        frames: list[np.ndarray] = []
        pts: list[int] = []
        durations: list[int] = []
        pending_audio: list[Any] = []
        last_pts: int | None = None
        for packet in container.demux(streams):
            if audio is not None and packet.stream is audio:
                if audio_mode == "copy":
                    if packet.size:
                        pending_audio.append(packet)
                else:
                    try:
                        pending_audio.extend(packet.decode())
                    except av.FFmpegError:
                        skipped[0] += 1
                continue
            try:
                decoded = packet.decode()
            except av.FFmpegError:
                skipped[0] += 1
                continue
            for frame in decoded:
                assert isinstance(frame, av.VideoFrame)
                stamp = (
                    frame.pts if frame.pts is not None else (last_pts + default_duration if last_pts is not None else 0)
                )
                if last_pts is not None and stamp <= last_pts:
                    stamp = last_pts + 1  # the encoder needs strictly increasing timestamps
                last_pts = stamp
                frames.append(_to_rgb(frame, info))
                pts.append(stamp)
                durations.append(frame.duration or default_duration)
                if len(frames) >= options.batch_frames:
                    yield _Batch(np.stack(frames), pts, durations, pending_audio)
                    frames, pts, durations, pending_audio = [], [], [], []
        if frames or pending_audio:
            stacked = np.stack(frames) if frames else np.zeros((0, info.height, info.width, 3), np.uint8)
            yield _Batch(stacked, pts, durations, pending_audio)


def _pad_even(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    pad_h, pad_w = height - frames.shape[1], width - frames.shape[2]
    if pad_h or pad_w:
        return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


def cartoonize_video(
    input_path: Path,
    output_path: Path,
    *,
    engine: Cartoonizer,
    options: VideoOptions | None = None,
    progress: ProgressTracker | None = None,
) -> VideoResult:
    """Cartoonize a video file into output_path (.mp4, .mov, .m4v or .mkv), keeping timing and audio."""
    options = options or VideoOptions()
    tracker = progress or ProgressTracker()
    started = time.perf_counter()
    fmt = container_format(output_path)
    info = probe_video(input_path, max_side=options.max_side, max_seconds=options.max_seconds)
    encoder = choose_encoder(options.encoder)
    audio_mode = audio_plan(fmt, info.audio_codec)
    width = _even(2 * info.scaled_upright_width) if options.side_by_side else info.width
    tracker.start(frames_total=info.frames_total, kind="video")
    stop = threading.Event()
    errors: list[BaseException] = []
    decoded: queue.Queue[Any] = queue.Queue(maxsize=options.queue_batches)
    inferred: queue.Queue[Any] = queue.Queue(maxsize=options.queue_batches)
    skipped = [0]
    end = object()
    timers = {"decode": 0.0, "inference": 0.0, "encode": 0.0}

    def stage(target: Callable[[], None], output: queue.Queue[Any]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
                _put(output, end, stop)
            except _Stopped:
                pass
            except BaseException as exc:
                errors.append(exc)
                stop.set()

        return run

    def decode() -> None:
        batches = _decode_batches(input_path, info, options, audio_mode=audio_mode, skipped=skipped)
        while True:
            tick = time.perf_counter()
            batch = next(batches, None)
            timers["decode"] += time.perf_counter() - tick
            if batch is None:
                return
            _put(decoded, batch, stop)

    smoother = TemporalSmoother() if options.smooth else None

    def infer() -> None:
        while (batch := _get(decoded, stop)) is not end:
            tick = time.perf_counter()
            if len(batch.frames):
                cartoons = engine.cartoonize(batch.frames)
                if smoother is not None:
                    cartoons = np.stack([smoother(s, c) for s, c in zip(batch.frames, cartoons, strict=True)])
                if options.side_by_side:
                    cartoons = np.concatenate([batch.frames, cartoons], axis=2)
                batch.frames = _pad_even(cartoons, width, info.height)
            timers["inference"] += time.perf_counter() - tick
            _put(inferred, batch, stop)

    threads = [
        threading.Thread(target=stage(decode, decoded), name="cartoonizer-decode", daemon=True),
        threading.Thread(target=stage(infer, inferred), name="cartoonizer-infer", daemon=True),
    ]
    frames_written = 0
    output_path.parent.mkdir(parents=True, exist_ok=True)
    container_options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
    try:
        with av.open(str(output_path), "w", format=fmt, options=container_options) as output:
            stream: Any = output.add_stream(encoder, rate=info.rate)
            stream.width, stream.height, stream.pix_fmt = width, info.height, "yuv420p"
            stream.time_base = info.time_base
            stream.codec_context.time_base = info.time_base
            stream.options = dict(ENCODER_OPTIONS[encoder])
            audio_out: Any = None
            transcoder: _AudioTranscoder | None = None
            if audio_mode == "copy":
                with _open_input(input_path) as template:
                    audio_out = output.add_stream_from_template(template.streams.audio[_best_audio(template)])
            elif audio_mode == "aac":
                with _open_input(input_path) as template:
                    source: Any = template.streams.audio[_best_audio(template)]
                    transcoder = _AudioTranscoder(
                        output, rate=source.codec_context.sample_rate, channels=source.codec_context.channels
                    )
            for thread in threads:
                thread.start()
            while (batch := _get(inferred, stop)) is not end:
                tick = time.perf_counter()
                for rgb, stamp, duration in zip(batch.frames, batch.pts, batch.durations, strict=True):
                    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                    frame.pts, frame.time_base, frame.duration = stamp, info.time_base, duration
                    output.mux(stream.encode(frame))
                for item in batch.audio:
                    if transcoder is not None:
                        transcoder.feed(item)
                    else:
                        item.stream = audio_out
                        output.mux(item)
                frames_written += len(batch.frames)
                timers["encode"] += time.perf_counter() - tick
                tracker.advance(len(batch.frames))
            tick = time.perf_counter()
            output.mux(stream.encode(None))
            if transcoder is not None:
                transcoder.feed(None)
            timers["encode"] += time.perf_counter() - tick
    except _Stopped:
        pass
    finally:
        stop.set()  # the stages have finished unless something failed; either way none may block any more
        for thread in threads:
            if thread.ident is not None:
                thread.join(timeout=30)
    if errors:
        raise errors[0]
    if frames_written == 0:
        raise CorruptMediaError("input video has no decodable frames", field="input")
    total = time.perf_counter() - started
    result = VideoResult(
        frames=frames_written,
        width=width,
        height=info.height,
        source_width=info.stored_height if info.rotation % 2 else info.stored_width,
        source_height=info.stored_width if info.rotation % 2 else info.stored_height,
        rotation_degrees=info.rotation * 90,
        audio=audio_mode,
        encoder=encoder,
        skipped_packets=skipped[0],
        seconds={**{k: round(v, 3) for k, v in timers.items()}, "total": round(total, 3)},
    )
    tracker.finish(**{"fps_overall": round(frames_written / max(total, 1e-9), 3)})
    return result
