"""Training step (SageMaker training contract): train, checkpoint, resume, and stop cleanly on SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import torch

from .cli import configure_step_logging, env_path, str2bool
from .config import PRESETS
from .distributed import init_distributed, shutdown
from .training_loop import Trainer, TrainOptions, log


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """CLI flags; SageMaker passes hyperparameters as `--name value`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=env_path("SM_CHANNEL_TRAIN", "data/dataset"))
    parser.add_argument("--outdir", type=Path, default=env_path("SM_MODEL_DIR", "output/model"))
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=Path("/opt/ml/checkpoints") if Path("/opt/ml").is_dir() else Path("output/checkpoints"),
    )
    parser.add_argument("--kimg", type=float, default=1000.0, help="training length in thousands of real images shown")
    parser.add_argument("--batch", type=int, default=32, help="total batch over all GPUs")
    parser.add_argument("--gamma", type=float, default=1.0, help="R1 weight")
    parser.add_argument("--lr", type=float, default=0.0025)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--mirror", type=str2bool, default=False, help="random left-right flips of real images")
    parser.add_argument("--snapshot-kimg", type=float, default=50.0, help="checkpoint interval")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cfg", choices=sorted(PRESETS), default="paper256")
    parser.add_argument("--augment", type=str2bool, default=True, help="DiffAugment color/translation/cutout")
    parser.add_argument("--compile", type=str2bool, default=None, help="torch.compile (default: on with CUDA)")
    parser.add_argument("--bf16", type=str2bool, default=None, help="bf16 autocast (default: on with CUDA)")
    parser.add_argument("--channels-last", type=str2bool, default=None, help="NHWC tensors (default: on with CUDA)")
    parser.add_argument("--tf32", type=str2bool, default=None, help="TF32 matmul/conv (default: on with CUDA)")
    parser.add_argument("--tick-kimg", type=float, default=4.0, help="progress/metrics line interval")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    args = parser.parse_args(argv)
    if args.kimg <= 0 or args.snapshot_kimg <= 0 or args.tick_kimg <= 0 or args.batch <= 0:
        parser.error("--kimg, --snapshot-kimg, --tick-kimg and --batch must be positive")
    return args


def relaunch_under_torchrun(argv: Sequence[str]) -> None:
    """On a multi-GPU machine started without torchrun (e.g. a SageMaker training job), re-exec under torchrun."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus <= 1 or "WORLD_SIZE" in os.environ or "--device" in argv or shutil.which("torchrun") is None:
        return
    log(f"{gpus} GPUs found: relaunching under torchrun")
    command = ["torchrun", "--standalone", f"--nproc_per_node={gpus}", "-m", __spec__.name if __spec__ else __name__]
    os.execvp("torchrun", [*command, *argv])  # noqa: S606 (fixed argv, no shell)


def main(argv: Sequence[str] | None = None) -> int:
    """Run training; exit code 0 when finished, 128 + signal number when stopped by a signal."""
    raw_args = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(raw_args)
    configure_step_logging()
    relaunch_under_torchrun(raw_args)
    env = init_distributed(device=args.device)
    on_gpu = env.device.type == "cuda"
    tf32 = on_gpu if args.tf32 is None else args.tf32 and on_gpu
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = True
    options = TrainOptions(
        data=args.data,
        outdir=args.outdir,
        checkpoint_dir=args.checkpoint_dir,
        kimg=args.kimg,
        batch=args.batch,
        gamma=args.gamma,
        lr=args.lr,
        resolution=args.resolution,
        mirror=args.mirror,
        snapshot_kimg=args.snapshot_kimg,
        seed=args.seed,
        cfg=args.cfg,
        augment=args.augment,
        compile=on_gpu if args.compile is None else args.compile,
        bf16=on_gpu if args.bf16 is None else args.bf16,
        channels_last=on_gpu if args.channels_last is None else args.channels_last,
        tick_kimg=args.tick_kimg,
    )
    try:
        trainer = Trainer(options, env=env)
    except (FileNotFoundError, ValueError) as exc:
        log(f"error: {exc}", level=logging.ERROR)
        shutdown(env)
        return 1
    received: list[int] = []

    def handle(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        trainer.request_stop()

    previous = {signum: signal.signal(signum, handle) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        finished = trainer.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        shutdown(env)
    if finished:
        return 0
    stopped_by = signal.Signals(received[0] if received else signal.SIGTERM)
    log(f"stopped by {stopped_by.name}; rerun with the same --checkpoint-dir to resume")
    return 128 + int(stopped_by)


if __name__ == "__main__":
    sys.exit(main())
