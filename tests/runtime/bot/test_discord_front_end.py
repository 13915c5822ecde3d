"""The Discord layer: hybrid commands are registered for slash and `$` prefix use and call the shared service."""

from __future__ import annotations

import asyncio
import io
from types import SimpleNamespace
from typing import Any

import pytest
from discord.ext import commands
from discord.ext.commands.view import StringView
from PIL import Image

from runtime.bot.discord_app import GenArtBot, WaifuCog
from runtime.bot.engine import Engine
from runtime.bot.generator import FaceGenerator

pytestmark = pytest.mark.filterwarnings("ignore:'audioop' is deprecated:DeprecationWarning")
OWNER_ID, OPERATOR_ID, USER_ID = 1000, 2000, 3000


class RecordingContext(commands.Context):  # type: ignore[type-arg]
    """A prefix-command context whose replies are recorded instead of sent."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sent: list[dict[str, Any]] = []
        self.deferred = False

    async def defer(self, *, ephemeral: bool = False) -> None:
        self.deferred = True

    async def send(self, content: str | None = None, **kwargs: Any) -> Any:  # type: ignore[override]
        self.sent.append({"content": content, **kwargs})


async def invoke(bot: GenArtBot, line: str, *, author_id: int = USER_ID) -> RecordingContext:
    """Parse `$name args` the way discord.py does for a message and run the command."""
    view = StringView(line)
    assert view.skip_string("$")
    invoked_with = view.get_word()
    command = bot.get_command(invoked_with)
    assert command is not None, invoked_with
    message = SimpleNamespace(
        author=SimpleNamespace(id=author_id, bot=False),
        content=line,
        guild=None,
        channel=None,
        _state=None,
        attachments=[],
    )
    ctx = RecordingContext(message=message, bot=bot, view=view, prefix="$", command=command, invoked_with=invoked_with)
    await command.invoke(ctx)
    return ctx


def test_commands_registered_and_wired(make_settings: Any, face_generator: FaceGenerator) -> None:
    async def scenario() -> dict[str, Any]:
        engine = Engine(settings=make_settings(operator_ids=frozenset({str(OPERATOR_ID)})), generator=face_generator)
        bot = GenArtBot(engine=engine)
        bot.owner_id = OWNER_ID
        await bot.add_cog(WaifuCog(bot=bot, engine=engine))
        slash = {cmd.name: [p.name for p in cmd.parameters] for cmd in bot.tree.get_commands()}  # type: ignore[union-attr]
        results = {
            "slash": slash,
            "intent": bot.intents.message_content,
            "named": await invoke(bot, '$claim_waifu "Asuka Langley"'),
            "named_again": await invoke(bot, "$claim_waifu   asuka langley"),
            "multi": await invoke(bot, "$claim_waifu Misato  Katsuragi  san"),
            "psi_bad": await invoke(bot, "$claim_waifu_truncation inf"),
            "psi_ok": await invoke(bot, "$claim_waifu_truncation 0.5"),
            "grid": await invoke(bot, "$waifu_grid 4"),
            "help": await invoke(bot, "$help"),
            "reload_user": await invoke(bot, "$reload_model"),
            "reload_operator": await invoke(bot, "$reload_model", author_id=OPERATOR_ID),
            "reload_owner": await invoke(bot, "$reload_model", author_id=OWNER_ID),
        }
        await engine.close()
        await bot.close()
        return results

    results = asyncio.run(scenario())
    assert results["slash"] == {
        "claim_waifu": ["name"],
        "claim_waifu_truncation": ["psi"],
        "claim_waifu_grid": ["count", "psi"],
        "help": [],
        "reload_model": [],
    }
    assert results["intent"] is True
    named, again = results["named"], results["named_again"]
    assert named.deferred and named.sent[0]["content"] == "**Asuka Langley**"
    assert named.sent[0]["allowed_mentions"].everyone is False
    first_file, second_file = named.sent[0]["files"][0], again.sent[0]["files"][0]
    assert first_file.fp.read() == second_file.fp.read()
    assert results["multi"].sent[0]["content"] == "**Misato Katsuragi san**"
    assert "finite" in results["psi_bad"].sent[0]["content"] and not results["psi_bad"].sent[0]["files"]
    assert results["psi_ok"].sent[0]["content"].startswith("A random waifu at truncation 0.5")
    grid = Image.open(io.BytesIO(results["grid"].sent[0]["files"][0].fp.read()))
    assert grid.size == (34, 34)
    assert "claim_waifu_truncation" in results["help"].sent[0]["content"]
    assert results["reload_user"].sent[0]["content"] == "Only bot operators may reload the model."
    assert results["reload_operator"].sent[0]["content"].startswith("Model reloaded:")
    assert results["reload_owner"].sent[0]["content"].startswith("Model reloaded:")


def test_slash_only_mode_needs_no_message_content_intent(make_settings: Any, face_generator: FaceGenerator) -> None:
    async def scenario() -> bool:
        engine = Engine(settings=make_settings(prefix_commands=False), generator=face_generator)
        bot = GenArtBot(engine=engine)
        intent = bot.intents.message_content
        await engine.close()
        await bot.close()
        return intent

    assert asyncio.run(scenario()) is False
