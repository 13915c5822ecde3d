"""Browser-test fixtures: the local studio (runtime.web.local), Debian's chromium, a strict CSP."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "web"
# Debian's chromium, or the browser GENART_CHROMIUM names (GitHub's Ubuntu runners have Google Chrome, no chromium).
CHROMIUM = Path(os.environ.get("GENART_CHROMIUM") or "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
READY = re.compile(r"web studio: (http://127\.0\.0\.1:\d+/)")
START_TIMEOUT_S = 300.0  # moto, the tiny models and the diffusion pipeline load on 2 CPU cores
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
USERS = {"alice": "alice-password-1", "bob": "bob-password-1"}
INVITED = ("carol", "carol-temporary-1")  # an invited user: her first sign-in must choose a new password


def own_studio() -> bool:
    """True when the tests start their own local studio (fresh: demo and invited users, no endpoint warmed yet)."""
    return not os.environ.get("GENART_WEB_STUDIO_URL")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    """Debian's chromium; missing: skipped here, a failure in CI (which installs it in .ci/run)."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (apt-get install chromium, or set GENART_CHROMIUM to a Chromium or Chrome)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: CI must run the browser tests")
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="session", autouse=True)
def fresh_artifacts() -> None:
    """Screenshots of an earlier run are removed, so the folder shows this run's states only."""
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()


@pytest.fixture(scope="session")
def studio_url(chromium_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of the local studio: GENART_WEB_STUDIO_URL if set (one already running), else a fresh one."""
    if not own_studio():
        yield os.environ["GENART_WEB_STUDIO_URL"].rstrip("/") + "/"
        return
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / "server.log"
    users = tmp_path_factory.mktemp("web-users") / "users.json"
    entries = [{"username": name, "password": word} for name, word in USERS.items()]
    entries.append({"username": INVITED[0], "password": INVITED[1], "new_password_required": True})
    users.write_text(json.dumps({"users": entries}))
    command = [sys.executable, "-m", "runtime.web.local", "--port", str(_free_port()), "--users", str(users)]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    found: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        assert process.stdout is not None
        with log_path.open("w") as log:
            for line in process.stdout:
                log.write(line)
                log.flush()
                if not found and (match := READY.search(line)):
                    found.append(match.group(1))
                    ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready.wait(1.0) and time.monotonic() < deadline:
        pass
    try:
        if not found:
            tail = log_path.read_text()[-4000:] if log_path.exists() else ""
            pytest.fail(f"{' '.join(command)} did not print 'web studio: <url>' in {START_TIMEOUT_S:.0f} s:\n{tail}")
        yield found[0]
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def studio_config(studio_url: str) -> dict[str, Any]:
    """The config.json the page reads (limits, auth endpoint)."""
    with urllib.request.urlopen(studio_url + "config.json", timeout=10) as response:
        config: dict[str, Any] = json.load(response)
    return config


@pytest.fixture(scope="session")
def playwright_session() -> Iterator[Playwright]:
    """One Playwright driver for the session."""
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright_session: Playwright, chromium_path: Path) -> Iterator[Browser]:
    """Debian's headless chromium (Playwright never downloads a browser here)."""
    browser = playwright_session.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


class Studio:
    """Opens pages on the studio and collects Content-Security-Policy violations and uncaught errors.

    index.html carries the deployment-independent policy (script-src 'self', style-src 'self', no objects) in a meta
    tag; serving the page through a Playwright route with the stack's full header instead would make chromium treat
    the page as public and refuse its requests to 127.0.0.1 (Local Network Access).
    """

    def __init__(self, *, browser: Browser, url: str, test_name: str) -> None:
        self.browser, self.url, self.test_name = browser, url, test_name
        self.contexts: list[BrowserContext] = []
        self.problems: list[str] = []

    def new_page(self, *, viewport: dict[str, int] | None = None, phone: bool = False) -> Page:
        """A fresh browser context (its own session storage) and page, at the sign-in form."""
        options: dict[str, Any] = {"viewport": viewport or (PHONE if phone else DESKTOP)}
        if phone:
            options.update(is_mobile=True, has_touch=True, device_scale_factor=2)
        context = self.browser.new_context(**options)
        self.contexts.append(context)
        page = context.new_page()
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        page.goto(self.url)
        return page

    def _console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.problems.append(f"CSP: {message.text}")

    def shot(self, page: Page, state: str) -> Path:
        """Saves a full-page screenshot of one state under test-artifacts/web/."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.test_name}--{state}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def studio(browser: Browser, studio_url: str, request: pytest.FixtureRequest) -> Iterator[Studio]:
    """Pages on the studio for one test; the test fails on any CSP violation or uncaught page error."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name).removeprefix("test_")
    studio = Studio(browser=browser, url=studio_url, test_name=name)
    yield studio
    studio.close()
    assert not studio.problems, "\n".join(studio.problems)


@pytest.fixture
def signed_in(studio: Studio) -> Callable[..., Page]:
    """Opens a page and signs a demo user in through the form."""

    def sign_in(user: str = "alice", *, phone: bool = False) -> Page:
        page = studio.new_page(phone=phone)
        fill_sign_in(page, user, USERS[user])
        page.get_by_test_id("studio").wait_for(state="visible", timeout=30_000)
        return page

    return sign_in


def fill_sign_in(page: Page, user: str, password: str) -> None:
    """Types the user name and password into the sign-in form and submits it."""
    page.get_by_label("User name", exact=True).fill(user)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_test_id("signin-submit").click()


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests' photos and clips are written."""
    return tmp_path_factory.mktemp("web-media")


@pytest.fixture(scope="session")
def photo(media_dir: Path) -> Path:
    """A small colourful PNG (the synthetic clips' test picture)."""
    from PIL import Image

    from runtime.cartoonizer.synthetic import frame_image

    path = media_dir / "holiday.png"
    Image.fromarray(frame_image(4, 160, 112)).save(path)
    return path


@pytest.fixture(scope="session")
def clip(media_dir: Path) -> Path:
    from fractions import Fraction

    from runtime.cartoonizer.synthetic import ClipSpec, make_clip

    """A two-second H.264 clip with an AAC tone."""
    return make_clip(media_dir / "beach.mp4", ClipSpec(width=160, height=96, frames=48, rate=Fraction(24), audio="aac"))


def wait_for_result(page: Page, test_id: str, *, timeout_ms: float) -> None:
    """Waits for the element with test_id to show; fails at once with the alert's text if an error shows instead."""
    target, alert = page.get_by_test_id(test_id), page.get_by_role("alert")
    expect(target.or_(alert).first).to_be_visible(timeout=timeout_ms)
    if alert.is_visible() and not target.is_visible():
        pytest.fail(f"{test_id}: the page shows an error instead: {alert.inner_text()}")
