"""The Cartoonize tab in a real browser: a photo, a video with sound, and files the server refuses."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.web.conftest import Studio, own_studio, wait_for_result

pytestmark = [pytest.mark.browser, pytest.mark.slow]

JOB_TIMEOUT_MS = 180_000  # the video job runs the real cartoonizer on CPU behind an emulated warm-up
# Records every text the status lines show and every value the bars take, so a test can tell what it went through.
WATCH = """() => {
    window.__seen = {upload: [], state: [], frames: [], bar: []};
    const watch = (id, list, read) => new MutationObserver(() => window.__seen[list].push(read()))
        .observe(document.getElementById(id), {attributes: true, childList: true, characterData: true, subtree: true});
    watch("upload-status", "upload", () => document.getElementById("upload-status").textContent);
    watch("cartoon-state", "state", () => document.getElementById("cartoon-state").textContent);
    watch("cartoon-frames", "frames", () => document.getElementById("cartoon-frames").textContent);
    watch("cartoon-job", "bar", () => document.getElementById("cartoon-progress").value);
}"""


def wait_loaded(page: Page, test_id: str) -> None:
    """Waits until the image or video with this test id has loaded something it can show."""
    element = page.get_by_test_id(test_id)
    expect(element).to_be_visible(timeout=30_000)
    page.wait_for_function(
        "el => el.tagName === 'IMG' ? el.complete && el.naturalWidth > 0 : el.readyState >= 1 && el.duration > 0",
        arg=element.element_handle(),
        timeout=30_000,
    )


def test_a_photo_comes_back_as_a_cartoon_beside_the_original(
    signed_in: Callable[..., Page], studio: Studio, photo: Path
) -> None:
    page = signed_in("alice")
    page.evaluate(WATCH)
    page.get_by_test_id("file-input").set_input_files(photo)
    wait_for_result(page, "cartoon-result", timeout_ms=JOB_TIMEOUT_MS)
    wait_loaded(page, "original-media")
    wait_loaded(page, "cartoon-media")
    studio.shot(page, "photo-done")

    original = page.get_by_test_id("original-media").bounding_box()
    cartoon = page.get_by_test_id("cartoon-media").bounding_box()
    assert original and cartoon
    assert cartoon["x"] >= original["x"] + original["width"] - 1, "the cartoon is not beside the original"
    assert abs(cartoon["y"] - original["y"]) < 2
    assert page.get_by_test_id("original-media").evaluate("el => el.tagName") == "IMG"
    expect(page.get_by_test_id("download-link")).to_have_attribute("href", re.compile(r"^https?://"))
    expect(page.get_by_test_id("licence")).to_contain_text(re.compile(r"licen[cs]e|CC BY", re.IGNORECASE))
    expect(page.get_by_test_id("cartoon-state")).to_have_text("Done 100%")
    seen: dict[str, list[Any]] = page.evaluate("() => window.__seen")
    assert "Uploading holiday.png: 100%" in seen["upload"], seen["upload"]  # from XHR upload progress events
    assert page.get_by_test_id("upload-progress").evaluate("el => el.value") == 100

    job_id = page.get_by_test_id("cartoon-job").get_attribute("data-job-id")
    assert job_id and page.url.endswith(f"#job/{job_id}")
    listed = page.get_by_test_id("job-item").filter(has=page.locator(f'a[href="#job/{job_id}"]'))
    expect(listed).to_have_count(1)
    expect(listed).to_contain_text("holiday.png")


def test_a_video_with_sound_shows_progress_to_100_and_the_result_plays(
    signed_in: Callable[..., Page], studio: Studio, clip: Path
) -> None:
    page = signed_in("alice")
    page.evaluate(WATCH)
    page.get_by_test_id("file-input").set_input_files(clip)
    job = page.get_by_test_id("cartoon-job")
    expect(job).to_be_visible(timeout=30_000)
    if own_studio():  # the first video job on a fresh studio waits for the emulated endpoint to scale out
        expect(job).to_have_attribute("data-state", "warming", timeout=30_000)
        expect(page.get_by_test_id("cartoon-state")).to_have_text("Warming a GPU (a few minutes)…")
        studio.shot(page, "video-warming")
    page.wait_for_function(
        "el => ['running', 'done', 'failed'].includes(el.dataset.state)", arg=job.element_handle(), timeout=60_000
    )
    if job.get_attribute("data-state") == "running":  # a 2 s clip may finish between two polls on a fast machine
        studio.shot(page, "video-running")
    wait_for_result(page, "cartoon-result", timeout_ms=JOB_TIMEOUT_MS)
    expect(page.get_by_test_id("cartoon-state")).to_have_text("Done 100%")
    assert page.get_by_test_id("cartoon-progress").evaluate("el => el.value") == 100
    seen: dict[str, list[Any]] = page.evaluate("() => window.__seen")
    assert "Uploading beach.mp4: 100%" in seen["upload"], seen["upload"]
    frames = [text for text in seen["frames"] if text]
    assert frames, f"no 'Frame N of M' line was shown; states seen: {seen['state']}"
    assert all(re.fullmatch(r"Frame \d+ of \d+", text) for text in frames), frames
    done, total = map(int, re.findall(r"\d+", frames[-1]))
    assert done == total > 0

    video = page.get_by_test_id("cartoon-media")
    assert video.evaluate("el => el.tagName") == "VIDEO"
    assert video.evaluate("el => el.controls") is True
    wait_loaded(page, "cartoon-media")
    wait_loaded(page, "original-media")
    video.evaluate("el => { el.muted = true; return el.play(); }")
    page.wait_for_function("el => el.currentTime > 0 && el.duration > 0", arg=video.element_handle(), timeout=30_000)
    studio.shot(page, "video-done-playing")


def test_an_oversize_photo_and_an_unsupported_type_show_the_servers_messages(
    signed_in: Callable[..., Page], studio: Studio, media_dir: Path, studio_config: dict[str, Any]
) -> None:
    page = signed_in("alice")
    oversize = media_dir / "huge.png"
    with oversize.open("wb") as handle:
        handle.truncate(int(studio_config["limits"]["max_image_bytes"]) + 1)
    page.get_by_test_id("file-input").set_input_files(oversize)
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_have_attribute("data-code", "too_large")
    expect(alert).to_have_attribute("data-field", "size")
    expect(page.get_by_test_id("error-field")).to_have_text("(field: size)")
    expect(page.get_by_test_id("error-message")).not_to_be_empty()
    expect(page.get_by_test_id("upload")).to_be_hidden()
    expect(page.get_by_test_id("cartoon-job")).to_be_hidden()
    studio.shot(page, "oversize")

    animation = media_dir / "dance.gif"
    animation.write_bytes(b"GIF89a" + bytes(64))
    page.get_by_test_id("file-input").set_input_files(animation)
    expect(alert).to_have_attribute("data-code", "unsupported_type")
    expect(alert).to_have_attribute("data-field", "content_type")
    expect(page.get_by_test_id("error-message")).to_contain_text("image/gif")
    expect(page.get_by_test_id("cartoon-job")).to_be_hidden()
    studio.shot(page, "unsupported-type")


def test_a_photo_dropped_on_the_drop_zone_is_cartoonized(
    signed_in: Callable[..., Page], studio: Studio, photo: Path
) -> None:
    page = signed_in("alice")
    zone = page.get_by_test_id("dropzone")
    zone.evaluate(
        """(zone, b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const data = new DataTransfer();
            data.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
            zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: data, bubbles: true, cancelable: true}));
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
        }""",
        base64.b64encode(photo.read_bytes()).decode("ascii"),
    )
    wait_for_result(page, "cartoon-result", timeout_ms=JOB_TIMEOUT_MS)
    expect(page.get_by_test_id("upload-status")).to_have_text("Uploaded dropped.png: 100%")
    expect(page.get_by_test_id("original-media")).to_have_attribute("alt", "Original: dropped.png")
    expect(zone).not_to_have_class(re.compile("dragging"))


def test_a_broken_video_ends_failed_with_the_jobs_message(
    signed_in: Callable[..., Page], studio: Studio, media_dir: Path
) -> None:
    page = signed_in("alice")
    broken = media_dir / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    page.get_by_test_id("file-input").set_input_files(broken)
    job = page.get_by_test_id("cartoon-job")
    expect(job).to_have_attribute("data-state", "failed", timeout=JOB_TIMEOUT_MS)
    expect(page.get_by_test_id("cartoon-state")).to_have_text("Failed")
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(page.get_by_test_id("error-message")).to_contain_text("not a readable video")  # the cartoonizer's words
    expect(page.get_by_test_id("cartoon-result")).to_be_hidden()
    job_id = job.get_attribute("data-job-id")
    expect(page.locator(f'[data-testid="job-item"][data-job-id="{job_id}"]')).to_have_attribute("data-state", "failed")
    studio.shot(page, "video-failed")
