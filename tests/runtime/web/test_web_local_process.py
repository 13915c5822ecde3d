"""`python -m runtime.web.local` as a newcomer runs it: sign in, upload through the presigned POST, cartoonize, poll."""

from __future__ import annotations

import io
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from PIL import Image

from .conftest import png_bytes

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
TARGET = "AWSCognitoIdentityProviderService.InitiateAuth"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def studio_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The studio in a subprocess; yields its URL once it printed `web studio: URL`."""
    static = tmp_path_factory.mktemp("static")
    (static / "index.html").write_text("<!doctype html><title>studio</title>")
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        env.pop(name, None)
    command = [sys.executable, "-m", "runtime.web.local", "--port", str(port), "--warmup-seconds", "1"]
    process = subprocess.Popen(
        [*command, "--static-dir", str(static)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read(stream: IO[str]) -> None:
        for line in stream:
            lines.put(line)

    assert process.stdout is not None
    threading.Thread(target=read, args=(process.stdout,), daemon=True).start()
    deadline = time.monotonic() + 180
    url = None
    try:
        while url is None:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail("python -m runtime.web.local did not print its URL in time")
            if line.startswith("web studio: "):
                url = line.split(": ", 1)[1].strip()
            assert process.poll() is None, "the studio exited early"
        assert url == f"http://127.0.0.1:{port}/"
        yield url.rstrip("/")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()


def _sign_in(base: str, user: str, password: str) -> str:
    config = httpx.get(f"{base}/config.json").json()
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET}
    body = {
        "AuthFlow": "USER_PASSWORD_AUTH",
        "ClientId": config["auth"]["client_id"],
        "AuthParameters": {"USERNAME": user, "PASSWORD": password},
    }
    answer = httpx.post(base + config["auth"]["endpoint"], headers=headers, content=json.dumps(body))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["AuthenticationResult"]["IdToken"])


def test_sign_in_upload_cartoonize_and_download_over_http(studio_url: str) -> None:
    base = studio_url
    assert "studio" in httpx.get(f"{base}/").text
    assert httpx.get(f"{base}/api/jobs").status_code == 401
    headers = {"Authorization": f"Bearer {_sign_in(base, 'alice', 'alice-password-1')}"}
    data = png_bytes(48, 40)
    body = {"filename": "cat.png", "content_type": "image/png", "size": len(data)}
    upload = httpx.post(f"{base}/api/uploads", headers=headers, json=body)
    assert upload.status_code == 201, upload.text
    post = upload.json()
    # The browser posts cross-origin to the S3 emulation: it must allow that (CORS), as the bucket's CORS rule does.
    origin = {"Origin": base}
    # XHR with upload progress listeners sends a preflight first.
    preflight = httpx.options(post["url"], headers={**origin, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200 and "POST" in preflight.headers["access-control-allow-methods"]
    posted = httpx.post(
        post["url"], data=post["fields"], files={"file": ("cat.png", data, "image/png")}, headers=origin
    )
    assert posted.status_code in (200, 201, 204), posted.text
    assert posted.headers.get("access-control-allow-origin") in ("*", base)
    job = httpx.post(f"{base}/api/jobs", headers=headers, json={"kind": "cartoonize", "upload_id": post["upload_id"]})
    assert job.status_code == 202, job.text
    job_id = job.json()["job"]["id"]
    deadline = time.monotonic() + 60
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = httpx.get(f"{base}/api/jobs/{job_id}", headers=headers).json()["job"]
        if state["state"] in ("done", "failed"):
            break
        time.sleep(0.2)
    assert state["state"] == "done", state
    result = httpx.get(state["results"][0]["url"], headers=origin)
    assert result.status_code == 200 and Image.open(io.BytesIO(result.content)).size == (48, 40)
    assert httpx.get(state["input"]["url"]).content == data
    bob = {"Authorization": f"Bearer {_sign_in(base, 'bob', 'bob-password-1')}"}
    assert httpx.get(f"{base}/api/jobs/{job_id}", headers=bob).status_code == 404
    assert httpx.get(f"{base}/api/jobs", headers=bob).json() == {"jobs": []}
