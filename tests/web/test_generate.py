"""The Generate tab in a real browser: a prompt gives images with their seeds; "More like this" reuses a seed."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from tests.web.conftest import Studio, wait_for_result

pytestmark = [pytest.mark.browser, pytest.mark.slow]

JOB_TIMEOUT_MS = 180_000  # the tiny diffusion pipeline on CPU behind an emulated warm-up


def test_a_prompt_gives_an_image_with_its_seed_and_more_like_this_reuses_it(
    signed_in: Callable[..., Page], studio: Studio
) -> None:
    page = signed_in("alice")
    page.get_by_role("tab", name="Generate").click()
    expect(page.get_by_test_id("panel-generate")).to_be_visible()
    expect(page.get_by_test_id("panel-cartoonize")).to_be_hidden()
    sizes = page.get_by_test_id("size").locator("option").all_inner_texts()
    assert sizes, "no sizes offered"
    page.get_by_label("Prompt", exact=True).fill("a lighthouse on a cliff, watercolour")
    page.get_by_label("Negative prompt (optional)").fill("blurry")
    page.get_by_test_id("size").select_option(index=0)
    page.get_by_label("Steps").fill("2")
    studio.shot(page, "generate-form")
    page.get_by_test_id("generate-submit").click()

    expect(page.get_by_test_id("generate-job")).to_be_visible()
    wait_for_result(page, "generate-result", timeout_ms=JOB_TIMEOUT_MS)
    first_job = page.get_by_test_id("generate-job").get_attribute("data-job-id")
    item = page.get_by_test_id("generate-item").first
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=item.get_by_test_id("generated-image").element_handle()
    )
    seed_text = item.get_by_test_id("result-seed").inner_text()
    assert re.fullmatch(r"Seed \d+", seed_text), seed_text
    seed = seed_text.removeprefix("Seed ")
    studio.shot(page, "generated")

    item.get_by_test_id("more-like-this").click()
    expect(page.get_by_test_id("generate-job")).not_to_have_attribute("data-job-id", first_job or "")
    wait_for_result(page, "generate-result", timeout_ms=JOB_TIMEOUT_MS)
    second_job = page.get_by_test_id("generate-job").get_attribute("data-job-id")
    assert second_job and second_job != first_job
    expect(page.get_by_test_id("seed")).to_have_value(seed)
    expect(page.get_by_label("Prompt", exact=True)).to_have_value("a lighthouse on a cliff, watercolour")
    expect(page.get_by_test_id("result-seed").first).to_have_text(f"Seed {seed}")
    expect(page.get_by_test_id("generate-prompt-shown")).to_contain_text("a lighthouse on a cliff")
    studio.shot(page, "more-like-this")
    expect(page.get_by_test_id("job-item").filter(has_text="a lighthouse on a cliff")).to_have_count(2)

    page.get_by_role("tab", name="Cartoonize").click()
    page.locator(f'[data-testid="job-item"][data-job-id="{second_job}"] a').click()  # the job on show: its tab
    expect(page.get_by_test_id("panel-generate")).to_be_visible()
    page.locator(f'[data-testid="job-item"][data-job-id="{first_job}"] a').click()  # an earlier job: opened again
    expect(page.get_by_test_id("generate-job")).to_have_attribute("data-job-id", first_job or "")
    wait_for_result(page, "generate-result", timeout_ms=JOB_TIMEOUT_MS)
    expect(page.get_by_test_id("result-seed").first).to_have_text(f"Seed {seed}")
    assert page.url.endswith(f"#job/{first_job}")
