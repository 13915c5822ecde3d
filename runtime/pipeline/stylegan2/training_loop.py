"""The StyleGAN2 training loop: G/D steps, lazy R1 and path-length regularization, ADA, EMA, snapshots, exact resume."""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from . import checkpoint
from .augment import ada_adjust, ada_augment, diff_augment
from .config import CFG_NAMES, ModelConfig, TrainingPreset, auto_batch_gpu, preset, training_preset
from .dataset import ImageDataset
from .distributed import DistEnv, any_rank, average_, average_gradients, check_in_sync, gather
from .loss import discriminator_loss, generator_loss, path_length_penalty, r1_penalty
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
    batch: int | None = None  # None: the preset's (64 for paper256/paper512)
    batch_gpu: int = 0  # images per GPU per forward/backward round; 0: auto (config.auto_batch_gpu)
    gamma: float | None = None  # None: the preset's R1 weight (paper256 1, paper512 0.5)
    lr: float | None = None  # None: the preset's (0.002 for stylegan2/paper1024 and auto at 1024 px, else 0.0025)
    resolution: int = 256
    mirror: bool = False
    snapshot_kimg: float = 50.0
    seed: int = 0
    cfg: str = "paper256"
    augment: bool = True  # False turns every augmentation off (same as augpipe noaug)
    augpipe: str = "bgc"  # bg, bgc (ADA pipelines), noaug, or diffaugment (always on)
    aug: str = "ada"  # ada: p adapts to D's overfitting; fixed: p stays at augment_p; noaug
    augment_p: float = 0.0  # initial (ada) or fixed p
    ada_target: float = 0.6
    ada_interval: int = 4
    ada_kimg: float = 500.0  # p can go from 0 to 1 in this many thousand images
    compile: bool = False
    bf16: bool = False
    channels_last: bool = False
    tick_kimg: float = 4.0
    r1_interval: int = 16
    pl_weight: float | None = None  # None: the preset's (2; cifar 0)
    pl_interval: int = 4
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    mixing_prob: float | None = None  # None: the preset's (0.9; cifar 0)
    ema_kimg: float | None = None  # None: the preset's (paper: 20; tiny/small: batch * 10 / 32)
    ema_rampup: float | None = None  # None: the preset's (paper: 0, no ramp-up; tiny/small: 0.05)
    keep_checkpoints: int = 2

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly copy (paths as strings)."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


def log(message: str, *, level: int = logging.INFO) -> None:
    """Progress line in the shared JSON log format (runtime/common/jsonlog.py); CloudWatch gets it."""
    LOG.log(level, message)


