"""Benchmark the bot's CPU generation: images per second and peak RSS of the exported generator.

Each configuration runs in its own subprocess so its peak RSS (VmHWM) is its own. The worker imports only the
bot runtime (no torch); the parent exports random-weight StyleGAN2 generators with the project's exporter.

    python bench/bot_bench.py                      # transposed-conv export vs legacy bilinear export, 256/512 px
    python bench/bot_bench.py --compare session    # tuned vs default onnxruntime session
    python bench/bot_bench.py --tiny               # seconds-long proof with 16 px generators (CI / smoke)

`--compare upsample` (the default) runs both exports in interleaved rounds (the CPU is shared, so timings are
noisy), reports the median images/s of each and their ratio, and the deterministic multiply-adds per image.
"""

# Imports live inside functions on purpose: the measured worker must not load torch, and its peak RSS must be its own.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def export_generator(cfg: str, resolution: int, path: Path, *, upsample: str = "transposed") -> Path:
    """Export a random-weight generator at a preset (parent process only; needs torch)."""
    if path.is_file():
        return path
    import dataclasses

    import torch

    from runtime.pipeline.stylegan2.config import preset
    from runtime.pipeline.stylegan2.export_onnx import export_generator as export
    from runtime.pipeline.stylegan2.export_onnx import export_random_generator
    from runtime.pipeline.stylegan2.networks import Generator

    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if cfg == "tiny" and upsample == "transposed":
        export_random_generator(path, resolution=resolution)
    else:
        torch.manual_seed(0)
        generator = Generator(dataclasses.replace(preset(cfg, resolution=resolution), upsample=upsample)).eval()
        export(generator, path, kimg=0.0)
    print(
        f"exported {cfg}@{resolution} -> {path} ({path.stat().st_size / 2**20:.0f} MiB, "
        f"{time.perf_counter() - started:.0f} s)",
        file=sys.stderr,
    )
    return path


def synthesis_gmac(cfg: str, resolution: int, upsample: str) -> float:
    """Multiply-adds (10^9) of one image's synthesis forward, counted by torch.utils.flop_counter (deterministic)."""
    import dataclasses

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from runtime.pipeline.stylegan2.config import preset
    from runtime.pipeline.stylegan2.networks import Generator

    generator = Generator(dataclasses.replace(preset(cfg, resolution=resolution), upsample=upsample))
    generator = generator.eval().requires_grad_(False)
    with FlopCounterMode(display=False) as counter:
        generator.synthesis(torch.zeros(1, generator.num_ws, generator.cfg.w_dim), noise_mode="const")
    return float(counter.get_total_flops()) / 2e9


