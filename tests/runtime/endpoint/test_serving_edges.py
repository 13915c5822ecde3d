"""Edges of serving: departed clients, deadlines, safety flags, health, response size, Accept, limits, offline."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import httpx
import numpy as np
import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from moto import mock_aws
from PIL import Image

from runtime.common.errors import InputError
from runtime.endpoint import app as app_module
from runtime.endpoint import contract, worker
from runtime.endpoint.app import NotAcceptableError, create_app, negotiate, png_bytes_bound
from runtime.endpoint.compile_cache import MEGA_CACHE_FILE
from runtime.endpoint.encoding import encode_image
from runtime.endpoint.request_context import BodyLimitMiddleware
from runtime.endpoint.tiny_pipeline import build_random_pipeline

from .conftest import BASE_REQUEST, make_settings, real_server, tiny_factory

REPO = Path(__file__).resolve().parents[3]
StartApp = Callable[..., TestClient]


def _gate(app: FastAPI) -> tuple[threading.Event, list[int]]:
    """Hold every pipeline call until the event is set; record how many images each call made."""
    gate, calls = threading.Event(), []
    diffusion = app.state.server.workers[0]
    original = diffusion.generate

    def gated(key: Any, specs: list[Any]) -> Any:
        gate.wait(20)
        calls.append(len(specs))
        return original(key, specs)

    diffusion.generate = gated
    return gate, calls


def _wait(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_jobs_of_clients_that_disconnect_are_never_computed() -> None:
    app = create_app(settings=make_settings(), factory=tiny_factory, devices=["cpu"])
    with real_server(app) as url:
        gate, calls = _gate(app)
        metrics = app.state.server.batcher.metrics
        busy: dict[str, Any] = {}
        holder = threading.Thread(
            target=lambda: busy.update(r=httpx.post(f"{url}/invocations", json=BASE_REQUEST, timeout=30)), daemon=True
        )
        holder.start()
        _wait(lambda: metrics.batches == 1)  # the worker is busy with the first request

        async def impatient_clients() -> None:
            async with httpx.AsyncClient(timeout=0.5) as client:
                requests = [client.post(f"{url}/invocations", json={**BASE_REQUEST, "num_images": 2}) for _ in range(5)]
                results = await asyncio.gather(*requests, return_exceptions=True)
            assert all(isinstance(result, httpx.TimeoutException) for result in results)

        asyncio.run(impatient_clients())  # each gives up and closes its connection while queued
        _wait(lambda: metrics.cancelled == 5)
        assert app.state.server.batcher.queued == 0
        gate.set()
        holder.join(20)
        assert busy["r"].status_code == 200
        after = httpx.post(f"{url}/invocations", json=BASE_REQUEST, timeout=30)
        assert after.status_code == 200
    assert calls == [1, 1]  # the first and the last request only: no image for a departed client
    assert metrics.images == 2


def test_queued_jobs_past_the_queue_timeout_are_dropped_with_429() -> None:
    app = create_app(settings=make_settings(GENART_QUEUE_TIMEOUT_S="0.2"), factory=tiny_factory, devices=["cpu"])

    async def scenario(client: httpx.AsyncClient) -> tuple[int, httpx.Response]:
        gate, _calls = _gate(app)
        batcher = app.state.server.batcher
        first = asyncio.create_task(client.post("/invocations", json=BASE_REQUEST))
        while batcher.metrics.batches == 0:
            await asyncio.sleep(0.01)
        late = asyncio.create_task(client.post("/invocations", json={**BASE_REQUEST, "seed": 2}))
        while batcher.queued == 0:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.4)
        gate.set()
        return (await first).status_code, await late

    first, late = asyncio.run(_run(app, scenario))
    assert first == 200
    assert late.status_code == 429
    assert late.json()["error"] == "queue_timeout"
    assert int(late.headers["retry-after"]) >= 1
    metrics = app.state.server.batcher.metrics
    assert (metrics.expired, metrics.batches, metrics.images) == (1, 1, 1)


async def _run(app: FastAPI, scenario: Any) -> Any:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://endpoint", timeout=60) as client:
            while (await client.get("/ping")).status_code != 200:
                await asyncio.sleep(0.02)
            return await scenario(client)


class _FakeSafetyChecker:
    """Stands in for the model folder's checker; the verdicts come from the patched run_safety_checker."""


