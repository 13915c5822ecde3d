"""Users only see their own jobs (list and direct link); the studio fits a 390x844 phone screen."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.web.conftest import PHONE, USERS, Studio, fill_sign_in, wait_for_result

pytestmark = [pytest.mark.browser, pytest.mark.slow]

JOB_TIMEOUT_MS = 180_000


def test_a_second_user_cannot_see_the_first_users_job(
    signed_in: Callable[..., Page], studio: Studio, photo: Path
) -> None:
    alice = signed_in("alice")
    alice.get_by_test_id("file-input").set_input_files(photo)
    wait_for_result(alice, "cartoon-result", timeout_ms=JOB_TIMEOUT_MS)
    job_id = alice.get_by_test_id("cartoon-job").get_attribute("data-job-id")
    assert job_id
    link = f"{studio.url}#job/{job_id}"
    own = signed_in("alice")  # alice's own direct link opens her job in a fresh session
    own.goto(link)
    wait_for_result(own, "cartoon-result", timeout_ms=JOB_TIMEOUT_MS)

    bob = studio.new_page()
    bob.goto(link)  # bob opens alice's link, then signs in
    fill_sign_in(bob, "bob", USERS["bob"])
    expect(bob.get_by_test_id("signed-in-user")).to_contain_text("bob")
    alert = bob.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_have_attribute("data-code", "not_found")
    expect(bob.get_by_test_id("cartoon-result")).to_be_hidden()
    expect(bob.get_by_test_id("result-original")).to_be_empty()
    expect(bob.locator(f'[data-job-id="{job_id}"]')).to_have_count(0)  # the list loaded before the link was opened
    expect(bob.get_by_test_id("job-list")).not_to_contain_text("holiday.png")
    studio.shot(bob, "bob-not-found")


def test_the_studio_fits_a_phone_screen(signed_in: Callable[..., Page], studio: Studio, photo: Path) -> None:
    page = studio.new_page(phone=True)
    expect(page.get_by_test_id("signin-form")).to_be_visible()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    studio.shot(page, "phone-sign-in")

    page = signed_in("alice", phone=True)
    for test_id in ("tab-cartoonize", "tab-generate", "dropzone", "signout"):
        box = page.get_by_test_id(test_id).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], f"{test_id} is off screen: {box}"
    tab = page.get_by_test_id("tab-cartoonize").bounding_box()
    assert tab and tab["height"] >= 40, "tabs are too small to tap"
    page.get_by_test_id("file-input").set_input_files(photo)
    wait_for_result(page, "cartoon-result", timeout_ms=JOB_TIMEOUT_MS)
    page.wait_for_function(
        "el => el.complete && el.naturalWidth > 0", arg=page.get_by_test_id("cartoon-media").element_handle()
    )
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"], "the page scrolls sideways"
    original = page.get_by_test_id("original-media").bounding_box()
    cartoon = page.get_by_test_id("cartoon-media").bounding_box()
    assert original and cartoon and cartoon["x"] + cartoon["width"] <= PHONE["width"]
    assert cartoon["x"] >= original["x"] + original["width"] - 1, "the cartoon is not beside the original"
    studio.shot(page, "phone-photo-done")

    page.get_by_test_id("tab-generate").click()
    for test_id in ("prompt", "size", "steps", "seed", "generate-submit"):
        box = page.get_by_test_id(test_id).bounding_box()
        assert box and box["x"] + box["width"] <= PHONE["width"], f"{test_id} is off screen: {box}"
    studio.shot(page, "phone-generate-form")
