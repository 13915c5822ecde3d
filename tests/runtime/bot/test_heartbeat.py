"""The heartbeat line the Bot stack's alarm counts: written only while the bot is alive, as the filter expects."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from runtime.bot import contract, heartbeat
from runtime.bot.discord_app import GenArtBot
from runtime.common.jsonlog import configure_logging


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_beats_only_while_alive_with_the_message_the_metric_filter_matches() -> None:
    stream = io.StringIO()
    configure_logging(level="INFO", stream=stream)
    states = iter([True, False, True, True])

    async def run() -> None:
        task = asyncio.create_task(heartbeat.beat(alive=lambda: next(states, False), interval_s=0.01))
        await asyncio.sleep(0.055)
        task.cancel()

    asyncio.run(run())
    beats = [line for line in _lines(stream) if line["message"] == contract.HEARTBEAT_MESSAGE]
    assert len(beats) == 3
    # The Bot stack's filter is `{ $.message = "heartbeat" }` on these JSON lines.
    assert all(line["logger"] == "genart.bot.heartbeat" and line["level"] == "INFO" for line in beats)
    logging.getLogger().handlers.clear()


@pytest.mark.parametrize(
    ("ready", "closed", "reason", "alive"),
    [(True, False, None, True), (False, False, None, False), (True, True, None, False), (True, False, "spot", False)],
)
def test_the_bot_is_alive_only_when_connected_and_not_shutting_down(
    ready: bool, closed: bool, reason: str | None, alive: bool
) -> None:
    class Probe:
        shutdown_reason = reason

        def is_ready(self) -> bool:
            return ready

        def is_closed(self) -> bool:
            return closed

    assert GenArtBot.alive(Probe()) is alive  # type: ignore[arg-type]


def test_heartbeat_interval_fits_the_alarm_period() -> None:
    # Five-minute alarm periods: at least three lines per period, so one late line cannot look like silence.
    assert contract.HEARTBEAT_INTERVAL_S * 3 <= 300


def test_a_bot_waiting_for_its_first_model_is_alive_and_logs_its_connection(
    make_settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.bot.engine import Engine
    from runtime.bot.model_source import ModelSource

    async def scenario() -> tuple[bool, bool]:
        engine = Engine(settings=make_settings(model_source=ModelSource(local_path=tmp_path / "not-yet.onnx")))
        await engine.start()
        bot = GenArtBot(engine=engine)
        monkeypatch.setattr(bot, "is_ready", lambda: True)
        await bot.on_ready()  # no model to describe: still logs the connection
        alive = bot.alive()
        await engine.close()
        await bot.close()
        return alive, engine.holder.loaded

    alive, loaded = asyncio.run(scenario())
    # No model is not silence: the Bot stack's heartbeat alarm must not fire while the pipeline has not published.
    assert alive and not loaded