def _flagging_factory(_device: str) -> Any:
    """Tiny pipeline whose safety checker flags every odd image of a call (and blacks it out, as the real one does)."""
    pipe = build_random_pipeline()
    pipe.__dict__["safety_checker"] = _FakeSafetyChecker()

    def run_safety_checker(image: torch.Tensor, _device: Any, _dtype: Any) -> tuple[torch.Tensor, list[bool]]:
        flags = [index % 2 == 1 for index in range(image.shape[0])]
        image = image.clone()
        image[torch.tensor(flags)] = 0.0
        return image, flags

    pipe.run_safety_checker = run_safety_checker
    return pipe


def test_safety_checker_verdict_is_reported_per_image_and_flagged_images_stay_black(start_app: StartApp) -> None:
    client = start_app(create_app(settings=make_settings(), factory=_flagging_factory, devices=["cpu"]))
    body = client.post("/invocations", json={**BASE_REQUEST, "num_images": 2, "seed": 1}).json()
    assert body["safety_checker"] is True
    assert [item["nsfw"] for item in body["images"]] == [False, True]
    pixels = [np.asarray(Image.open(io.BytesIO(base64.b64decode(item["b64"])))) for item in body["images"]]
    assert pixels[1].max() == 0 and pixels[0].max() > 0
    raw = client.post("/invocations", json={**BASE_REQUEST, "seed": 1}, headers={"Accept": "image/png"})
    assert raw.headers["x-nsfw"] == "false"
    plain = start_app()
    plain_body = plain.post("/invocations", json=BASE_REQUEST).json()
    assert plain_body["safety_checker"] is False
    assert plain_body["images"][0]["nsfw"] is False


def test_ping_turns_unhealthy_after_consecutive_failed_batches_and_recovers(start_app: StartApp) -> None:
    client = start_app(GENART_UNHEALTHY_AFTER_FAILED_BATCHES="2")
    diffusion = client.app.state.server.workers[0]  # type: ignore[attr-defined]
    original = diffusion.generate

    def explode(*_args: Any) -> Any:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    diffusion.generate = explode
    assert client.post("/invocations", json=BASE_REQUEST).status_code == 500
    assert client.get("/ping").status_code == 200  # one failure is not yet a broken server
    assert client.post("/invocations", json=BASE_REQUEST).status_code == 500
    ping = client.get("/ping")
    assert (ping.status_code, ping.json()) == (503, {"status": "unhealthy"})
    head = client.head("/ping")
    assert (head.status_code, head.content) == (503, b"")
    diffusion.generate = original
    assert client.post("/invocations", json=BASE_REQUEST).status_code == 200
    assert client.get("/ping").status_code == 200


def test_head_ping_answers_like_get_without_a_body(shared_client: TestClient) -> None:
    head = shared_client.head("/ping")
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-type"] == "application/json"


