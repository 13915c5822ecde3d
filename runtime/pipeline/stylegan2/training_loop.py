"""The StyleGAN2 training loop: G/D steps, lazy R1, generator EMA, ticks, snapshots and exact resume."""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from . import checkpoint
from .augment import diff_augment
from .config import ModelConfig, preset
from .dataset import ImageDataset
from .distributed import DistEnv, any_rank, average_, average_gradients, check_in_sync, gather
from .loss import discriminator_loss, generator_loss, r1_penalty
from .metrics import format_metrics
from .networks import Discriminator, Generator

LOG = logging.getLogger("stylegan2.train")


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """Everything that defines a training run (the CLI maps onto this one to one)."""

    data: Path
    outdir: Path
    checkpoint_dir: Path
    kimg: float = 1000.0
    batch: int = 32
    gamma: float = 1.0
    lr: float = 0.0025
    resolution: int = 256
    mirror: bool = False
    snapshot_kimg: float = 50.0
    seed: int = 0
    cfg: str = "paper256"
    augment: bool = True
    compile: bool = False
    bf16: bool = False
    channels_last: bool = False
    tick_kimg: float = 4.0
    r1_interval: int = 16
    mixing_prob: float = 0.9
    ema_kimg: float | None = None  # None: batch * 10 / 32 as in StyleGAN2-ADA
    ema_rampup: float = 0.05
    keep_checkpoints: int = 2

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly copy (paths as strings)."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


def log(message: str, *, level: int = logging.INFO) -> None:
    """Progress line in the shared JSON log format (runtime/common/jsonlog.py); CloudWatch gets it."""
    LOG.log(level, message)


class _TickStats:
    """Running sums of the losses between two log ticks."""

    def __init__(self, *, nimg: int) -> None:
        self.start_time = time.perf_counter()
        self.start_nimg = nimg
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, name: str, value: torch.Tensor) -> None:
        self.sums[name] = self.sums.get(name, torch.zeros((), device=value.device)) + value.detach().float()
        self.counts[name] = self.counts.get(name, 0) + 1

    def mean(self, name: str, *, default: float = float("nan")) -> float:
        return float(self.sums[name]) / self.counts[name] if self.counts.get(name) else default


