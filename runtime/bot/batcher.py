"""Micro-batching of concurrent generation requests into single ONNX calls on a worker pool."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .errors import BusyError
from .generator import GeneratorHolder

LOG = logging.getLogger(__name__)


@dataclass
class _Job:
    latents: npt.NDArray[np.float32]
    psi: float
    future: asyncio.Future[npt.NDArray[np.uint8]]
    enqueued: float = field(default_factory=time.monotonic)

    @property
    def size(self) -> int:
        return int(self.latents.shape[0])


def batch_limit(resolution: int) -> int:
    """Return the most images per ONNX call that keep peak RSS modest (~90 MB of activations per 256 px image).

    On CPU a bigger batch barely lowers the compute per image at these sizes (docs/benchmarks.md), so the
    limit is set by memory: it keeps a 256 px bot well under 1 GB on a 2 GB instance.
    """
    if resolution <= 128:
        return 8
    if resolution <= 256:
        return 2
    return 1


def prior_seconds_per_image(resolution: int) -> float:
    """Return a cautious guess of one image's CPU time before any has been measured (2-vCPU Graviton)."""
    if resolution <= 64:
        return 0.05
    if resolution <= 128:
        return 0.2
    if resolution <= 256:
        return 1.0
    return 4.0


class MicroBatcher:
    """Collect requests for `batch_window_ms`, merge those with the same psi (up to `max_batch` images) into one call.

    At most `workers` calls run at once in `executor`; at most `max_queue` images may be queued or running,
    beyond that `generate` raises BusyError immediately instead of growing memory without bound. `max_batch=None`
    picks the limit from the generator's resolution; requests larger than the limit are split into several calls.
    """

    def __init__(
        self,
        *,
        holder: GeneratorHolder,
        executor: Executor,
        workers: int = 1,
        batch_window_ms: float = 15.0,
        max_batch: int | None = None,
        max_queue: int = 32,
    ) -> None:
        self._holder = holder
        self._executor = executor
        self._window_s = batch_window_ms / 1000.0
        self._fixed_max_batch = max_batch
        self._max_queue = max(1, max_queue)
        self._slots = asyncio.Semaphore(max(1, workers))
        self._queue: deque[_Job] = deque()
        self._queued_images = 0
        self._pending_images = 0
        self._arrived = asyncio.Event()
        self._gate = asyncio.Event()  # cleared while a reload swaps the model: no new ONNX call starts
        self._gate.set()
        self._seconds_per_image: float | None = None
        self._closing = False
        self._collector: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._running_jobs: list[_Job] = []

    @property
    def max_batch(self) -> int:
        """Return the most images one ONNX call may take (fixed, or from the current model's resolution)."""
        if self._fixed_max_batch is not None:
            return max(1, self._fixed_max_batch)
        return batch_limit(self._holder.resolution)

    @property
    def seconds_per_image(self) -> float:
        """Return the recent CPU time per image of one ONNX call (moving average; a prior until measured)."""
        if self._seconds_per_image is None:
            return prior_seconds_per_image(self._holder.resolution)
        return self._seconds_per_image

    @property
    def pending_images(self) -> int:
        """Return images queued or being generated."""
        return self._pending_images

    @property
    def closing(self) -> bool:
        """Return True once close() began; new work is refused."""
        return self._closing

    def start(self) -> None:
        """Start the collector task on the running loop."""
        if self._collector is None:
            self._collector = asyncio.get_running_loop().create_task(self._collect(), name="micro-batcher")

    async def generate(self, latents: npt.NDArray[np.float32], psi: float) -> npt.NDArray[np.uint8]:
        """Return uint8 images for the latents, generated in a (possibly shared) batch."""
        if self._closing:
            raise BusyError("shutting down")
        size = int(latents.shape[0])
        if self._pending_images + size > self._max_queue:
            raise BusyError("queue full")
        self.start()
        limit = self.max_batch
        # Enqueue every chunk before awaiting so the pending count is reserved atomically on the event loop.
        futures = [self._enqueue(latents[start : start + limit], psi) for start in range(0, size, limit)]
        if len(futures) == 1:
            return await futures[0]
        return np.concatenate(await asyncio.gather(*futures), axis=0)

    def _enqueue(self, latents: npt.NDArray[np.float32], psi: float) -> asyncio.Future[npt.NDArray[np.uint8]]:
        job = _Job(latents=latents, psi=float(psi), future=asyncio.get_running_loop().create_future())
        self._queue.append(job)
        self._queued_images += job.size
        self._pending_images += job.size
        self._arrived.set()
        return job.future

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """Hold new ONNX calls and wait for running ones, so the model can be swapped with nothing using it."""
        self._gate.clear()
        try:
            while self._running:
                await asyncio.wait(set(self._running))
            yield
        finally:
            self._gate.set()

    async def close(self, *, deadline: float | None = None) -> None:
        """Refuse new work, finish queued and running batches until `deadline` (loop time; default 60 s away)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60.0 if deadline is None else deadline
        self._closing = True
        self._arrived.set()
        collector = self._collector
        if collector is not None:
            try:
                await asyncio.wait_for(asyncio.shield(collector), timeout=max(0.0, deadline - loop.time()))
            except TimeoutError:
                LOG.warning("drain timed out; rejecting queued work", extra={"fields": {"queued": len(self._queue)}})
                collector.cancel()
        while self._queue:
            job = self._queue.popleft()
            if not job.future.done():
                job.future.set_exception(BusyError("shutting down"))
        if self._running:
            await asyncio.wait(set(self._running), timeout=max(0.0, deadline - loop.time()))
        for job in self._running_jobs:  # past the deadline: answer "restarting" now rather than never
            if not job.future.done():
                job.future.set_exception(BusyError("shutting down"))

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    break
                self._arrived.clear()
                await self._arrived.wait()
                continue
            deadline = self._queue[0].enqueued + self._window_s
            while self._queued_images < self.max_batch and not self._closing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), timeout=remaining)
                except TimeoutError:
                    break
            await self._gate.wait()
            await self._slots.acquire()
            self._drop_cancelled()
            if not self._queue or not self._gate.is_set():  # emptied, or a reload paused us while we waited
                self._slots.release()
                continue
            batch = self._take_batch()
            task = loop.create_task(self._execute(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        if self._running:
            await asyncio.wait(set(self._running))

    def _drop_cancelled(self) -> None:
        """Forget queued jobs whose caller went away (e.g. the interaction was cancelled)."""
        live = deque[_Job]()
        for job in self._queue:
            if job.future.cancelled():
                self._queued_images -= job.size
                self._pending_images -= job.size
            else:
                live.append(job)
        self._queue = live

    def _take_batch(self) -> list[_Job]:
        """Take the oldest job and every later job with the same psi while the batch has room."""
        first, limit = self._queue.popleft(), self.max_batch
        batch, size, kept = [first], first.size, deque[_Job]()
        while self._queue:
            job = self._queue.popleft()
            if job.psi == first.psi and size + job.size <= limit:
                batch.append(job)
                size += job.size
            else:
                kept.append(job)
        self._queue = kept
        self._queued_images -= size
        return batch

    async def _execute(self, batch: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        size = sum(job.size for job in batch)
        started = time.monotonic()
        self._running_jobs.extend(batch)
        try:
            generator = self._holder.current
            latents = np.concatenate([job.latents for job in batch], axis=0)
            images = await loop.run_in_executor(self._executor, generator.generate, latents, batch[0].psi)
        except Exception as exc:
            LOG.exception("generation failed", extra={"fields": {"batch": size}})
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
        else:
            per_image = (time.monotonic() - started) / max(1, size)
            previous = self._seconds_per_image
            self._seconds_per_image = per_image if previous is None else 0.7 * previous + 0.3 * per_image
            offset = 0
            for job in batch:
                if not job.future.done():
                    job.future.set_result(images[offset : offset + job.size])
                offset += job.size
            LOG.info(
                "batch generated",
                extra={
                    "fields": {
                        "requests": len(batch),
                        "images": size,
                        "psi": batch[0].psi,
                        "seconds": round(time.monotonic() - started, 4),
                        "waited_s": round(started - batch[0].enqueued, 4),
                    }
                },
            )
        finally:
            done = {id(job) for job in batch}
            self._running_jobs = [job for job in self._running_jobs if id(job) not in done]
            self._pending_images -= size
            self._slots.release()
