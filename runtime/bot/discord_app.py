"""Discord front end: slash and `$` prefix commands that decide first, then defer and call the shared WaifuService."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands
from discord.voice_client import VoiceClient

from . import heartbeat
from .commands import Order, Reply, Requester, Ticket, order_grid, order_truncation, order_waifu
from .engine import Engine
from .errors import ConfigError, InputError
from .parsing import DEFAULT_GRID, DEFAULT_PSI, GRID_MAX, GRID_MIN, MAX_NAME_CHARS, PSI_MAX, PSI_MIN
from .spot import ImdsClient, SpotNotice, SpotWatcher

LOG = logging.getLogger(__name__)
NO_MENTIONS = discord.AllowedMentions.none()


class InFlight:
    """Counts command handlers still running so shutdown can let their replies go out before closing."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def __aenter__(self) -> None:
        self.count += 1
        self._idle.clear()

    async def __aexit__(self, *_: object) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self, *, timeout_s: float) -> bool:
        """Wait until no handler runs; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=timeout_s)
        except TimeoutError:
            return False
        return True


PSI = app_commands.Range[float, PSI_MIN, PSI_MAX]
COUNT = app_commands.Range[int, GRID_MIN, GRID_MAX]
NAME = app_commands.Range[str, 1, MAX_NAME_CHARS]
HAREM_SIZES = [app_commands.Choice(name=f"{n} faces", value=n) for n in (4, 9, GRID_MAX)]
PREFIX_REFUSAL_TTL_S = 30.0  # prefix refusals cannot be private; they delete themselves instead


def _files(reply: Reply) -> list[discord.File]:
    return [discord.File(io.BytesIO(item.data), filename=item.filename) for item in reply.files]


# discord.py's decorators are typed with Concatenate generics that mypy cannot solve (pyright can): hence the ignores.
class WaifuCog(commands.Cog):
    """The commands, as slash commands and `$` prefix commands; each decides (validate, admit) before deferring."""

    def __init__(self, *, bot: commands.Bot, engine: Engine, in_flight: InFlight | None = None) -> None:
        self.bot = bot
        self.engine = engine
        self.service = engine.service
        self.in_flight = in_flight or InFlight()

    def requester(self, user: discord.abc.User) -> Requester:
        """Describe a user without any HTTP call: operator when listed in GENART_OPERATOR_IDS or owner of the app."""
        owners = {self.bot.owner_id, *(self.bot.owner_ids or ())} - {None}
        is_operator = str(user.id) in self.engine.settings.operator_ids or user.id in owners
        return Requester(user_id=str(user.id), is_operator=is_operator)

    # Slash commands: a refusal is the (ephemeral) first response; only admitted work defers.
    async def _slash_draw(self, interaction: discord.Interaction, make_order: Callable[[], Order]) -> None:
        async with self.in_flight:
            try:
                decision: Ticket | Reply = self.service.admit(self.requester(interaction.user), make_order())
            except InputError as exc:
                decision = Reply(text=str(exc), ephemeral=True)
            if isinstance(decision, Reply):
                await interaction.response.send_message(decision.text, ephemeral=True, allowed_mentions=NO_MENTIONS)
                return
            try:
                await interaction.response.defer(thinking=True)
            except BaseException:
                self.service.cancel(decision)
                raise
            reply = await self.service.fulfil(decision)
            await interaction.followup.send(reply.text, files=_files(reply), allowed_mentions=NO_MENTIONS)

    @app_commands.command(name="claim_waifu", description="Draw the face that belongs to a name (or a random one)")
    @app_commands.describe(name="Any name (up to 100 characters); the same name always gives the same face")
    async def slash_claim_waifu(self, interaction: discord.Interaction, name: NAME | None = None) -> None:
        """Draw the face of a name, or a random face."""
        await self._slash_draw(interaction, lambda: order_waifu(name))

    @app_commands.command(name="claim_waifu_truncation", description="Draw a random face at truncation psi")
    @app_commands.describe(psi="0 (average face) to 2 (wild); 0.5-1.0 looks best")
    async def slash_claim_waifu_truncation(self, interaction: discord.Interaction, psi: PSI = DEFAULT_PSI) -> None:
        """Draw a random face at a chosen truncation psi."""
        await self._slash_draw(interaction, lambda: order_truncation(psi))

    @app_commands.command(name="claim_waifu_grid", description="Draw several random faces in one image")
    @app_commands.describe(count=f"How many faces ({GRID_MIN}-{GRID_MAX})", psi="Truncation, 0 to 2")
    async def slash_claim_waifu_grid(
        self, interaction: discord.Interaction, count: COUNT = DEFAULT_GRID, psi: PSI = DEFAULT_PSI
    ) -> None:
        """Draw a grid of random faces in one image."""
        await self._slash_draw(interaction, lambda: order_grid(count, psi))

    @app_commands.command(name="claim_harem", description="Draw a harem: a square grid of random faces")
    @app_commands.describe(count="How many faces", psi="Truncation, 0 to 2")
    @app_commands.choices(count=HAREM_SIZES)
    async def slash_claim_harem(
        self, interaction: discord.Interaction, count: int = DEFAULT_GRID, psi: PSI = DEFAULT_PSI
    ) -> None:
        """Draw a square grid of random faces."""
        await self._slash_draw(interaction, lambda: order_grid(count, psi))

    @app_commands.command(name="waifu_help", description="How to use the waifu bot")
    async def slash_waifu_help(self, interaction: discord.Interaction) -> None:
        """Show the help text (only to the asker)."""
        await interaction.response.send_message(self.service.help().text, ephemeral=True)

    @app_commands.command(name="reload_model", description="Operators: load the newest published model")
    async def slash_reload_model(self, interaction: discord.Interaction) -> None:
        """Reload the generator from its source (operators only; answers only the operator)."""
        async with self.in_flight:
            requester = self.requester(interaction.user)
            refusal = self.service.may_reload(requester)
            if refusal is not None:
                await interaction.response.send_message(refusal.text, ephemeral=True)
                return
            await interaction.response.defer(ephemeral=True, thinking=True)
            reply = await self.service.reload_model(requester)
            await interaction.followup.send(reply.text, ephemeral=True)

    # Prefix commands: the rest of the message is parsed like console input; a typing indicator shows while drawing.
    async def _prefix_draw(self, ctx: commands.Context[commands.Bot], command: str, argument: str) -> None:
        async with self.in_flight:
            decision = self.service.plan(self.requester(ctx.author), command, argument)
            if isinstance(decision, Reply):
                await ctx.send(decision.text, allowed_mentions=NO_MENTIONS, delete_after=PREFIX_REFUSAL_TTL_S)
                return
            reply = await _while_typing(ctx, self.service.fulfil(decision))
            await ctx.send(reply.text, files=_files(reply), allowed_mentions=NO_MENTIONS)

    @commands.command(name="claim_waifu")
    async def prefix_claim_waifu(self, ctx: commands.Context[commands.Bot], *, argument: str = "") -> None:
        """Draw the face of a name (multi-word names need no quotes), or a random face."""
        await self._prefix_draw(ctx, "claim_waifu", argument)

    @commands.command(name="claim_waifu_truncation")
    async def prefix_claim_waifu_truncation(self, ctx: commands.Context[commands.Bot], *, argument: str = "") -> None:
        """Draw a random face at truncation psi."""
        await self._prefix_draw(ctx, "claim_waifu_truncation", argument)

    @commands.command(name="claim_waifu_grid", aliases=["waifu_grid"])
    async def prefix_claim_waifu_grid(self, ctx: commands.Context[commands.Bot], *, argument: str = "") -> None:
        """Draw a grid of random faces: [count] [psi]."""
        await self._prefix_draw(ctx, "claim_waifu_grid", argument)

    @commands.command(name="claim_harem")
    async def prefix_claim_harem(self, ctx: commands.Context[commands.Bot], *, argument: str = "") -> None:
        """Draw a harem (a grid of random faces): [count] [psi]."""
        await self._prefix_draw(ctx, "claim_harem", argument)

    @commands.command(name="waifu_help", aliases=["help"])
    async def prefix_waifu_help(self, ctx: commands.Context[commands.Bot]) -> None:
        """Show the help text."""
        await ctx.send(self.service.help().text, allowed_mentions=NO_MENTIONS)

    @commands.command(name="reload_model")
    async def prefix_reload_model(self, ctx: commands.Context[commands.Bot]) -> None:
        """Reload the generator (operators only); the public answer names no bucket or path."""
        async with self.in_flight:
            requester = self.requester(ctx.author)
            refusal = self.service.may_reload(requester)
            if refusal is not None:
                await ctx.send(refusal.text, allowed_mentions=NO_MENTIONS, delete_after=PREFIX_REFUSAL_TTL_S)
                return
            reply = await _while_typing(ctx, self.service.reload_model(requester))
            await ctx.send(reply.text, allowed_mentions=NO_MENTIONS)

    @commands.Cog.listener()
    async def on_command_error(self, ctx: commands.Context[commands.Bot], error: commands.CommandError) -> None:
        """Answer argument mistakes briefly; log everything else without leaking internals to users."""
        if isinstance(error, commands.CommandNotFound):
            return
        if isinstance(error, commands.UserInputError):
            await ctx.send(f"{error} - try `{ctx.prefix}waifu_help`.", allowed_mentions=NO_MENTIONS)
            return
        LOG.error("command failed", exc_info=error, extra={"fields": {"command": str(ctx.command)}})
        with contextlib.suppress(discord.HTTPException):
            await ctx.send("Something went wrong - please try again later.", allowed_mentions=NO_MENTIONS)


async def _while_typing(ctx: commands.Context[commands.Bot], work: Coroutine[Any, Any, Reply]) -> Reply:
    """Run `work` while the channel shows "typing"; a failing indicator never loses the work."""
    task = asyncio.ensure_future(work)
    with contextlib.suppress(discord.HTTPException):
        async with ctx.typing():
            return await asyncio.shield(task)
    return await task


async def on_app_command_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
    """Log a failed slash command and tell only the asker."""
    LOG.error("slash command failed", exc_info=error, extra={"fields": {"command": str(interaction.command)}})
    with contextlib.suppress(discord.HTTPException):
        if interaction.response.is_done():
            await interaction.followup.send("Something went wrong - please try again later.", ephemeral=True)
        else:
            await interaction.response.send_message("Something went wrong - please try again later.", ephemeral=True)


class GenArtBot(commands.Bot):
    """The Discord client: registers the cog, syncs slash commands, watches for Spot notices, shuts down cleanly."""

    def __init__(self, *, engine: Engine) -> None:
        settings = engine.settings
        # The bot never joins voice: without these flags discord.py logs "PyNaCl is not installed" and "davey is
        # not installed" at WARNING on every start, which would pollute the documented WARNING/ERROR log query.
        VoiceClient.warn_nacl = False
        VoiceClient.warn_dave = False
        intents = discord.Intents.default()
        intents.message_content = settings.prefix_commands
        prefix = commands.when_mentioned_or(settings.prefix) if settings.prefix_commands else commands.when_mentioned
        super().__init__(command_prefix=prefix, intents=intents, help_command=None, allowed_mentions=NO_MENTIONS)
        self.engine = engine
        self.tree.on_error = on_app_command_error  # type: ignore[method-assign]
        self.in_flight = InFlight()
        self.shutdown_reason: str | None = None
        self._watcher_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._shutdown_task: asyncio.Task[None] | None = None

    def alive(self) -> bool:
        """Connected to Discord and not shutting down: what the heartbeat vouches for."""
        return self.is_ready() and not self.is_closed() and self.shutdown_reason is None

    async def setup_hook(self) -> None:
        """Register commands, sync them, start the Spot watcher and signal handlers."""
        await self.add_cog(WaifuCog(bot=self, engine=self.engine, in_flight=self.in_flight))
        try:  # owners are operators; learn them once so deciding a command never waits for HTTP
            info = await self.application_info()
        except discord.HTTPException as exc:
            LOG.warning("application info unavailable", extra={"fields": {"status": exc.status}})
        else:
            if info.team is not None:
                self.owner_ids = {member.id for member in info.team.members}
            else:
                self.owner_id = info.owner.id
        if self.engine.settings.sync_commands:
            try:
                synced = await self.tree.sync()
            except discord.HTTPException as exc:  # prefix commands and previously synced slash commands still work
                LOG.warning("slash command sync failed", extra={"fields": {"status": exc.status, "error": exc.text}})
            else:
                LOG.info("slash commands synced", extra={"fields": {"count": len(synced)}})
        watcher = SpotWatcher(
            client=ImdsClient(base_url=self.engine.settings.imds_url),
            on_notice=self.on_spot_notice,
            interval_s=self.engine.settings.spot_poll_s,
        )
        self._watcher_task = asyncio.create_task(watcher.run(), name="spot-watcher")
        # The Bot stack alarms when these lines stop (docs/bot-operations.md "Heartbeat").
        self._heartbeat_task = asyncio.create_task(heartbeat.beat(alive=self.alive), name="heartbeat")
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self.request_shutdown, signal.Signals(signum).name)

    async def on_ready(self) -> None:
        """Log the connection."""
        try:
            model = self.engine.holder.current.describe()
        except RuntimeError:  # waiting for the first model (or swapping one in): connected all the same
            model = {"model": "none loaded yet"}
        facts = {"user": str(self.user), "guilds": len(self.guilds), **model}
        LOG.info("connected to Discord", extra={"fields": facts})

    async def on_spot_notice(self, notice: SpotNotice) -> None:
        """Interruption: drain and leave. Rebalance: warn (or leave when GENART_ON_REBALANCE=exit)."""
        if notice.kind == "rebalance" and self.engine.settings.on_rebalance == "warn":
            with contextlib.suppress(discord.HTTPException, AttributeError):
                await self.change_presence(activity=discord.Game("may move to a new server soon"))
            return
        self.request_shutdown(f"spot {notice.kind} ({notice.action} at {notice.time or 'unknown time'})")

    def request_shutdown(self, reason: str) -> None:
        """Start a graceful shutdown once, from a signal handler or a Spot notice."""
        if self._shutdown_task is None:
            self._shutdown_task = asyncio.get_running_loop().create_task(self.shutdown(reason), name="shutdown")

    async def shutdown(self, reason: str) -> None:
        """Stop taking work, finish in-flight work and replies until one drain deadline, say goodbye, close."""
        self.shutdown_reason = reason
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.engine.settings.drain_timeout_s
        pending = self.engine.batcher.pending_images
        LOG.warning("shutting down", extra={"fields": {"reason": reason, "pending": pending}})
        if self.is_ready():
            with contextlib.suppress(discord.HTTPException, AttributeError):
                await self.change_presence(status=discord.Status.idle, activity=discord.Game("restarting - back soon"))
        await self.engine.close(deadline=deadline)
        if not await self.in_flight.wait_idle(timeout_s=max(0.0, deadline - loop.time())):
            LOG.warning("replies still pending at shutdown", extra={"fields": {"handlers": self.in_flight.count}})
        for task in (self._watcher_task, self._heartbeat_task):
            if task is not None:
                task.cancel()
        LOG.info("goodbye", extra={"fields": {"reason": reason}})
        await self.close()


async def run_discord(engine: Engine, *, token: str) -> int:
    """Connect and serve until a signal or Spot notice; returns 0 after a clean shutdown."""
    bot = GenArtBot(engine=engine)
    try:
        async with bot:
            await bot.start(token)
    except discord.LoginFailure as exc:
        raise ConfigError("Discord rejected the token (LoginFailure): store a valid bot token and restart") from exc
    except discord.PrivilegedIntentsRequired as exc:
        raise ConfigError(
            "Discord refused the Message Content intent: enable it for the bot in the Developer Portal, "
            "or set GENART_PREFIX_COMMANDS=0 for slash commands only"
        ) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise ConfigError(f"cannot reach Discord ({type(exc).__name__}: {exc}); check outbound HTTPS") from exc
    finally:
        if not engine.batcher.closing:
            await engine.close()
    LOG.info("stopped", extra={"fields": {"reason": bot.shutdown_reason or "gateway closed"}})
    return 0
