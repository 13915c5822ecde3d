"""The heartbeat log line the Bot stack's alarm counts: written while the bot is connected and not shutting down."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from . import contract

LOG = logging.getLogger("genart.bot.heartbeat")


async def beat(*, alive: Callable[[], bool], interval_s: float = contract.HEARTBEAT_INTERVAL_S) -> None:
    """Log contract.HEARTBEAT_MESSAGE every interval while alive() holds; runs until cancelled."""
    while True:
        if alive():
            LOG.info(contract.HEARTBEAT_MESSAGE)
        await asyncio.sleep(interval_s)
