"""Benchmark the bot's CPU generation: images per second and peak RSS of the exported generator.

Each configuration runs in its own subprocess so its peak RSS (VmHWM) is its own. The worker imports only the
bot runtime (no torch); the parent exports random-weight StyleGAN2 generators with the project's exporter.

    python bench/bot_bench.py                      # new export vs the previous one (and the two between), 256/512
    python bench/bot_bench.py --malloc no-faults   # the same without the per-call page faults of the bot's allocator
    python bench/bot_bench.py --malloc huge-pages  # the same with malloc's blocks in transparent huge pages
    python bench/bot_bench.py --compare session    # tuned vs default onnxruntime session
    python bench/bot_bench.py --tiny               # seconds-long proof with 16 px generators (CI / smoke)

`--compare upsample` (the default) exports four generators with the same random weights: legacy bilinear or
StyleGAN2's transposed-conv up-sampling, each in the `current` graph (the export before the onnx_graph rewrite)
or the `optimized` one (what the pipeline now writes). `bilinear/current` is the baseline, the export bots ran
before; `transposed/optimized` is the new one. Each model runs in its own worker process, as in the bot, and the
workers are called in turn (A B C D, D C B A, ...) so load from other users hits all alike. It reports median
images/s, median process CPU seconds per image (the steadier figure on a shared machine), page faults per call,
their ratios to the baseline, and the deterministic multiply-adds per image.
"""

# Imports live inside functions on purpose: the measured worker must not load torch, and its peak RSS must be its own.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import asyncio
import hashlib
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


