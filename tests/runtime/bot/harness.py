"""Drive the bot through discord.py's own gateway parsing with a fake HTTP layer: no network, every call recorded."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import discord
import pytest
from discord.http import HTTPClient
from discord.webhook.async_ import AsyncWebhookAdapter

from runtime.bot.discord_app import GenArtBot, WaifuCog
from runtime.bot.engine import Engine

APP_ID = "900000000000000001"
BOT_ID = "900000000000000002"
CHANNEL_ID = "900000000000000003"
EPHEMERAL = 64
_ids = itertools.count(910000000000000000)
OPTION_TYPES = {str: 3, int: 4, float: 10}


@dataclass
class Call:
    """One HTTP request discord.py tried to make."""

    at: float
    method: str
    url: str
    payload: dict[str, Any] | None
    files: list[bytes] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """Name the call: callback (interaction response), followup, typing, message, or other."""
        if self.url.endswith("/callback"):
            return "callback"
        if "/webhooks/" in self.url:
            return "followup"
        if self.url.endswith("/typing"):
            return "typing"
        if self.url.endswith("/messages") and self.method == "POST":
            return "message"
        return "other"

    @property
    def flags(self) -> int:
        """Return the message flags of the call (64 = ephemeral), looking inside an interaction response."""
        payload = self.payload or {}
        data = payload.get("data") if self.kind == "callback" else payload
        return int((data or {}).get("flags", 0) or 0)

    @property
    def content(self) -> str:
        """Return the text the call posts."""
        payload = self.payload or {}
        data = payload.get("data") if self.kind == "callback" else payload
        return str((data or {}).get("content") or "")


def _json_part(parts: Any) -> dict[str, Any] | None:
    for part in parts or ():
        if part.get("name") == "payload_json":
            return dict(json.loads(part["value"]))
    return None


def _read(files: Any) -> list[bytes]:
    out = []
    for item in files or ():
        item.fp.seek(0)
        out.append(item.fp.read())
    return out


def _message(content: str | None, channel_id: str = CHANNEL_ID) -> dict[str, Any]:
    return {
        "id": str(next(_ids)),
        "channel_id": channel_id,
        "author": {"id": BOT_ID, "username": "genart", "discriminator": "0", "avatar": None, "bot": True},
        "content": content or "",
        "timestamp": "2026-01-01T00:00:00+00:00",
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": False,
        "type": 0,
        "flags": 0,
    }


class FakeDiscord:
    """Stands in for Discord's REST API and interaction webhooks; records calls with their monotonic time."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.arrived = asyncio.Event()

    def record(self, method: str, url: str, payload: dict[str, Any] | None, files: Any) -> None:
        """Remember one call."""
        self.calls.append(Call(at=time.monotonic(), method=method, url=url, payload=payload, files=_read(files)))
        self.arrived.set()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Patch discord.py's two HTTP entry points."""
        fake = self

        async def webhook_request(
            _adapter: Any,
            route: Any,
            _session: Any = None,
            *,
            payload: Any = None,
            files: Any = None,
            multipart: Any = None,
            **_: Any,
        ) -> Any:
            payload = payload or _json_part(multipart)
            fake.record(route.method, route.url, payload, files)
            if route.url.endswith("/callback"):
                data = (payload or {}).get("data") or {}
                interaction_id = route.url.split("/interactions/")[1].split("/")[0]
                return {
                    "interaction": {
                        "id": interaction_id,
                        "type": 2,
                        "response_message_loading": payload.get("type") == 5,
                        "response_message_ephemeral": bool(int(data.get("flags", 0) or 0) & EPHEMERAL),
                    }
                }
            return _message((payload or {}).get("content"))

        async def http_request(_http: Any, route: Any, *, files: Any = None, **kwargs: Any) -> Any:
            payload = kwargs.get("json") or _json_part(kwargs.get("form"))
            fake.record(route.method, route.url, payload, files)
            if route.url.endswith("/messages") and route.method == "POST":
                return _message((payload or {}).get("content"))
            return None

        monkeypatch.setattr(AsyncWebhookAdapter, "request", webhook_request)
        monkeypatch.setattr(HTTPClient, "request", http_request)

    async def wait_for(self, kind: str, *, count: int = 1, timeout_s: float = 30.0) -> list[Call]:
        """Wait until `count` calls of `kind` were made and return them."""
        deadline = time.monotonic() + timeout_s
        while len(found := [call for call in self.calls if call.kind == kind]) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {kind} call; calls: {[c.kind for c in self.calls]}")
            self.arrived.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), timeout=0.05)
        return found


def _user(user_id: int) -> dict[str, Any]:
    return {"id": str(user_id), "username": f"user{user_id}", "discriminator": "0", "avatar": None, "global_name": None}


def slash_payload(command: str, *, user_id: int, **options: Any) -> dict[str, Any]:
    """An INTERACTION_CREATE payload for a slash command in a DM, as the gateway sends it."""
    interaction_id = str(next(_ids))
    return {
        "id": interaction_id,
        "application_id": APP_ID,
        "type": 2,
        "token": f"token-{interaction_id}",
        "version": 1,
        "channel_id": CHANNEL_ID,
        "channel": {"id": CHANNEL_ID, "type": 1, "recipients": [_user(user_id)]},
        "user": _user(user_id),
        "locale": "en-US",
        "attachment_size_limit": 10 * 2**20,
        "app_permissions": "0",
        "entitlements": [],
        "authorizing_integration_owners": {"1": str(user_id)},
        "context": 1,
        "data": {
            "id": str(next(_ids)),
            "name": command,
            "type": 1,
            "options": [
                {"name": name, "type": OPTION_TYPES[type(value)], "value": value} for name, value in options.items()
            ],
        },
    }


def message_payload(content: str, *, user_id: int) -> dict[str, Any]:
    """A MESSAGE_CREATE payload for a DM, as the gateway sends it."""
    return {**_message(content), "author": _user(user_id), "channel_type": 1}


class Harness:
    """A GenArtBot whose gateway events are fed in as payload dicts and whose HTTP calls are recorded."""

    def __init__(self, bot: GenArtBot, fake: FakeDiscord) -> None:
        self.bot, self.fake = bot, fake

    def slash(self, command: str, *, user_id: int, **options: Any) -> float:
        """Deliver a slash command through discord.py's parser; return the delivery time."""
        started = time.monotonic()
        self.bot._connection.parse_interaction_create(slash_payload(command, user_id=user_id, **options))  # type: ignore[arg-type]
        return started

    def prefix(self, content: str, *, user_id: int) -> float:
        """Deliver a `$` message through discord.py's parser; return the delivery time."""
        started = time.monotonic()
        self.bot._connection.parse_message_create(message_payload(content, user_id=user_id))  # type: ignore[arg-type]
        return started


@asynccontextmanager
async def running_bot(engine: Engine, fake: FakeDiscord, *, owner_id: int | None = None) -> AsyncIterator[Harness]:
    """Start a GenArtBot offline (no login): the cog is registered and the connection state knows its user."""
    bot = GenArtBot(engine=engine)
    bot.owner_id = owner_id
    async with bot:
        await bot.add_cog(WaifuCog(bot=bot, engine=engine, in_flight=bot.in_flight))
        bot._connection.user = discord.ClientUser(
            state=bot._connection,
            data={**_user(int(BOT_ID)), "bot": True},  # type: ignore[typeddict-item]
        )
        bot._connection.application_id = int(APP_ID)
        yield Harness(bot, fake)
        await bot.in_flight.wait_idle(timeout_s=30)
        await engine.close()
