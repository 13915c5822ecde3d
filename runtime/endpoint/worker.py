"""One model copy on one device, driven by its own single thread (load, warm-up and every pipeline call)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .compile_cache import load_mega_cache, save_mega_cache
from .pipeline_setup import Pipeline, deterministic_kernels, optimize_pipeline
from .schedulers import SCHEDULER_NAMES, build_schedulers
from .settings import Settings

log = logging.getLogger(__name__)

PipelineFactory = Callable[[str], Pipeline]


@dataclass(frozen=True)
class BatchKey:
    """Settings that must match for requests to share one pipeline call."""

    steps: int
    width: int
    height: int
    guidance_scale: float
    scheduler: str
    deterministic: bool = False


@dataclass(frozen=True)
class ImageSpec:
    """One image to generate inside a batch."""

    prompt: str
    negative_prompt: str
    seed: int


@dataclass(frozen=True)
class Generated:
    """Images of one pipeline call and the safety checker's verdict per image (False when no checker ran)."""

    images: list[Image.Image]
    nsfw: list[bool]


# CFG runs the UNet on 2N latents; guidance <= 1 skips it (N): two graphs per batch size, both warmed.
WARMUP_GUIDANCE = (7.5, 1.0)


def warmup_plan(settings: Settings) -> list[tuple[BatchKey, int]]:
    """Every (key, images) the server runs before healthy: when compiled, each accepted shape and path.

    Compiled: every size bucket x warmed batch size x {CFG, no CFG}, then every scheduler once (the UNet sees one
    float32 timestep whatever the scheduler, so schedulers add no graphs; this proves it at start). Uncompiled:
    one call per GENART_WARMUP_SIZES side (or the first bucket) to load kernels and allocators.
    """
    steps = settings.warmup_steps
    if not settings.compile:
        squares = [(min(side, settings.max_side),) * 2 for side in settings.warmup_sizes]
        sides = squares if not settings.sizes or set(squares) <= set(settings.sizes) else [settings.sizes[0]]
        return [(BatchKey(steps, width, height, 7.5, "default"), 1) for width, height in sides]
    plan = [
        (BatchKey(steps, width, height, guidance, "default"), batch)
        for width, height in settings.sizes
        for batch in settings.warmup_batches
        for guidance in WARMUP_GUIDANCE
    ]
    width, height = settings.sizes[0]
    plan += [(BatchKey(steps, width, height, 7.5, name), 1) for name in SCHEDULER_NAMES if name != "default"]
    return plan


class DiffusionWorker:
    """Owns a pipeline on one device; all GPU work runs on its single worker thread."""

    def __init__(self, *, device: str, settings: Settings, factory: PipelineFactory) -> None:
        """Prepare the worker; nothing is loaded until start()."""
        self.device = device
        self._settings = settings
        self._factory = factory
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"gpu-{device}")
        self._pipe: Pipeline | None = None
        self._schedulers: dict[str, Any] = {}
        self.warmed_batches: tuple[int, ...] = ()
        self.has_safety_checker = False
        self.loaded_cache: Path | None = None
        self.load_seconds = 0.0

    async def start(self) -> None:
        """Load, optimise and warm the model on the worker thread."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load_and_warm)

    async def run(self, key: BatchKey, specs: Sequence[ImageSpec]) -> Generated:
        """Generate one image per spec in a single pipeline call, off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.generate, key, list(specs))

    def shutdown(self) -> None:
        """Stop the worker thread once queued work is done."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def padded_size(self, count: int) -> int:
        """Smallest warmed batch size >= count when compiled (avoids recompiling for a new shape), else count."""
        if not self._settings.compile or count > max(self.warmed_batches, default=0):
            return count
        return next((size for size in self.warmed_batches if size >= count), count)

    def generate(self, key: BatchKey, specs: list[ImageSpec]) -> Generated:
        """Run the pipeline once for all specs; each image gets its own generator seeded from its spec.

        A deterministic key runs its one request uncompiled with deterministic kernels (see docs/diffusion.md).
        """
        pipe = self._pipe
        if pipe is None:
            raise RuntimeError("model is not loaded")
        filler = ImageSpec(prompt="", negative_prompt="", seed=0)
        count = len(specs) if key.deterministic else self.padded_size(len(specs))
        padded = specs + [filler] * (count - len(specs))
        pipe.scheduler = self._schedulers[key.scheduler]
        generators = [torch.Generator(device="cpu").manual_seed(spec.seed) for spec in padded]
        use_negative = any(spec.negative_prompt for spec in padded)
        kernels = deterministic_kernels(pipe) if key.deterministic else contextlib.nullcontext()
        with torch.inference_mode(), kernels:
            result = pipe(
                prompt=[spec.prompt for spec in padded],
                negative_prompt=[spec.negative_prompt for spec in padded] if use_negative else None,
                num_inference_steps=key.steps,
                guidance_scale=key.guidance_scale,
                width=key.width,
                height=key.height,
                generator=generators,
                output_type="pil",
            )
        images: list[Image.Image] = list(result.images)[: len(specs)]
        flags = result.nsfw_content_detected
        nsfw = [bool(flag) for flag in flags[: len(specs)]] if flags is not None else [False] * len(specs)
        return Generated(images=images, nsfw=nsfw)

    def _load_and_warm(self) -> None:
        started = time.perf_counter()
        settings = self._settings
        if settings.compile:
            self.loaded_cache = load_mega_cache(cache_dir=settings.compile_cache_dir, model_dir=settings.model_dir)
        pipe = optimize_pipeline(self._factory(self.device), settings, device=self.device)
        self._schedulers = dict(build_schedulers(pipe.scheduler))
        self.has_safety_checker = getattr(pipe, "safety_checker", None) is not None
        self._pipe = pipe
        self._warm()
        if settings.compile:
            save_mega_cache(settings.compile_cache_dir)
        self.load_seconds = time.perf_counter() - started
        log.info("model ready on %s in %.1f s (warmed batches %s)", self.device, self.load_seconds, self.warmed_batches)

    def _warm(self) -> None:
        """Run every shape and path we intend to serve, so compilation and autotuning happen before healthy."""
        settings = self._settings
        self.warmed_batches = settings.warmup_batches if settings.compile else ()
        # Compiled graphs (CUDA graphs in reduce-overhead mode) are recorded on a later call than the first.
        passes = 2 if settings.compile else 1
        for key, batch in warmup_plan(settings):
            for _ in range(passes):
                started = time.perf_counter()
                self.generate(key, [ImageSpec(prompt="warm-up", negative_prompt="", seed=i) for i in range(batch)])
                log.info("warm-up %s batch %d took %.2f s", key, batch, time.perf_counter() - started)
        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)
