"""Command line: parse settings, configure logging, run Discord or console mode, map errors to exit codes."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from ..common.jsonlog import DEFAULT_QUIET, RedactingFilter, configure_logging
from . import contract
from .config import BotSettings, build_parser, settings_from
from .console import run_console
from .engine import open_engine
from .errors import ConfigError

LOG = logging.getLogger("bot")
EXIT_CONFIG = 2
# discord.py's gateway logs every heartbeat at DEBUG.
QUIET_LOGGERS = {**DEFAULT_QUIET, "discord.gateway": logging.INFO}


def configure_bot_logging(*, level: str, console: bool) -> RedactingFilter:
    """JSON lines to stdout (stderr in console mode, where stdout carries the replies); return the redactor."""
    return configure_logging(level=level, stream=sys.stderr if console else sys.stdout, quiet=QUIET_LOGGERS)


async def _serve(settings: BotSettings, redactor: RedactingFilter) -> int:
    # No published model is no reason to stop: the engine answers "not published yet" and picks it up later.
    if settings.console:
        engine = await open_engine(settings)
        try:
            return await run_console(engine, out_dir=settings.out_dir)
        finally:
            await engine.close()

    # discord.py is imported only when needed: console mode and tests stay light.
    from .discord_app import run_discord  # noqa: PLC0415

    token = await asyncio.to_thread(settings.token_source.read)
    redactor.add_secret(token)
    engine = await open_engine(settings)
    return await run_discord(engine, token=token)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run the bot; 0 on clean shutdown, 2 with a one-line message on configuration problems."""
    args = build_parser().parse_args(argv)
    environment = os.environ if env is None else env
    level = (args.log_level or environment.get(contract.ENV_LOG_LEVEL) or "INFO").strip().upper()
    redactor = configure_bot_logging(level=level, console=bool(args.console))
    try:
        settings = settings_from(environment, args)
        return asyncio.run(_serve(settings, redactor))
    except ConfigError as exc:
        LOG.error("configuration error", extra={"fields": {"error": str(exc)}})
        print(f"genart-bot: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 0
    except Exception:  # logged through the redacting handler instead of a raw traceback on stderr
        LOG.exception("unexpected error")
        print("genart-bot: error: unexpected failure (see the log line above)", file=sys.stderr)
        return 1
