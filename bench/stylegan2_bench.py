"""Benchmark StyleGAN2 training (seconds per kimg) and generator inference (images/s): fp32 eager vs optimized.

"optimized" is bf16 autocast + TF32 + channels_last + torch.compile, exactly the switches train.py turns on for
CUDA. Both modes run in the same process on the same synthetic data, so the ratio compares like with like.

    python bench/stylegan2_bench.py                          # GPU: paper256 at 256 px, batch 32
    python bench/stylegan2_bench.py --tiny --device cpu      # seconds-long proof on CPU (16 px tiny config)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from runtime.pipeline.stylegan2.dataset_tool import IMAGES_FILE  # noqa: E402
from runtime.pipeline.stylegan2.training_loop import Trainer, TrainOptions  # noqa: E402

MODES: dict[str, dict[str, bool]] = {
    "fp32-eager": {"bf16": False, "tf32": False, "channels_last": False, "compile": False},
    "optimized": {"bf16": True, "tf32": True, "channels_last": True, "compile": True},
}


def hardware(device: torch.device) -> str:
    """One-line description of the machine the numbers come from."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({torch.cuda.device_count()} visible), torch {torch.__version__}"
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so wall-clock timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def set_tf32(enabled: bool) -> None:
    """Toggle TF32 for matmuls and cuDNN convolutions."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def timed(fn: Callable[[], object], *, warmup: int, repeats: int, device: torch.device) -> float:
    """Mean seconds per call after warm-up calls (which absorb compilation)."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / max(repeats, 1)


