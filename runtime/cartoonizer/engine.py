"""Run the cartoonizer ONNX model with onnxruntime on CPU or CUDA: RGB uint8 frames in, RGB uint8 frames out.

The engine owns what the model does not: RGB <-> BGR (the model was trained on BGR), [0, 255] <-> [-1, 1], and
reflect-padding each frame to a multiple of 8 and cropping the result back (content is never cropped).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..common.errors import ConfigError
from .network import INPUT_NAME, OUTPUT_NAME, SIZE_MULTIPLE, random_weights

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")


@dataclasses.dataclass(frozen=True)
class SessionTuning:
    """CPU session options: every core, all graph optimizations, no spinning, no arena, denormals as zero."""

    intra_op_threads: int = 0  # 0: one per available core
    spinning: bool = False  # busy-waiting threads steal the cores the decoder and encoder need
    memory_arena: bool = False  # the arena keeps the peak of the largest frame size seen for ever

    def options(self) -> ort.SessionOptions:
        """onnxruntime SessionOptions for these settings."""
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = self.intra_op_threads or len(os.sched_getaffinity(0))
        options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = self.memory_arena
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
        return options


def resolve_providers(device: str) -> list[str]:
    """Execution providers for "cpu", "cuda" or "auto"; ConfigError when CUDA is asked for but unusable."""
    if device not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {device!r}", field="device")
    available = ort.get_available_providers()
    has_cuda = "CUDAExecutionProvider" in available
    if device == "cuda" and not has_cuda:
        raise ConfigError(
            f"device 'cuda' asked for but this onnxruntime has no CUDAExecutionProvider (it has {available}); "
            "install onnxruntime-gpu or use --device cpu",
            field="device",
        )
    if device == "cuda" or (device == "auto" and has_cuda):
        # The image brings CUDA and cuDNN as nvidia-* wheels (no CUDA base image); this loads them from there.
        preload = getattr(ort, "preload_dlls", None)
        if preload is not None:
            preload()
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def pad_to_multiple(frames: np.ndarray, multiple: int = SIZE_MULTIPLE) -> tuple[np.ndarray, int, int]:
    """Reflect-pad [N, H, W, C] at the bottom/right to multiples of `multiple`; return it with the original H, W."""
    height, width = frames.shape[1:3]
    pad_h, pad_w = -height % multiple, -width % multiple
    if not pad_h and not pad_w:
        return frames, height, width
    # "reflect" needs a side of at least 2; np.pad repeats the reflection when the pad exceeds the side.
    padding = ((0, 0), (0, pad_h), (0, pad_w), (0, 0))
    padded: np.ndarray = (
        np.pad(frames, padding, mode="reflect") if min(height, width) > 1 else np.pad(frames, padding, mode="edge")
    )
    return padded, height, width


def to_model_input(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB [N, H, W, 3] -> float32 BGR [N, 3, H, W] in [-1, 1]."""
    bgr = rgb[..., ::-1].astype(np.float32)
    return np.ascontiguousarray((bgr / 127.5 - 1.0).transpose(0, 3, 1, 2))


def from_model_output(output: np.ndarray) -> np.ndarray:
    """float32 BGR [N, 3, H, W] in [-1, 1] -> uint8 RGB [N, H, W, 3] (rounded, clipped)."""
    scaled = np.clip((output.transpose(0, 2, 3, 1)[..., ::-1] + 1.0) * 127.5 + 0.5, 0, 255)
    return np.ascontiguousarray(scaled.astype(np.uint8))


class Cartoonizer:
    """One onnxruntime session of a model that follows the I/O contract of runtime/cartoonizer/onnx_model.py."""

    def __init__(self, model: Path | bytes, *, device: str = "auto", tuning: SessionTuning | None = None) -> None:
        self.providers = resolve_providers(device)
        options = (tuning or SessionTuning()).options()
        source = str(model) if isinstance(model, Path) else model
        try:
            self.session = ort.InferenceSession(source, sess_options=options, providers=self.providers)
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
            raise ConfigError(
                f"cannot load the cartoonizer model {model if isinstance(model, Path) else '(bytes)'}: {exc}"
            ) from exc
        self._check_contract()
        self.device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        gpu_present = Path("/dev/nvidiactl").exists()
        wanted_cuda = device == "cuda" or (self.providers[0] == "CUDAExecutionProvider" and gpu_present)
        if self.device != "cuda" and wanted_cuda:
            # onnxruntime falls back to CPU silently; on a GPU host that is a broken image, not a slow success.
            raise ConfigError(
                "onnxruntime could not start its CUDA provider (driver, CUDA or cuDNN mismatch?); "
                "refusing to run a GPU job on the CPU",
                field="device",
            )

    @classmethod
    def random(cls, *, seed: int = 0, device: str = "cpu", tuning: SessionTuning | None = None) -> Cartoonizer:
        """An engine with random weights of the real architecture (demos, tests, benchmarks)."""
        weights = {f"generator/{name}": value for name, value in random_weights(seed=seed).items()}
        # onnx builds the graph: a development dependency, not in the Lambda's or the endpoint's lock.
        from .onnx_model import build_model  # noqa: PLC0415

        return cls(build_model(weights).SerializeToString(), device=device, tuning=tuning)

    def _check_contract(self) -> None:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        problems = []
        if len(inputs) != 1 or inputs[0].name != INPUT_NAME or len(inputs[0].shape) != 4 or inputs[0].shape[1] != 3:
            problems.append(f"one input {INPUT_NAME!r} [N, 3, H, W] (got {[(i.name, i.shape) for i in inputs]})")
        if len(outputs) != 1 or outputs[0].name != OUTPUT_NAME:
            problems.append(f"one output {OUTPUT_NAME!r} [N, 3, H, W] (got {[o.name for o in outputs]})")
        if problems:
            raise ConfigError("the model does not follow the cartoonizer I/O contract: needs " + "; ".join(problems))

    def run_model(self, batch: np.ndarray) -> np.ndarray:
        """The raw model on a float32 [N, 3, H, W] BGR batch in [-1, 1] (sides multiples of 8)."""
        result = self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
        return np.asarray(result, dtype=np.float32)

    def cartoonize(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB [N, H, W, 3] (or one [H, W, 3]) -> cartoonized uint8 RGB of the same shape."""
        single = frames.ndim == 3
        batch = frames[None] if single else frames
        if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != np.uint8:
            raise ValueError(f"expected uint8 RGB frames [N, H, W, 3], got {batch.dtype} {batch.shape}")
        padded, height, width = pad_to_multiple(batch)
        out = from_model_output(self.run_model(to_model_input(padded)))[:, :height, :width]
        return out[0] if single else out
