"""Picks up a newly published model by itself: one cheap look at the source per interval, a reload when it changed."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Collection

from . import contract
from .errors import ConfigError, ModelRejected, ModelUnavailable
from .model_source import ModelStore, Probe

LOG = logging.getLogger("genart.bot.model")


class ModelWatcher:
    """Polls the model's version (S3 ETag, or a file's mtime and size) and reloads through the engine when it changes.

    Steady state costs one HeadObject (or stat) per interval. Errors back off (doubling up to a cap) with a log line
    each; "not published yet" is logged once when it starts. A version that failed to load is not tried again, so
    it is reported once; the model already serving stays.
    """

    def __init__(
        self,
        *,
        store: ModelStore,
        reload: Callable[[], Awaitable[str]],
        serving_version: Callable[[], str | None],
        rejected: Collection[str],
        interval_s: float = float(contract.MODEL_POLL_S),
        max_backoff_s: float = float(contract.MODEL_POLL_MAX_BACKOFF_S),
        jitter: float = contract.MODEL_POLL_JITTER,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._store = store
        self._reload = reload
        self._serving_version = serving_version
        self._rejected = rejected
        self.interval_s = interval_s
        self._max_backoff_s = max(interval_s, max_backoff_s)
        self._jitter = jitter
        self._rng = rng or random.Random()  # noqa: S311 - spreading polls, not security
        self._sleep = sleep
        self._failures = 0
        self._reported: str | None = None  # the last state logged once ("missing"), so it is not repeated

    async def run(self) -> None:
        """Check, then wait an interval (jittered; longer after errors); runs until cancelled, never raises."""
        while True:
            delay = await self.check()
            await self._sleep(delay * self._rng.uniform(1 - self._jitter, 1 + self._jitter))

    async def check(self) -> float:
        """Look once and act on what was found; return the seconds to wait before the next look."""
        try:
            probe = await asyncio.to_thread(self._store.probe)
        except Exception as exc:  # a watcher must never take the bot down
            probe = Probe("error", detail=f"{type(exc).__name__}: {exc}")
        if probe.state != "present":
            return self.report(probe.state, probe.detail)
        if probe.version == self._serving_version() or probe.version in self._rejected:
            return self._healthy("present")
        return await self.pick_up()

    async def pick_up(self) -> float:
        """Reload through the engine (the operator command's pause-swap path); return the next delay."""
        try:
            summary = await asyncio.shield(self._reload())  # cancelling the watcher never interrupts a swap
        except ModelRejected as exc:  # the engine remembers the version: this is its one report
            LOG.error(
                "published model rejected; still serving the previous one",
                extra={"fields": {"source": self._store.source.describe(), "version": exc.version, "error": str(exc)}},
            )
            return self._healthy("rejected")
        except ModelUnavailable as exc:
            return self.report(exc.state, str(exc))
        except ConfigError as exc:
            return self.report("error", str(exc))
        except Exception as exc:  # logged; the next look tries again
            return self.report("error", f"{type(exc).__name__}: {exc}")
        fields = {"source": self._store.source.describe(), "version": self._serving_version(), "model": summary}
        LOG.info("new model picked up", extra={"fields": fields})
        return self._healthy("present")

    def report(self, state: str, detail: str) -> float:
        """Log why there is no (new) model and return the next delay: the interval when missing, backoff otherwise."""
        fields: dict[str, str | float] = {"source": self._store.source.describe(), "state": state, "error": detail}
        if state == "missing":
            if self._reported != "missing":
                LOG.info("no face generator published yet; waiting for it", extra={"fields": fields})
            return self._healthy("missing")
        self._failures += 1
        delay = min(self.interval_s * 2.0 ** min(self._failures, 30), self._max_backoff_s)
        fields["retry_s"] = round(delay, 1)
        if state == "forbidden":
            LOG.error("model not readable: permission problem", extra={"fields": fields})
        else:
            LOG.warning("model check failed; backing off", extra={"fields": fields})
        self._reported = state
        return delay

    def _healthy(self, state: str) -> float:
        self._failures = 0
        self._reported = state
        return self.interval_s
