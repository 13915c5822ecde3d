"""One model copy on one device, driven by its own single thread (load, warm-up and every pipeline call)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from .compile_cache import load_mega_cache, save_mega_cache
from .pipeline_setup import Pipeline, optimize_pipeline
from .schedulers import build_schedulers
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


@dataclass(frozen=True)
class ImageSpec:
    """One image to generate inside a batch."""

    prompt: str
    negative_prompt: str
    seed: int


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
        self.load_seconds = 0.0

    async def start(self) -> None:
        """Load, optimise and warm the model on the worker thread."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load_and_warm)

    async def run(self, key: BatchKey, specs: Sequence[ImageSpec]) -> list[Image.Image]:
        """Generate one image per spec in a single pipeline call, off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.generate, key, list(specs))

    def shutdown(self) -> None:
        """Stop the worker thread once queued work is done."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def padded_size(self, count: int) -> int:
        """Smallest warmed batch size >= count when compiled (avoids recompiling for a new shape), else count."""
        if not self._settings.compile:
            return count
        return next((size for size in self.warmed_batches if size >= count), count)

    def generate(self, key: BatchKey, specs: list[ImageSpec]) -> list[Image.Image]:
        """Run the pipeline once for all specs; each image gets its own generator seeded from its spec."""
        pipe = self._pipe
        if pipe is None:
            raise RuntimeError("model is not loaded")
        filler = ImageSpec(prompt="", negative_prompt="", seed=0)
        padded = specs + [filler] * (self.padded_size(len(specs)) - len(specs))
        pipe.scheduler = self._schedulers[key.scheduler]
        generators = [torch.Generator(device="cpu").manual_seed(spec.seed) for spec in padded]
        use_negative = any(spec.negative_prompt for spec in padded)
        with torch.inference_mode():
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
        images: list[Image.Image] = list(result.images)
        return images[: len(specs)]

    def _load_and_warm(self) -> None:
        started = time.perf_counter()
        settings = self._settings
        if settings.compile:
            load_mega_cache(cache_dir=settings.compile_cache_dir, model_dir=settings.model_dir)
        pipe = optimize_pipeline(self._factory(self.device), settings, device=self.device)
        self._schedulers = dict(build_schedulers(pipe.scheduler))
        self._pipe = pipe
        self._warm()
        if settings.compile:
            save_mega_cache(settings.compile_cache_dir)
        self.load_seconds = time.perf_counter() - started
        log.info("model ready on %s in %.1f s (warmed batches %s)", self.device, self.load_seconds, self.warmed_batches)

    def _warm(self) -> None:
        """Run every batch size and side we intend to serve once, so compilation and autotuning happen now."""
        settings = self._settings
        batches = settings.warmup_batches if settings.compile else settings.warmup_batches[:1]
        # Compiled graphs (CUDA graphs in reduce-overhead mode) are recorded on a later call than the first.
        passes = 2 if settings.compile else 1
        for size in settings.warmup_sizes:
            side = min(size, settings.max_side)
            for batch in [b for b in batches for _ in range(passes)]:
                key = BatchKey(settings.warmup_steps, side, side, 7.5, "default")
                started = time.perf_counter()
                self.generate(key, [ImageSpec(prompt="warm-up", negative_prompt="", seed=i) for i in range(batch)])
                log.info("warm-up %dx%d batch %d took %.2f s", side, side, batch, time.perf_counter() - started)
        self.warmed_batches = tuple(sorted(batches))
        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)
