"""Export the generator to ONNX per the project contract and verify it against PyTorch with onnxruntime."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from ...common.errors import GenArtError
from .config import preset
from .networks import Generator
from .onnx_graph import CONTRIB_OPSETS, ExportGenerator, name_fused_dims

# "optimized": the graph form onnxruntime runs fastest (onnx_graph.py), what the pipeline publishes;
# "current": the graph the exporter wrote before that rewrite (ContractGenerator traced as is), for benchmarks.
EXPORT_GRAPHS = ("optimized", "current")
INPUT_LATENTS = "latents"
INPUT_TRUNCATION = "truncation"
OUTPUT_IMAGES = "images"


class OnnxMismatchError(GenArtError, RuntimeError):
    """The exported ONNX model does not reproduce the PyTorch generator."""


class ContractGenerator(nn.Module):
    """Contract-shaped wrapper: latents [N, z_dim] and truncation [1] in, images clamped to [-1, 1] out."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, latents: torch.Tensor, truncation: torch.Tensor) -> torch.Tensor:
        """Render with the fixed noise buffers so the same latent always gives the same image."""
        images: torch.Tensor = self.generator(latents, truncation, noise_mode="const")
        return images.clamp(-1.0, 1.0)


def _float_copy(generator: Generator) -> Generator:
    """A float32, CPU, contiguous, eval-mode copy so exporting never touches the caller's model."""
    model = copy.deepcopy(generator).float().cpu().eval().requires_grad_(False)
    copied: Generator = model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    return copied


def _export_copy(generator: Generator) -> ContractGenerator:
    """ContractGenerator around a float copy (the reference the ONNX file is verified against)."""
    return ContractGenerator(_float_copy(generator))


def export_generator(
    generator: Generator,
    path: Path,
    *,
    kimg: float,
    opset: int = 17,
    metadata: Mapping[str, str] | None = None,
    graph: str = "optimized",
) -> Path:
    """Write generator as ONNX to path (dynamic batch, clamped output, metadata plus `metadata`) and return path.

    graph "optimized" (the default, what the pipeline publishes) writes onnx_graph.ExportGenerator; "current"
    traces ContractGenerator as the exporter did before that rewrite (kept so benchmarks can rebuild it).
    """
    if graph not in EXPORT_GRAPHS:
        raise ValueError(f"graph must be one of {EXPORT_GRAPHS}, got {graph!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper: nn.Module = _export_copy(generator) if graph == "current" else ExportGenerator(_float_copy(generator))
    example = (torch.randn(2, generator.z_dim), torch.ones(1))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated but is what runs everywhere
        torch.onnx.export(
            wrapper,
            example,
            str(path),
            input_names=[INPUT_LATENTS, INPUT_TRUNCATION],
            output_names=[OUTPUT_IMAGES],
            dynamic_axes={INPUT_LATENTS: {0: "batch"}, OUTPUT_IMAGES: {0: "batch"}},
            opset_version=opset,
            custom_opsets=CONTRIB_OPSETS if graph == "optimized" else None,
            # Folding would store each weight twice (scaled and squared); onnxruntime folds at load instead.
            do_constant_folding=False,
            dynamo=False,
        )
    model = onnx.load(str(path))
    cfg = generator.cfg
    fix_output_dims(model, channels=3, resolution=cfg.resolution)
    if graph == "optimized":
        name_fused_dims(model)
    onnx.helper.set_model_props(
        model,
        {
            "resolution": str(cfg.resolution),
            "z_dim": str(cfg.z_dim),
            "w_dim": str(cfg.w_dim),
            "num_ws": str(generator.num_ws),
            "kimg": f"{kimg:.3f}",
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "producer": "genart-on-aws stylegan2",
            **(metadata or {}),
        },
    )
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def fix_output_dims(model: onnx.ModelProto, *, channels: int, resolution: int) -> None:
    """Pin the output to [batch, channels, R, R]: the tracer leaves H and W symbolic, the contract fixes them."""
    (output,) = model.graph.output
    dims = output.type.tensor_type.shape.dim
    while len(dims) < 4:
        dims.add()
    for dim, value in zip(list(dims)[1:], (channels, resolution, resolution), strict=True):
        dim.ClearField("dim_param")
        dim.dim_value = value


def verify_onnx(
    generator: Generator,
    path: Path,
    *,
    latents: torch.Tensor,
    truncations: Sequence[float] = (0.0, 0.7, 1.0),
    atol: float = 1e-3,
) -> float:
    """Run the ONNX file and PyTorch on the same latents; return the max abs difference or raise OnnxMismatchError."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wrapper = _export_copy(generator)
    worst = 0.0
    for psi in truncations:
        psi_tensor = torch.tensor([psi], dtype=torch.float32)
        with torch.no_grad():
            expected = wrapper(latents.float().cpu(), psi_tensor).numpy()
        (actual,) = session.run(
            [OUTPUT_IMAGES],
            {INPUT_LATENTS: latents.float().cpu().numpy(), INPUT_TRUNCATION: psi_tensor.numpy()},
        )
        if actual.shape != expected.shape:
            raise OnnxMismatchError(f"shape mismatch at psi={psi}: onnx {actual.shape} vs torch {expected.shape}")
        worst = max(worst, float(np.abs(actual - expected).max()))
    if not worst <= atol:
        raise OnnxMismatchError(f"ONNX output differs from PyTorch by {worst:.3g} (tolerance {atol:g})")
    return worst


def random_generator(*, resolution: int = 16, seed: int = 0) -> Generator:
    """A tiny untrained generator (z_dim 512) with a populated w_avg and non-zero noise strengths."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = Generator(preset("tiny", resolution=resolution)).eval()
        with torch.no_grad():
            generator.mapping.w_avg.copy_(generator.mapping(torch.randn(256, generator.z_dim)).mean(dim=0))
            for name, param in generator.named_parameters():
                if name.endswith("noise_strength"):
                    param.fill_(0.1)
    return generator


def export_random_generator(path: Path, *, resolution: int = 16, seed: int = 0) -> Path:
    """Export a tiny random generator per the contract (fast on CPU; for tests of the ONNX consumers)."""
    return export_generator(random_generator(resolution=resolution, seed=seed), Path(path), kimg=0.0)
