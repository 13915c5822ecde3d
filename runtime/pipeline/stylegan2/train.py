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
from typing import Any

import torch

from .augment import AUGPIPES
from .cli import configure_step_logging, env_path, str2bool
from .config import CFG_NAMES
from .contract import AUTO_BATCH_GPU, CFG_BATCH, CFG_LEARNING_RATE
from .dataset import ImageDataset
from .distributed import init_distributed, shutdown
from .training_loop import Trainer, TrainOptions, log


class _Parser(argparse.ArgumentParser):
    """argparse with whole-word flags only and an error that names each unknown hyperparameter."""

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        """Parse, failing on the first unknown flag with its name and the accepted ones."""
        parsed, unknown = self.parse_known_args(args, namespace)
        flags = [u for u in unknown if u.startswith("--")]
        if unknown:
            known = sorted(a.lstrip("-") for action in self._actions for a in action.option_strings if a != "-h")
            name = (flags or unknown)[0].lstrip("-").split("=", 1)[0]
            self.error(f"unknown hyperparameter {name!r} (accepted: {', '.join(known)})")
        return parsed


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """CLI flags; SageMaker passes hyperparameters as `--name value` (the StyleGAN2-ADA names work as there)."""
    parser = _Parser(description=__doc__, allow_abbrev=False)
    parser.add_argument("--data", type=Path, default=env_path("SM_CHANNEL_TRAIN", "data/dataset"))
    parser.add_argument("--outdir", type=Path, default=env_path("SM_MODEL_DIR", "output/model"))
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=Path("/opt/ml/checkpoints") if Path("/opt/ml").is_dir() else Path("output/checkpoints"),
    )
    parser.add_argument("--kimg", type=float, default=1000.0, help="training length in thousands of real images shown")
    parser.add_argument("--batch", type=int, default=None, help="total batch over all GPUs (default or 0: the cfg's)")
    parser.add_argument(
        "--batch-gpu",
        type=int,
        default=AUTO_BATCH_GPU,
        help="images per GPU per forward/backward round, gradients accumulated over the rounds (default or 0: auto, "
        "the per-GPU batch capped by resolution, config.BATCH_GPU_CAPS)",
    )
    parser.add_argument("--gamma", type=float, default=None, help="R1 weight (default or negative: the cfg's)")
    parser.add_argument("--lr", type=float, default=None, help="Adam learning rate (default or 0: the cfg's)")
    parser.add_argument("--resolution", type=int, default=None, help="default: the dataset's")
    parser.add_argument("--mirror", type=str2bool, default=False, help="random left-right flips of real images")
    parser.add_argument("--snap", type=int, default=None, help="checkpoint every SNAP ticks (a tick is --tick-kimg)")
    parser.add_argument("--snapshot-kimg", type=float, default=None, help="checkpoint interval in kimg (default 50)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cfg",
        choices=CFG_NAMES,
        default="paper256",
        help="auto, stylegan2, paper256, paper512, paper1024, cifar, ...",
    )
    parser.add_argument("--gpus", type=int, default=None, help="GPUs to use; must not exceed the visible ones")
    parser.add_argument("--metrics", default="none", help="only 'none': FID/KID are computed by the evaluate step")
    parser.add_argument("--augpipe", choices=AUGPIPES, default="bgc", help="ADA pipeline, noaug, or diffaugment")
    parser.add_argument("--aug", choices=["ada", "fixed", "noaug"], default="ada", help="how p is chosen")
    parser.add_argument("--p", type=float, default=0.0, help="initial (ada) or fixed augmentation probability")
    parser.add_argument("--target", type=float, default=0.6, help="ADA target for E[sign(D(real))]")
    parser.add_argument("--augment", type=str2bool, default=True, help="0 turns every augmentation off")
    parser.add_argument("--compile", type=str2bool, default=None, help="torch.compile (default: on with CUDA)")
    parser.add_argument("--bf16", type=str2bool, default=None, help="bf16 autocast (default: on with CUDA)")
    parser.add_argument("--channels-last", type=str2bool, default=None, help="NHWC tensors (default: on with CUDA)")
    parser.add_argument("--tf32", type=str2bool, default=None, help="TF32 matmul/conv (default: on with CUDA)")
    parser.add_argument("--tick-kimg", type=float, default=4.0, help="progress/metrics line interval")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    args: argparse.Namespace = parser.parse_args(argv)
    if args.snap is not None and args.snapshot_kimg is not None:
        parser.error("give --snap (ticks) or --snapshot-kimg, not both")
    if args.snap is not None and args.snap <= 0:
        parser.error("--snap must be a positive number of ticks")
    if args.snapshot_kimg is None:
        args.snapshot_kimg = args.snap * args.tick_kimg if args.snap is not None else 50.0
    # The pipeline's default parameters (contract.CFG_BATCH, CFG_GAMMA, CFG_LEARNING_RATE) stand for the cfg's values.
    args.batch = None if args.batch == CFG_BATCH else args.batch
    args.gamma = None if args.gamma is not None and args.gamma < 0 else args.gamma
    args.lr = None if args.lr == CFG_LEARNING_RATE else args.lr
    if args.kimg <= 0 or args.snapshot_kimg <= 0 or args.tick_kimg <= 0 or (args.batch is not None and args.batch < 0):
        parser.error("--kimg, --snapshot-kimg and --tick-kimg must be positive, --batch positive or 0 (the cfg's)")
    if args.batch_gpu < 0:
        parser.error(f"--batch-gpu must be positive or {AUTO_BATCH_GPU} (auto), got {args.batch_gpu}")
    if args.batch and args.batch_gpu and args.batch % args.batch_gpu:
        parser.error(f"--batch-gpu {args.batch_gpu} must divide --batch {args.batch} (per GPU: --batch / GPUs)")
    if args.lr is not None and not 0 < args.lr < 1:
        parser.error("--lr must be between 0 and 1 (0: the cfg's)")
    if [m.strip() for m in args.metrics.split(",")] != ["none"]:
        parser.error(f"--metrics {args.metrics!r}: only 'none' (the pipeline's evaluate step computes FID/KID)")
    if args.gpus is not None and args.gpus < 1:
        parser.error("--gpus must be at least 1")
    if not 0 <= args.p <= 1:
        parser.error("--p must be within [0, 1]")
    return args


