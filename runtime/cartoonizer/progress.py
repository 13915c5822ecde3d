"""Progress of one job as the contract's JSON (state, frames done/total, fps, ETA), throttled to a sink.

Sinks: a local JSON file next to the output (CLI), an S3 object next to the output (server), a terminal bar.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from . import contract

ProgressSink = Callable[[dict[str, Any]], None]


class ProgressTracker:
    """Counts frames and calls every sink at most once per interval (and always on state changes)."""

    def __init__(
        self,
        *,
        sinks: Sequence[ProgressSink] = (),
        interval_s: float = contract.DEFAULT_PROGRESS_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sinks = list(sinks)
        self._interval = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._last_sent: float | None = None
        self.state = "queued"
        self.frames_done = 0
        self.frames_total: int | None = None
        self.error: str | None = None
        self.extra: dict[str, Any] = {}

    def snapshot(self) -> dict[str, Any]:
        """The progress document as it stands."""
        elapsed = max(self._clock() - self._started, 1e-9)
        fps = self.frames_done / elapsed if self.frames_done else 0.0
        eta = None
        if self.frames_total and fps > 0 and self.state == "running":
            eta = round(max(self.frames_total - self.frames_done, 0) / fps, 1)
        document: dict[str, Any] = {
            contract.PROGRESS_STATE: self.state,
            contract.PROGRESS_FRAMES_DONE: self.frames_done,
            contract.PROGRESS_FRAMES_TOTAL: self.frames_total,
            contract.PROGRESS_FPS: round(fps, 3),
            contract.PROGRESS_ETA_S: 0.0 if self.state == "done" else eta,
            "elapsed_s": round(elapsed, 3),
        }
        if self.error is not None:
            document[contract.PROGRESS_ERROR] = self.error
        document.update(self.extra)
        return document

    def _emit(self, *, force: bool) -> None:
        now = self._clock()
        if not force and self._last_sent is not None and now - self._last_sent < self._interval:
            return
        self._last_sent = now
        document = self.snapshot()
        for sink in self._sinks:
            sink(document)

    def start(self, *, frames_total: int | None, **extra: Any) -> None:
        """The job is running; frames_total is the best estimate (None when unknown)."""
        with self._lock:
            self._started = self._clock()
            self.state, self.frames_total = "running", frames_total
            self.extra.update(extra)
            self._emit(force=True)

    def advance(self, frames: int) -> None:
        """frames more are encoded; report if the interval has passed."""
        with self._lock:
            self.frames_done += frames
            self._emit(force=False)

    def finish(self, **extra: Any) -> None:
        """The job is done: frames_total becomes the real count."""
        with self._lock:
            self.state, self.frames_total = "done", self.frames_done
            self.extra.update(extra)
            self._emit(force=True)

    def fail(self, message: str) -> None:
        """The job failed with this client-safe message."""
        with self._lock:
            self.state, self.error = "failed", message
            self._emit(force=True)


def file_sink(path: Path) -> ProgressSink:
    """Write each update to path atomically (readers never see half a document)."""

    def write(document: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(document), encoding="utf-8")
        os.replace(temporary, path)

    return write


def terminal_bar(stream: IO[str] | None = None, *, width: int = 30) -> ProgressSink:
    """A one-line progress bar on stderr: frames, fps and ETA."""
    out = stream or sys.stderr

    def draw(document: dict[str, Any]) -> None:
        done = document[contract.PROGRESS_FRAMES_DONE]
        total = document[contract.PROGRESS_FRAMES_TOTAL] or 0
        fraction = min(done / total, 1.0) if total else 0.0
        filled = round(fraction * width)
        eta = document[contract.PROGRESS_ETA_S]
        eta_text = f"ETA {eta:.0f} s" if isinstance(eta, int | float) else "ETA ?"
        bar = f"[{'#' * filled}{'.' * (width - filled)}]"
        line = f"\r{bar} {done}/{total or '?'} frames {document[contract.PROGRESS_FPS]:.2f} fps {eta_text}"
        end = "\n" if document[contract.PROGRESS_STATE] in ("done", "failed") else ""
        out.write(line.ljust(80) + end)
        out.flush()

    return draw