def test_failed_model_load_exits_non_zero_with_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "runtime.endpoint.serve", "--model-dir", str(tmp_path), "--device", "cpu"]
    result = subprocess.run(
        [*command, "--port", str(port)], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 3
    last = result.stderr.strip().splitlines()[-1]
    assert (
        last
        == f"serve: model load failed: FileNotFoundError: {tmp_path} is not a diffusers folder (no model_index.json)"
    )


def test_hub_libraries_see_offline_mode_whatever_imports_first() -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"}}
    code = (
        "import runtime.endpoint.app, huggingface_hub.constants as c, os;"
        "print(c.HF_HUB_OFFLINE, os.environ['TRANSFORMERS_OFFLINE'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.split() == ["True", "1"]


def test_inline_responses_over_the_limit_are_refused_before_any_pipeline_call(start_app: StartApp) -> None:
    client = start_app(GENART_MAX_INLINE_BYTES="25000")
    too_big = client.post("/invocations", json={**BASE_REQUEST, "num_images": 2})
    assert too_big.status_code == 400
    body = too_big.json()
    assert (body["error"], body["fields"][0]["field"]) == ("response_too_large", "output")
    assert '"output": "s3"' in body["message"]
    assert client.get("/metrics").json()["batches"] == 0
    assert client.post("/invocations", json=BASE_REQUEST).status_code == 200  # one 64x64 image fits


def test_encoded_size_is_checked_again_after_encoding(start_app: StartApp, monkeypatch: pytest.MonkeyPatch) -> None:
    client = start_app(GENART_MAX_INLINE_BYTES="1024")
    monkeypatch.setattr(app_module, "inline_bytes_bound", lambda *_args, **_kwargs: 0)
    response = client.post("/invocations", json=BASE_REQUEST)
    assert response.status_code == 400
    assert response.json()["error"] == "response_too_large"


@pytest.mark.parametrize("image_format", ["png", "jpeg"])
def test_png_bound_holds_for_incompressible_images(image_format: str) -> None:
    noise = np.random.default_rng(0).integers(0, 256, size=(80, 64, 3), dtype=np.uint8)
    assert len(encode_image(Image.fromarray(noise), image_format)) <= png_bytes_bound(64, 80)


@pytest.mark.parametrize(
    ("accept", "image_format", "expected"),
    [
        ("", None, None),
        ("*/*", None, None),
        ("application/json", "jpeg", None),
        ("image/png", None, "png"),
        ("image/*", None, "png"),
        ("image/jpg", None, "jpeg"),
        ("image/png;q=0, */*;q=0.1", None, None),
        ("image/jpeg;q=0.5, image/png;q=0.4", None, "jpeg"),
        ("image/png;q=0.5, application/json;q=0.9", None, None),
        ("image/*", "jpeg", "jpeg"),
        ("image/png, image/jpeg;q=0.1", "jpeg", "jpeg"),
        ("image/png;q=0", None, NotAcceptableError),
        ("text/html", None, NotAcceptableError),
        ("image/png", "jpeg", InputError),
    ],
)
def test_accept_q_values_are_honoured(accept: str, image_format: str | None, expected: Any) -> None:
    if isinstance(expected, type):
        with pytest.raises(expected) as raised:
            negotiate(accept, image_format)
        assert raised.value.field == ("accept" if expected is NotAcceptableError else "image_format")
    else:
        assert negotiate(accept, image_format) == expected


def test_accept_over_http_406_and_format_conflict(shared_client: TestClient) -> None:
    refused = shared_client.post("/invocations", json=BASE_REQUEST, headers={"Accept": "image/png;q=0"})
    assert refused.status_code == 406
    assert refused.json()["error"] == "not_acceptable"
    conflict = shared_client.post(
        "/invocations", json={**BASE_REQUEST, "image_format": "jpeg"}, headers={"Accept": "image/png"}
    )
    assert conflict.status_code == 400
    assert conflict.json()["fields"][0]["field"] == "image_format"
    jpeg = shared_client.post("/invocations", json=BASE_REQUEST, headers={"Accept": "image/jpeg"})
    assert (jpeg.status_code, jpeg.headers["content-type"]) == (200, "image/jpeg")


def test_request_body_is_capped(shared_client: TestClient) -> None:
    huge = {**BASE_REQUEST, "prompt": "x" * 70_000}
    response = shared_client.post("/invocations", json=huge)
    assert response.status_code == 413
    assert (response.json()["error"], response.json()["fields"][0]["field"]) == ("body_too_large", "body")


async def _call(middleware: BodyLimitMiddleware, messages: list[dict[str, Any]], *, delay: float = 0.0) -> list[Any]:
    sent: list[Any] = []
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        if not queue:
            await asyncio.sleep(3600)
        await asyncio.sleep(delay)
        return queue.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/invocations", "headers": []}
    await middleware(scope, receive, send)
    return sent


def test_chunked_bodies_are_capped_and_slow_bodies_time_out() -> None:
    seen: list[bytes] = []

    async def inner(_scope: Any, receive: Any, send: Any) -> None:
        seen.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})

    middleware = BodyLimitMiddleware(inner, max_bytes=1024, timeout_s=0.2)
    chunk = {"type": "http.request", "body": b"x" * 600, "more_body": True}
    last = {"type": "http.request", "body": b"}", "more_body": False}
    assert asyncio.run(_call(middleware, [chunk, chunk, last]))[0]["status"] == 413
    started = time.monotonic()
    assert asyncio.run(_call(middleware, [chunk], delay=0.0))[0]["status"] == 408  # never finishes
    assert time.monotonic() - started < 2.0
    assert asyncio.run(_call(middleware, [chunk, last]))[0]["status"] == 200
    assert seen == [b"x" * 600 + b"}"]


