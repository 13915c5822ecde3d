"""Console mode: the same command handlers, commands from stdin, images into a folder."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import IO

from .commands import Reply, Requester, parse_command_line
from .engine import Engine

CONSOLE_USER = Requester(user_id="console", is_operator=True)


def write_reply(reply: Reply, *, out_dir: Path, index: int) -> list[Path]:
    """Write a reply's images as <index>-<filename> into out_dir and return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for attachment in reply.files:
        path = out_dir / f"{index:03d}-{attachment.filename}"
        path.write_bytes(attachment.data)
        written.append(path)
    return written


async def run_console(
    engine: Engine, *, out_dir: Path, stdin: IO[str] | None = None, stdout: IO[str] | None = None
) -> int:
    """Process one command per stdin line until EOF; print what was written. Returns an exit code."""
    source, sink = stdin or sys.stdin, stdout or sys.stdout
    index = 0
    while True:
        line = await asyncio.to_thread(source.readline)
        if not line:
            break
        parsed = parse_command_line(line)
        if parsed is None:
            continue
        command, argument = parsed
        if command in {"quit", "exit"}:
            break
        index += 1
        reply = await engine.service.dispatch(CONSOLE_USER, command, argument)
        paths = write_reply(reply, out_dir=out_dir, index=index)
        sink.write(f"{reply.text}\n")
        for path in paths:
            sink.write(f"wrote {path}\n")
        sink.flush()
    return 0
