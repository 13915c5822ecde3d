"""Dynamic batching: compatible queued requests run as one pipeline call; a queue bounded in images sheds load.

Jobs whose caller went away (the awaiting task is cancelled) leave the queue at once; jobs that waited longer
than the queue timeout are failed without running; neither costs GPU time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image

from ..common.errors import BusyError
from .worker import BatchKey, DiffusionWorker, ImageSpec

log = logging.getLogger(__name__)


class QueueFullError(BusyError):
    """The queue holds max_queue images already; retry_after is the expected wait in seconds (Retry-After)."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QueueTimeoutError(BusyError):
    """The job waited longer than the queue timeout and was dropped without running."""

    code = "queue_timeout"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class Job:
    """One request waiting for its images."""

    request_id: str
    key: BatchKey
    specs: list[ImageSpec]
    future: asyncio.Future[BatchOutcome]
    enqueued: float = field(default_factory=time.perf_counter)
    deadline: float = math.inf


@dataclass(frozen=True)
class BatchOutcome:
    """Images for one job plus how it was served."""

    images: list[Image.Image]
    nsfw: list[bool]
    batch_images: int
    batch_requests: int
    queue_ms: float
    inference_ms: float


@dataclass
class BatchMetrics:
    """Counters exposed on /metrics and used by tests to prove batching happened."""

    requests: int = 0
    images: int = 0
    batches: int = 0
    multi_request_batches: int = 0
    max_batch_requests: int = 0
    max_batch_images: int = 0
    rejected_busy: int = 0
    failed_batches: int = 0
    consecutive_failed_batches: int = 0
    cancelled: int = 0
    expired: int = 0


