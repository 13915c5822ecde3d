"""Sign-in through the page: wrong password, sign out, a stale ID token renewed with the refresh token."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, Request, expect

from tests.web.conftest import INVITED, Studio, fill_sign_in, own_studio

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_wrong_password_shows_the_sign_in_services_message(studio: Studio) -> None:
    page = studio.new_page()
    expect(page.get_by_test_id("signin-form")).to_be_visible()
    expect(page.get_by_test_id("local-hint")).to_be_visible()  # config.json says auth.local
    studio.shot(page, "sign-in-form")
    fill_sign_in(page, "alice", "not-her-password")
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text(re.compile(r"incorrect username or password", re.IGNORECASE))
    expect(page.get_by_test_id("studio")).to_be_hidden()
    studio.shot(page, "wrong-password")


def test_sign_in_then_sign_out_forgets_the_session(signed_in: Callable[..., Page], studio: Studio) -> None:
    page = signed_in("alice")
    expect(page.get_by_test_id("signed-in-user")).to_contain_text("alice")
    expect(page.get_by_role("tab", name="Cartoonize")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_test_id("limits")).to_contain_text("MB")
    studio.shot(page, "signed-in")
    page.reload()  # the session survives a reload (session storage) ...
    expect(page.get_by_test_id("studio")).to_be_visible()
    page.get_by_test_id("signout").click()
    expect(page.get_by_test_id("signin-form")).to_be_visible()
    expect(page.get_by_test_id("studio")).to_be_hidden()
    page.reload()  # ... but not a sign-out
    expect(page.get_by_test_id("signin-form")).to_be_visible()
    assert page.evaluate("() => sessionStorage.length") == 0


def test_an_expired_id_token_is_renewed_with_the_refresh_token(signed_in: Callable[..., Page]) -> None:
    page = signed_in("alice")
    page.evaluate(
        """() => {
            const tokens = JSON.parse(sessionStorage.getItem("genart.tokens"));
            tokens.expiresAt = Date.now() - 1000;
            sessionStorage.setItem("genart.tokens", JSON.stringify(tokens));
        }"""
    )
    flows: list[str] = []

    def record(request: Request) -> None:
        if request.method == "POST" and "InitiateAuth" in (request.headers.get("x-amz-target") or ""):
            flows.append(json.loads(request.post_data or "{}").get("AuthFlow", ""))

    page.on("request", record)
    page.reload()
    expect(page.get_by_test_id("studio")).to_be_visible()
    expect(page.get_by_test_id("signed-in-user")).to_contain_text("alice")
    expect(page.get_by_role("alert")).to_be_hidden()
    assert flows == ["REFRESH_TOKEN_AUTH"]


def test_an_invited_user_chooses_a_new_password_at_first_sign_in(studio: Studio) -> None:
    if not own_studio():
        pytest.skip("needs the invited user the fixture's own local studio has (--users)")
    name, temporary = INVITED
    page = studio.new_page()
    fill_sign_in(page, name, temporary)
    expect(page.get_by_test_id("newpassword-form")).to_be_visible()
    expect(page.get_by_test_id("signin-form")).to_be_hidden()
    studio.shot(page, "new-password-required")
    page.get_by_label("New password", exact=True).fill("carol-chosen-password-1")
    page.get_by_label("Repeat the new password").fill("carol-chosen-password-2")
    page.get_by_test_id("newpassword-submit").click()
    expect(page.get_by_role("alert")).to_contain_text("must be the same")
    page.get_by_label("Repeat the new password").fill("carol-chosen-password-1")
    page.get_by_test_id("newpassword-submit").click()
    expect(page.get_by_test_id("signed-in-user")).to_contain_text(name)

    page.get_by_test_id("signout").click()
    fill_sign_in(page, name, temporary)
    expect(page.get_by_role("alert")).to_be_visible()  # the temporary password is spent
    fill_sign_in(page, name, "carol-chosen-password-1")
    expect(page.get_by_test_id("signed-in-user")).to_contain_text(name)
    expect(page.get_by_test_id("newpassword-form")).to_be_hidden()
