"""Load a diffusers folder offline and make the pipeline fast: half precision, SDPA, channels_last, torch.compile."""

from __future__ import annotations

import logging
import os
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


def optimize_pipeline(pipe: Pipeline, settings: Settings, *, device: str) -> Pipeline:
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
        _compile(pipe, settings)
    return pipe


def _compile(pipe: Pipeline, settings: Settings) -> None:
    """Compile the UNet and the VAE decoder with the configured mode (one graph per warmed shape)."""
    import torch._dynamo  # noqa: PLC0415
    import torch._inductor.config as inductor_config  # noqa: PLC0415

    # Each served (batch, size) pair is its own static graph; keep them all instead of falling back to eager.
    torch._dynamo.config.cache_size_limit = max(64, torch._dynamo.config.cache_size_limit)
    inductor_config.conv_1x1_as_mm = True
    inductor_config.coordinate_descent_tuning = True
    inductor_config.epilogue_fusion = False
    inductor_config.coordinate_descent_check_all_directions = True
    log.info("compiling unet and vae decoder with mode=%s", settings.compile_mode)
    pipe.unet = torch.compile(pipe.unet, mode=settings.compile_mode, fullgraph=True, dynamic=False)
    pipe.vae.decode = torch.compile(pipe.vae.decode, mode=settings.compile_mode, fullgraph=True, dynamic=False)
