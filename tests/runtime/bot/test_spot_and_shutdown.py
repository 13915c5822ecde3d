"""Spot interruption handling against a fake IMDSv2 server on 127.0.0.1, and clean shutdown paths of the bot."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from runtime.bot import discord_app
from runtime.bot.commands import SHUTDOWN_TEXT, Requester
from runtime.bot.engine import Engine
from runtime.bot.generator import FaceGenerator
from runtime.bot.spot import INSTANCE_ACTION_PATH, REBALANCE_PATH, TOKEN_PATH, ImdsClient, SpotNotice


class FakeImds:
    """IMDSv2 look-alike: PUT token (TTL header required), GETs require the token, 404 when no event is pending."""

    def __init__(self) -> None:
        self.token = "tok-1"
        self.documents: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                return

            def _send(self, status: int, body: str = "") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                fake.requests.append(("PUT", self.path))
                if self.path != TOKEN_PATH or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    self._send(400)
                else:
                    self._send(200, fake.token)

            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path))
                if self.headers.get("X-aws-ec2-metadata-token") != fake.token:
                    self._send(401)
                elif self.path in fake.documents:
                    self._send(200, fake.documents[self.path])
                else:
                    self._send(404, "Not Found")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def interrupt(self) -> None:
        self.documents[INSTANCE_ACTION_PATH] = '{"action": "terminate", "time": "2026-11-23T04:00:00Z"}'

    def rebalance(self) -> None:
        self.documents[REBALANCE_PATH] = '{"noticeTime": "2026-11-23T03:58:00Z"}'


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    fake = FakeImds()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def test_imds_client_polls_with_v2_token(imds: FakeImds) -> None:
    client = ImdsClient(base_url=imds.url, timeout_s=1)
    assert client.poll() is None
    assert imds.requests[0] == ("PUT", TOKEN_PATH)
    imds.rebalance()
    assert client.poll() == SpotNotice(kind="rebalance", action="rebalance", time="2026-11-23T03:58:00Z")
    imds.interrupt()
    imds.token = "tok-2"  # token rotated: the client gets a 401 and fetches a new one
    assert client.poll() == SpotNotice(kind="interruption", action="terminate", time="2026-11-23T04:00:00Z")
    assert sum(1 for method, _ in imds.requests if method == "PUT") == 2


class SlowGenerator:
    """Delegates to the tiny generator after a delay, so work is in flight when the notice arrives."""

    def __init__(self, inner: FaceGenerator, *, seconds: float) -> None:
        self.inner, self.seconds = inner, seconds

    def generate(self, latents: npt.NDArray[np.float32], psi: float) -> npt.NDArray[np.uint8]:
        time.sleep(self.seconds)
        return self.inner.generate(latents, psi)

    def describe(self) -> dict[str, str | int]:
        return self.inner.describe()


@pytest.fixture
def offline_gateway(monkeypatch: pytest.MonkeyPatch) -> list[discord_app.GenArtBot]:
    """Replace the Discord connection: start() runs setup_hook and waits until the bot is closed."""
    started: list[discord_app.GenArtBot] = []

    async def fake_start(self: discord_app.GenArtBot, token: str, *, reconnect: bool = True) -> None:
        assert token == "token-for-tests"
        started.append(self)
        await self.setup_hook()
        while not self.is_closed():
            await asyncio.sleep(0.01)

    async def fake_application_info(self: discord_app.GenArtBot) -> Any:
        return SimpleNamespace(team=None, owner=SimpleNamespace(id=1))

    monkeypatch.setattr(discord_app.GenArtBot, "start", fake_start)
    monkeypatch.setattr(discord_app.GenArtBot, "application_info", fake_application_info)
    return started


def run_bot_until_done(engine_settings: Any, face_generator: FaceGenerator, scenario: Any) -> tuple[int, Any]:
    async def main() -> tuple[int, Any]:
        engine = Engine(settings=engine_settings, generator=face_generator)
        engine.holder.swap(SlowGenerator(face_generator, seconds=0.3))  # type: ignore[arg-type]
        runner = asyncio.create_task(discord_app.run_discord(engine, token="token-for-tests"))
        observed = await scenario(engine)
        code = await asyncio.wait_for(runner, timeout=10)
        return code, observed

    return asyncio.run(main())


def test_spot_interruption_finishes_in_flight_work_and_exits_0(
    imds: FakeImds, make_settings: Any, face_generator: FaceGenerator, offline_gateway: list[Any]
) -> None:
    async def scenario(engine: Engine) -> tuple[Any, Any]:
        await asyncio.sleep(0.1)
        in_flight = asyncio.create_task(engine.service.claim_waifu(Requester(user_id="1"), "Asuka"))
        await asyncio.sleep(0.05)
        imds.interrupt()
        while not engine.batcher.closing:
            await asyncio.sleep(0.01)
        late = await engine.service.claim_waifu(Requester(user_id="2"), "Rei")
        return await in_flight, late

    code, (finished, late) = run_bot_until_done(make_settings(imds_url=imds.url), face_generator, scenario)
    assert code == 0
    assert finished.text == "**Asuka**" and len(finished.files) == 1
    assert late.text == SHUTDOWN_TEXT and not late.files
    assert offline_gateway[0].shutdown_reason.startswith("spot interruption (terminate")
    assert offline_gateway[0].is_closed()


@pytest.mark.parametrize("mode", ["warn", "exit"])
def test_rebalance_recommendation(
    mode: str, imds: FakeImds, make_settings: Any, face_generator: FaceGenerator, offline_gateway: list[Any]
) -> None:
    async def scenario(engine: Engine) -> bool:
        imds.rebalance()
        await asyncio.sleep(0.4)
        still_serving = not engine.batcher.closing
        if still_serving:
            offline_gateway[0].request_shutdown("test over")
        return still_serving

    code, still_serving = run_bot_until_done(
        make_settings(imds_url=imds.url, on_rebalance=mode), face_generator, scenario
    )
    assert code == 0
    assert still_serving is (mode == "warn")


def test_sigterm_shuts_down_cleanly(
    imds: FakeImds, make_settings: Any, face_generator: FaceGenerator, offline_gateway: list[Any]
) -> None:
    async def scenario(engine: Engine) -> None:
        # Only signal once the bot's handler is installed, or the default action would end pytest itself.
        before = signal.getsignal(signal.SIGTERM)
        while signal.getsignal(signal.SIGTERM) is before:
            await asyncio.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    code, _ = run_bot_until_done(make_settings(imds_url=imds.url), face_generator, scenario)
    assert code == 0
    assert offline_gateway[0].shutdown_reason == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, signal.default_int_handler)


def test_unreachable_imds_is_tolerated(make_settings: Any, face_generator: FaceGenerator, offline_gateway: Any) -> None:
    async def scenario(engine: Engine) -> bool:
        await asyncio.sleep(0.3)
        offline_gateway[0].request_shutdown("test over")
        return engine.batcher.closing

    code, _ = run_bot_until_done(make_settings(imds_url="http://127.0.0.1:9"), face_generator, scenario)
    assert code == 0


def test_one_drain_deadline_fits_the_spot_notice_and_the_stop_timeout() -> None:
    from runtime.bot import contract
    from runtime.bot.config import BotSettings

    assert BotSettings.__dataclass_fields__["drain_timeout_s"].default == contract.DRAIN_DEADLINE_S
    assert BotSettings.__dataclass_fields__["spot_poll_s"].default == contract.SPOT_POLL_S
    # Notice seen within one poll, everything drained by one deadline, then goodbye and gateway close.
    shutdown_s = contract.SPOT_POLL_S + contract.DRAIN_DEADLINE_S + contract.CLOSE_MARGIN_S
    assert shutdown_s <= contract.STOP_TIMEOUT_S < contract.SPOT_NOTICE_S
    # After SIGTERM systemd waits STOP_TIMEOUT_S: the drain and the close fit without the poll.
    assert contract.DRAIN_DEADLINE_S + contract.CLOSE_MARGIN_S <= contract.STOP_TIMEOUT_S


def test_shutdown_keeps_the_drain_deadline_when_generation_hangs(
    imds: FakeImds, make_settings: Any, face_generator: FaceGenerator, offline_gateway: list[Any]
) -> None:
    async def main() -> tuple[float, Any]:
        engine = Engine(settings=make_settings(imds_url=imds.url, drain_timeout_s=0.5), generator=face_generator)
        engine.holder.swap(SlowGenerator(face_generator, seconds=3.0))  # type: ignore[arg-type]
        runner = asyncio.create_task(discord_app.run_discord(engine, token="token-for-tests"))
        await asyncio.sleep(0.1)
        stuck = [asyncio.create_task(engine.service.claim_waifu(Requester(user_id=str(i)), f"n{i}")) for i in range(3)]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        offline_gateway[0].request_shutdown("test over")
        code = await asyncio.wait_for(runner, timeout=10)
        elapsed = time.monotonic() - started
        replies = await asyncio.gather(*stuck)
        return elapsed, (code, [reply.text for reply in replies])

    elapsed, (code, texts) = asyncio.run(main())
    assert code == 0
    assert elapsed < 0.5 + 0.3, f"shutdown took {elapsed:.2f} s with a 0.5 s drain deadline"
    assert SHUTDOWN_TEXT in texts  # queued work behind the hung call is rejected at the deadline


def test_the_bot_beats_while_serving_and_stops_beating_at_shutdown(
    imds: FakeImds, make_settings: Any, face_generator: FaceGenerator, offline_gateway: list[Any]
) -> None:
    async def scenario(engine: Engine) -> tuple[bool, bool]:
        await asyncio.sleep(0.1)
        bot = offline_gateway[0]
        task = bot._heartbeat_task
        running = task is not None and not task.done()
        bot.request_shutdown("test over")
        while not bot.is_closed():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        return running, task is not None and task.done()

    code, (running, stopped) = run_bot_until_done(make_settings(imds_url=imds.url), face_generator, scenario)
    assert code == 0 and running
    assert stopped, "the heartbeat must stop with the bot, or a closing bot would still look alive"
