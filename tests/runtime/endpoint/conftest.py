"""Fixtures for the Stable Diffusion endpoint tests: tiny random pipelines, settings and a started app."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from runtime.endpoint.app import create_app
from runtime.endpoint.settings import Settings
from runtime.endpoint.tiny_pipeline import build_random_pipeline, save_random_pipeline

TEST_ENV = {
    "GENART_DEVICE": "cpu",
    "GENART_MAX_SIDE": "96",
    "GENART_MAX_STEPS": "3",
    "GENART_MAX_IMAGES": "3",
    "GENART_MAX_BATCH": "8",
    "GENART_BATCH_WINDOW_MS": "0",
    "GENART_WARMUP_SIZES": "64",
    "GENART_WARMUP_STEPS": "1",
    "GENART_MAX_PROMPT_CHARS": "200",
    "GENART_SIZES": "any",
}

# Small, valid request used across tests (64x64, 2 steps keeps each call well under a second on 2 cores).
BASE_REQUEST: dict[str, Any] = {"prompt": "a photo of a cat", "num_inference_steps": 2, "width": 64, "height": 64}


def make_settings(**env: str) -> Settings:
    """Settings for tests: the tiny limits above plus overrides."""
    return Settings.from_env({**TEST_ENV, **env})


def tiny_factory(_device: str) -> Any:
    """Pipeline factory that builds the tiny random pipeline (same weights every time)."""
    return build_random_pipeline(preset="tiny", seed=0)


def wait_healthy(client: TestClient, timeout: float = 30.0) -> None:
    """Poll /ping until 200."""
    deadline = time.monotonic() + timeout
    while client.get("/ping").status_code != 200:
        if time.monotonic() > deadline:
            raise AssertionError("server never became healthy")
        time.sleep(0.02)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread for these tests, restored afterwards (the setting is process-wide).

    The tiny model gains nothing from more, and on a shared 2-core CI box extra OpenMP threads spin against
    other processes and make each call about 10x slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random pipeline saved in the diffusers folder layout (what SageMaker puts in /opt/ml/model)."""
    return save_random_pipeline(tmp_path_factory.mktemp("sd-tiny"), preset="tiny", seed=0)


@pytest.fixture
def start_app() -> Iterator[Callable[..., TestClient]]:
    """Start an app (tiny pipeline unless a factory is given) and return a healthy TestClient."""
    clients: list[TestClient] = []

    def start(app: FastAPI | None = None, *, healthy: bool = True, **env: str) -> TestClient:
        app = app or create_app(settings=make_settings(**env), factory=tiny_factory, devices=["cpu"])
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        if healthy:
            wait_healthy(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture(scope="module")
def shared_client() -> Iterator[TestClient]:
    """One healthy app shared by the read-only request tests of a module."""
    app = create_app(settings=make_settings(), factory=tiny_factory, devices=["cpu"])
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_healthy(client)
        yield client


@contextlib.contextmanager
def real_server(app: FastAPI) -> Iterator[str]:
    """Serve app with uvicorn on a free local port until /ping is 200 (real sockets: clients can disconnect)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started or httpx.get(f"{url}/ping").status_code != 200:
        assert time.monotonic() < deadline, "local server did not turn healthy"
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)
