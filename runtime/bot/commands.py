"""Command handlers shared by Discord and console mode: decide (validate, admit), then draw, encode, reply."""

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
from .errors import BusyError, ConfigError, InputError, ModelUnavailable
from .imaging import ImageFormat, encode_image, make_grid
from .limits import Admission, Refusal, Reservation, TokenBucket, busy_text
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
    split_arguments,
)
from .seeding import latents_for_seeds, random_seed, seed_for_name

LOG = logging.getLogger(__name__)
COMMANDS = (
    "claim_waifu",
    "claim_waifu_truncation",
    "claim_waifu_grid",
    "claim_harem",
    "waifu_help",
    "reload_model",
)
ALIASES = {"waifu_grid": "claim_waifu_grid", "help": "waifu_help"}
_OPTION = re.compile(r"(^|\s)(?:name|psi|count):")
SHUTDOWN_TEXT = "I'm restarting on a new server - please try again in a minute."
ERROR_TEXT = "Something went wrong while drawing - please try again later."
NO_MODEL_TEXT = (
    "No face generator published yet - I start drawing by myself a few minutes after one is. "
    "Operators: run the StyleGAN2 pipeline (docs/pipeline.md); it publishes `stylegan/latest.onnx`."
)
HELP_TEXT = f"""**GenArt waifu bot** - anime faces drawn by a StyleGAN2 generator. \
Every command works as `/name` and as `$name`.
`/claim_waifu [name]` - the face that belongs to a name (same name, same face, everywhere); no name gives a random face.
`/claim_waifu_truncation [psi]` - a random face at truncation psi from {PSI_MIN:g} (the average face) to \
{PSI_MAX:g} (wild); default {DEFAULT_PSI:g}, 0.5-1.0 looks best.
`/claim_waifu_grid [count] [psi]` - 1 to {GRID_MAX} random faces in one image (default 4).
`/claim_harem [count] [psi]` - the same as a grid: a harem of 4, 9 or {GRID_MAX} faces.
`/waifu_help` - this text. A newly published model is picked up within minutes; operators can \
`/reload_model` to load it at once.
Each user earns faces over time (a grid of 16 costs 16); when the bot is busy it says when to try again."""


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


@dataclass(frozen=True)
class Order:
    """A validated drawing request: which latents, at which truncation, captioned how."""

    seeds: tuple[int, ...]
    psi: float
    caption: str
    stem: str
    grid: bool = False

    @property
    def cost(self) -> int:
        """Return the images this order draws (what the user's bucket is charged)."""
        return len(self.seeds)


@dataclass(frozen=True)
class Ticket:
    """An admitted order: its images are reserved until the reply is encoded."""

    requester: Requester
    order: Order
    reservation: Reservation


def order_waifu(name: str | None) -> Order:
    """Return the order for a name's face (or a random face); raises InputError."""
    display = clean_name(name)
    if display is None:
        seed = random_seed()
        return Order(
            seeds=(seed,), psi=DEFAULT_PSI, caption=f"A random waifu appears! (seed {seed})", stem=f"waifu-{seed:016x}"
        )
    seed = seed_for_name(display)
    stem = f"waifu-{slug(display, fallback=f'{seed:016x}')}"
    return Order(seeds=(seed,), psi=DEFAULT_PSI, caption=f"**{escape_markdown(display)}**", stem=stem)


def order_truncation(psi: str | float | None) -> Order:
    """Return the order for a random face at truncation psi; raises InputError."""
    value, seed = parse_psi(psi), random_seed()
    caption = f"A random waifu at truncation {value:g} (seed {seed})"
    return Order(seeds=(seed,), psi=value, caption=caption, stem=f"waifu-psi{value:g}-{seed:016x}")


def order_grid(count: str | int | None, psi: str | float | None = None) -> Order:
    """Return the order for a grid of random faces; raises InputError."""
    number, value = parse_count(count), parse_psi(psi)
    seeds = tuple(random_seed() for _ in range(number))
    caption = f"{number} random waifus (truncation {value:g})"
    return Order(seeds=seeds, psi=value, caption=caption, stem=f"waifus-{number}-{seeds[0]:016x}", grid=True)