class Trainer:
    """Owns models, optimizers and RNG streams; `run` trains until kimg or a stop request, checkpointing on the way."""

    def __init__(self, options: TrainOptions, *, env: DistEnv | None = None) -> None:
        self.opts = options
        self.env = env or DistEnv()
        device = self.env.device
        if options.batch % self.env.world_size:
            raise ValueError(f"--batch {options.batch} must be divisible by the {self.env.world_size} GPUs")
        self.batch_gpu = options.batch // self.env.world_size
        self.dataset = ImageDataset(options.data)
        if self.dataset.resolution != options.resolution:
            raise ValueError(
                f"dataset in {self.dataset.directory} is {self.dataset.resolution}px but --resolution is "
                f"{options.resolution}; rebuild it with dataset_tool --resolution {options.resolution}"
            )
        self.cfg: ModelConfig = preset(options.cfg, resolution=options.resolution)
        self.use_bf16 = options.bf16 and device.type == "cuda"

        torch.manual_seed(options.seed)  # identical initial weights on every rank
        self.G = Generator(self.cfg).to(device).train()
        self.D = Discriminator(self.cfg).to(device).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        if options.channels_last:
            for module in (self.G, self.D, self.G_ema):
                module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        adam = {"lr": options.lr, "betas": (0.0, 0.99), "eps": 1e-8}
        self.opt_G = torch.optim.Adam(self.G.parameters(), **adam, fused=device.type == "cuda")  # type: ignore[arg-type]
        self.opt_D = torch.optim.Adam(self.D.parameters(), **adam, fused=device.type == "cuda")  # type: ignore[arg-type]

        # Each rank draws its own latents, augmentations and data indices from here on.
        torch.manual_seed(options.seed * 1009 + self.env.rank + 1)
        self.data_rng = torch.Generator().manual_seed(options.seed * 1013 + self.env.rank + 1)
        self.step = 0
        self.nimg = 0
        self.stop_requested = False
        self.resumed_from = self._resume()

        self.synthesis_main: Callable[[torch.Tensor], torch.Tensor] = self.G.synthesis
        self.D_main: Callable[[torch.Tensor], torch.Tensor] = self.D
        if options.compile:
            # R1 needs double backward, which compiled graphs do not support, so R1 steps call the eager self.D.
            self.synthesis_main = torch.compile(self.G.synthesis)
            self.D_main = torch.compile(self.D)

    # ----------------------------------------------------------------- state
    def _rng_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"torch": torch.get_rng_state(), "data": self.data_rng.get_state()}
        if self.env.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.env.device)
        return state

    def state_dict(self) -> dict[str, Any]:
        """Full training state; a collective call under torchrun (gathers every rank's RNG state)."""
        return {
            "format": 1,
            "model_config": self.cfg.to_dict(),
            "options": self.opts.to_dict(),
            "step": self.step,
            "nimg": self.nimg,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "rng": gather(self._rng_state(), self.env),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore everything state_dict saved; RNG streams too when the world size matches."""
        if dict(state["model_config"]) != self.cfg.to_dict():
            raise ValueError(
                f"checkpoint model config {state['model_config']} differs from --cfg {self.opts.cfg} "
                f"({self.cfg.to_dict()}); use a fresh --checkpoint-dir to start a different model"
            )
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.step = int(state["step"])
        self.nimg = int(state["nimg"])
        rng = state["rng"]
        if len(rng) == self.env.world_size:
            mine = rng[self.env.rank]
            torch.set_rng_state(mine["torch"])
            self.data_rng.set_state(mine["data"])
            if "cuda" in mine and self.env.device.type == "cuda":
                torch.cuda.set_rng_state(mine["cuda"], self.env.device)
        else:
            if self.env.is_main:
                log(f"checkpoint has {len(rng)} RNG streams for {self.env.world_size} ranks; reseeding (not bit-exact)")
            torch.manual_seed(self.opts.seed * 1009 + self.env.rank + 1 + self.step)
            self.data_rng.manual_seed(self.opts.seed * 1013 + self.env.rank + 1 + self.step)

    def _resume(self) -> Path | None:
        for path in reversed(checkpoint.list_checkpoints(self.opts.checkpoint_dir)):
            try:
                state = checkpoint.load_state(path)
            except (OSError, RuntimeError, ValueError, KeyError) as exc:
                log(f"skipping unreadable checkpoint {path}: {exc}")
                continue
            self.load_state_dict(state)
            if self.env.is_main:
                log(f"resumed from {path} at step {self.step}, kimg {self.nimg / 1000:.3f}")
            return path
        return None

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint atomically (rank 0) and keep only the newest few; collective under torchrun."""
        check_in_sync({"G": self.G, "D": self.D, "G_ema": self.G_ema}, self.env)
        state = self.state_dict()
        if not self.env.is_main:
            return None
        path = checkpoint.checkpoint_path(self.opts.checkpoint_dir, self.nimg)
        checkpoint.save_atomic(state, path)
        checkpoint.prune(self.opts.checkpoint_dir, keep=self.opts.keep_checkpoints)
        log(f"checkpoint {path} (step {self.step}, kimg {self.nimg / 1000:.3f})")
        return path

    def write_final(self) -> Path | None:
        """EMA generator + config JSON into outdir (what SageMaker packs into model.tar.gz)."""
        if not self.env.is_main:
            return None
        self.opts.outdir.mkdir(parents=True, exist_ok=True)
        path = self.opts.outdir / checkpoint.GENERATOR_FILE
        generator_state = {
            "format": 1,
            "model_config": self.cfg.to_dict(),
            "nimg": self.nimg,
            "G_ema": {k: v.contiguous() for k, v in self.G_ema.state_dict().items()},
        }
        checkpoint.save_atomic(generator_state, path)
        summary = {
            "model_config": self.cfg.to_dict(),
            "options": self.opts.to_dict(),
            "kimg": self.nimg / 1000,
            "step": self.step,
            "dataset": {k: v for k, v in self.dataset.manifest.items() if k != "skipped"},
        }
        (self.opts.outdir / "config.json").write_text(json.dumps(summary, indent=2) + "\n")
        log(f"wrote {path} and config.json")
        return path

    # ----------------------------------------------------------------- training
    def request_stop(self) -> None:
        """Ask the loop to checkpoint and return at the next step boundary (signal-handler safe)."""
        self.stop_requested = True

    def _augment(self, images: torch.Tensor) -> torch.Tensor:
        return diff_augment(images) if self.opts.augment else images

    def _next_reals(self) -> torch.Tensor:
        images = self.dataset.sample(self.batch_gpu, generator=self.data_rng, mirror=self.opts.mirror)
        device = self.env.device
        images = images.pin_memory() if device.type == "cuda" else images
        reals = images.to(device, non_blocking=True).float() / 127.5 - 1.0
        return reals.contiguous(memory_format=torch.channels_last) if self.opts.channels_last else reals

    def _autocast(self) -> torch.autocast:
        return torch.autocast(device_type=self.env.device.type, dtype=torch.bfloat16, enabled=self.use_bf16)

    def train_step(self) -> dict[str, torch.Tensor]:
        """One generator step then one discriminator step (with R1 every r1_interval steps); returns the losses."""
        opts, device = self.opts, self.env.device
        z_dim = self.cfg.z_dim

        # Generator: non-saturating loss through a frozen discriminator.
        self.D.requires_grad_(False)
        with self._autocast():
            ws = self.G.styles(
                torch.randn(self.batch_gpu, z_dim, device=device), mixing_prob=opts.mixing_prob, update_w_avg=True
            )
            loss_g = generator_loss(self.D_main(self._augment(self.synthesis_main(ws))))
        self.opt_G.zero_grad(set_to_none=True)
        torch.autograd.backward(loss_g)
        average_gradients(self.G.parameters(), self.env)
        self.opt_G.step()
        average_(self.G.mapping.w_avg, self.env)
        self.D.requires_grad_(True)

        # Discriminator: logistic loss; lazy R1 on the images D actually sees, scaled by the interval.
        do_r1 = opts.gamma > 0 and self.step % opts.r1_interval == 0
        with torch.no_grad(), self._autocast():
            ws = self.G.styles(torch.randn(self.batch_gpu, z_dim, device=device), mixing_prob=opts.mixing_prob)
            fakes = self.synthesis_main(ws)
        with self._autocast():
            real_in = self._augment(self._next_reals()).detach().requires_grad_(do_r1)
            fake_logits = self.D_main(self._augment(fakes))
            real_logits = (self.D if do_r1 else self.D_main)(real_in)
            loss_d = discriminator_loss(real_logits, fake_logits)
            r1 = r1_penalty(real_in, real_logits) if do_r1 else torch.zeros((), device=device)
        total = loss_d + r1 * (opts.gamma / 2 * opts.r1_interval) if do_r1 else loss_d
        self.opt_D.zero_grad(set_to_none=True)
        torch.autograd.backward(total)
        average_gradients(self.D.parameters(), self.env)
        self.opt_D.step()

        self._update_ema()
        losses = {"loss_G": loss_g.detach(), "loss_D": loss_d.detach()}
        if do_r1:
            losses["r1"] = r1.detach()
        return losses

    @torch.no_grad()
    def _update_ema(self) -> None:
        ema_kimg = self.opts.ema_kimg if self.opts.ema_kimg is not None else self.opts.batch * 10 / 32
        ema_nimg = ema_kimg * 1000
        if self.opts.ema_rampup > 0:
            ema_nimg = min(ema_nimg, self.nimg * self.opts.ema_rampup)
        beta = 0.5 ** (self.opts.batch / max(ema_nimg, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
            p_ema.lerp_(p.detach(), 1.0 - beta)
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            b_ema.copy_(b)

    def _log_tick(self, stats: _TickStats, total_nimg: int) -> None:
        if not self.env.is_main:
            return
        elapsed = time.perf_counter() - stats.start_time
        done_kimg = (self.nimg - stats.start_nimg) / 1000
        sec_per_kimg = elapsed / done_kimg if done_kimg > 0 else 0.0
        eta = sec_per_kimg * (total_nimg - self.nimg) / 1000
        log(f"tick step {self.step} kimg {self.nimg / 1000:.3f}/{total_nimg / 1000:.3f} eta {eta:.0f}s")
        print(
            format_metrics(
                kimg=self.nimg / 1000,
                loss_g=stats.mean("loss_G"),
                loss_d=stats.mean("loss_D"),
                r1=stats.mean("r1", default=0.0),
                sec_per_kimg=sec_per_kimg,
            ),
            flush=True,
        )

    def run(self, *, on_snapshot: Callable[[Trainer], None] | None = None) -> bool:
        """Train to opts.kimg; True when finished, False when stopped early (after writing a checkpoint)."""
        opts = self.opts
        total_nimg = round(opts.kimg * 1000)
        snapshot_nimg = max(1, round(opts.snapshot_kimg * 1000))
        tick_nimg = max(1, round(opts.tick_kimg * 1000))
        if self.env.is_main:
            log(
                f"training {self.cfg} on {len(self.dataset)} images from {self.dataset.directory}: "
                f"batch {opts.batch} ({self.env.world_size} x {self.batch_gpu}) on {self.env.device}, "
                f"bf16={self.use_bf16} compile={opts.compile} channels_last={opts.channels_last} augment={opts.augment}"
            )
        stats = _TickStats(nimg=self.nimg)
        while self.nimg < total_nimg:
            if any_rank(self.stop_requested, self.env):
                if self.env.is_main:
                    log(f"stop requested at step {self.step}; writing a checkpoint before exiting")
                self.save_checkpoint()
                return False
            for name, value in self.train_step().items():
                stats.add(name, value)
            previous = self.nimg
            self.nimg += opts.batch
            self.step += 1
            if self.nimg // tick_nimg > previous // tick_nimg or self.nimg >= total_nimg:
                self._log_tick(stats, total_nimg)
                stats = _TickStats(nimg=self.nimg)
            if self.nimg // snapshot_nimg > previous // snapshot_nimg and self.nimg < total_nimg:
                self.save_checkpoint()
                if on_snapshot is not None:
                    on_snapshot(self)
        self.save_checkpoint()
        self.write_final()
        return True