def compare_upsample(args: argparse.Namespace, header: dict[str, Any]) -> list[dict[str, Any]]:
    """Legacy bilinear export vs the transposed-conv export, interleaved rounds, medians and their ratio."""
    variants = ("bilinear", "transposed")
    resolutions = [16] if args.tiny else [int(r) for r in args.resolutions.split(",")]
    rows: list[dict[str, Any]] = []
    print(
        f"{'res':>4} {'batch':>5} {'upsample':>10} {'GMAC/img':>9} {'img/s med':>9} {'CPU s/img':>9} "
        f"{'rounds img/s':>30} {'ratio':>6} {'CPU ratio':>9}"
    )
    for res in resolutions:
        cfg = "tiny" if args.tiny else f"paper{res}"
        models = {v: export_generator(cfg, res, args.workdir / f"{cfg}-{res}-{v}.onnx", upsample=v) for v in variants}
        gmac = {v: synthesis_gmac(cfg, res, v) for v in variants}
        for batch in [int(b) for b in args.batches.split(",")]:
            measured = run_pair([models[v] for v in variants], batch=batch, rounds=args.rounds, threads=args.threads)
            rounds = dict(zip(variants, measured["rates"], strict=True))
            cpu = {v: statistics.median(c) for v, c in zip(variants, measured["cpu"], strict=True)}
            medians = {v: statistics.median(rounds[v]) for v in variants}
            ratio = medians["transposed"] / medians["bilinear"]
            for variant in variants:
                row = {
                    "resolution": res,
                    "batch": batch,
                    "upsample": variant,
                    "gmac_per_image": round(gmac[variant], 3),
                    "images_per_s_median": medians[variant],
                    "images_per_s_rounds": rounds[variant],
                    "ratio_vs_bilinear": round(medians[variant] / medians["bilinear"], 3),
                    "cpu_s_per_image_median": cpu[variant],
                    "cpu_ratio_bilinear_over_this": round(cpu["bilinear"] / cpu[variant], 3),
                }
                rows.append(row)
                shown = " ".join(f"{v:.3f}" for v in rounds[variant])
                cpu_ratio = cpu["bilinear"] / cpu["transposed"]
                extra = f"{ratio:>6.2f} {cpu_ratio:>9.2f}" if variant == "transposed" else ""
                line = f"{res:>4} {batch:>5} {variant:>10} {gmac[variant]:>9.2f} {medians[variant]:>9.3f}"
                print(f"{line} {cpu[variant]:>9.3f} {shown:>30} {extra}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"header": header, "rows": rows}, indent=2))
    return rows


def pair_worker(args: argparse.Namespace) -> dict[str, list[list[float]]]:
    """Both models in one process, called alternately (A B, B A, ...) so load from other users hits both alike."""
    from runtime.bot.generator import FaceGenerator, SessionTuning, available_cores
    from runtime.bot.seeding import latents_for_seeds

    tuning = SessionTuning(tuned=True, intra_op_threads=args.threads or available_cores())
    generators = [FaceGenerator(model_path=Path(p), tuning=tuning) for p in args.pair.split(",")]
    latents = latents_for_seeds(list(range(args.batch)))
    for generator in generators:
        generator.generate(latents, 0.7)  # warm-up
    rates: list[list[float]] = [[] for _ in generators]
    cpu: list[list[float]] = [[] for _ in generators]  # process CPU seconds per image (both threads): less noisy
    for index in range(args.iters):
        order = list(range(len(generators)))
        for which in order if index % 2 == 0 else order[::-1]:
            t0, c0 = time.perf_counter(), time.process_time()
            generators[which].generate(latents, 0.7)
            rates[which].append(round(args.batch / (time.perf_counter() - t0), 3))
            cpu[which].append(round((time.process_time() - c0) / args.batch, 4))
    return {"rates": rates, "cpu": cpu}


def run_pair(models: list[Path], *, batch: int, rounds: int, threads: int) -> dict[str, list[list[float]]]:
    """Images per second and CPU seconds per image of each model per round, from one fresh subprocess."""
    command = [sys.executable, __file__, "--worker", "--pair", ",".join(str(m) for m in models)]
    command += ["--batch", str(batch), "--iters", str(rounds), "--threads", str(threads)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)
    if completed.returncode != 0:
        raise RuntimeError(f"worker failed: {' '.join(command)}\n{completed.stderr[-2000:]}")
    result: dict[str, list[list[float]]] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Run one configuration in this process and return its measurements."""
    import numpy as np

    from runtime.bot.generator import FaceGenerator, SessionTuning, available_cores
    from runtime.bot.seeding import latents_for_seeds

    started = time.perf_counter()
    tuning = SessionTuning(tuned=args.session == "tuned", intra_op_threads=args.threads or available_cores())
    generator = FaceGenerator(model_path=Path(args.model), tuning=tuning)
    load_s = time.perf_counter() - started
    latents = latents_for_seeds(list(range(args.batch)))
    result: dict[str, Any] = {"load_s": round(load_s, 3)}
    if args.mode == "service":
        result.update(asyncio.run(service_run(generator, args)))
    else:
        generator.generate(latents, 0.7)  # warm-up: first run allocates and plans memory
        times = []
        cpu0 = time.process_time()
        for _ in range(args.iters):
            t0 = time.perf_counter()
            images = generator.generate(latents, 0.7)
            times.append(time.perf_counter() - t0)
        cpu = time.process_time() - cpu0
        assert images.shape[0] == args.batch and images.dtype == np.uint8
        result.update(
            {
                "s_per_call_median": round(statistics.median(times), 4),
                "best_s_per_image": round(min(times) / args.batch, 6),
                "cpu_s_per_image": round(cpu / (args.iters * args.batch), 6),
                "s_per_image": round(statistics.median(times) / args.batch, 6),
                "images_per_s": round(args.batch / statistics.median(times), 3),
            }
        )
    result["peak_rss_mib"] = round(peak_rss_mib(), 1)
    return result


def peak_rss_mib() -> float:
    """Return this process's peak RSS: VmHWM (per address space; ru_maxrss would include the parent's pre-exec peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def service_run(generator: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Drive the real command service: `batch` concurrent named claims per round, micro-batched, PNG-encoded."""
    from concurrent.futures import ThreadPoolExecutor

    import runtime.bot.discord_app  # noqa: F401 - counted in RSS like the deployed process
    from runtime.bot.batcher import MicroBatcher
    from runtime.bot.commands import Requester, WaifuService
    from runtime.bot.generator import GeneratorHolder

    executor = ThreadPoolExecutor(max_workers=2)
    batcher = MicroBatcher(holder=GeneratorHolder(generator), executor=executor, max_queue=64)
    service = WaifuService(batcher=batcher, executor=executor)  # no fair-sharing limits in the benchmark
    await service.claim_waifu(Requester(user_id="warm"), "warm-up")
    times = []
    cpu0 = time.process_time()
    for round_index in range(args.iters):
        t0 = time.perf_counter()
        replies = await asyncio.gather(
            *(service.claim_waifu(Requester(user_id=str(i)), f"name {round_index} {i}") for i in range(args.batch))
        )
        times.append(time.perf_counter() - t0)
        assert all(reply.files for reply in replies)
    await batcher.close()
    executor.shutdown()
    cpu = time.process_time() - cpu0
    median = statistics.median(times)
    return {
        "best_s_per_image": round(min(times) / args.batch, 6),
        "cpu_s_per_image": round(cpu / (args.iters * args.batch), 6),
        "s_per_round_median": round(median, 4),
        "s_per_image": round(median / args.batch, 6),
        "images_per_s": round(args.batch / median, 3),
        "onnx_calls": generator.runs,
    }


def run_config(model: Path, *, batch: int, session: str, mode: str, iters: int, threads: int) -> dict[str, Any]:
    """Run one configuration in a fresh subprocess and return its JSON result."""
    command = [
        sys.executable,
        __file__,
        "--worker",
        "--model",
        str(model),
        "--batch",
        str(batch),
        "--session",
        session,
        "--mode",
        mode,
        "--iters",
        str(iters),
        "--threads",
        str(threads),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)
    if completed.returncode != 0:
        raise RuntimeError(f"worker failed: {' '.join(command)}\n{completed.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    """Parse flags and run the benchmark (or one worker)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="16 px generators, few iterations (proof run)")
    parser.add_argument("--compare", choices=["upsample", "session"], default="upsample", help="what the run compares")
    parser.add_argument("--rounds", type=int, default=15, help="alternating calls per model (--compare upsample)")
    parser.add_argument("--device", default="cpu", choices=["cpu"], help="the bot runs on CPU only")
    parser.add_argument("--resolutions", default="256,512", help="generator sizes (paper256/paper512 presets)")
    parser.add_argument("--batches", default="1,4,8", help="images per ONNX call")
    parser.add_argument("--modes", default="raw,service", help="raw ONNX calls and/or the bot's service path")
    parser.add_argument("--iters", type=int, default=3, help="timed iterations per configuration")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads for the tuned session (0: cores)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/genart-bot-bench"), help="exported models cache")
    parser.add_argument("--json", type=Path, help="also write all results to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--pair", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--session", default="tuned", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="raw", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(pair_worker(args) if args.pair else worker(args)))
        return 0

    header = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    if args.compare == "upsample":
        print(json.dumps(header))
        compare_upsample(args, header)
        return 0
    if args.tiny:
        models = {16: export_generator("tiny", 16, args.workdir / "tiny16.onnx")}
        iters = min(args.iters, 3)
    else:
        models = {
            res: export_generator(f"paper{res}", res, args.workdir / f"paper{res}.onnx")
            for res in (int(r) for r in args.resolutions.split(","))
        }
        iters = args.iters
    batches = [int(b) for b in args.batches.split(",")]
    print(json.dumps(header))
    rows = []
    print(
        f"{'res':>4} {'mode':>7} {'batch':>5} {'session':>8} {'s/image':>8} {'img/s':>7} {'peak RSS MiB':>12} "
        f"{'best s':>7} {'CPU s':>7} {'speedup':>8} {'CPU ratio':>9} {'RSS ratio':>9}"
    )
    for res, model in models.items():
        for mode in args.modes.split(","):
            for batch in batches if mode == "raw" else [batches[-1]]:
                pair = {}
                for session in ("default", "tuned"):
                    result = run_config(
                        model, batch=batch, session=session, mode=mode, iters=iters, threads=args.threads
                    )
                    pair[session] = result
                    rows.append({"resolution": res, "mode": mode, "batch": batch, "session": session, **result})
                speedup = pair["default"]["s_per_image"] / pair["tuned"]["s_per_image"]
                rss_ratio = pair["tuned"]["peak_rss_mib"] / pair["default"]["peak_rss_mib"]
                cpu_ratio = pair["tuned"]["cpu_s_per_image"] / pair["default"]["cpu_s_per_image"]
                for session in ("default", "tuned"):
                    r = pair[session]
                    extra = f"{speedup:>8.2f} {cpu_ratio:>9.2f} {rss_ratio:>9.2f}" if session == "tuned" else ""
                    print(
                        f"{res:>4} {mode:>7} {batch:>5} {session:>8} {r['s_per_image']:>8.3f} "
                        f"{r['images_per_s']:>7.2f} {r['peak_rss_mib']:>12.0f} {r['best_s_per_image']:>7.3f} "
                        f"{r['cpu_s_per_image']:>7.3f} {extra}",
                        flush=True,
                    )
    if args.json:
        args.json.write_text(json.dumps({"header": header, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
