"""Wires model, worker pool, micro-batcher and command service together (used by Discord and console mode)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .batcher import MicroBatcher
from .commands import WaifuService
from .config import BotSettings
from .errors import ConfigError
from .generator import FaceGenerator, GeneratorHolder, SessionTuning, return_free_memory
from .limits import Admission, TokenBucket

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
        admission = Admission(
            bucket=TokenBucket(seconds_per_image=settings.cooldown_s, burst=settings.user_burst),
            user_max_pending=settings.user_max_pending,
            max_queue=settings.max_queue,
            max_wait_s=settings.max_wait_s,
            workers=settings.workers,
            seconds_per_image=lambda: self.batcher.seconds_per_image,
        )
        self.service = WaifuService(
            batcher=self.batcher,
            executor=self.executor,
            admission=admission,
            image_format=settings.image_format,
            reload_model=self.reload,
        )
        self._reload_lock = asyncio.Lock()

    async def reload(self) -> str:
        """Fetch the newest model, then swap it in with a short pause so two models never sit in memory at once.

        The download runs while serving. Then new ONNX calls are held, running ones finish, the old session is
        freed and the new one loaded; queued requests wait for the pause (a second or two) instead of failing.
        A model that does not load is replaced by the previous one again and the error is raised (ConfigError).
        """
        async with self._reload_lock:
            loop = asyncio.get_running_loop()
            previous_path = self.holder.current.model_path
            backup = await loop.run_in_executor(self.executor, _keep_previous, previous_path, self.settings)
            path = await loop.run_in_executor(self.executor, self.settings.model_source.fetch)
            async with self.batcher.paused():
                self.holder.release()
                gc.collect()
                return_free_memory()
                try:
                    generator = await loop.run_in_executor(self.executor, open_generator, path, self.settings)
                except ConfigError:
                    restored = await loop.run_in_executor(
                        self.executor, open_generator, backup or previous_path, self.settings
                    )
                    self.holder.swap(restored)
                    raise
                self.holder.swap(generator)
                return_free_memory()  # session creation's scratch memory
            facts = generator.describe()
            LOG.info("reload source", extra={"fields": {"source": self.settings.model_source.describe()}})
            return f"{facts['resolution']} px, kimg {facts['kimg']}"

    async def close(self, *, deadline: float | None = None) -> None:
        """Finish queued work and encoding until one deadline (loop time; default: the drain budget), then stop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.drain_timeout_s if deadline is None else deadline
        await self.batcher.close(deadline=deadline)
        if not await self.service.drain(timeout_s=deadline - loop.time()):
            LOG.warning("requests still encoding at shutdown were dropped")
        self.executor.shutdown(wait=False, cancel_futures=True)


def _keep_previous(previous: Path, settings: BotSettings) -> Path | None:
    """Keep the running model's file when the download is about to overwrite it (a failed reload goes back to it)."""
    cache = settings.model_source.cache_path
    if settings.model_source.local_path is not None or previous != cache or not cache.is_file():
        return None
    backup = cache.with_name(cache.name + ".previous")
    with contextlib.suppress(FileNotFoundError):
        backup.unlink()
    try:
        os.link(cache, backup)  # the download replaces the cache by rename, so the old inode lives on here
    except OSError:
        shutil.copyfile(cache, backup)
    return backup


def session_tuning(settings: BotSettings) -> SessionTuning:
    """Return the onnxruntime tuning for these settings."""
    return SessionTuning(
        tuned=settings.tuned_session, intra_op_threads=settings.intra_op_threads, cpu_mem_arena=settings.cpu_arena
    )


def open_generator(path: Path, settings: BotSettings) -> FaceGenerator:
    """Open an ONNX Runtime session on a local model file (blocking)."""
    generator = FaceGenerator(model_path=path, tuning=session_tuning(settings))
    LOG.info("generator loaded", extra={"fields": generator.describe()})
    return generator


def load_generator(settings: BotSettings) -> FaceGenerator:
    """Fetch the model (local or S3) and open an ONNX Runtime session on it (blocking)."""
    return open_generator(settings.model_source.fetch(), settings)
