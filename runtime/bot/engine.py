"""Wires model, worker pool, micro-batcher and command service together (used by Discord and console mode)."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from .batcher import MicroBatcher
from .commands import WaifuService
from .config import BotSettings
from .generator import FaceGenerator, GeneratorHolder, SessionTuning
from .limits import Cooldown

LOG = logging.getLogger(__name__)


class Engine:
    """Everything behind the commands; create inside a running event loop, close() on shutdown."""

    def __init__(self, *, settings: BotSettings, generator: FaceGenerator) -> None:
        self.settings = settings
        self.holder = GeneratorHolder(generator)
        # Workers run ONNX calls; one extra thread keeps PNG encoding and model reloads from queueing behind them.
        self.executor = ThreadPoolExecutor(max_workers=settings.workers + 1, thread_name_prefix="genart-worker")
        self.batcher = MicroBatcher(
            holder=self.holder,
            executor=self.executor,
            workers=settings.workers,
            batch_window_ms=settings.batch_window_ms,
            max_batch=settings.max_batch,
            max_queue=settings.max_queue,
        )
        self.service = WaifuService(
            batcher=self.batcher,
            executor=self.executor,
            cooldown=Cooldown(seconds=settings.cooldown_s),
            image_format=settings.image_format,
            reload_model=self.reload,
        )
        self._reload_lock = asyncio.Lock()

    async def reload(self) -> str:
        """Fetch the newest model and swap it in; raises ConfigError and keeps the old model on failure."""
        async with self._reload_lock:
            generator = await asyncio.get_running_loop().run_in_executor(self.executor, load_generator, self.settings)
            self.holder.swap(generator)
            facts = generator.describe()
            return f"{self.settings.model_source.describe()} ({facts['resolution']} px, kimg {facts['kimg']})"

    async def close(self) -> None:
        """Finish queued work (bounded by the drain timeout) and stop the worker pool."""
        await self.batcher.close(drain_timeout_s=self.settings.drain_timeout_s)
        if not await self.service.drain(timeout_s=self.settings.drain_timeout_s):
            LOG.warning("requests still encoding at shutdown were dropped")
        self.executor.shutdown(wait=False, cancel_futures=True)


def session_tuning(settings: BotSettings) -> SessionTuning:
    """Return the onnxruntime tuning for these settings."""
    return SessionTuning(
        tuned=settings.tuned_session, intra_op_threads=settings.intra_op_threads, cpu_mem_arena=settings.cpu_arena
    )


def load_generator(settings: BotSettings) -> FaceGenerator:
    """Fetch the model (local or S3) and open an ONNX Runtime session on it (blocking)."""
    path = settings.model_source.fetch()
    generator = FaceGenerator(model_path=path, tuning=session_tuning(settings))
    LOG.info("generator loaded", extra={"fields": generator.describe()})
    return generator
