"""Videos made by the tests with PyAV: frame count, timing, duration, audio, rotation, odd sizes, errors, memory."""

from __future__ import annotations

import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from runtime.cartoonizer import video as video_module
from runtime.cartoonizer.engine import Cartoonizer
from runtime.cartoonizer.errors import CorruptMediaError, TooLargeError, UnsupportedMediaError
from runtime.cartoonizer.progress import ProgressTracker
from runtime.cartoonizer.synthetic import ClipSpec, make_clip
from runtime.cartoonizer.video import TemporalSmoother, VideoOptions, audio_plan, cartoonize_video, choose_encoder


def describe(path: Path) -> dict[str, Any]:
    """Frame count, pts in seconds, size, rotation, rate, duration and audio of a file, as a player sees them."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        base = stream.time_base
        audio = container.streams.audio
        return {
            "frames": len(frames),
            "seconds": [float((f.pts - frames[0].pts) * base) for f in frames],
            "size": (frames[0].width, frames[0].height),
            "rotation": frames[0].rotation,
            "rate": stream.average_rate,
            "duration": container.duration / av.time_base if container.duration else None,
            "audio": audio[0].codec_context.name if audio else None,
            "audio_seconds": float(audio[0].duration * audio[0].time_base) if audio and audio[0].duration else None,
            "first": frames[0].to_ndarray(format="rgb24"),
        }


def _run(
    engine: Cartoonizer, tmp_path: Path, spec: ClipSpec, source_name: str, out_name: str, **options: Any
) -> tuple[dict[str, Any], dict[str, Any], Any]:
    source = make_clip(tmp_path / source_name, spec)
    out = tmp_path / out_name
    result = cartoonize_video(source, out, engine=engine, options=VideoOptions(**options))
    return describe(source), describe(out), result


def _assert_same_timing(before: dict[str, Any], after: dict[str, Any], rate: Fraction) -> None:
    assert after["frames"] == before["frames"]
    np.testing.assert_allclose(after["seconds"], before["seconds"], atol=1e-3)
    assert abs(after["duration"] - before["duration"]) <= float(1 / rate)


def test_aac_clip_keeps_frames_timing_and_copies_audio(engine: Cartoonizer, tmp_path: Path) -> None:
    before, after, result = _run(engine, tmp_path, ClipSpec(frames=14), "in.mp4", "out.mp4")
    _assert_same_timing(before, after, Fraction(30000, 1001))
    assert after["rate"] == Fraction(30000, 1001)  # 29.97 stays 29.97
    assert after["audio"] == "aac" and result.audio == "copy" and result.encoder == "libx264"
    assert abs(after["audio_seconds"] - before["audio_seconds"]) < 0.03
    assert result.frames == 14


def test_clip_without_audio_has_no_audio(engine: Cartoonizer, tmp_path: Path) -> None:
    before, after, result = _run(engine, tmp_path, ClipSpec(audio=None, rate=Fraction(25)), "in.mp4", "out.mp4")
    _assert_same_timing(before, after, Fraction(25))
    assert before["audio"] is None and after["audio"] is None and result.audio is None


def test_pcm_in_mov_is_transcoded_to_aac_for_mp4_and_copied_into_mov(engine: Cartoonizer, tmp_path: Path) -> None:
    spec = ClipSpec(audio="pcm_s16le", frames=10)
    before, to_mp4, result = _run(engine, tmp_path, spec, "in.mov", "out.mp4")
    assert before["audio"] == "pcm_s16le" and to_mp4["audio"] == "aac" and result.audio == "aac"
    _assert_same_timing(before, to_mp4, spec.rate)
    assert abs(to_mp4["audio_seconds"] - before["audio_seconds"]) < 0.05
    copied = cartoonize_video(tmp_path / "in.mov", tmp_path / "out.mov", engine=engine)
    assert copied.audio == "copy" and describe(tmp_path / "out.mov")["audio"] == "pcm_s16le"


def test_pcm_in_mkv_with_mp3_target_rules() -> None:
    assert audio_plan("mp4", "pcm_s16le") == "aac"
    assert audio_plan("mp4", "mp3") == "copy"
    assert audio_plan("matroska", "pcm_s16le") == "copy"
    assert audio_plan("mp4", None) is None


def test_rotated_clip_is_written_upright_without_a_rotation_tag(engine: Cartoonizer, tmp_path: Path) -> None:
    before, after, result = _run(engine, tmp_path, ClipSpec(rotation=90, width=64, height=48), "in.mp4", "out.mp4")
    assert before["rotation"] == 90 and before["size"] == (64, 48)
    assert after["rotation"] == 0 and after["size"] == (48, 64) and result.rotation_degrees == 90
    _assert_same_timing(before, after, Fraction(30000, 1001))


@pytest.mark.parametrize(("rotation", "turns"), [(-90, -1), (90, 1), (180, 2)])
def test_upright_orientation_matches_the_source_content(tmp_path: Path, rotation: int, turns: int) -> None:
    """The display matrix rotates counter-clockwise by frame.rotation (FFmpeg's convention); output is upright."""

    class Identity:
        device = "cpu"

        def cartoonize(self, frames: np.ndarray) -> np.ndarray:
            return frames

    source = make_clip(tmp_path / "in.mp4", ClipSpec(rotation=rotation, width=64, height=48, frames=3, audio=None))
    cartoonize_video(source, tmp_path / "out.mp4", engine=Identity())  # type: ignore[arg-type]
    stored = describe(source)["first"]
    expected = np.rot90(stored, turns)
    got = describe(tmp_path / "out.mp4")["first"]
    assert got.shape == expected.shape
    assert np.abs(got.astype(int) - expected.astype(int)).mean() < 12


def test_variable_frame_rate_is_kept(engine: Cartoonizer, tmp_path: Path) -> None:
    spec = ClipSpec(vfr=True, frames=12, audio=None)
    before, after, _ = _run(engine, tmp_path, spec, "in.mkv", "out.mp4")
    gaps = np.diff(before["seconds"])
    assert gaps.max() > 1.5 * gaps.min()  # the input really is VFR
    _assert_same_timing(before, after, spec.rate)


def test_odd_size_is_kept_up_to_one_padded_pixel(engine: Cartoonizer, tmp_path: Path) -> None:
    spec = ClipSpec(width=65, height=49, pix_fmt="yuv444p", frames=10)
    before, after, result = _run(engine, tmp_path, spec, "in.mp4", "out.mp4")
    assert before["size"] == (65, 49) and after["size"] == (66, 50)
    assert (result.source_width, result.source_height) == (65, 49)
    _assert_same_timing(before, after, spec.rate)
    assert after["audio"] == "aac"


def test_long_side_cap_scales_down_to_even_sizes(engine: Cartoonizer, tmp_path: Path) -> None:
    _, after, _ = _run(
        engine, tmp_path, ClipSpec(width=96, height=54, frames=4, audio=None), "in.mp4", "out.mp4", max_side=48
    )
    assert after["size"] == (48, 26)


def test_corrupt_and_audio_only_inputs_are_clear_errors(engine: Cartoonizer, tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(CorruptMediaError) as raised:
        cartoonize_video(junk, tmp_path / "out.mp4", engine=engine)
    assert raised.value.status == 400 and "not a readable video" in raised.value.message
    truncated = make_clip(tmp_path / "clip.mp4", ClipSpec(frames=6))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(truncated.read_bytes()[:400])
    with pytest.raises(CorruptMediaError):
        cartoonize_video(cut, tmp_path / "out.mp4", engine=engine)
    audio_only = tmp_path / "tone.m4a"
    with av.open(str(audio_only), "w", format="mp4") as container:
        stream: Any = container.add_stream("aac", rate=8000)
        for index in range(4):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, index * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(UnsupportedMediaError, match="no video stream"):
        cartoonize_video(audio_only, tmp_path / "out.mp4", engine=engine)


def test_too_long_and_unknown_output_are_refused(engine: Cartoonizer, tmp_path: Path) -> None:
    source = make_clip(tmp_path / "in.mp4", ClipSpec(frames=30, audio=None))
    with pytest.raises(TooLargeError, match=r"limit is 0\.5 s"):
        cartoonize_video(source, tmp_path / "out.mp4", engine=engine, options=VideoOptions(max_seconds=0.5))
    with pytest.raises(UnsupportedMediaError):
        cartoonize_video(source, tmp_path / "out.avi", engine=engine)


def test_progress_reports_frames_fps_and_eta(engine: Cartoonizer, tmp_path: Path) -> None:
    documents: list[dict[str, Any]] = []
    tracker = ProgressTracker(sinks=[documents.append], interval_s=0.0)
    source = make_clip(tmp_path / "in.mp4", ClipSpec(frames=9, audio=None))
    cartoonize_video(
        source, tmp_path / "out.mp4", engine=engine, options=VideoOptions(batch_frames=2), progress=tracker
    )
    states = [d["state"] for d in documents]
    assert states[0] == "running" and states[-1] == "done"
    assert documents[0]["frames_total"] == 9
    running = [d for d in documents if d["state"] == "running" and d["frames_done"]]
    assert running and all(d["eta_s"] is not None and d["fps"] > 0 for d in running)
    assert [d["frames_done"] for d in documents][-1] == 9


def test_stages_overlap_with_bounded_queues(tmp_path: Path) -> None:
    """Decoding never runs more than the queues' worth of batches ahead of encoding, and does run ahead."""
    lock = threading.Lock()
    counts = {"decoded": 0, "encoded": 0, "max_ahead": 0, "infer_threads": set()}

    class SlowIdentity:
        device = "cpu"

        def cartoonize(self, frames: np.ndarray) -> np.ndarray:
            counts["infer_threads"].add(threading.current_thread().name)
            time.sleep(0.02)
            return frames

    original = video_module._decode_batches

    def counting(*args: Any, **kwargs: Any) -> Any:
        for batch in original(*args, **kwargs):
            with lock:
                counts["decoded"] += 1
                counts["max_ahead"] = max(counts["max_ahead"], counts["decoded"] - counts["encoded"])
            yield batch

    tracker = ProgressTracker(interval_s=0.0)
    original_advance = tracker.advance

    def advance(frames: int) -> None:
        with lock:
            counts["encoded"] += 1
        original_advance(frames)

    tracker.advance = advance  # type: ignore[method-assign]
    source = make_clip(tmp_path / "in.mp4", ClipSpec(frames=40, audio=None))
    pytest.MonkeyPatch().setattr(video_module, "_decode_batches", counting)
    try:
        options = VideoOptions(batch_frames=2, queue_batches=1)
        result = cartoonize_video(
            source, tmp_path / "out.mp4", engine=SlowIdentity(), options=options, progress=tracker
        )  # type: ignore[arg-type]
    finally:
        video_module._decode_batches = original
    assert result.frames == 40
    # One batch in each queue, one in inference, one being decoded: never the whole video.
    assert 2 <= counts["max_ahead"] <= 4
    assert counts["infer_threads"] == {"cartoonizer-infer"}


def test_a_failing_stage_stops_the_job_with_its_error(tmp_path: Path) -> None:
    class Broken:
        device = "cpu"

        def cartoonize(self, frames: np.ndarray) -> np.ndarray:
            raise RuntimeError("model exploded")

    source = make_clip(tmp_path / "in.mp4", ClipSpec(frames=20, audio=None))
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="model exploded"):
        cartoonize_video(source, tmp_path / "out.mp4", engine=Broken(), options=VideoOptions(batch_frames=2))  # type: ignore[arg-type]
    assert time.monotonic() - started < 10
    assert not [t for t in threading.enumerate() if t.name.startswith("cartoonizer-")]


def test_smoother_blends_still_areas_ignores_motion_and_resets_on_cuts() -> None:
    smoother = TemporalSmoother(strength=0.5, motion_threshold=10.0, cut_threshold=40.0)
    still = np.full((4, 4, 3), 100, np.uint8)
    first = smoother(still, np.full((4, 4, 3), 200, np.uint8))
    assert (first == 200).all()  # nothing to blend with yet
    second = smoother(still, np.full((4, 4, 3), 100, np.uint8))
    assert (second == 150).all()  # still input: half of the previous output
    moved = still.copy()
    moved[0, 0] = 255
    third = smoother(moved, np.full((4, 4, 3), 0, np.uint8))
    assert third[0, 0, 0] == 0 and third[3, 3, 0] == 75
    cut = smoother(np.full((4, 4, 3), 250, np.uint8), np.full((4, 4, 3), 10, np.uint8))
    assert (cut == 10).all() and smoother.cuts == 1


def test_smoothing_option_runs_through_the_pipeline(engine: Cartoonizer, tmp_path: Path) -> None:
    _, after, _ = _run(engine, tmp_path, ClipSpec(frames=6, audio=None), "in.mp4", "out.mp4", smooth=True)
    assert after["frames"] == 6


def test_encoder_is_nvenc_only_when_the_probe_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    if not Path("/dev/nvidiactl").exists():  # no GPU: the probe fails and libx264 is used
        assert video_module.nvenc_available() is False
        assert choose_encoder("auto") == "libx264"
    monkeypatch.setattr(video_module, "nvenc_available", lambda: True)
    assert choose_encoder("auto") == "h264_nvenc"
    assert choose_encoder("libx264") == "libx264"
