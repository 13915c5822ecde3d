"""Load a diffusers folder offline and make the pipeline fast: half precision, SDPA, channels_last, torch.compile."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeAlias

import torch
from diffusers import StableDiffusionPipeline
from diffusers.models.attention_processor import AttnProcessor2_0 as _AttnProcessor2_0

from .settings import Settings

log = logging.getLogger(__name__)

# diffusers is only partly typed: pipelines expose their components (unet, vae, ...) dynamically.
Pipeline: TypeAlias = Any
_SDPipeline: Any = StableDiffusionPipeline
AttnProcessor2_0: Any = _AttnProcessor2_0

_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def resolve_devices(requested: str) -> list[str]:
    """Return the devices to load one model copy on: every visible GPU for "auto"/"cuda", else the one named."""
    if requested in {"auto", "cuda"}:
        if torch.cuda.is_available():
            return [f"cuda:{index}" for index in range(torch.cuda.device_count())]
        if requested == "cuda":
            raise RuntimeError("GENART_DEVICE=cuda but no CUDA device is visible")
        return ["cpu"]
    return [requested]


def resolve_dtype(settings: Settings, device: str) -> torch.dtype:
    """Return the weight dtype; half precision on CPU is slow or unsupported, so CPU always runs fp32."""
    if device.startswith("cpu"):
        return torch.float32
    return _DTYPES[settings.dtype]


def load_pipeline(settings: Settings, *, dtype: torch.dtype) -> Pipeline:
    """Load the diffusers folder at settings.model_dir from local files only."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    model_dir = Path(settings.model_dir)
    if not (model_dir / "model_index.json").is_file():
        raise FileNotFoundError(f"{model_dir} is not a diffusers folder (no model_index.json)")
    extra = {} if settings.safety_checker else {"safety_checker": None, "requires_safety_checker": False}
    return _SDPipeline.from_pretrained(model_dir, dtype=dtype, local_files_only=True, **extra)


def optimize_pipeline(pipe: Pipeline, settings: Settings, *, device: str, backend: Any = None) -> Pipeline:
    """Move to device and apply SDPA, QKV fusion, channels_last and torch.compile as configured."""
    dtype = resolve_dtype(settings, device)
    pipe = pipe.to(device) if pipe.unet.dtype == dtype else pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    pipe.unet.set_attn_processor(AttnProcessor2_0())
    pipe.vae.set_attn_processor(AttnProcessor2_0())
    on_gpu = device.startswith("cuda")
    if settings.fuse_qkv:
        # One matmul for q, k and v instead of three (self-attention only; diffusers leaves cross-attention alone).
        pipe.unet.fuse_qkv_projections()
        pipe.vae.fuse_qkv_projections()
    if settings.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if on_gpu:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if settings.compile:
        _compile(pipe, settings, backend=backend)
    return pipe


def _compile(pipe: Pipeline, settings: Settings, *, backend: Any = None) -> None:
    """Compile the UNet and the VAE decoder (static shapes: one graph per warmed shape, all made at warm-up).

    The UNet gets every scheduler's timestep as one float32 tensor (PNDM/DDIM pass int64, Euler/LMS float32),
    so changing the scheduler never changes the graph; the uncompiled callables stay on the pipeline for
    deterministic requests. backend replaces Inductor (tests count compilations with it).
    """
    import torch._dynamo  # noqa: PLC0415
    import torch._inductor.config as inductor_config  # noqa: PLC0415

    # Each warmed (batch, size, CFG) is its own static graph; keep them all. After warm-up the server sets the
    # "eager_on_recompile" stance, so an unforeseen shape runs eagerly instead of compiling on the worker thread.
    torch._dynamo.config.cache_size_limit = max(64, torch._dynamo.config.cache_size_limit)
    inductor_config.conv_1x1_as_mm = True
    inductor_config.coordinate_descent_tuning = True
    inductor_config.epilogue_fusion = False
    inductor_config.coordinate_descent_check_all_directions = True
    options: dict[str, Any] = {"backend": backend} if backend is not None else {"mode": settings.compile_mode}
    log.info("compiling unet and vae decoder with %s", options)
    unet, vae = pipe.unet, pipe.vae
    eager_unet, eager_decode = unet.forward, vae.decode
    compiled_unet: Any = torch.compile(eager_unet, fullgraph=True, dynamic=False, **options)
    compiled_decode = torch.compile(eager_decode, fullgraph=True, dynamic=False, **options)

    def unet_forward(sample: torch.Tensor, timestep: Any, *args: Any, **kwargs: Any) -> Any:
        timestep = torch.as_tensor(timestep, device=sample.device).to(torch.float32)
        return compiled_unet(sample, timestep, *args, **kwargs)

    unet.forward = unet_forward
    vae.decode = compiled_decode
    # (compiled unet forward, eager unet forward, compiled decode, eager decode), read by deterministic_kernels.
    pipe.__dict__[_COMPILED_PARTS] = (unet_forward, eager_unet, compiled_decode, eager_decode)


_COMPILED_PARTS = "_genart_compiled_parts"


@contextlib.contextmanager
def deterministic_kernels(pipe: Pipeline) -> Iterator[None]:
    """Run this pipeline uncompiled with deterministic kernels (no TF32, no cuDNN autotuning) for one call.

    The backend flags are process-wide: a batch running at the same moment on another GPU also gets them.
    """
    backends = torch.backends
    saved = (
        backends.cudnn.deterministic,
        backends.cudnn.benchmark,
        backends.cuda.matmul.allow_tf32,
        backends.cudnn.allow_tf32,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    parts = pipe.__dict__.get(_COMPILED_PARTS)
    backends.cudnn.deterministic, backends.cudnn.benchmark = True, False
    backends.cuda.matmul.allow_tf32 = backends.cudnn.allow_tf32 = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    if parts is not None:
        pipe.unet.forward, pipe.vae.decode = parts[1], parts[3]
    try:
        yield
    finally:
        if parts is not None:
            pipe.unet.forward, pipe.vae.decode = parts[0], parts[2]
        backends.cudnn.deterministic, backends.cudnn.benchmark = saved[0], saved[1]
        backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32 = saved[2], saved[3]
        torch.use_deterministic_algorithms(saved[4], warn_only=saved[5])
