"""ONNX Runtime session for the StyleGAN2 generator and the float -> uint8 image mapping."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from .errors import ConfigError
from .seeding import Z_DIM

LOG = logging.getLogger(__name__)
LATENTS_INPUT = "latents"
TRUNCATION_INPUT = "truncation"
IMAGES_OUTPUT = "images"


def available_cores() -> int:
    """Return the CPU cores this process may use (cgroup/affinity aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class SessionTuning:
    """How the ONNX Runtime session is configured; `tuned=False` keeps onnxruntime's defaults."""

    tuned: bool = True
    intra_op_threads: int = field(default_factory=available_cores)
    allow_spinning: bool = False
    # Without the arena, activations are freed after each call: peak RSS halves at batch 8 for ~10% latency
    # (measured, docs/benchmarks.md); memory matters more on a 2 GB instance.
    cpu_mem_arena: bool = False

    def session_options(self) -> ort.SessionOptions:
        """Build SessionOptions for this tuning."""
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if not self.tuned:
            return options
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = max(1, self.intra_op_threads)
        options.inter_op_num_threads = 1
        options.enable_mem_pattern = True
        options.enable_mem_reuse = True
        options.enable_cpu_mem_arena = self.cpu_mem_arena
        # Idle intra-op threads must not spin: on a 2-vCPU instance spinning steals the event loop's core.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.allow_spinning else "0")
        return options


def to_uint8_images(images: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """Map generator output [N,3,R,R] in [-1,1] to uint8 HWC images via (x+1)*127.5, rounded and clipped."""
    scaled = np.rint((images.astype(np.float32) + 1.0) * 127.5)
    result: npt.NDArray[np.uint8] = np.clip(scaled, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1).copy()
    return result


class FaceGenerator:
    """One loaded generator: latents + truncation psi in, uint8 RGB images out (thread-safe)."""

    def __init__(self, *, model_path: Path, tuning: SessionTuning) -> None:
        self.model_path = model_path
        self.tuning = tuning
        try:
            self.session = ort.InferenceSession(
                str(model_path), sess_options=tuning.session_options(), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises several unrelated types for a bad file
            raise ConfigError(f"cannot load generator {model_path}: {exc}".splitlines()[0]) from exc
        inputs = {item.name: item for item in self.session.get_inputs()}
        outputs = [item.name for item in self.session.get_outputs()]
        if LATENTS_INPUT not in inputs or TRUNCATION_INPUT not in inputs or IMAGES_OUTPUT not in outputs:
            raise ConfigError(
                f"{model_path} does not follow the generator contract "
                f"(inputs {sorted(inputs)}, outputs {outputs}; expected latents+truncation -> images)"
            )
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        z_dim_shape = inputs[LATENTS_INPUT].shape[1]
        try:
            self.z_dim = int(self.metadata.get("z_dim", z_dim_shape if isinstance(z_dim_shape, int) else Z_DIM))
            self.resolution = int(self.metadata.get("resolution", "0") or 0)
        except ValueError as exc:
            raise ConfigError(f"{model_path} has unreadable metadata: {exc}") from exc
        if self.z_dim != Z_DIM or (isinstance(z_dim_shape, int) and z_dim_shape != Z_DIM):
            # Every command feeds [N, 512] latents; catch a mismatched model at load, not on each request.
            raise ConfigError(f"{model_path} takes {self.z_dim}-wide latents; the generator contract is {Z_DIM}")
        self._runs = 0
        self._lock = threading.Lock()

    @property
    def runs(self) -> int:
        """Return how many ONNX calls this generator has made (batching is visible here)."""
        return self._runs

    def generate_raw(self, latents: npt.NDArray[np.float32], psi: float) -> npt.NDArray[np.float32]:
        """Run the graph once and return float images [N,3,R,R]."""
        feeds = {
            LATENTS_INPUT: np.ascontiguousarray(latents, dtype=np.float32),
            TRUNCATION_INPUT: np.asarray([psi], dtype=np.float32),
        }
        (images,) = self.session.run([IMAGES_OUTPUT], feeds)
        with self._lock:
            self._runs += 1
        return np.asarray(images, dtype=np.float32)

    def generate(self, latents: npt.NDArray[np.float32], psi: float) -> npt.NDArray[np.uint8]:
        """Return uint8 HWC RGB images [N,R,R,3] for the latents at truncation psi."""
        return to_uint8_images(self.generate_raw(latents, psi))

    def describe(self) -> dict[str, str | int]:
        """Return loggable facts about the model."""
        return {
            "model": str(self.model_path),
            "resolution": self.resolution,
            "z_dim": self.z_dim,
            "kimg": self.metadata.get("kimg", "?"),
            "created": self.metadata.get("created", "?"),
            "intra_op_threads": self.tuning.intra_op_threads if self.tuning.tuned else 0,
        }


def return_free_memory() -> None:
    """Hand memory freed by a dropped session back to the OS (glibc keeps it otherwise); no-op elsewhere."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


class GeneratorHolder:
    """The current generator, swapped by reloads; empty before the first model and while a reload swaps."""

    def __init__(self, generator: FaceGenerator | None = None) -> None:
        self._generator: FaceGenerator | None = generator
        self._swapping = False
        self.resolution = int(getattr(generator, "resolution", 0))
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Return True when requests can be drawn: a generator is held, or a reload is swapping one in."""
        with self._lock:
            return self._generator is not None or self._swapping

    @property
    def current(self) -> FaceGenerator:
        """Return the generator new work should use."""
        with self._lock:
            if self._generator is None:
                raise RuntimeError("no generator loaded")
            return self._generator

    def swap(self, generator: FaceGenerator) -> FaceGenerator | None:
        """Install a new generator and return the previous one (None when the holder was empty)."""
        with self._lock:
            previous, self._generator = self._generator, generator
            self._swapping = False
            self.resolution = int(getattr(generator, "resolution", 0))
        LOG.info("generator swapped", extra={"fields": generator.describe()})
        return previous

    def release(self) -> FaceGenerator:
        """Empty the holder for a swap and return the generator it held, so its memory can be freed first."""
        with self._lock:
            previous, self._generator = self._generator, None
            if previous is None:
                raise RuntimeError("no generator loaded")
            self._swapping = True
        return previous

    def abandon(self) -> None:
        """End a swap with no generator (nothing could be loaded): requests are answered "no model" again."""
        with self._lock:
            self._generator = None
            self._swapping = False
