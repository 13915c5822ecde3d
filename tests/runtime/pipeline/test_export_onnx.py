"""ONNX export: contract inputs/outputs, dynamic batch, metadata, truncation and parity with PyTorch."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from runtime.pipeline.stylegan2 import onnx_graph
from runtime.pipeline.stylegan2.export_onnx import OnnxMismatchError, export_generator, random_generator, verify_onnx
from runtime.pipeline.stylegan2.networks import Generator


def _run(path: Path, latents: np.ndarray, psi: float) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (images,) = session.run(["images"], {"latents": latents, "truncation": np.array([psi], dtype=np.float32)})
    return np.asarray(images)


def test_contract_inputs_outputs_and_metadata(tiny_generator_onnx: Path) -> None:
    model = onnx.load(str(tiny_generator_onnx))
    inputs = {i.name: i.type.tensor_type for i in model.graph.input}
    assert set(inputs) == {"latents", "truncation"}
    latents_dims = inputs["latents"].shape.dim
    assert latents_dims[0].dim_param and latents_dims[1].dim_value == 512
    assert [d.dim_value for d in inputs["truncation"].shape.dim] == [1]
    assert all(t.elem_type == onnx.TensorProto.FLOAT for t in inputs.values())
    assert [o.name for o in model.graph.output] == ["images"]
    images_dims = model.graph.output[0].type.tensor_type.shape.dim
    assert images_dims[0].dim_param and [d.dim_value for d in images_dims[1:]] == [3, 16, 16]  # R fixed, not symbolic
    props = {p.key: p.value for p in model.metadata_props}
    assert props["resolution"] == "16" and props["z_dim"] == "512" and float(props["kimg"]) == 0.0
    created = datetime.fromisoformat(props["created"])
    offset = created.utcoffset()
    assert offset is not None and offset.total_seconds() == 0
    assert model.opset_import[0].version == 17
    # onnxruntime's ConvTranspose spends its time in a single-threaded col2im: the export uses the polyphase form.
    ops = {node.op_type for node in model.graph.node}
    assert "ConvTranspose" not in ops and "Resize" not in ops


def test_dynamic_batch_range_and_determinism(tiny_generator_onnx: Path) -> None:
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((3, 512)).astype(np.float32)
    batch3 = _run(tiny_generator_onnx, latents, 1.0)
    batch1 = _run(tiny_generator_onnx, latents[:1], 1.0)
    assert batch3.shape == (3, 3, 16, 16) and batch1.shape == (1, 3, 16, 16)
    assert batch3.min() >= -1.0 and batch3.max() <= 1.0
    np.testing.assert_allclose(batch1[0], batch3[0], atol=1e-5)
    np.testing.assert_array_equal(_run(tiny_generator_onnx, latents, 1.0), batch3)
    assert np.abs(batch3[0] - batch3[1]).max() > 1e-3


def test_truncation_zero_gives_average_image_for_any_latent(tiny_generator_onnx: Path) -> None:
    latents = np.random.default_rng(1).standard_normal((4, 512)).astype(np.float32)
    images = _run(tiny_generator_onnx, latents, 0.0)
    for image in images[1:]:
        np.testing.assert_allclose(image, images[0], atol=1e-5)


def test_onnx_matches_pytorch(tiny_generator_onnx: Path) -> None:
    generator = random_generator(resolution=16, seed=0)
    worst = verify_onnx(generator, tiny_generator_onnx, latents=torch.randn(2, 512), truncations=(0.0, 0.5, 1.0))
    assert worst < 1e-3


def test_verify_rejects_a_different_generator(tiny_generator_onnx: Path) -> None:
    other = random_generator(resolution=16, seed=1)
    with pytest.raises(OnnxMismatchError, match="differs"):
        verify_onnx(other, tiny_generator_onnx, latents=torch.randn(2, 512))


def _export(tmp_path: Path, name: str, *, upsample: str = "transposed", graph: str = "optimized") -> tuple[Path, Any]:
    weights = random_generator(resolution=16, seed=3)
    generator = Generator(dataclasses.replace(weights.cfg, upsample=upsample))
    generator.load_state_dict(weights.state_dict())
    return export_generator(generator.eval(), tmp_path / name, kimg=1.0, graph=graph), generator


@pytest.mark.parametrize("upsample", ["transposed", "bilinear"])
def test_optimized_graph_renders_what_the_generator_renders(tmp_path: Path, upsample: str) -> None:
    path, generator = _export(tmp_path, f"{upsample}.onnx", upsample=upsample)
    latents = torch.randn(3, 512)  # batch > 1: every per-sample style and demodulation stays per sample
    assert verify_onnx(generator, path, latents=latents, truncations=(0.0, 0.7, 1.0), atol=1e-4) < 1e-4


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {output: node for node in model.graph.node for output in node.output}


def test_optimized_graph_has_no_copies_in_front_of_its_convolutions(tmp_path: Path) -> None:
    optimized = onnx.load(str(_export(tmp_path, "optimized.onnx")[0]))
    current = onnx.load(str(_export(tmp_path, "current.onnx", graph="current")[0]))

    def conv_inputs(model: onnx.ModelProto) -> list[str]:
        producers = _producers(model)
        return [
            producers[n.input[0]].op_type for n in model.graph.node if n.op_type == "Conv" and n.input[0] in producers
        ]

    assert {"Pad", "Slice"} & set(conv_inputs(current))  # the graph the benchmark's baseline keeps
    assert not {"Pad", "Slice"} & set(conv_inputs(optimized))
    pads = [list(a.ints) for n in optimized.graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "pads"]
    assert [1, 0, 1, 1] in pads and [0, 0, 1, 1] in pads  # phase convs pad their own input, asymmetrically
    # toRGB: one MatMul per block; no full-size Mul by the lrelu gain sqrt(2) anywhere
    assert sum(n.op_type == "MatMul" for n in optimized.graph.node) >= 3
    ops = {n.op_type for n in optimized.graph.node}
    assert "ConvTranspose" not in ops and "Resize" not in ops


def test_export_rejects_an_unknown_graph(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="graph must be one of"):
        export_generator(random_generator(resolution=8), tmp_path / "x.onnx", kimg=0.0, graph="fast")


def test_deferred_demodulation_renders_large_biases_noise_and_negative_styles(tmp_path: Path) -> None:
    """The graph adds noise / d and b / d, then carries d into the next styles: exact only if d > 0 is used right."""
    generator = random_generator(resolution=16, seed=5)
    with torch.no_grad():  # random biases everywhere (affine biases too, so some styles are negative)
        for name, param in generator.synthesis.named_parameters():
            if name.endswith((".bias", "noise_strength")):
                param.copy_(torch.randn_like(param))
    path = export_generator(generator, tmp_path / "g.onnx", kimg=0.0)
    assert verify_onnx(generator, path, latents=torch.randn(3, 512), truncations=(0.5, 1.0), atol=1e-4) < 1e-4


def test_every_fused_conv_can_write_into_its_sum_input(tmp_path: Path) -> None:
    """onnxruntime runs FusedConv in place only when its sum input and output have provably equal shapes."""
    model = onnx.load(str(_export(tmp_path, "optimized.onnx")[0]))
    shapes = {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.value_info
    }
    fused = [n for n in model.graph.node if n.op_type == "FusedConv"]
    assert len(fused) == 5  # tiny at 16 px: conv1 at 4 px, conv0 + conv1 at 8 and 16 px
    for node in fused:
        assert node.input[2] == ""  # no own bias: its bias pass would be single-threaded
        assert shapes[node.input[3]] == shapes[node.output[0]]
        assert str(shapes[node.output[0]][1]).startswith("batch*")  # named, not an unknown dim


def test_winograd_layers_render_what_the_generator_renders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every 3x3 layer of a tiny generator forced through Winograd F(4x4, 3x3), batch 3, against PyTorch."""
    monkeypatch.setattr(onnx_graph.winograd, "winograd_pays", lambda **_: True)
    path, generator = _export(tmp_path, "winograd.onnx")
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("ConvTranspose") == 3  # conv1 at 4, 8 and 16 px: the output transform of each
    assert verify_onnx(generator, path, latents=torch.randn(3, 512), truncations=(0.0, 1.0), atol=1e-4) < 1e-4
