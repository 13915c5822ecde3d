"""Real interactions: gateway payloads through discord.py's own parser, a fake HTTP layer, every call checked."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from discord.voice_client import VoiceClient
from PIL import Image

from runtime.bot.commands import SHUTDOWN_TEXT, Requester
from runtime.bot.console import run_console
from runtime.bot.discord_app import GenArtBot, WaifuCog
from runtime.bot.engine import Engine
from runtime.bot.generator import FaceGenerator

from .harness import EPHEMERAL, Call, FakeDiscord, running_bot

pytestmark = pytest.mark.filterwarnings("ignore:'audioop' is deprecated:DeprecationWarning")
OWNER_ID, OPERATOR_ID, USER_ID = 1000, 2000, 3000
FIRST_CALL_BUDGET_S = 0.05
DEFER, MESSAGE = 5, 4  # interaction callback types


class Delayed:
    """The tiny generator made as slow as a big one, so anything awaited before the defer shows in its timing."""

    def __init__(self, inner: FaceGenerator, *, seconds: float) -> None:
        self.inner, self.seconds, self.resolution = inner, seconds, inner.resolution

    def generate(self, latents: Any, psi: float) -> Any:
        time.sleep(self.seconds)
        return self.inner.generate(latents, psi)

    def describe(self) -> dict[str, str | int]:
        return self.inner.describe()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeDiscord:
    discord_fake = FakeDiscord()
    discord_fake.install(monkeypatch)
    return discord_fake


def first_call_after(fake: FakeDiscord, started: float, start_index: int) -> Call:
    call = fake.calls[start_index]
    assert call.at - started < FIRST_CALL_BUDGET_S, f"first response after {call.at - started:.3f} s"
    return call


def test_commands_exist_as_slash_and_prefix_with_discord_side_validation(
    make_settings: Any, face_generator: FaceGenerator
) -> None:
    async def scenario() -> tuple[dict[str, Any], set[str], bool]:
        engine = Engine(settings=make_settings(), generator=face_generator)
        bot = GenArtBot(engine=engine)
        await bot.add_cog(WaifuCog(bot=bot, engine=engine))
        slash = {cmd.name: cmd.to_dict(bot.tree) for cmd in bot.tree.get_commands()}  # what Discord receives
        prefix = {name for cmd in bot.commands for name in (cmd.name, *cmd.aliases)}
        intent = bot.intents.message_content
        await engine.close()
        await bot.close()
        return slash, prefix, intent

    slash, prefix, intent = asyncio.run(scenario())
    drawing = {"claim_waifu", "claim_waifu_truncation", "claim_waifu_grid", "claim_harem"}
    assert set(slash) == drawing | {"waifu_help", "reload_model"}
    assert prefix == set(slash) | {"waifu_grid", "help"}
    assert intent is True
    options = {name: {o["name"]: o for o in cmd.get("options", [])} for name, cmd in slash.items()}
    name = options["claim_waifu"]["name"]
    assert (name["type"], name["max_length"], name["required"]) == (3, 100, False)
    psi = options["claim_waifu_truncation"]["psi"]
    assert (psi["type"], psi["min_value"], psi["max_value"]) == (10, 0, 2)
    count = options["claim_waifu_grid"]["count"]
    assert (count["type"], count["min_value"], count["max_value"]) == (4, 1, 16)
    assert [choice["value"] for choice in options["claim_harem"]["count"]["choices"]] == [4, 9, 16]
    assert all(cmd["description"] for cmd in slash.values())
    assert all(o["description"] for cmd in options.values() for o in cmd.values())


def test_slash_face_defers_first_and_arrives_as_a_file(
    make_settings: Any, face_generator: FaceGenerator, fake: FakeDiscord
) -> None:
    async def scenario() -> tuple[float, int]:
        engine = Engine(settings=make_settings(), generator=face_generator)
        engine.holder.swap(Delayed(face_generator, seconds=0.2))  # type: ignore[arg-type]
        async with running_bot(engine, fake) as bot:
            started = bot.slash("claim_waifu", user_id=USER_ID, name="Asuka Langley")
            await fake.wait_for("followup")
        return started, 0

    started, index = asyncio.run(scenario())
    first = first_call_after(fake, started, index)
    assert first.kind == "callback" and first.payload is not None
    assert first.payload["type"] == DEFER and first.flags & EPHEMERAL == 0  # a face is for everyone to see
    (followup,) = [call for call in fake.calls if call.kind == "followup"]
    assert followup.content == "**Asuka Langley**"
    assert followup.payload is not None and followup.payload["allowed_mentions"]["parse"] == []
    (png,) = followup.files
    assert Image.open(io.BytesIO(png)).format == "PNG"
    assert [call.kind for call in fake.calls] == ["callback", "followup"]


@pytest.mark.parametrize(
    ("command", "options", "user", "expected"),
    [
        ("claim_waifu_truncation", {"psi": 5.0}, USER_ID, "out of range"),  # a client that skipped Discord's check
        ("claim_waifu", {"name": '"Asuka'}, USER_ID, "no closing quote"),
        ("claim_waifu_grid", {"count": 16}, USER_ID, "Easy there!"),  # after one face: the bucket lacks 1 image
        ("reload_model", {}, USER_ID, "Only bot operators"),
        ("waifu_help", {}, USER_ID, "/claim_waifu"),
    ],
)
def test_refusals_and_help_are_the_first_response_and_ephemeral(
    command: str,
    options: dict[str, Any],
    user: int,
    expected: str,
    make_settings: Any,
    face_generator: FaceGenerator,
    fake: FakeDiscord,
) -> None:
    async def scenario() -> tuple[float, int]:
        engine = Engine(settings=make_settings(cooldown_s=5.0), generator=face_generator)
        async with running_bot(engine, fake) as bot:
            bot.slash("claim_waifu", user_id=USER_ID, name="warm-up")
            await fake.wait_for("followup")
            index = len(fake.calls)
            started = bot.slash(command, user_id=user, **options)
            await fake.wait_for("callback", count=2)
            await asyncio.sleep(0.05)
        return started, index

    started, index = asyncio.run(scenario())
    refusal = first_call_after(fake, started, index)
    assert refusal.kind == "callback" and refusal.payload is not None and refusal.payload["type"] == MESSAGE
    assert refusal.flags & EPHEMERAL, "a refusal must be visible to the asker only"
    assert expected in refusal.content
    assert len(fake.calls) == index + 1  # no defer, no follow-up, nothing public


def test_busy_and_restarting_refusals_are_ephemeral_and_say_when_to_retry(
    make_settings: Any, face_generator: FaceGenerator, fake: FakeDiscord
) -> None:
    async def scenario() -> tuple[list[Call], str]:
        engine = Engine(settings=make_settings(max_queue=16, max_wait_s=1.0), generator=face_generator)
        async with running_bot(engine, fake) as bot:
            # Another user holds the whole queue (as if a long grid were being drawn).
            held = engine.service.admission.admit("other", 16)
            bot.slash("claim_waifu", user_id=USER_ID, name="Rei")
            await fake.wait_for("callback")
            engine.service.admission.release(held)  # type: ignore[arg-type]
            engine.batcher._closing = True  # what a Spot notice does first
            bot.slash("claim_waifu", user_id=USER_ID, name="Rei")
            await fake.wait_for("callback", count=2)
            engine.batcher._closing = False
        return fake.calls, SHUTDOWN_TEXT

    calls, shutdown = asyncio.run(scenario())
    busy, restarting = calls
    assert busy.flags & EPHEMERAL and restarting.flags & EPHEMERAL
    assert "try again in" in busy.content and busy.content.rstrip(".").split()[-1] == "s"
    assert restarting.content == shutdown


def test_same_name_gives_identical_png_through_slash_prefix_and_console(
    make_settings: Any, face_generator: FaceGenerator, fake: FakeDiscord, tmp_path: Path
) -> None:
    async def scenario() -> tuple[bytes, bytes, bytes, list[str]]:
        engine = Engine(settings=make_settings(), generator=face_generator)
        async with running_bot(engine, fake) as bot:
            bot.slash("claim_waifu", user_id=USER_ID, name="Misato Katsuragi")
            (followup,) = await fake.wait_for("followup")
            bot.prefix("$claim_waifu   misato   KATSURAGI", user_id=OPERATOR_ID)
            (message,) = await fake.wait_for("message")
        console_engine = Engine(settings=make_settings(), generator=face_generator)
        stdin, stdout = io.StringIO("$claim_waifu Misato Katsuragi\n"), io.StringIO()
        await run_console(console_engine, out_dir=tmp_path, stdin=stdin, stdout=stdout)
        await console_engine.close()
        (written,) = sorted(tmp_path.iterdir())
        kinds = [call.kind for call in fake.calls]
        return followup.files[0], message.files[0], written.read_bytes(), kinds

    slash_png, prefix_png, console_png, kinds = asyncio.run(scenario())
    assert slash_png == prefix_png == console_png
    assert kinds.index("typing") < kinds.index("message")  # the prefix command shows "typing" while drawing


def test_prefix_unterminated_quote_is_a_clear_error_and_reload_output_is_minimal(
    make_settings: Any, face_generator: FaceGenerator, fake: FakeDiscord
) -> None:
    async def scenario() -> list[Call]:
        settings = make_settings(operator_ids=frozenset({str(OPERATOR_ID)}))
        engine = Engine(settings=settings, generator=face_generator)
        async with running_bot(engine, fake, owner_id=OWNER_ID) as bot:
            bot.prefix('$claim_waifu_truncation "0.3', user_id=USER_ID)
            await fake.wait_for("message")
            bot.prefix("$claim_waifu_grid 4 '1.5", user_id=USER_ID)
            await fake.wait_for("message", count=2)
            bot.prefix("$reload_model", user_id=OPERATOR_ID)
            await fake.wait_for("message", count=3)
            bot.slash("reload_model", user_id=OWNER_ID)
            await fake.wait_for("followup")
        return fake.calls

    calls = asyncio.run(scenario())
    messages = [call for call in calls if call.kind == "message"]
    assert "Unterminated quote" in messages[0].content and not messages[0].files
    assert "Unterminated quote" in messages[1].content
    reload_text = messages[2].content
    assert reload_text.startswith("Model reloaded (16 px") and "s3://" not in reload_text and "/" not in reload_text
    slash_calls = [call for call in calls if call.kind in {"callback", "followup"}]
    assert [call.flags & EPHEMERAL for call in slash_calls] == [EPHEMERAL, EPHEMERAL]


def test_voice_support_warnings_are_silenced(
    make_settings: Any, face_generator: FaceGenerator, caplog: pytest.LogCaptureFixture
) -> None:
    VoiceClient.warn_nacl = VoiceClient.warn_dave = True  # as on a fresh import without PyNaCl or davey

    async def scenario() -> None:
        engine = Engine(settings=make_settings(), generator=face_generator)
        bot = GenArtBot(engine=engine)
        await engine.close()
        await bot.close()

    with caplog.at_level(logging.DEBUG):
        asyncio.run(scenario())
    assert not [record for record in caplog.records if "is not installed" in record.getMessage()]


def test_slash_only_mode_needs_no_message_content_intent(make_settings: Any, face_generator: FaceGenerator) -> None:
    async def scenario() -> bool:
        engine = Engine(settings=make_settings(prefix_commands=False), generator=face_generator)
        bot = GenArtBot(engine=engine)
        intent = bot.intents.message_content
        await engine.close()
        await bot.close()
        return intent

    assert asyncio.run(scenario()) is False


def test_event_loop_stays_responsive_while_a_real_generator_draws_a_grid_of_16(
    make_settings: Any, generator_256_onnx: Path, fake: FakeDiscord
) -> None:
    from runtime.bot.engine import load_generator
    from runtime.bot.model_source import ModelSource

    # 256 px with 8 images per call: one ONNX call (about 0.3 s) or the grid's PNG (about 0.5 s) would stall the
    # loop well past 100 ms if either ran on it; one intra-op thread leaves the other core to the loop.
    model = ModelSource(local_path=generator_256_onnx)
    settings = make_settings(model_source=model, intra_op_threads=1, max_batch=8)

    async def scenario() -> tuple[float, int]:
        engine = Engine(settings=settings, generator=load_generator(settings))
        worst, ticks = 0.0, 0
        async with running_bot(engine, fake) as bot:
            bot.slash("claim_waifu_grid", user_id=USER_ID, count=16)
            done = asyncio.create_task(fake.wait_for("followup", timeout_s=120))
            last = time.monotonic()
            while not done.done():
                await asyncio.sleep(0.005)
                now = time.monotonic()
                worst, last, ticks = max(worst, now - last), now, ticks + 1
            (followup,) = done.result()
        assert Image.open(io.BytesIO(followup.files[0])).size == (4 * 256 + 3 * 2, 4 * 256 + 3 * 2)
        return worst, ticks

    worst, ticks = asyncio.run(scenario())
    assert ticks > 10
    assert worst < 0.1, f"the event loop stalled for {worst * 1000:.0f} ms"


def test_operator_requester_needs_no_http(make_settings: Any, face_generator: FaceGenerator) -> None:
    async def scenario() -> list[Requester]:
        engine = Engine(settings=make_settings(operator_ids=frozenset({str(OPERATOR_ID)})), generator=face_generator)
        bot = GenArtBot(engine=engine)
        bot.owner_id = OWNER_ID
        cog = WaifuCog(bot=bot, engine=engine)
        users = [type("U", (), {"id": uid})() for uid in (OWNER_ID, OPERATOR_ID, USER_ID)]
        result = [cog.requester(user) for user in users]  # type: ignore[arg-type]
        await engine.close()
        await bot.close()
        return result

    owner, operator, user = asyncio.run(scenario())
    assert owner.is_operator and operator.is_operator and not user.is_operator


def test_without_a_model_slash_answers_privately_prefix_says_it_publicly_and_help_still_works(
    make_settings: Any, fake: FakeDiscord, tmp_path: Path
) -> None:
    from runtime.bot.commands import NO_MODEL_TEXT
    from runtime.bot.model_source import ModelSource

    settings = make_settings(
        model_source=ModelSource(local_path=tmp_path / "not-yet.onnx"), operator_ids=frozenset({str(OPERATOR_ID)})
    )

    async def scenario() -> list[Call]:
        engine = Engine(settings=settings)
        await engine.start()
        async with running_bot(engine, fake, owner_id=OWNER_ID) as bot:
            bot.slash("claim_waifu", user_id=USER_ID, name="Asuka")
            await fake.wait_for("callback")
            bot.slash("waifu_help", user_id=USER_ID)
            await fake.wait_for("callback", count=2)
            bot.prefix("$claim_waifu_grid 4", user_id=USER_ID)
            await fake.wait_for("message")
            bot.slash("reload_model", user_id=OPERATOR_ID)
            await fake.wait_for("followup")
        return fake.calls

    calls = asyncio.run(scenario())
    draw, help_reply, reload_ack = (call for call in calls if call.kind == "callback")
    (prefix,) = (call for call in calls if call.kind == "message")
    (reload_reply,) = (call for call in calls if call.kind == "followup")
    assert draw.content == NO_MODEL_TEXT and draw.flags & EPHEMERAL  # a refusal, never a defer
    assert draw.payload is not None and draw.payload["type"] == MESSAGE
    assert help_reply.content.startswith("**GenArt waifu bot**")
    assert prefix.content == NO_MODEL_TEXT and not prefix.files  # prefix replies cannot be private
    assert reload_ack.payload is not None and reload_ack.payload["type"] == DEFER
    assert reload_reply.content == "Nothing to load: no face generator published yet."