def order_from_text(command: str, argument: str) -> Order:
    """Parse a drawing command's raw argument text (prefix and console mode); raises InputError."""
    if command == "claim_waifu":
        return order_waifu(argument or None)
    if command == "claim_waifu_truncation":
        parts = split_arguments(argument, usage="claim_waifu_truncation [psi]", most=1)
        return order_truncation(parts[0] if parts else None)
    parts = split_arguments(argument, usage=f"{command} [count] [psi]", most=2)
    return order_grid(*parts)


DRAWING = frozenset({"claim_waifu", "claim_waifu_truncation", "claim_waifu_grid", "claim_harem"})


class WaifuService:
    """The bot's commands, independent of Discord so console mode and tests run the same code."""

    def __init__(
        self,
        *,
        batcher: MicroBatcher,
        executor: Executor,
        admission: Admission | None = None,
        image_format: ImageFormat = "png",
        reload_model: Callable[[], Awaitable[str]] | None = None,
        model_loaded: Callable[[], bool] = lambda: True,
    ) -> None:
        self._batcher = batcher
        self._executor = executor
        self.admission = admission or Admission(
            bucket=TokenBucket(seconds_per_image=0, burst=GRID_MAX),
            user_max_pending=1_000_000,
            max_queue=1_000_000,
            max_wait_s=float("inf"),
            workers=1,
            seconds_per_image=lambda: batcher.seconds_per_image,
        )
        self._format: ImageFormat = image_format
        self._reload_model = reload_model
        self._model_loaded = model_loaded
        self._extension = "jpg" if image_format == "jpeg" else "png"
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def drain(self, *, timeout_s: float) -> bool:
        """Wait until no request is being drawn or encoded; False if the timeout passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=max(0.0, timeout_s))
        except TimeoutError:
            return False
        return True

    def admit(self, requester: Requester, order: Order) -> Ticket | Reply:
        """Decide at once (no await): a ticket to draw, or an ephemeral refusal (restarting, no model, busy...)."""
        if self._batcher.closing:
            return Reply(text=SHUTDOWN_TEXT, ephemeral=True)
        if not self._model_loaded():  # before admission: waiting for a model costs the user nothing
            return Reply(text=NO_MODEL_TEXT, ephemeral=True)
        decision = self.admission.admit(requester.user_id, order.cost, exempt=requester.is_operator)
        if isinstance(decision, Refusal):
            LOG.info(
                "request refused",
                extra={
                    "fields": {
                        "user": requester.user_id,
                        "images": order.cost,
                        "retry_s": round(decision.retry_after_s, 1),
                    }
                },
            )
            return Reply(text=decision.text, ephemeral=True)
        return Ticket(requester=requester, order=order, reservation=decision)

    def plan(self, requester: Requester, command: str, argument: str) -> Ticket | Reply:
        """Parse and admit a drawing command given as text; refusals and input errors come back as a Reply."""
        try:
            order = order_from_text(ALIASES.get(command, command), argument)
        except InputError as exc:
            return Reply(text=str(exc), ephemeral=True)
        return self.admit(requester, order)

    def cancel(self, ticket: Ticket) -> None:
        """Give an admitted ticket back unserved (e.g. the interaction expired before it could be deferred)."""
        self.admission.release(ticket.reservation, refund=True)

    async def fulfil(self, ticket: Ticket) -> Reply:
        """Draw and encode an admitted order (off the event loop); releases its reservation."""
        self._active += 1
        self._idle.clear()
        refund = True
        try:
            images = await self._batcher.generate(latents_for_seeds(list(ticket.order.seeds)), ticket.order.psi)
            data = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._encode, images, ticket.order.grid
            )
            refund = False
        except BusyError:
            text = SHUTDOWN_TEXT if self._batcher.closing else busy_text(self.admission.expected_wait_s() or 1.0)
            return Reply(text=text, ephemeral=True)
        except Exception:
            LOG.exception("generation failed for a request", extra={"fields": {"user": ticket.requester.user_id}})
            return Reply(text=ERROR_TEXT, ephemeral=True)
        finally:
            self.admission.release(ticket.reservation, refund=refund)
            self._active -= 1
            if self._active == 0:
                self._idle.set()
        name = f"{ticket.order.stem}.{self._extension}"
        return Reply(text=ticket.order.caption, files=(Attachment(filename=name, data=data),))

    async def serve(self, requester: Requester, order: Order) -> Reply:
        """Admit and, when admitted, draw."""
        decision = self.admit(requester, order)
        return decision if isinstance(decision, Reply) else await self.fulfil(decision)

    async def claim_waifu(self, requester: Requester, name: str | None = None) -> Reply:
        """Draw the face of a name (or a random face)."""
        try:
            order = order_waifu(name)
        except InputError as exc:
            return Reply(text=str(exc), ephemeral=True)
        return await self.serve(requester, order)

    async def claim_waifu_truncation(self, requester: Requester, psi: str | float | None = None) -> Reply:
        """Draw a random face at a validated truncation psi."""
        try:
            order = order_truncation(psi)
        except InputError as exc:
            return Reply(text=str(exc), ephemeral=True)
        return await self.serve(requester, order)

    async def claim_waifu_grid(
        self, requester: Requester, count: str | int | None = None, psi: str | float | None = None
    ) -> Reply:
        """Draw several random faces into one image."""
        try:
            order = order_grid(count, psi)
        except InputError as exc:
            return Reply(text=str(exc), ephemeral=True)
        return await self.serve(requester, order)

    def help(self) -> Reply:
        """Return the help text."""
        return Reply(text=HELP_TEXT, ephemeral=True)

    def may_reload(self, requester: Requester) -> Reply | None:
        """Return the refusal for a reload this requester may not run, or None."""
        if not requester.is_operator:
            LOG.warning("reload refused", extra={"fields": {"user": requester.user_id}})
            return Reply(text="Only bot operators may reload the model.", ephemeral=True)
        if self._reload_model is None:
            return Reply(text="Reloading is not available here.", ephemeral=True)
        return None

    async def reload_model(self, requester: Requester) -> Reply:
        """Load the newest model (operators only); the reply is short, details go to the log."""
        refusal = self.may_reload(requester)
        if refusal is not None or self._reload_model is None:
            return refusal or Reply(text="Reloading is not available here.", ephemeral=True)
        try:
            summary = await self._reload_model()
        except ModelUnavailable as exc:
            LOG.warning("reload found no model", extra={"fields": {"user": requester.user_id, "error": str(exc)}})
            if exc.state == "missing" and not self._model_loaded():
                return Reply(text="Nothing to load: no face generator published yet.", ephemeral=True)
            return Reply(text=self._reload_failed_text(), ephemeral=True)
        except ConfigError as exc:
            LOG.error("reload failed", extra={"fields": {"user": requester.user_id, "error": str(exc)}})
            return Reply(text=self._reload_failed_text(), ephemeral=True)
        LOG.info("model reloaded", extra={"fields": {"user": requester.user_id, "summary": summary}})
        return Reply(text=f"Model reloaded ({summary}).", ephemeral=True)

    def _reload_failed_text(self) -> str:
        if self._model_loaded():
            return "Reload failed; still using the previous model (details in the log)."
        return "Reload failed; no model loaded yet (details in the log)."

    async def dispatch(self, requester: Requester, command: str, argument: str = "") -> Reply:
        """Run a command by name with its raw argument text (console mode)."""
        name = ALIASES.get(command, command)
        if name in DRAWING:
            decision = self.plan(requester, name, argument)
            return decision if isinstance(decision, Reply) else await self.fulfil(decision)
        if name == "waifu_help":
            return self.help()
        if name == "reload_model":
            return await self.reload_model(requester)
        return Reply(text=f"Unknown command `{command[:40]}`. Try `waifu_help`.", ephemeral=True)

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
