"""The local CLI: image and video, progress JSON beside the output, and the message when no model is present."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime.cartoonizer.cli import main
from runtime.cartoonizer.synthetic import ClipSpec, make_clip


def test_video_with_a_model_writes_output_and_progress(
    tmp_path: Path, model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = make_clip(tmp_path / "clip.mp4", ClipSpec(frames=5))
    out = tmp_path / "out" / "clip.mp4"
    assert main([str(clip), str(out), "--model", str(model_path), "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kind"] == "video" and result["frames"] == 5 and result["audio"] == "copy"
    progress = json.loads((tmp_path / "out" / "clip.mp4.progress.json").read_text())
    assert progress["state"] == "done" and progress["frames_done"] == 5


def test_image_with_random_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(source)
    assert main([str(source), str(tmp_path / "out.jpg"), "--tiny-random", "--side-by-side"]) == 0
    assert Image.open(tmp_path / "out.jpg").size == (60, 20)
    assert "frames" in capsys.readouterr().err  # the progress bar


def test_missing_model_explains_how_to_get_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(source)
    assert main([str(source), str(tmp_path / "o.png"), "--model", str(tmp_path / "none.onnx")]) == 2
    message = capsys.readouterr().err
    assert "python -m runtime.cartoonizer.convert --checkpoint" in message and "--tiny-random" in message
    assert "CC BY-NC-SA 4.0" in message


def test_bad_input_exits_2_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 100)
    assert main([str(junk), str(tmp_path / "o.mp4"), "--tiny-random"]) == 2
    assert "400 corrupt_media" in capsys.readouterr().err
