"""Random-weight Stable Diffusion pipelines (tiny for tests and local tries, SD 1.5 sized for benchmarks)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import diffusers
import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

# diffusers classes are untyped; handle them as Any.
_d: Any = diffusers

_WORDS = ("a", "an", "the", "cat", "dog", "photo", "of", "red", "blue", "painting", "portrait", "sky", "sea", "city")


def _bytes_to_unicode() -> dict[int, str]:
    """Return the GPT-2/CLIP byte-to-printable-character table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def write_tiny_tokenizer_files(directory: Path) -> tuple[Path, Path]:
    """Write a small CLIP BPE vocab.json and merges.txt (every byte plus a few words) into directory."""
    directory.mkdir(parents=True, exist_ok=True)
    symbols = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in [*symbols, *(s + "</w>" for s in symbols)]:
        vocab.setdefault(token, len(vocab))
    merges: list[str] = []
    for word in _WORDS:
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:
            merges.append(f"{pieces[0]} {pieces[1]}")
            merged = pieces[0] + pieces[1]
            vocab.setdefault(merged, len(vocab))
            pieces = [merged, *pieces[2:]]
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab.setdefault(special, len(vocab))
    vocab_path = directory / "vocab.json"
    merges_path = directory / "merges.txt"
    vocab_path.write_text(json.dumps(vocab), encoding="utf-8")
    merges_path.write_text("#version: 0.2\n" + "\n".join(dict.fromkeys(merges)) + "\n", encoding="utf-8")
    return vocab_path, merges_path


def build_tiny_tokenizer(directory: Path | None = None, *, max_length: int = 77) -> CLIPTokenizer:
    """Build a CLIPTokenizer from tiny vocab/merges files written to directory (a temp dir when None)."""
    with tempfile.TemporaryDirectory() as tmp:
        vocab_path, merges_path = write_tiny_tokenizer_files(directory or Path(tmp))
        return CLIPTokenizer(
            vocab=str(vocab_path),
            merges=str(merges_path),
            model_max_length=max_length,
        )


def _tiny_configs() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    unet = {
        "block_out_channels": (8, 16),
        "layers_per_block": 1,
        "sample_size": 8,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "cross_attention_dim": 16,
        "attention_head_dim": 2,
        "norm_num_groups": 4,
    }
    # Four blocks like SD's VAE: scale factor 2**3 = 8, so a 512 px image is 64x64 latents, as in real SD.
    vae = {
        "block_out_channels": (4, 4, 4, 4),
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "latent_channels": 4,
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "sample_size": 64,
    }
    text = {
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_attention_heads": 2,
        "num_hidden_layers": 2,
        "max_position_embeddings": 77,
        "projection_dim": 16,
    }
    return unet, vae, text


def _sd15_configs() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    unet = {
        "block_out_channels": (320, 640, 1280, 1280),
        "layers_per_block": 2,
        "sample_size": 64,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        "cross_attention_dim": 768,
        "attention_head_dim": 8,
        "norm_num_groups": 32,
    }
    vae = {
        "block_out_channels": (128, 256, 512, 512),
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "latent_channels": 4,
        "layers_per_block": 2,
        "norm_num_groups": 32,
        "sample_size": 512,
    }
    text = {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_attention_heads": 12,
        "num_hidden_layers": 12,
        "max_position_embeddings": 77,
        "projection_dim": 768,
        "hidden_act": "quick_gelu",
        "vocab_size": 49408,
    }
    return unet, vae, text


def build_random_pipeline(*, preset: str = "tiny", seed: int = 0) -> Any:
    """Build a randomly initialised StableDiffusionPipeline ("tiny" or "sd15" architecture), fp32 on CPU."""
    configs = {"tiny": _tiny_configs, "sd15": _sd15_configs}
    if preset not in configs:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(configs)}")
    unet_cfg, vae_cfg, text_cfg = configs[preset]()
    tokenizer = build_tiny_tokenizer()
    text_cfg = {"vocab_size": len(tokenizer), **text_cfg}
    torch.manual_seed(seed)
    unet = _d.UNet2DConditionModel(**unet_cfg)
    vae = _d.AutoencoderKL(**vae_cfg)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **text_cfg,
        )
    )
    scheduler = _d.PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1
    )
    return _d.StableDiffusionPipeline(
        unet=unet.eval(),
        vae=vae.eval(),
        text_encoder=torch.nn.Module.eval(text_encoder),
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def save_random_pipeline(directory: Path, *, preset: str = "tiny", seed: int = 0) -> Path:
    """Save a random pipeline to directory in the diffusers folder layout (what /opt/ml/model holds)."""
    build_random_pipeline(preset=preset, seed=seed).save_pretrained(directory, safe_serialization=True)
    return directory
