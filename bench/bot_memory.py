"""Peak RSS of the bot serving 8 concurrent requests plus a model reload, pause-swap reload vs two models at once.

Each mode runs in its own subprocess (peak RSS = VmHWM of that process, which imports only the bot runtime and
discord.py, like the deployed process). The parent exports the paper512 generator with the project's exporter.

    python bench/bot_memory.py                       # 512 px paper preset, 8 requests + reload, 1 worker x 2 threads
    python bench/bot_memory.py --resolution 128      # quicker
"""

# Imports live inside functions on purpose: the measured worker must not load torch.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def _serve(args: argparse.Namespace) -> dict[str, Any]:
    import runtime.bot.discord_app  # noqa: F401 - counted in RSS like the deployed process
    from runtime.bot.commands import Requester
    from runtime.bot.config import BotSettings
    from runtime.bot.engine import Engine, load_generator, open_generator
    from runtime.bot.model_source import ModelSource
    from runtime.bot.token_source import TokenSource

    settings = BotSettings(
        token_source=TokenSource(env_token="unused"),
        model_source=ModelSource(local_path=Path(args.model)),
        workers=1,
        intra_op_threads=args.threads,
        cooldown_s=0.0,
        sync_commands=False,
        max_wait_s=3600.0,
    )
    engine = Engine(settings=settings, generator=load_generator(settings))
    await engine.service.claim_waifu(Requester(user_id="warm"), "warm-up")
    loaded_mib = _status_kib("VmRSS") / 1024
    started = time.perf_counter()
    requests = [engine.service.claim_waifu(Requester(user_id=str(i)), f"name {i}") for i in range(args.requests)]
    tasks = [asyncio.create_task(request) for request in requests]
    await asyncio.sleep(0.5)  # the first call is running, the rest are queued
    if args.mode == "pause-swap":
        summary = await engine.reload()
    else:  # the previous behaviour: open the new session while the old one keeps serving
        loop = asyncio.get_running_loop()
        generator = await loop.run_in_executor(engine.executor, open_generator, Path(args.model), settings)
        engine.holder.swap(generator)
        summary = "two models"
    replies = await asyncio.gather(*tasks)
    seconds = time.perf_counter() - started
    await engine.close()
    assert all(reply.files for reply in replies), [reply.text for reply in replies]
    return {
        "mode": args.mode,
        "requests": len(replies),
        "reload": summary,
        "rss_loaded_mib": round(loaded_mib),
        "peak_rss_mib": round(_status_kib("VmHWM") / 1024),
        "seconds": round(seconds, 1),
    }


def _export(resolution: int, workdir: Path) -> Path:
    sys.path.insert(0, str(REPO / "bench"))
    from bot_bench import export_generator

    return export_generator(f"paper{resolution}", resolution, workdir / f"paper{resolution}.onnx")


def main() -> None:
    """Export once, then measure each mode in a fresh process and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/genart-bench"))
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(asyncio.run(_serve(args))))
        return
    from runtime.bot import contract

    model = _export(args.resolution, args.workdir)
    rows = []
    for mode in ("two-models", "pause-swap"):
        command = [sys.executable, __file__, "--model", str(model), "--mode", mode]
        command += ["--requests", str(args.requests), "--threads", str(args.threads)]
        env = {**os.environ, "MALLOC_ARENA_MAX": str(contract.MALLOC_ARENA_MAX)}  # as the systemd unit sets it
        result = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    print(f"date {datetime.now(UTC):%Y-%m-%d}, paper{args.resolution}, {args.requests} requests + reload")
    print("| reload | peak RSS (MiB) | RSS after load (MiB) | seconds |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['mode']} | {row['peak_rss_mib']} | {row['rss_loaded_mib']} | {row['seconds']} |")
    print(f"ratio pause-swap / two-models: {rows[1]['peak_rss_mib'] / rows[0]['peak_rss_mib']:.2f}")


if __name__ == "__main__":
    main()