# (label, up-sampling, export graph); the first is the baseline: the export as it was before issue 14's work.
VARIANTS: tuple[tuple[str, str, str], ...] = (
    ("bilinear/current", "bilinear", "current"),
    ("bilinear/optimized", "bilinear", "optimized"),
    ("transposed/current", "transposed", "current"),
    ("transposed/optimized", "transposed", "optimized"),
)
# glibc settings of the measured workers. "deployed": as the bot's systemd unit runs (MALLOC_ARENA_MAX=2). The bot
# disables onnxruntime's arena, so each call allocates the memory-pattern block anew; past glibc's mmap threshold
# (at most 32 MiB) that is a fresh mmap whose pages fault in on every call. "no-faults" keeps such blocks in the
# heap (mmap and trim thresholds raised), which isolates the graphs' compute from that per-call cost.
MALLOC_ENVS: dict[str, dict[str, str]] = {
    "deployed": {"MALLOC_ARENA_MAX": "2"},
    "no-faults": {
        "MALLOC_ARENA_MAX": "2",
        "MALLOC_MMAP_THRESHOLD_": "4294967296",
        "MALLOC_TRIM_THRESHOLD_": "4294967296",
    },
    # The deployed settings plus transparent huge pages for malloc's mmapped blocks (glibc >= 2.35, THP "madvise"):
    # the per-call block still faults in on every call, but in 2 MiB pages.
    "huge-pages": {"MALLOC_ARENA_MAX": "2", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"},
}

# What an exported model depends on: a cached export is reused only while these files are unchanged.
EXPORTER_SOURCES = tuple(
    REPO / "runtime" / "pipeline" / "stylegan2" / name
    for name in ("config.py", "networks.py", "onnx_graph.py", "winograd.py", "export_onnx.py")
)


def cached_model(workdir: Path, stem: str) -> Path:
    """Path of the cached export `stem` under workdir, keyed by a digest of the exporter's sources."""
    digest = hashlib.sha256(b"".join(source.read_bytes() for source in EXPORTER_SOURCES)).hexdigest()[:12]
    return workdir / f"{stem}-{digest}.onnx"


def export_generator(
    cfg: str, resolution: int, path: Path, *, upsample: str = "transposed", graph: str = "optimized"
) -> Path:
    """Export a random-weight generator at a preset (parent process only; needs torch)."""
    if path.is_file():
        return path
    import dataclasses

    import torch

    from runtime.pipeline.stylegan2.config import preset
    from runtime.pipeline.stylegan2.export_onnx import export_generator as export
    from runtime.pipeline.stylegan2.export_onnx import random_generator
    from runtime.pipeline.stylegan2.networks import Generator

    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if cfg == "tiny":  # the same weights on either up-sampling path (it changes no parameter)
        weights = random_generator(resolution=resolution)
        generator = Generator(dataclasses.replace(weights.cfg, upsample=upsample))
        generator.load_state_dict(weights.state_dict())
    else:
        torch.manual_seed(0)
        generator = Generator(dataclasses.replace(preset(cfg, resolution=resolution), upsample=upsample))
        with torch.no_grad():  # trained generators have non-zero noise strengths; the graph must not skip the adds
            for name, param in generator.named_parameters():
                if name.endswith("noise_strength"):
                    param.fill_(0.1)
    export(generator.eval(), path, kimg=0.0, graph=graph)
    print(
        f"exported {cfg}@{resolution} {upsample}/{graph} -> {path} ({path.stat().st_size / 2**20:.0f} MiB, "
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
    """The four exports (up-sampling x graph) in lockstep worker processes; medians and ratios to the baseline."""
    labels = [label for label, _, _ in VARIANTS]
    baseline = labels[0]
    resolutions = [16] if args.tiny else [int(r) for r in args.resolutions.split(",")]
    rows: list[dict[str, Any]] = []
    print(
        f"{'res':>4} {'batch':>5} {'variant':>21} {'GMAC/img':>8} {'img/s':>7} {'CPU s/img':>9} {'faults':>7} "
        f"{'x img/s':>7} {'x CPU':>6}"
    )
    for res in resolutions:
        cfg = "tiny" if args.tiny else f"paper{res}"
        models = {
            label: export_generator(
                cfg, res, cached_model(args.workdir, f"{cfg}-{res}-{up}-{graph}"), upsample=up, graph=graph
            )
            for label, up, graph in VARIANTS
        }
        gmac = {up: synthesis_gmac(cfg, res, up) for up in ("bilinear", "transposed")}
        for batch in [int(b) for b in args.batches.split(",")]:
            measured = run_lockstep(
                [models[label] for label in labels],
                batch=batch,
                rounds=args.rounds,
                threads=args.threads,
                env=MALLOC_ENVS[args.malloc],
            )
            rate = {label: statistics.median(m["images_per_s"]) for label, m in zip(labels, measured, strict=True)}
            cpu = {label: statistics.median(m["cpu_s_per_image"]) for label, m in zip(labels, measured, strict=True)}
            for (label, up, graph), m in zip(VARIANTS, measured, strict=True):
                row = {
                    "resolution": res,
                    "batch": batch,
                    "variant": label,
                    "upsample": up,
                    "graph": graph,
                    "malloc": args.malloc,
                    "gmac_per_image": round(gmac[up], 3),
                    "images_per_s_median": rate[label],
                    "images_per_s_rounds": m["images_per_s"],
                    "cpu_s_per_image_median": cpu[label],
                    "page_faults_per_call_median": statistics.median(m["faults"]),
                    "peak_rss_mib": m["peak_rss_mib"],
                    "ratio_images_per_s": round(rate[label] / rate[baseline], 3),
                    "ratio_cpu": round(cpu[baseline] / cpu[label], 3),
                }
                rows.append(row)
                print(
                    f"{res:>4} {batch:>5} {label:>21} {gmac[up]:>8.2f} {rate[label]:>7.3f} {cpu[label]:>9.3f} "
                    f"{row['page_faults_per_call_median']:>7.0f} {row['ratio_images_per_s']:>7.2f} "
                    f"{row['ratio_cpu']:>6.2f}",
                    flush=True,
                )
            same_graph = rate["transposed/optimized"] / rate["bilinear/optimized"]
            same_cpu = cpu["bilinear/optimized"] / cpu["transposed/optimized"]
            print(f"{'':>11} up-sampling alone (both optimized graphs): x img/s {same_graph:.2f}, x CPU {same_cpu:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"header": header, "rows": rows}, indent=2))
    return rows


def lockstep_worker(args: argparse.Namespace) -> None:
    """Load one model like the bot; on each stdin line run one call and print [wall s, CPU s, page faults]."""
    from runtime.bot.generator import FaceGenerator, SessionTuning, available_cores
    from runtime.bot.seeding import latents_for_seeds

    tuning = SessionTuning(tuned=True, intra_op_threads=args.threads or available_cores())
    generator = FaceGenerator(model_path=Path(args.model), tuning=tuning)
    latents = latents_for_seeds(list(range(args.batch)))
    generator.generate(latents, 0.7)  # warm-up: the first call plans memory
    print("ready", flush=True)
    for _ in sys.stdin:
        faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0, c0 = time.perf_counter(), time.process_time()
        generator.generate(latents, 0.7)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(json.dumps([wall, cpu, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0]), flush=True)
    print(json.dumps({"peak_rss_mib": round(peak_rss_mib(), 1)}), flush=True)


def run_lockstep(
    models: list[Path], *, batch: int, rounds: int, threads: int, env: dict[str, str]
) -> list[dict[str, Any]]:
    """One worker process per model (as the bot runs one), called in turn (A B C, C B A, ...) so load hits all alike.

    Returns per model: images/s and CPU seconds per image of each round, page faults per call, peak RSS.
    """
    command = [sys.executable, __file__, "--worker", "--lockstep", "--batch", str(batch), "--threads", str(threads)]
    workers = [
        subprocess.Popen(
            [*command, "--model", str(model)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, **env},
        )
        for model in models
    ]
    try:
        for model, worker_process in zip(models, workers, strict=True):
            assert worker_process.stdout is not None
            if worker_process.stdout.readline().strip() != "ready":
                raise RuntimeError(f"worker for {model} failed to start")
        results: list[dict[str, Any]] = [{"images_per_s": [], "cpu_s_per_image": [], "faults": []} for _ in models]
        for index in range(rounds):
            order = list(range(len(workers)))
            for which in order if index % 2 == 0 else order[::-1]:
                stdin, stdout = workers[which].stdin, workers[which].stdout
                assert stdin is not None and stdout is not None
                stdin.write("run\n")
                stdin.flush()
                wall, cpu, faults = json.loads(stdout.readline())
                results[which]["images_per_s"].append(round(batch / wall, 3))
                results[which]["cpu_s_per_image"].append(round(cpu / batch, 4))
                results[which]["faults"].append(faults)
        for result, worker_process in zip(results, workers, strict=True):
            stdin, stdout = worker_process.stdin, worker_process.stdout
            assert stdin is not None and stdout is not None
            stdin.close()
            result.update(json.loads(stdout.readline()))
    finally:
        for worker_process in workers:
            if worker_process.poll() is None and not (worker_process.stdin and worker_process.stdin.closed):
                worker_process.kill()
            worker_process.wait()
    return results


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
    parser.add_argument(
        "--malloc", choices=sorted(MALLOC_ENVS), default="deployed", help="glibc settings of the workers (upsample)"
    )
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
    parser.add_argument("--lockstep", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--session", default="tuned", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="raw", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker and args.lockstep:
        lockstep_worker(args)
        return 0
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    header = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "load_average": os.getloadavg(),
    }
    if args.compare == "upsample":
        print(json.dumps(header))
        compare_upsample(args, header)
        return 0
    if args.tiny:
        models = {16: export_generator("tiny", 16, cached_model(args.workdir, "tiny16"))}
        iters = min(args.iters, 3)
    else:
        models = {
            res: export_generator(f"paper{res}", res, cached_model(args.workdir, f"paper{res}"))
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