def make_dataset(folder: Path, *, resolution: int, count: int) -> Path:
    """Random uint8 images in the dataset tool's format (content does not matter for speed)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    np.save(folder / IMAGES_FILE, rng.integers(0, 256, size=(count, 3, resolution, resolution), dtype=np.uint8))
    return folder


class ModeRunner:
    """One mode's trainer and generator, warmed up (compiled) and ready for timed rounds."""

    def __init__(self, name: str, args: argparse.Namespace, data: Path, workdir: Path, device: torch.device) -> None:
        self.name = name
        self.switches = MODES[name]
        self.args = args
        self.device = device
        self.activate()
        options = TrainOptions(
            data=data,
            outdir=workdir / name / "model",
            checkpoint_dir=workdir / name / "checkpoints",
            resolution=args.resolution,
            cfg=args.cfg,
            batch=args.batch,
            augment=True,
            bf16=self.switches["bf16"],
            channels_last=self.switches["channels_last"],
            compile=self.switches["compile"],
        )
        self.trainer = Trainer(options)
        generator = self.trainer.G_ema
        self.synthesis: Callable[[torch.Tensor], torch.Tensor] = generator.synthesis
        if self.switches["compile"]:
            self.synthesis = torch.compile(generator.synthesis)
        self.latents = torch.randn(args.gen_batch, generator.z_dim, device=device)
        started = time.perf_counter()
        # Warm-up covers an R1 step (step 0) and plain steps, so every compiled graph exists before timing.
        timed(self.train_step, warmup=args.warmup, repeats=0, device=device)
        timed(self.generate, warmup=3, repeats=0, device=device)
        self.warmup_s = time.perf_counter() - started
        self.train_s: list[float] = []
        self.gen_s: list[float] = []

    def activate(self) -> None:
        """Process-wide switches of this mode (TF32 is global in PyTorch)."""
        set_tf32(self.switches["tf32"] and self.device.type == "cuda")

    def train_step(self) -> None:
        """One G + D step, counted like the training loop counts it."""
        self.trainer.train_step()
        self.trainer.step += 1
        self.trainer.nimg += self.args.batch

    @torch.no_grad()
    def generate(self) -> None:
        """One batch from the EMA generator at truncation 0.7."""
        generator = self.trainer.G_ema
        bf16 = self.switches["bf16"] and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            self.synthesis(generator.truncate(generator.styles(self.latents), 0.7))

    def run_round(self) -> None:
        """Time one round: r1_interval training steps (so exactly one R1 step) and a few generator batches."""
        self.activate()
        steps = self.trainer.opts.r1_interval
        self.train_s.append(timed(self.train_step, warmup=0, repeats=steps, device=self.device))
        self.gen_s.append(timed(self.generate, warmup=0, repeats=self.args.gen_repeats, device=self.device))

    def result(self) -> dict[str, Any]:
        """Medians over rounds."""
        sec_per_step = statistics.median(self.train_s)
        sec_per_batch = statistics.median(self.gen_s)
        return {
            "mode": self.name,
            **self.switches,
            "bf16_effective": self.trainer.use_bf16,
            "tf32_effective": self.switches["tf32"] and self.device.type == "cuda",
            "sec_per_kimg": sec_per_step / self.args.batch * 1000,
            "train_images_per_s": self.args.batch / sec_per_step,
            "gen_images_per_s": self.args.gen_batch / sec_per_batch,
            "sec_per_kimg_rounds": [t / self.args.batch * 1000 for t in self.train_s],
            "warmup_s": self.warmup_s,
        }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Benchmark flags."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="16 px tiny config, batch 8 (CPU proof run)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--cfg", default="paper256")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per mode (16 steps each), alternating")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first (compilation, R1 step)")
    parser.add_argument("--gen-batch", type=int, default=32)
    parser.add_argument("--gen-repeats", type=int, default=10, help="generator batches per round")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma list from {sorted(MODES)}")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.tiny:
        args.cfg, args.resolution, args.batch, args.gen_batch = "tiny", 16, 8, 16
        args.warmup = min(args.warmup, 3)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run every requested mode and print/save a summary with the optimized/eager ratio."""
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    os.environ.setdefault("LOCAL_RANK", "0")
    print(f"hardware: {hardware(device)}", flush=True)
    print(f"config: {args.cfg} @ {args.resolution}px, batch {args.batch}, {args.rounds} rounds x 16 steps", flush=True)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    with tempfile.TemporaryDirectory() as tmp:
        data = make_dataset(Path(tmp) / "data", resolution=args.resolution, count=max(256, args.batch * 4))
        runners = []
        for name in args.modes.split(","):
            runners.append(ModeRunner(name, args, data, Path(tmp), device))
            print(f"{name}: warm-up (incl. compilation) {runners[-1].warmup_s:.1f} s", flush=True)
        # Alternating rounds and medians keep drifting background load from favouring one mode.
        for _ in range(args.rounds):
            for runner in runners:
                runner.run_round()
        results = [runner.result() for runner in runners]
    for r in results:
        print(
            f"{r['mode']:>11}: {r['sec_per_kimg']:.2f} s/kimg train ({r['train_images_per_s']:.1f} img/s), "
            f"generator {r['gen_images_per_s']:.1f} img/s",
            flush=True,
        )
    summary: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "hardware": hardware(device),
        "device": device.type,
        "cfg": args.cfg,
        "resolution": args.resolution,
        "batch": args.batch,
        "results": results,
    }
    if device.type == "cuda":
        summary["peak_mem_gib_all_modes"] = torch.cuda.max_memory_allocated(device) / 2**30
    by_mode = {r["mode"]: r for r in results}
    if {"fp32-eager", "optimized"} <= by_mode.keys():
        summary["train_speedup"] = by_mode["fp32-eager"]["sec_per_kimg"] / by_mode["optimized"]["sec_per_kimg"]
        summary["gen_speedup"] = by_mode["optimized"]["gen_images_per_s"] / by_mode["fp32-eager"]["gen_images_per_s"]
        train_x, gen_x = summary["train_speedup"], summary["gen_speedup"]
        print(f"optimized vs fp32-eager: training {train_x:.2f}x, generator {gen_x:.2f}x", flush=True)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
