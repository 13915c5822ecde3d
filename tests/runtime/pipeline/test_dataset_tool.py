"""Dataset tool: counts and skips bad files, crops/resizes/mirrors, reads zip/tar archives safely, fails clearly."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime.pipeline.archives import ArchiveError, ArchiveLimits, list_members, read_members
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


def _png(colour: tuple[int, int, int], size: int = 40) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _tar(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:  # type: ignore[call-overload]
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_archives_inside_the_input_folder_are_read_beside_loose_images(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "loose.png").write_bytes(_png((255, 0, 0)))
    with zipfile.ZipFile(folder / "kaggle.zip", "w") as zf:
        zf.writestr("faces/a.png", _png((0, 255, 0)))
        zf.writestr("faces/broken.jpg", b"not a jpeg")
        zf.writestr("faces/readme.txt", "ignored")
    _tar(folder / "more.tar.gz", {"b.png": _png((0, 0, 255)), "sub/c.png": _png((9, 9, 9))})
    _tar(folder / "plain.tar", {"d.png": _png((200, 200, 0))}, mode="w")
    assert main(["--source", str(folder), "--dest", str(tmp_path / "out"), "--resolution", "8"]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (manifest["found"], manifest["written"], manifest["skipped_unreadable"]) == (6, 5, 1)
    assert manifest["skipped"] == [{"file": "kaggle.zip:faces/broken.jpg", "reason": "unreadable"}]
    images = np.load(tmp_path / "out" / "images.npy")
    # Loose files first, then each archive (sorted by path) in member order.
    assert [tuple(int(v) for v in image[:, 4, 4]) for image in images] == [
        (255, 0, 0), (0, 255, 0), (0, 0, 255), (9, 9, 9), (200, 200, 0),
    ]  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["images.npy", "manifest.json"]


@pytest.mark.parametrize("name", ["faces.zip", "faces.tar.gz"])
def test_a_truncated_archive_fails_naming_the_file(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    whole = tmp_path / name
    if name.endswith(".zip"):
        with zipfile.ZipFile(whole, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for i in range(4):
                zf.writestr(f"{i}.png", _png((i * 60, 0, 0), size=64))
    else:
        _tar(whole, {f"{i}.png": _png((i * 60, 0, 0), size=64) for i in range(4)})
    data = whole.read_bytes()
    (folder / name).write_bytes(data[: len(data) * 2 // 3])
    (folder / "ok.png").write_bytes(_png((1, 2, 3)))
    assert main(["--source", str(folder), "--dest", str(tmp_path / "out"), "--resolution", "8"]) == 1
    err = capsys.readouterr().err
    assert f"archive {folder / name}" in err and ("corrupt" in err or "not a readable zip" in err)
    assert not (tmp_path / "out" / "images.npy").exists()


def test_a_member_with_a_bad_checksum_fails_naming_archive_and_member(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "faces.zip"
    payload = _png((10, 20, 30))
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("good.png", _png((1, 1, 1)))
        zf.writestr("bad.png", payload)
    raw = bytearray(archive.read_bytes())
    at = raw.rindex(payload[-20:])  # flip a byte inside the stored data of bad.png
    raw[at] ^= 0xFF
    archive.write_bytes(bytes(raw))
    assert main(["--source", str(archive), "--dest", str(tmp_path / "out"), "--resolution", "8"]) == 1
    err = capsys.readouterr().err
    assert str(archive) in err and "'bad.png'" in err


@pytest.mark.parametrize("member", ["../escape.png", "/etc/absolute.png", "a/../../up.png", "C:/windows.png"])
@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_members_that_point_outside_the_archive_are_refused(
    tmp_path: Path, member: str, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    if kind == "zip":
        with zipfile.ZipFile(folder / "evil.zip", "w") as zf:
            zf.writestr("fine.png", _png((1, 1, 1)))
            zf.writestr(zipfile.ZipInfo(member), _png((2, 2, 2)))
    else:
        _tar(folder / "evil.tar", {"fine.png": _png((1, 1, 1)), member: _png((2, 2, 2))}, mode="w")
    assert main(["--source", str(folder), "--dest", str(tmp_path / "out"), "--resolution", "8"]) == 1
    err = capsys.readouterr().err
    assert "path traversal" in err and "evil." in err
    assert not (tmp_path / "escape.png").exists() and not (tmp_path / "up.png").exists()


def test_zip_bombs_and_oversized_members_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("huge.png", b"\0" * (4 << 20))  # 4 MiB of zeros deflate about 1000 times
    assert main(["--source", str(bomb), "--dest", str(tmp_path / "out"), "--resolution", "8"]) == 1
    assert "inflates" in capsys.readouterr().err

    big = _tar(tmp_path / "big.tar", {"a.png": _png((1, 1, 1)), "b.png": _png((2, 2, 2))}, mode="w")
    with pytest.raises(ArchiveError, match=r"'a\.png' inflates to \d+ bytes, over the 100-byte limit"):
        list_members(big, lambda name: True, ArchiveLimits(max_member_bytes=100))
    with pytest.raises(ArchiveError, match="more than 1 members"):
        list_members(big, lambda name: True, ArchiveLimits(max_members=1))
    size = len(_png((1, 1, 1)))
    with pytest.raises(ArchiveError, match="more than"):
        list_members(big, lambda name: True, ArchiveLimits(max_total_bytes=size + 1))


def test_links_inside_a_tar_are_never_followed(tmp_path: Path) -> None:
    archive = tmp_path / "links.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("real.png")
        data = _png((5, 5, 5))
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("link.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    assert list_members(archive, lambda name: True) == ["real.png"]
    assert [name for name, _ in read_members(archive, ["real.png"])] == ["real.png"]
