"""Command handlers shared by Discord and console mode: validate, rate-limit, generate, encode, reply."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .batcher import MicroBatcher
from .errors import BusyError, ConfigError, InputError
from .imaging import ImageFormat, encode_image, make_grid
from .limits import Cooldown
from .parsing import (
    DEFAULT_PSI,
    GRID_MAX,
    PSI_MAX,
    PSI_MIN,
    clean_name,
    escape_markdown,
    parse_count,
    parse_psi,
    slug,
)
from .seeding import latents_for_seeds, random_seed, seed_for_name

LOG = logging.getLogger(__name__)
COMMANDS = ("claim_waifu", "claim_waifu_truncation", "claim_waifu_grid", "help", "reload_model")
ALIASES = {"waifu_grid": "claim_waifu_grid", "claim_harem": "claim_waifu_grid", "waifu_help": "help"}
_OPTION = re.compile(r"(^|\s)(?:name|psi|count):")
BUSY_TEXT = "I'm busy drawing other faces right now - please try again in a few seconds."
SHUTDOWN_TEXT = "I'm restarting on a new server - please try again in a minute."
HELP_TEXT = f"""**GenArt waifu bot** - anime faces drawn by a StyleGAN2 generator.
`/claim_waifu [name]` or `$claim_waifu [name]` - the face that belongs to a name (same name, same face, everywhere); \
no name gives a random face.
`/claim_waifu_truncation [psi]` or `$claim_waifu_truncation [psi]` - a random face at truncation psi from \
{PSI_MIN:g} (the average face) to {PSI_MAX:g} (wild); default {DEFAULT_PSI:g}.
`/claim_waifu_grid [count]` or `$claim_waifu_grid [count]` - 1 to {GRID_MAX} random faces in one image.
`/help` or `$help` - this text. Operators: `/reload_model` loads the newest published model."""


@dataclass(frozen=True)
class Requester:
    """Who asked: a stable id for cooldowns and whether they may run operator commands."""

    user_id: str
    is_operator: bool = False


@dataclass(frozen=True)
class Attachment:
    """An encoded image to send."""

    filename: str
    data: bytes


@dataclass(frozen=True)
class Reply:
    """What to send back: text, optional images, and whether only the requester should see it."""

    text: str
    files: tuple[Attachment, ...] = ()
    ephemeral: bool = False


class WaifuService:
    """The bot's commands, independent of Discord so console mode and tests run the same code."""

    def __init__(
        self,
        *,
        batcher: MicroBatcher,
        executor: Executor,
        cooldown: Cooldown,
        image_format: ImageFormat = "png",
        reload_model: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        self._batcher = batcher
        self._executor = executor
        self._cooldown = cooldown
        self._format: ImageFormat = image_format
        self._reload_model = reload_model
        self._extension = "jpg" if image_format == "jpeg" else "png"
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def drain(self, *, timeout_s: float) -> bool:
        """Wait until no request is being drawn or encoded; False if the timeout passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=timeout_s)
        except TimeoutError:
            return False
        return True

    async def claim_waifu(self, requester: Requester, name: str | None = None) -> Reply:
        """Draw the face of a name (or a random face)."""
        try:
            display = clean_name(name)
        except InputError as exc:
            return Reply(text=str(exc), ephemeral=True)
        if display is None:
            seed = random_seed()
            caption, stem = f"A random waifu appears! (seed {seed})", f"waifu-{seed:016x}"
        else:
            seed = seed_for_name(display)
            caption, stem = f"**{escape_markdown(display)}**", f"waifu-{slug(display, fallback=f'{seed:016x}')}"
        return await self._draw(requester, seeds=[seed], psi=DEFAULT_PSI, caption=caption, stem=stem)

    async def claim_waifu_truncation(self, requester: Requester, psi: str | float | None = None) -> Reply:
        """Draw a random face at a validated truncation psi."""
        try:
            value = parse_psi(psi)
        except InputError as exc:
            return Reply(text=str(exc), ephemeral=True)
        seed = random_seed()
        return await self._draw(
            requester,
            seeds=[seed],
            psi=value,
            caption=f"A random waifu at truncation {value:g} (seed {seed})",
            stem=f"waifu-psi{value:g}-{seed:016x}",
        )

    async def claim_waifu_grid(
        self, requester: Requester, count: str | int | None = None, psi: str | float | None = None
    ) -> Reply:
        """Draw several random faces into one image (one batched ONNX call)."""
        try:
            number, value = parse_count(count), parse_psi(psi)
        except InputError as exc:
            return Reply(text=str(exc), ephemeral=True)
        seeds = [random_seed() for _ in range(number)]
        return await self._draw(
            requester,
            seeds=seeds,
            psi=value,
            caption=f"{number} random waifus (truncation {value:g})",
            stem=f"waifus-{number}-{seeds[0]:016x}",
            grid=True,
        )

    def help(self) -> Reply:
        """Return the help text."""
        return Reply(text=HELP_TEXT, ephemeral=True)

    async def reload_model(self, requester: Requester) -> Reply:
        """Load the newest model (operators only); generation continues on the old model meanwhile."""
        if not requester.is_operator:
            LOG.warning("reload refused", extra={"fields": {"user": requester.user_id}})
            return Reply(text="Only bot operators may reload the model.", ephemeral=True)
        if self._reload_model is None:
            return Reply(text="Reloading is not available here.", ephemeral=True)
        try:
            summary = await self._reload_model()
        except ConfigError as exc:
            LOG.error("reload failed", extra={"fields": {"error": str(exc)}})
            return Reply(text=f"Reload failed, still using the previous model: {exc}", ephemeral=True)
        LOG.info("model reloaded", extra={"fields": {"user": requester.user_id, "summary": summary}})
        return Reply(text=f"Model reloaded: {summary}", ephemeral=True)

    async def dispatch(self, requester: Requester, command: str, argument: str = "") -> Reply:
        """Run a command by name with its raw argument text (console mode and prefix parsing)."""
        name = ALIASES.get(command, command)
        if name == "claim_waifu":
            return await self.claim_waifu(requester, argument or None)
        if name == "claim_waifu_truncation":
            return await self.claim_waifu_truncation(requester, argument or None)
        if name == "claim_waifu_grid":
            parts = argument.split()
            if len(parts) > 2:
                return Reply(text="Usage: claim_waifu_grid [count] [psi]", ephemeral=True)
            return await self.claim_waifu_grid(requester, *parts)
        if name == "help":
            return self.help()
        if name == "reload_model":
            return await self.reload_model(requester)
        return Reply(text=f"Unknown command `{command[:40]}`. Try `help`.", ephemeral=True)

    async def _draw(
        self, requester: Requester, *, seeds: list[int], psi: float, caption: str, stem: str, grid: bool = False
    ) -> Reply:
        self._active += 1
        self._idle.clear()
        try:
            return await self._draw_unguarded(requester, seeds=seeds, psi=psi, caption=caption, stem=stem, grid=grid)
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    async def _draw_unguarded(
        self, requester: Requester, *, seeds: list[int], psi: float, caption: str, stem: str, grid: bool
    ) -> Reply:
        if self._batcher.closing:
            return Reply(text=SHUTDOWN_TEXT, ephemeral=True)
        wait = 0.0 if requester.is_operator else self._cooldown.try_acquire(requester.user_id)
        if wait > 0:
            return Reply(text=f"Easy there! You can claim another waifu in {wait:.0f} s.", ephemeral=True)
        try:
            images = await self._batcher.generate(latents_for_seeds(seeds), psi)
        except BusyError:
            self._cooldown.release(requester.user_id)
            text = SHUTDOWN_TEXT if self._batcher.closing else BUSY_TEXT
            return Reply(text=text, ephemeral=True)
        except Exception:
            LOG.exception("generation failed for a request", extra={"fields": {"user": requester.user_id}})
            self._cooldown.release(requester.user_id)
            return Reply(text="Something went wrong while drawing - please try again later.", ephemeral=True)
        data = await asyncio.get_running_loop().run_in_executor(self._executor, self._encode, images, grid)
        return Reply(text=caption, files=(Attachment(filename=f"{stem}.{self._extension}", data=data),))

    def _encode(self, images: npt.NDArray[np.uint8], grid: bool) -> bytes:
        picture = make_grid(images) if grid else images[0]
        return encode_image(picture, fmt=self._format)


def parse_command_line(line: str) -> tuple[str, str] | None:
    """Split `$claim_waifu Asuka Langley` (also `/cmd`, `cmd`, `/cmd name:...`) into (command, argument)."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if text[0] in "$/!":
        text = text[1:]
    command, _, argument = text.partition(" ")
    argument = argument.strip()
    if _OPTION.match(argument):  # slash-style `name:Asuka` / `count:4 psi:0.5`
        argument = _OPTION.sub(r"\1", argument).strip()
    return command.lower(), argument