class Batcher:
    """Queue of jobs served by one loop per worker; each loop takes the oldest job plus compatible followers.

    Requests that arrive while a batch runs wait in the queue and leave together in the next pipeline call.
    """

    def __init__(
        self,
        *,
        workers: Sequence[DiffusionWorker],
        max_batch: int,
        batch_window_ms: float,
        max_queue: int,
        queue_timeout_s: float = 0.0,
    ) -> None:
        """Create the batcher; call start() inside the running event loop (knobs named as in the bot's batcher).

        max_queue counts images waiting (not requests); queue_timeout_s 0 means jobs never expire.
        """
        self._workers = list(workers)
        self._max_batch = max_batch
        self._window = batch_window_ms / 1000.0
        self._max_queue = max_queue
        self._queue_timeout = queue_timeout_s
        self._seconds_per_image = 1.0
        self._pending: deque[Job] = deque()
        self._wakeup: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._busy_workers = 0
        self.metrics = BatchMetrics()

    @property
    def queued(self) -> int:
        """Jobs waiting for a worker."""
        return len(self._pending)

    @property
    def queued_images(self) -> int:
        """Images waiting for a worker (what max_queue bounds)."""
        return sum(len(job.specs) for job in self._pending)

    def retry_after(self, extra_images: int = 0) -> int:
        """Seconds until the queue (plus extra_images) should have drained, from recent batches; 1..60."""
        seconds = (self.queued_images + extra_images) * self._seconds_per_image / max(1, len(self._workers))
        return max(1, min(60, math.ceil(seconds)))

    def start(self) -> None:
        """Start one serving loop per worker."""
        self._wakeup = asyncio.Event()
        self._tasks = [asyncio.create_task(self._serve(worker)) for worker in self._workers]

    async def stop(self) -> None:
        """Cancel the serving loops and fail anything still queued."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while self._pending:
            job = self._pending.popleft()
            if not job.future.done():
                job.future.set_exception(BusyError("server shutting down"))

    async def submit(self, *, request_id: str, key: BatchKey, specs: list[ImageSpec]) -> BatchOutcome:
        """Queue a job and wait for its images; QueueFullError when it would take the queue past max_queue images.

        Cancelling the awaiting task (the client disconnected) removes the job if it has not started.
        """
        if self._wakeup is None:
            raise RuntimeError("batcher not started")
        if self.queued_images + len(specs) > self._max_queue:
            self.metrics.rejected_busy += 1
            raise QueueFullError("queue full; retry later", retry_after=self.retry_after(len(specs)))
        job = Job(request_id=request_id, key=key, specs=specs, future=asyncio.get_running_loop().create_future())
        if self._queue_timeout > 0:
            job.deadline = job.enqueued + self._queue_timeout
        self._pending.append(job)
        self.metrics.requests += 1
        self._wakeup.set()
        try:
            return await job.future
        except asyncio.CancelledError:
            if job in self._pending:
                self._pending.remove(job)
                self.metrics.cancelled += 1
                log.info("dropped queued job %s: its caller went away", request_id)
            raise

    def _expire(self) -> None:
        """Fail (without running) every queued job whose deadline has passed."""
        now = time.perf_counter()
        for job in [job for job in self._pending if job.deadline <= now]:
            self._pending.remove(job)
            self.metrics.expired += 1
            waited = now - job.enqueued
            log.info("dropped queued job %s after %.1f s in the queue", job.request_id, waited)
            if not job.future.done():
                message = f"waited {waited:.0f} s in the queue; retry later"
                error = QueueTimeoutError(message, retry_after=self.retry_after())
                job.future.set_exception(error)

    def _compatible_images(self, key: BatchKey) -> int:
        return sum(len(job.specs) for job in self._pending if job.key == key)

    def _take_batch(self) -> list[Job]:
        """Pop the oldest job and every later compatible job that still fits in max_batch images."""
        first = self._pending.popleft()
        batch, images = [first], len(first.specs)
        if first.key.deterministic:  # served alone
            return batch
        for job in list(self._pending):
            if job.key == first.key and images + len(job.specs) <= self._max_batch:
                self._pending.remove(job)
                batch.append(job)
                images += len(job.specs)
        return batch

    async def _serve(self, worker: DiffusionWorker) -> None:
        assert self._wakeup is not None
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            self._expire()
            if not self._pending:
                continue
            head = self._pending[0]
            # A lone request on an idle server goes at once; when others are in flight, more are likely to
            # arrive, so the oldest waits up to the window for compatible companions.
            busy = self._busy_workers > 0 or len(self._pending) > 1
            alone = head.key.deterministic
            if busy and not alone and self._window > 0 and self._compatible_images(head.key) < self._max_batch:
                waited_until = head.enqueued + self._window
                delay = waited_until - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            self._expire()
            if not self._pending:
                continue
            await self._run(worker, self._take_batch())

    async def _run(self, worker: DiffusionWorker, batch: list[Job]) -> None:
        specs = [spec for job in batch for spec in job.specs]
        started = time.perf_counter()
        self.metrics.batches += 1
        self.metrics.images += len(specs)
        self.metrics.max_batch_images = max(self.metrics.max_batch_images, len(specs))
        self.metrics.max_batch_requests = max(self.metrics.max_batch_requests, len(batch))
        if len(batch) > 1:
            self.metrics.multi_request_batches += 1
        ids = [job.request_id for job in batch]
        log.info(
            "batch on %s: %d requests, %d images, %s ids=%s", worker.device, len(batch), len(specs), batch[0].key, ids
        )
        self._busy_workers += 1
        try:
            generated = await worker.run(batch[0].key, specs)
        except Exception as exc:
            self.metrics.failed_batches += 1
            self.metrics.consecutive_failed_batches += 1
            log.exception("batch failed on %s ids=%s", worker.device, ids)
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        finally:
            self._busy_workers -= 1
        inference_ms = (time.perf_counter() - started) * 1000.0
        self.metrics.consecutive_failed_batches = 0
        self._seconds_per_image = 0.7 * self._seconds_per_image + 0.3 * inference_ms / 1000.0 / len(specs)
        images, nsfw = generated.images, generated.nsfw
        offset = 0
        for job in batch:
            count = len(job.specs)
            if not job.future.done():
                job.future.set_result(
                    BatchOutcome(
                        images=images[offset : offset + count],
                        nsfw=nsfw[offset : offset + count],
                        batch_images=len(specs),
                        batch_requests=len(batch),
                        queue_ms=(started - job.enqueued) * 1000.0,
                        inference_ms=inference_ms,
                    )
                )
            offset += count
