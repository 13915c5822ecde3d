"""Dataset tool: counts and skips bad files, crops/resizes/mirrors, reads zips, fails clearly on unusable input."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime.pipeline.stylegan2.dataset import ImageDataset
from runtime.pipeline.stylegan2.dataset_tool import main

from .conftest import PIPELINE_DIR, step_command, step_env


def _write_images(folder: Path) -> None:
    """Three good images (one non-square with coloured side bars, nested, webp, jpeg), one corrupt, one tiny."""
    folder.mkdir(parents=True)
    wide = Image.new("RGB", (96, 64), (0, 255, 0))
    wide.paste((255, 0, 0), (16, 0, 80, 64))  # red centre square, green bars left and right
    wide.save(folder / "wide.png")
    (folder / "nested").mkdir()
    Image.new("RGB", (64, 64), (0, 0, 255)).save(folder / "nested" / "blue.webp")
    Image.new("RGB", (40, 50), (255, 255, 255)).save(folder / "white.JPG", quality=95)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    Image.new("RGB", (20, 20), (9, 9, 9)).save(folder / "tiny.png")
    (folder / "notes.txt").write_text("ignored: not an image suffix")


def test_counts_skips_crops_and_mirrors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_images(tmp_path / "in")
    rc = main(["--source", str(tmp_path / "in"), "--dest", str(tmp_path / "out"), "--resolution", "16", "--mirror"])
    assert rc == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["found"] == 5
    assert manifest["valid"] == 3 and manifest["written"] == 6
    assert manifest["skipped_unreadable"] == 1 and manifest["skipped_too_small"] == 1
    assert manifest["resolution"] == 16 and manifest["mirror"] is True
    assert {s["file"] for s in manifest["skipped"]} == {"broken.jpg", "tiny.png"}
    report = capsys.readouterr().err  # the shared JSON log lines go to stderr
    assert "1 unreadable" in report and "1 too small" in report and "broken.jpg" in report

    images = np.load(tmp_path / "out" / "images.npy", mmap_mode="r")
    assert images.shape == (6, 3, 16, 16) and images.dtype == np.uint8
    # Sorted order: nested/blue.webp, white.JPG, wide.png; each followed by its mirror.
    assert tuple(images[0][:, 8, 8]) == (0, 0, 255)
    wide = images[4].astype(int)
    assert (np.abs(wide - np.array([255, 0, 0])[:, None, None]) <= 2).all(), "green bars must be cropped away"
    np.testing.assert_array_equal(images[5], images[4][:, :, ::-1])
    assert ImageDataset(tmp_path / "out").resolution == 16


def test_reads_zip_archives(tmp_path: Path) -> None:
    _write_images(tmp_path / "in")
    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((tmp_path / "in").rglob("*")):
            if path.is_file():
                zf.write(path, f"faces/{path.relative_to(tmp_path / 'in')}")
        zf.writestr("__MACOSX/faces/._wide.png", b"resource fork")
    assert main(["--source", str(archive), "--dest", str(tmp_path / "out"), "--resolution", "8"]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (manifest["found"], manifest["written"], manifest["skipped_unreadable"]) == (5, 3, 1)
    assert np.load(tmp_path / "out" / "images.npy").shape == (3, 3, 8, 8)


def test_min_size_is_configurable(tmp_path: Path) -> None:
    _write_images(tmp_path / "in")
    args = ["--source", str(tmp_path / "in"), "--dest", str(tmp_path / "out"), "--resolution", "8", "--min-size", "16"]
    assert main(args) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (manifest["written"], manifest["skipped_too_small"]) == (4, 0)


def test_empty_folder_fails_with_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    result = subprocess.run(
        step_command("dataset_tool", "--source", str(tmp_path / "empty"), "--dest", str(tmp_path / "out")),
        env=step_env(),
        cwd=PIPELINE_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "no image files" in result.stderr and str(tmp_path / "empty") in result.stderr


def test_no_valid_images_fails_and_leaves_no_data_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"garbage")
    Image.new("RGB", (8, 8)).save(folder / "b.png")
    assert main(["--source", str(folder), "--dest", str(tmp_path / "out"), "--resolution", "16"]) == 1
    err = capsys.readouterr().err
    assert "none of the 2 image files" in err and "1 unreadable" in err and "1 smaller than 32px" in err
    assert not list((tmp_path / "out").glob("images.npy*"))


def test_missing_source_and_bad_resolution(tmp_path: Path) -> None:
    assert main(["--source", str(tmp_path / "nope"), "--dest", str(tmp_path / "out")]) == 1
    with pytest.raises(SystemExit):
        main(["--source", str(tmp_path), "--dest", str(tmp_path / "out"), "--resolution", "100"])