def check_gpus(requested: int | None, visible: int) -> None:
    """--gpus may not exceed the visible GPUs; with none visible the run goes to the CPU (local runs)."""
    if requested is None:
        return
    if visible == 0:
        log(f"gpus={requested} requested but no GPU is visible: training on the CPU", level=logging.WARNING)
    elif requested > visible:
        raise ValueError(f"gpus={requested} but only {visible} GPU(s) are visible")


def visible_gpus() -> int:
    """CUDA devices this process can see."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def relaunch_under_torchrun(argv: Sequence[str], *, requested: int | None = None) -> None:
    """On a multi-GPU machine started without torchrun (e.g. a SageMaker training job), re-exec under torchrun."""
    gpus = visible_gpus() if requested is None else min(requested, visible_gpus())
    if gpus <= 1 or "WORLD_SIZE" in os.environ or "--device" in argv or shutil.which("torchrun") is None:
        return
    log(f"{gpus} GPUs found: relaunching under torchrun")
    command = ["torchrun", "--standalone", f"--nproc_per_node={gpus}", "-m", __spec__.name if __spec__ else __name__]
    os.execvp("torchrun", [*command, *argv])  # noqa: S606 (fixed argv, no shell)


def dataset_resolution(data: Path) -> int:
    """The prepared dataset's resolution (0 when it cannot be read; the trainer then reports why)."""
    try:
        return ImageDataset(data).resolution
    except (FileNotFoundError, ValueError, OSError):
        return 0


def train_options(args: argparse.Namespace, *, on_gpu: bool) -> TrainOptions:
    """TrainOptions from parsed flags (the GPU-only speed-ups default to on with CUDA)."""
    return TrainOptions(
        data=args.data,
        outdir=args.outdir,
        checkpoint_dir=args.checkpoint_dir,
        kimg=args.kimg,
        batch=args.batch,
        batch_gpu=args.batch_gpu,
        gamma=args.gamma,
        lr=args.lr,
        resolution=args.resolution or dataset_resolution(args.data),
        mirror=args.mirror,
        snapshot_kimg=args.snapshot_kimg,
        seed=args.seed,
        cfg=args.cfg,
        augment=args.augment,
        augpipe=args.augpipe,
        aug=args.aug,
        augment_p=args.p,
        ada_target=args.target,
        compile=on_gpu if args.compile is None else args.compile,
        bf16=on_gpu if args.bf16 is None else args.bf16,
        channels_last=on_gpu if args.channels_last is None else args.channels_last,
        tick_kimg=args.tick_kimg,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run training; exit code 0 when finished, 128 + signal number when stopped by a signal."""
    raw_args = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(raw_args)
    configure_step_logging()
    try:
        check_gpus(args.gpus, int(os.environ.get("WORLD_SIZE", "0")) or visible_gpus())
    except ValueError as exc:
        log(f"error: {exc}", level=logging.ERROR)
        return 1
    relaunch_under_torchrun(raw_args, requested=args.gpus)
    env = init_distributed(device=args.device)
    on_gpu = env.device.type == "cuda"
    tf32 = on_gpu if args.tf32 is None else args.tf32 and on_gpu
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = True
    options = train_options(args, on_gpu=on_gpu)
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
