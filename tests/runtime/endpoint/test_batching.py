"""Dynamic batching: concurrent compatible requests share one pipeline call; a full queue answers 429."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from typing import Any

import httpx
import numpy as np
from fastapi import FastAPI
from PIL import Image

from runtime.endpoint.app import create_app

from .conftest import BASE_REQUEST, make_settings, tiny_factory


async def _healthy(client: httpx.AsyncClient) -> None:
    for _ in range(1500):
        if (await client.get("/ping")).status_code == 200:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("server never became healthy")


def _pixels(item: dict[str, Any]) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(item["b64"]))), dtype=np.float32)


async def _run_with_client(app: FastAPI, scenario: Any) -> Any:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://endpoint", timeout=60) as client:
            await _healthy(client)
            return await scenario(client)


def _gate_worker(app: FastAPI) -> threading.Event:
    """Make the worker wait on an event before each pipeline call, so requests pile up behind a running batch."""
    gate = threading.Event()
    worker = app.state.server.workers[0]
    original = worker.generate

    def gated(*args: Any) -> Any:
        gate.wait(10)
        return original(*args)

    worker.generate = gated
    return gate


def test_concurrent_requests_run_as_one_batch_and_each_caller_gets_its_own_images() -> None:
    app = create_app(settings=make_settings(GENART_BATCH_WINDOW_MS="50"), factory=tiny_factory, devices=["cpu"])
    requests = [
        {**BASE_REQUEST, "prompt": "a red cat", "seed": 10, "num_images": 2},
        {**BASE_REQUEST, "prompt": "a blue dog", "seed": 20},
        {**BASE_REQUEST, "prompt": "the sea", "seed": 30, "negative_prompt": "city"},
    ]

    async def scenario(client: httpx.AsyncClient) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
        batcher = app.state.server.batcher
        gate = _gate_worker(app)
        busy = asyncio.create_task(client.post("/invocations", json={**BASE_REQUEST, "seed": 1}))
        while batcher.metrics.batches == 0:  # the first request occupies the worker
            await asyncio.sleep(0.01)
        concurrent = [asyncio.create_task(client.post("/invocations", json=r)) for r in requests]
        while batcher.queued < len(requests):
            await asyncio.sleep(0.01)
        gate.set()
        assert (await busy).json()["batch_size"] == 1
        batched = [(await task).json() for task in concurrent]
        metrics = (await client.get("/metrics")).json()
        solo = [(await client.post("/invocations", json=r)).json() for r in requests]
        return batched, solo, metrics

    batched, solo, metrics = asyncio.run(_run_with_client(app, scenario))
    assert metrics["multi_request_batches"] == 1
    assert metrics["max_batch_requests"] == 3
    assert metrics["max_batch_images"] == 4
    assert [b["batch_size"] for b in batched] == [4, 4, 4]
    assert [[i["seed"] for i in b["images"]] for b in batched] == [[10, 11], [20], [30]]
    assert len({b["request_id"] for b in batched}) == 3
    for together, alone in zip(batched, solo, strict=True):
        assert alone["batch_size"] == len(alone["images"])
        for mine, reference in zip(together["images"], alone["images"], strict=True):
            # Batched convolutions may round differently from single ones; the images must still be the same picture.
            assert np.abs(_pixels(mine) - _pixels(reference)).mean() < 2.0
    assert np.abs(_pixels(batched[0]["images"][0]) - _pixels(batched[1]["images"][0])).mean() > 2.0


def test_lone_request_on_idle_server_skips_the_batch_window() -> None:
    app = create_app(settings=make_settings(GENART_BATCH_WINDOW_MS="5000"), factory=tiny_factory, devices=["cpu"])

    async def scenario(client: httpx.AsyncClient) -> dict[str, Any]:
        response: dict[str, Any] = (await client.post("/invocations", json=BASE_REQUEST)).json()
        return response

    response = asyncio.run(_run_with_client(app, scenario))
    assert response["queue_ms"] < 1000


def test_incompatible_requests_are_not_batched_together() -> None:
    app = create_app(settings=make_settings(GENART_BATCH_WINDOW_MS="50"), factory=tiny_factory, devices=["cpu"])
    requests = [{**BASE_REQUEST, "seed": 1}, {**BASE_REQUEST, "seed": 2, "num_inference_steps": 1}]

    async def scenario(client: httpx.AsyncClient) -> list[dict[str, Any]]:
        batcher = app.state.server.batcher
        gate = _gate_worker(app)
        busy = asyncio.create_task(client.post("/invocations", json={**BASE_REQUEST, "seed": 0}))
        while batcher.metrics.batches == 0:
            await asyncio.sleep(0.01)
        tasks = [asyncio.create_task(client.post("/invocations", json=r)) for r in requests]
        while batcher.queued < len(requests):
            await asyncio.sleep(0.01)
        gate.set()
        await busy
        return [(await task).json() for task in tasks]

    responses = asyncio.run(_run_with_client(app, scenario))
    assert [r["batch_size"] for r in responses] == [1, 1]
    assert app.state.server.batcher.metrics.multi_request_batches == 0


def test_queue_is_bounded_in_images_and_busy_answers_429_with_retry_after() -> None:
    app = create_app(settings=make_settings(GENART_MAX_QUEUE="3"), factory=tiny_factory, devices=["cpu"])

    async def scenario(client: httpx.AsyncClient) -> tuple[list[int], httpx.Response, int]:
        gate = _gate_worker(app)
        batcher = app.state.server.batcher
        first = asyncio.create_task(client.post("/invocations", json={**BASE_REQUEST, "seed": 1}))
        while batcher.metrics.batches == 0:  # first request is on the worker
            await asyncio.sleep(0.01)
        second = asyncio.create_task(client.post("/invocations", json={**BASE_REQUEST, "seed": 2, "num_images": 2}))
        while batcher.queued_images < 2:  # two images wait in the queue
            await asyncio.sleep(0.01)
        # No batch has finished yet, so the estimate is the default 1 s per image on one worker: (2 + 2) x 1 s.
        expected_retry_after = batcher.retry_after(2)
        over = client.post("/invocations", json={**BASE_REQUEST, "seed": 3, "num_images": 2})  # 2 + 2 > 3 images
        busy = await asyncio.wait_for(over, timeout=5)  # answered at once, not queued
        assert busy.headers["retry-after"] == str(expected_retry_after) == "4"
        third = asyncio.create_task(client.post("/invocations", json={**BASE_REQUEST, "seed": 4}))  # 3 images: fits
        while batcher.queued_images < 3:
            await asyncio.sleep(0.01)
        gate.set()
        statuses = [(await task).status_code for task in (first, second, third)]
        return statuses, busy, batcher.metrics.rejected_busy

    statuses, busy, rejected = asyncio.run(_run_with_client(app, scenario))
    assert statuses == [200, 200, 200]
    assert busy.status_code == 429
    assert busy.json()["error"] == "busy"
    assert rejected == 1