def test_deterministic_requests_run_alone_and_reproduce_bit_for_bit() -> None:
    app = create_app(settings=make_settings(GENART_BATCH_WINDOW_MS="50"), factory=tiny_factory, devices=["cpu"])
    exact = {**BASE_REQUEST, "seed": 42, "scheduler": "euler_a", "deterministic": True}

    async def scenario(client: httpx.AsyncClient) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        gate, _calls = _gate(app)
        batcher = app.state.server.batcher
        busy = asyncio.create_task(client.post("/invocations", json=BASE_REQUEST))
        while batcher.metrics.batches == 0:
            await asyncio.sleep(0.01)
        bodies = [exact, {**BASE_REQUEST, "seed": 1}, exact, {**BASE_REQUEST, "seed": 2}]
        tasks = [asyncio.create_task(client.post("/invocations", json=body)) for body in bodies]
        while batcher.queued < len(bodies):
            await asyncio.sleep(0.01)
        gate.set()
        await busy
        together = [(await task).json() for task in tasks]
        alone = (await client.post("/invocations", json=exact)).json()
        return together, alone

    together, alone = asyncio.run(_run(app, scenario))
    assert [body["batch_size"] for body in together] == [1, 2, 1, 2]
    assert together[0]["images"][0]["b64"] == together[2]["images"][0]["b64"] == alone["images"][0]["b64"]


def test_compile_cache_is_shared_through_s3_between_instances(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    loaded: list[tuple[bytes | None, bool]] = []

    def no_compile(pipe: Any, settings: Any, *, device: str) -> Any:
        return worker.optimize_pipeline.__wrapped__(pipe, settings.model_copy(update={"compile": False}), device=device)

    def fake_load(*, cache_dir: Path, model_dir: Path) -> Path | None:
        path = cache_dir / MEGA_CACHE_FILE
        kernel = cache_dir / "inductor" / "ab" / "kernel.so"  # what Inductor's own cache holds (C++ kernels)
        loaded.append((path.read_bytes() if path.is_file() else None, kernel.is_file()))
        return path if path.is_file() else None

    def fake_save(cache_dir: Path) -> Path:
        cache_dir.mkdir(parents=True, exist_ok=True)
        (cache_dir / MEGA_CACHE_FILE).write_bytes(b"compiled artifacts")
        (cache_dir / "inductor" / "ab").mkdir(parents=True, exist_ok=True)
        (cache_dir / "inductor" / "ab" / "kernel.so").write_bytes(b"compiled C++ kernel")
        return cache_dir / MEGA_CACHE_FILE

    original = worker.optimize_pipeline
    no_compile.__dict__["__wrapped__"] = original
    monkeypatch.setattr(worker, "optimize_pipeline", no_compile)
    monkeypatch.setattr(worker, "load_mega_cache", fake_load)
    monkeypatch.setattr(worker, "save_mega_cache", fake_save)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    stances: list[str] = []
    monkeypatch.setattr(torch.compiler, "set_stance", lambda stance, **_kwargs: stances.append(stance))
    uri = f"s3://models/{contract.compile_cache_prefix('sd15')}"
    env = {"GENART_COMPILE": "1", "GENART_SIZES": "64", "GENART_WARMUP_BATCHES": "1,4", "GENART_WARMUP_STEPS": "1"}
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="models")
        for instance in ("first", "second"):
            settings = make_settings(
                **env, GENART_COMPILE_CACHE_S3_URI=uri, GENART_COMPILE_CACHE_DIR=str(tmp_path / instance)
            )
            app = create_app(settings=settings, factory=tiny_factory, devices=["cpu"])
            with TestClient(app) as client:
                _wait(lambda: client.get("/ping").status_code == 200, timeout=60)
                upload = app.state.server.cache_upload
                _wait(lambda task=upload: task is None or task.done())
                assert client.post("/invocations", json=BASE_REQUEST).status_code == 200
                if instance == "first":
                    assert upload is not None and upload.result() is True
                else:
                    assert upload is None  # started from the shared cache: nothing new to upload
        keys = [item["Key"] for item in s3.list_objects_v2(Bucket="models")["Contents"]]
    assert loaded == [(None, False), (b"compiled artifacts", True)]  # before compiling, on the new instance
    # Once warm, an unforeseen shape runs eagerly instead of compiling on the worker thread (reset at shutdown).
    assert stances == ["eager_on_recompile", "default"] * 2
    assert len(keys) == 1
    prefix = f"diffusion-compile-cache/sd15/torch-{torch.__version__}/cpu/float32-reduce-overhead-"
    assert keys[0].startswith(prefix) and keys[0].endswith("/compile_cache.tar.gz")