def resolved_training_values(options: TrainOptions, *, gpus: int) -> TrainingPreset:
    """The cfg's training values (config.training_preset) with each option that is set taking its place."""
    defaults = training_preset(options.cfg, resolution=options.resolution, gpus=gpus)
    overrides: dict[str, Any] = {
        "batch": options.batch,
        "gamma": options.gamma,
        "lr": options.lr,
        "pl_weight": options.pl_weight,
        "mixing_prob": options.mixing_prob,
        "ema_kimg": options.ema_kimg,
        "ema_rampup": options.ema_rampup,
    }
    return replace(defaults, **{name: value for name, value in overrides.items() if value is not None})


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
        if options.cfg not in CFG_NAMES:
            raise ValueError(f"unknown cfg {options.cfg!r}; choose from {sorted(CFG_NAMES)}")
        gpus = self.env.world_size
        values = resolved_training_values(options, gpus=gpus)
        self.lr, self.pl_weight, self.mixing_prob = values.lr, values.pl_weight, values.mixing_prob
        self.batch, self.gamma = values.batch, values.gamma
        self.ema_kimg, self.ema_rampup = values.ema_kimg, values.ema_rampup
        if self.batch % self.env.world_size:
            raise ValueError(f"--batch {self.batch} must be divisible by the {self.env.world_size} GPUs")
        self.batch_per_gpu = self.batch // self.env.world_size
        # Each phase runs in rounds of batch_gpu images per GPU whose gradients add up before its one optimizer step.
        if options.batch_gpu < 0:
            raise ValueError(f"--batch-gpu must be 0 (auto) or positive, got {options.batch_gpu}")
        self.batch_gpu = options.batch_gpu or auto_batch_gpu(
            resolution=options.resolution, batch_per_gpu=self.batch_per_gpu
        )
        if self.batch_per_gpu % self.batch_gpu:
            raise ValueError(
                f"--batch-gpu {self.batch_gpu} must divide the per-GPU batch {self.batch_per_gpu} "
                f"(--batch {self.batch} over {self.env.world_size} GPU(s))"
            )
        self.rounds = self.batch_per_gpu // self.batch_gpu
        self.augpipe = "noaug" if not options.augment or options.aug == "noaug" else options.augpipe
        self.ada = options.aug == "ada" and self.augpipe in ("bg", "bgc")
        self.dataset = ImageDataset(options.data)
        if self.dataset.resolution != options.resolution:
            raise ValueError(
                f"dataset in {self.dataset.directory} is {self.dataset.resolution}px but --resolution is "
                f"{options.resolution}; rebuild it with dataset_tool --resolution {options.resolution}"
            )
        self.cfg: ModelConfig = preset(options.cfg, resolution=options.resolution, gpus=gpus)
        self.use_bf16 = options.bf16 and device.type == "cuda"

        torch.manual_seed(options.seed)  # identical initial weights on every rank
        self.G = Generator(self.cfg).to(device).train()
        self.D = Discriminator(self.cfg).to(device).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        if options.channels_last:
            for module in (self.G, self.D, self.G_ema):
                module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        # Lazy regularization: a regularizer applied every k steps gets its own optimizer step, so the main
        # steps run at lr * k / (k + 1) and betas ** (k / (k + 1)) (StyleGAN2, appendix B).
        self.opt_G = self._adam(self.G, interval=options.pl_interval if self.pl_weight > 0 else 0)
        self.opt_D = self._adam(self.D, interval=options.r1_interval if self.gamma > 0 else 0)
        self.pl_mean = torch.zeros((), device=device)
        self.augment_p = options.augment_p if self.augpipe in ("bg", "bgc") else 0.0
        self.ada_signs = torch.zeros(2, device=device)  # sum of sign(D(real)) and count since the last adjustment

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

    def _adam(self, module: torch.nn.Module, *, interval: int) -> torch.optim.Adam:
        ratio = interval / (interval + 1) if interval > 0 else 1.0
        lr, betas = self.lr * ratio, (0.0**ratio, 0.99**ratio)
        fused = self.env.device.type == "cuda"
        return torch.optim.Adam(module.parameters(), lr=lr, betas=betas, eps=1e-8, fused=fused)

    # ----------------------------------------------------------------- state
    def _rng_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"torch": torch.get_rng_state(), "data": self.data_rng.get_state()}
        if self.env.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.env.device)
        return state

    def state_dict(self) -> dict[str, Any]:
        """Full training state; a collective call under torchrun (gathers every rank's RNG state)."""
        return {
            "format": checkpoint.CHECKPOINT_FORMAT,
            "model_config": self.cfg.to_dict(),
            "options": self.opts.to_dict(),
            "step": self.step,
            "nimg": self.nimg,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "pl_mean": self.pl_mean.detach().cpu().clone(),
            "augment_p": self.augment_p,
            "ada_signs": self.ada_signs.detach().cpu().clone(),
            "rng": gather(self._rng_state(), self.env),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore everything state_dict saved; RNG streams too when the world size matches."""
        if int(state.get("format", 1)) != checkpoint.CHECKPOINT_FORMAT:
            raise ValueError(
                f"checkpoint format {state.get('format', 1)} predates the StyleGAN2 resampling operators and "
                f"path-length/ADA state (format {checkpoint.CHECKPOINT_FORMAT}); its discriminator cannot be resumed. "
                "Use a fresh --checkpoint-dir (generate.py still renders its generator)"
            )
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
        self.pl_mean.copy_(state["pl_mean"])
        self.augment_p = float(state["augment_p"])
        self.ada_signs.copy_(state["ada_signs"])
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
            "format": checkpoint.CHECKPOINT_FORMAT,
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
        if self.augpipe == "diffaugment":
            return diff_augment(images)
        if self.augpipe == "noaug" or self.augment_p <= 0:
            return images
        return ada_augment(images, pipe=self.augpipe, p=self.augment_p)

    def run_D(self, images: torch.Tensor, *, eager: bool = False) -> torch.Tensor:
        """D's logits for images, augmented inside the call (so R1's gradient is taken at the un-augmented reals)."""
        return (self.D if eager else self.D_main)(self._augment(images))

    def _next_reals(self) -> list[torch.Tensor]:
        """This step's reals (the per-GPU batch, drawn at once), as its rounds."""
        images = self.dataset.sample(self.batch_per_gpu, generator=self.data_rng, mirror=self.opts.mirror)
        device = self.env.device
        images = images.pin_memory() if device.type == "cuda" else images
        reals = images.to(device, non_blocking=True).float() / 127.5 - 1.0
        layout = torch.channels_last if self.opts.channels_last else torch.contiguous_format
        return [chunk.contiguous(memory_format=layout) for chunk in self._rounds(reals)]

    def _rounds(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """A per-GPU batch as its rounds; round r holds images r, r + rounds, r + 2 * rounds, ...

        Strided rather than contiguous (NVIDIA's split): minibatch-stddev groups images i, i + n / group, ... of its
        input, so whenever the group divides batch_gpu each round's groups are exactly the whole batch's.
        """
        return [batch] if self.rounds == 1 else [batch[r :: self.rounds] for r in range(self.rounds)]

    def _autocast(self) -> torch.autocast:
        return torch.autocast(device_type=self.env.device.type, dtype=torch.bfloat16, enabled=self.use_bf16)

    def _accumulate(self, loss: torch.Tensor) -> None:
        """Backward of one round's mean loss over the rounds, so the phase's gradient is the whole batch's mean's."""
        torch.autograd.backward(loss / self.rounds)

    def _step(self, optimizer: torch.optim.Adam, module: torch.nn.Module) -> None:
        """After a phase's rounds: all-reduce with the NaN/Inf guard (on every path, one GPU included), step."""
        average_gradients(module.parameters(), self.env)
        optimizer.step()

    def _latents(self, count: int) -> torch.Tensor:
        return torch.randn(count, self.cfg.z_dim, device=self.env.device)

    def train_step(self) -> dict[str, torch.Tensor]:
        """G main, G path-length (every pl_interval), D main, D R1 (every r1_interval), ADA update; returns losses.

        Each phase puts the per-GPU batch through in rounds of batch_gpu images, adding up their gradients before
        its one optimizer step; the phase's per-image random inputs (latents, reals, path-length noise) are drawn
        for the whole batch first, so the rounds see the same ones as one big round would.
        """
        opts = self.opts
        do_pl = self.pl_weight > 0 and self.step % opts.pl_interval == 0
        do_r1 = self.gamma > 0 and self.step % opts.r1_interval == 0
        losses: dict[str, torch.Tensor] = {}

        # G main: non-saturating loss through a frozen discriminator.
        self.D.requires_grad_(False)
        self.opt_G.zero_grad(set_to_none=True)
        round_losses = []
        for z in self._rounds(self._latents(self.batch_per_gpu)):
            with self._autocast():
                ws = self.G.styles(z, mixing_prob=self.mixing_prob, update_w_avg=True)
                loss_g = generator_loss(self.run_D(self.synthesis_main(ws)))
            self._accumulate(loss_g)
            round_losses.append(loss_g.detach())
        self._step(self.opt_G, self.G)
        average_(self.G.mapping.w_avg, self.env)
        losses["loss_G"] = torch.stack(round_losses).mean()

        # G reg: path-length regularization on batch_gpu / pl_batch_shrink images per round (eager: it needs a double
        # backward). As in NVIDIA's code, each round moves the mean length a by pl_decay toward its own mean.
        if do_pl:
            self.opt_G.zero_grad(set_to_none=True)
            count = self.rounds * max(1, self.batch_gpu // opts.pl_batch_shrink)
            latents = self._latents(count)
            noise = torch.randn(count, 3, self.cfg.resolution, self.cfg.resolution, device=self.env.device)
            noise = noise / self.cfg.resolution  # y ~ N(0, I) / sqrt(H W)
            round_losses = []
            for z, y in zip(self._rounds(latents), self._rounds(noise), strict=True):
                with self._autocast():
                    ws = self.G.styles(z, mixing_prob=self.mixing_prob)
                    penalty, new_mean = path_length_penalty(
                        self.G.synthesis(ws), ws, self.pl_mean, decay=opts.pl_decay, noise=y
                    )
                self.pl_mean.copy_(new_mean)
                self._accumulate(penalty.mean() * (self.pl_weight * opts.pl_interval))
                round_losses.append(penalty.mean().detach())
            average_(self.pl_mean, self.env)
            self._step(self.opt_G, self.G)
            losses["pl"] = torch.stack(round_losses).mean()
        self.D.requires_grad_(True)

        # D main: logistic loss on augmented fakes and reals.
        self.opt_D.zero_grad(set_to_none=True)
        latents = self._latents(self.batch_per_gpu)
        reals = self._next_reals()
        round_losses = []
        for z, real in zip(self._rounds(latents), reals, strict=True):
            with torch.no_grad(), self._autocast():
                fakes = self.synthesis_main(self.G.styles(z, mixing_prob=self.mixing_prob))
            with self._autocast():
                real_logits = self.run_D(real)
                loss_d = discriminator_loss(real_logits, self.run_D(fakes))
            self._accumulate(loss_d)
            round_losses.append(loss_d.detach())
            self.ada_signs[0] += real_logits.detach().float().sign().sum()
            self.ada_signs[1] += len(real)
        self._step(self.opt_D, self.D)
        losses["loss_D"] = torch.stack(round_losses).mean()

        # D reg: R1 at the un-augmented reals (augmentation happens inside the D call), scaled by the interval.
        if do_r1:
            self.opt_D.zero_grad(set_to_none=True)
            round_losses = []
            for real in reals:
                real_in = real.detach().requires_grad_(True)
                with self._autocast():
                    r1 = r1_penalty(real_in, self.run_D(real_in, eager=True))
                self._accumulate(r1 * (self.gamma / 2 * opts.r1_interval))
                round_losses.append(r1.detach())
            self._step(self.opt_D, self.D)
            losses["r1"] = torch.stack(round_losses).mean()

        if self.ada and (self.step + 1) % opts.ada_interval == 0:
            self._adjust_augment_p()
        self._update_ema()
        return losses

    def _adjust_augment_p(self) -> None:
        signs = self.ada_signs.clone()
        average_(signs, self.env)
        if float(signs[1]) > 0:
            self.augment_p = ada_adjust(
                self.augment_p,
                sign_mean=float(signs[0] / signs[1]),
                target=self.opts.ada_target,
                batch=self.batch,
                interval=self.opts.ada_interval,
                ada_kimg=self.opts.ada_kimg,
            )
        self.ada_signs.zero_()

    @torch.no_grad()
    def _update_ema(self) -> None:
        ema_kimg = self.ema_kimg if self.ema_kimg is not None else self.batch * 10 / 32
        ema_nimg = ema_kimg * 1000
        if self.ema_rampup > 0:
            ema_nimg = min(ema_nimg, self.nimg * self.ema_rampup)
        beta = 0.5 ** (self.batch / max(ema_nimg, 1e-8))
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
                pl=stats.mean("pl", default=0.0),
                augment_p=self.augment_p,
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
                f"batch {self.batch} ({self.env.world_size} GPU(s) x {self.rounds} round(s) x {self.batch_gpu}, "
                f"minibatch-stddev group {min(self.cfg.mbstd_group, self.batch_gpu)}) on {self.env.device}, "
                f"gamma {self.gamma}, "
                f"bf16={self.use_bf16} compile={opts.compile} channels_last={opts.channels_last} "
                f"augpipe={self.augpipe} aug={opts.aug if self.augpipe in ('bg', 'bgc') else '-'}"
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
            self.nimg += self.batch
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
