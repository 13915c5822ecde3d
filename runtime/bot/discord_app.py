"""Discord front end: hybrid (slash + `$` prefix) commands that call the shared WaifuService."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import signal

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from .commands import Reply, Requester
from .engine import Engine
from .errors import ConfigError
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


# discord.py types hybrid_command with Concatenate generics that mypy cannot solve (pyright can): hence the ignores.
class WaifuCog(commands.Cog):
    """The user-facing commands; every handler defers first so slow generation never misses the 3 s deadline."""

    def __init__(self, *, bot: commands.Bot, engine: Engine, in_flight: InFlight | None = None) -> None:
        self.bot = bot
        self.engine = engine
        self.in_flight = in_flight or InFlight()

    async def requester(self, ctx: commands.Context[commands.Bot]) -> Requester:
        """Describe the author: operator when listed in GENART_OPERATOR_IDS or owner of the application."""
        user_id = str(ctx.author.id)
        is_operator = user_id in self.engine.settings.operator_ids
        if not is_operator:
            with contextlib.suppress(discord.HTTPException):
                is_operator = await self.bot.is_owner(ctx.author)
        return Requester(user_id=user_id, is_operator=is_operator)

    async def respond(self, ctx: commands.Context[commands.Bot], reply: Reply) -> None:
        """Send a reply with its images; never pings anyone."""
        files = [discord.File(io.BytesIO(item.data), filename=item.filename) for item in reply.files]
        await ctx.send(
            reply.text,
            files=files,
            allowed_mentions=NO_MENTIONS,
            ephemeral=reply.ephemeral and ctx.interaction is not None,
        )

    @commands.hybrid_command(name="claim_waifu", description="Draw the face that belongs to a name (or a random one)")  # type: ignore[arg-type]
    @app_commands.describe(name="Any name; the same name always gives the same face")
    async def claim_waifu(self, ctx: commands.Context[commands.Bot], *, name: str | None = None) -> None:
        """Draw the face of a name, or a random face."""
        async with self.in_flight:
            await ctx.defer()
            await self.respond(ctx, await self.engine.service.claim_waifu(await self.requester(ctx), name))

    @commands.hybrid_command(name="claim_waifu_truncation", description="Draw a random face at truncation psi")  # type: ignore[arg-type]
    @app_commands.describe(psi="0 (average face) to 2 (wild); 0.5-1.0 looks best")
    async def claim_waifu_truncation(self, ctx: commands.Context[commands.Bot], psi: str | None = None) -> None:
        """Draw a random face at a chosen truncation psi."""
        async with self.in_flight:
            await ctx.defer()
            await self.respond(ctx, await self.engine.service.claim_waifu_truncation(await self.requester(ctx), psi))

    @commands.hybrid_command(name="claim_waifu_grid", aliases=["waifu_grid"], description="Draw several faces at once")  # type: ignore[arg-type]
    @app_commands.describe(count="How many faces (1-16)", psi="Truncation, 0 to 2 (default 0.7)")
    async def claim_waifu_grid(
        self, ctx: commands.Context[commands.Bot], count: str | None = None, psi: str | None = None
    ) -> None:
        """Draw a grid of random faces in one image."""
        async with self.in_flight:
            await ctx.defer()
            await self.respond(ctx, await self.engine.service.claim_waifu_grid(await self.requester(ctx), count, psi))

    @commands.hybrid_command(name="help", description="How to use the waifu bot")  # type: ignore[arg-type]
    async def help(self, ctx: commands.Context[commands.Bot]) -> None:
        """Show the help text."""
        await self.respond(ctx, self.engine.service.help())

    @commands.hybrid_command(name="reload_model", description="Operators: load the newest published model")  # type: ignore[arg-type]
    async def reload_model(self, ctx: commands.Context[commands.Bot]) -> None:
        """Reload the generator from its source (operators only)."""
        async with self.in_flight:
            await ctx.defer(ephemeral=True)
            await self.respond(ctx, await self.engine.service.reload_model(await self.requester(ctx)))

    @commands.Cog.listener()
    async def on_command_error(self, ctx: commands.Context[commands.Bot], error: commands.CommandError) -> None:
        """Answer argument mistakes briefly; log everything else without leaking internals to users."""
        if isinstance(error, commands.CommandNotFound):
            return
        if isinstance(error, commands.UserInputError):
            await ctx.send(f"{error} - try `{ctx.prefix}help`.", allowed_mentions=NO_MENTIONS)
            return
        LOG.error("command failed", exc_info=error, extra={"fields": {"command": str(ctx.command)}})
        with contextlib.suppress(discord.HTTPException):
            await ctx.send("Something went wrong - please try again later.", allowed_mentions=NO_MENTIONS)


class GenArtBot(commands.Bot):
    """The Discord client: registers the cog, syncs slash commands, watches for Spot notices, shuts down cleanly."""

    def __init__(self, *, engine: Engine) -> None:
        settings = engine.settings
        intents = discord.Intents.default()
        intents.message_content = settings.prefix_commands
        prefix = commands.when_mentioned_or(settings.prefix) if settings.prefix_commands else commands.when_mentioned
        super().__init__(command_prefix=prefix, intents=intents, help_command=None, allowed_mentions=NO_MENTIONS)
        self.engine = engine
        self.in_flight = InFlight()
        self.shutdown_reason: str | None = None
        self._watcher_task: asyncio.Task[None] | None = None
        self._shutdown_task: asyncio.Task[None] | None = None

    async def setup_hook(self) -> None:
        """Register commands, sync them, start the Spot watcher and signal handlers."""
        await self.add_cog(WaifuCog(bot=self, engine=self.engine, in_flight=self.in_flight))
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
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self.request_shutdown, signal.Signals(signum).name)

    async def on_ready(self) -> None:
        """Log the connection."""
        facts = {"user": str(self.user), "guilds": len(self.guilds), **self.engine.holder.current.describe()}
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
        """Stop taking work, finish in-flight batches, say goodbye, close the gateway."""
        self.shutdown_reason = reason
        pending = self.engine.batcher.pending_images
        LOG.warning("shutting down", extra={"fields": {"reason": reason, "pending": pending}})
        if self.is_ready():
            with contextlib.suppress(discord.HTTPException, AttributeError):
                await self.change_presence(status=discord.Status.idle, activity=discord.Game("restarting - back soon"))
        await self.engine.close()
        if not await self.in_flight.wait_idle(timeout_s=10):
            LOG.warning("replies still pending at shutdown", extra={"fields": {"handlers": self.in_flight.count}})
        if self._watcher_task is not None:
            self._watcher_task.cancel()
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
