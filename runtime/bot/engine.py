"""Wires model, worker pool, micro-batcher and command service together (used by Discord and console mode)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .batcher import MicroBatcher
from .commands import WaifuService
from .config import BotSettings
from .errors import ConfigError, ModelRejected, ModelUnavailable
from .generator import FaceGenerator, GeneratorHolder, SessionTuning, return_free_memory
from .limits import Admission, TokenBucket
from .model_source import ModelStore
from .model_watch import ModelWatcher

LOG = logging.getLogger(__name__)


class Engine:
    """Everything behind the commands; create inside a running event loop, close() on shutdown.

    Without a generator the engine waits: drawing commands answer "no face generator published yet" until a
    reload (the operator's, or the model watcher's) loads one.
    """

    def __init__(
        self, *, settings: BotSettings, generator: FaceGenerator | None = None, s3_client: Any | None = None
    ) -> None:
        self.settings = settings
        self.holder = GeneratorHolder(generator)
        self.store = ModelStore(source=settings.model_source, s3_client=s3_client)
        # The version (S3 ETag, file mtime and size) of the model serving, and those that failed to load.
        self.version: str | None = None
        self.rejected: set[str] = set()
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
            model_loaded=lambda: self.holder.loaded,
        )
        self.watcher = ModelWatcher(
            store=self.store,
            reload=self.reload,
            serving_version=lambda: self.version,
            rejected=self.rejected,
            interval_s=settings.model_poll_s,
        )
        self._watch_task: asyncio.Task[None] | None = None
        self._reload_lock = asyncio.Lock()

    async def start(self) -> None:
        """Load the model if one is published (else wait for it), then watch for new versions when polling is on."""
        try:
            await self.reload()
        except ModelRejected as exc:
            LOG.error("model rejected at start; waiting for a new version", extra={"fields": {"version": exc.version}})
        except ModelUnavailable as exc:
            self.watcher.report(exc.state, str(exc))
        except Exception:  # starting without a model beats not starting: the watcher tries again
            LOG.exception("model load failed at start; waiting for a new version")
        if self.settings.model_poll_s > 0 and self._watch_task is None:
            self._watch_task = asyncio.get_running_loop().create_task(self._watch(), name="model-watcher")

    async def _watch(self) -> None:
        await asyncio.sleep(self.watcher.interval_s)
        await self.watcher.run()

    async def reload(self) -> str:
        """Fetch the newest model, then swap it in with a short pause so two models never sit in memory at once.

        The download runs while serving. Then new ONNX calls are held, running ones finish, the old session is
        freed and the new one loaded; queued requests wait for the pause (a second or two) instead of failing.
        A model that does not load is discarded, the previous one is loaded again from its untouched file, and
        ModelRejected is raised (its version is remembered in `rejected`). ModelUnavailable: nothing to fetch.
        """
        async with self._reload_lock:
            loop = asyncio.get_running_loop()
            fallback = not self.holder.loaded  # at start, an S3 outage may be bridged by an earlier run's cache
            staged = await loop.run_in_executor(self.executor, lambda: self.store.stage(fallback_to_cache=fallback))
            serving = False
            try:
                async with self.batcher.paused():
                    previous_path = self.holder.release().model_path if self.holder.loaded else None
                    gc.collect()
                    return_free_memory()
                    try:
                        generator = await loop.run_in_executor(
                            self.executor, open_generator, staged.path, self.settings
                        )
                    except Exception as exc:
                        await self._restore(previous_path)
                        if not isinstance(exc, ConfigError):
                            raise
                        if staged.fresh:
                            self.rejected.add(staged.version)
                        else:  # the cached copy, not necessarily the object, is bad: download it again next time
                            await loop.run_in_executor(self.executor, self.store.forget_serving_version)
                        raise ModelRejected(str(exc), version=staged.version) from exc
                    try:
                        generator.model_path = await loop.run_in_executor(self.executor, self.store.commit, staged)
                    except ConfigError:  # serve it anyway; the candidate file stays as its copy on disk
                        LOG.exception("new model loaded but the model cache could not be updated")
                    self.holder.swap(generator)
                    serving = True
                    self.version = staged.version
                    return_free_memory()  # session creation's scratch memory
            finally:
                if not serving:
                    await loop.run_in_executor(self.executor, self.store.discard, staged)
            facts = generator.describe()
            source = self.store.source.describe()
            LOG.info("reload source", extra={"fields": {"source": source, "version": self.version}})
            return f"{facts['resolution']} px, kimg {facts['kimg']}"

    async def _restore(self, previous_path: Path | None) -> None:
        """Load the model that served before a failed reload again, or go back to waiting when there was none."""
        if previous_path is None:
            self.holder.abandon()
            return
        loop = asyncio.get_running_loop()
        try:
            restored = await loop.run_in_executor(self.executor, open_generator, previous_path, self.settings)
        except ConfigError:
            LOG.exception("the previous model did not load again; waiting for a new one")
            self.holder.abandon()
            self.version = None
        else:
            self.holder.swap(restored)

    async def close(self, *, deadline: float | None = None) -> None:
        """Finish queued work and encoding until one deadline (loop time; default: the drain budget), then stop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.drain_timeout_s if deadline is None else deadline
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        async with self._reload_lock:  # a reload the watcher started finishes its swap first (it is shielded)
            pass
        await self.batcher.close(deadline=deadline)
        if not await self.service.drain(timeout_s=deadline - loop.time()):
            LOG.warning("requests still encoding at shutdown were dropped")
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.store.close()


async def open_engine(settings: BotSettings, *, s3_client: Any | None = None) -> Engine:
    """Create the engine and start it: with the published model loaded, or waiting for one (never fails for that)."""
    engine = Engine(settings=settings, s3_client=s3_client)
    await engine.start()
    return engine


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
