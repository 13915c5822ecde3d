"""The exported ONNX model (onnxruntime, CPU) against the NumPy reference, and the engine's pre/post-processing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from runtime.cartoonizer import reference
from runtime.cartoonizer.engine import Cartoonizer, from_model_output, pad_to_multiple, to_model_input
from runtime.cartoonizer.network import LAYERS, expected_shapes, parameter_count


def _onnx(engine: Cartoonizer, nhwc: np.ndarray) -> np.ndarray:
    return engine.run_model(np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))).transpose(0, 2, 3, 1)


def test_architecture_matches_the_published_facts() -> None:
    assert len(expected_shapes()) == 36
    assert 1_460_000 < parameter_count() < 1_480_000
    assert [layer.scope for layer in LAYERS if layer.stride == 2] == ["Conv_1", "Conv_3"]
    assert LAYERS[0].kernel_shape == (7, 7, 3, 32) and LAYERS[-1].kernel_shape == (7, 7, 32, 3)


@pytest.mark.parametrize(("height", "width"), [(16, 24), (8, 8), (32, 16)])
def test_onnx_matches_reference_everywhere_including_borders(
    engine: Cartoonizer, tf_weights: dict[str, np.ndarray], height: int, width: int
) -> None:
    rng = np.random.default_rng(height * 100 + width)
    x = rng.uniform(-1, 1, (2, height, width, 3)).astype(np.float32)
    expected = reference.cartoonize(x, tf_weights)
    actual = _onnx(engine, x)
    assert actual.shape == expected.shape
    assert float(np.abs(expected).mean()) > 0.05  # not a trivially flat output
    border = np.ones((height, width), bool)
    border[2:-2, 2:-2] = False
    np.testing.assert_allclose(actual[:, border], expected[:, border], atol=2e-5)
    np.testing.assert_allclose(actual[:, ~border], expected[:, ~border], atol=2e-5)


def test_generator_alone_matches_reference_so_the_filter_cannot_hide_errors(
    model_path: Path, tf_weights: dict[str, np.ndarray]
) -> None:
    import onnxruntime as ort

    model = onnx.load(str(model_path))
    raw = next(node.output[0] for node in model.graph.node if node.name.startswith("Conv_9"))
    model.graph.output.append(onnx.helper.make_tensor_value_info(raw, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(3).uniform(-1, 1, (1, 16, 24, 3)).astype(np.float32)
    got = session.run([raw], {"images": x.transpose(0, 3, 1, 2)})[0].transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got, reference.generator(x, tf_weights), atol=2e-5)


def test_resize_is_tf1_asymmetric_and_stride_two_convs_pad_bottom_right(model_path: Path) -> None:
    model = onnx.load(str(model_path))
    resizes = [node for node in model.graph.node if node.op_type == "Resize"]
    assert len(resizes) == 2
    for node in resizes:
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attributes["coordinate_transformation_mode"] == b"asymmetric"
        assert attributes["mode"] == b"linear"
    strided = [
        {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        for node in model.graph.node
        if node.op_type == "Conv" and node.name.startswith(("Conv_1_", "Conv_3_"))
    ]
    assert [s["pads"] for s in strided] == [[0, 0, 1, 1], [0, 0, 1, 1]]


def test_reference_resize_is_asymmetric() -> None:
    x = np.arange(3, dtype=np.float32).reshape(1, 1, 3, 1)
    np.testing.assert_allclose(reference.resize_bilinear_tf1(x)[0, 0, :, 0], [0, 0.5, 1, 1.5, 2, 2])


def test_engine_keeps_any_size_by_reflect_padding_and_cropping(
    engine: Cartoonizer, tf_weights: dict[str, np.ndarray]
) -> None:
    rgb = np.random.default_rng(5).integers(0, 256, (13, 21, 3), dtype=np.uint8)
    out = engine.cartoonize(rgb)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    padded = np.pad(rgb[None], ((0, 0), (0, 3), (0, 3), (0, 0)), mode="reflect")
    bgr = padded[..., ::-1].astype(np.float32) / 127.5 - 1.0
    expected = reference.cartoonize(bgr, tf_weights)[0, :13, :21, ::-1]
    expected_u8 = np.clip((expected + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    assert np.abs(out.astype(int) - expected_u8.astype(int)).max() <= 1


def test_engine_feeds_bgr_as_trained(engine: Cartoonizer, tf_weights: dict[str, np.ndarray]) -> None:
    rgb = np.random.default_rng(9).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
    bgr = rgb[..., ::-1].astype(np.float32) / 127.5 - 1.0
    expected = from_model_output(reference.cartoonize(bgr, tf_weights).transpose(0, 3, 1, 2))
    swapped = from_model_output(
        reference.cartoonize(rgb.astype(np.float32) / 127.5 - 1.0, tf_weights)[..., ::-1].transpose(0, 3, 1, 2)
    )
    out = engine.cartoonize(rgb)
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1
    assert np.abs(out.astype(int) - swapped.astype(int)).max() > 8  # RGB fed as-is would differ


def test_pre_and_post_processing_round_trip() -> None:
    frames = np.random.default_rng(1).integers(0, 256, (2, 9, 10, 3), dtype=np.uint8)
    padded, height, width = pad_to_multiple(frames)
    assert padded.shape == (2, 16, 16, 3) and (height, width) == (9, 10)
    np.testing.assert_array_equal(padded[:, 9, :10], frames[:, 7])  # reflected, not zero or edge
    model_input = to_model_input(frames)
    assert model_input.shape == (2, 3, 9, 10) and model_input.min() >= -1 and model_input.max() <= 1
    np.testing.assert_array_equal(from_model_output(model_input), frames)


def test_bring_your_own_model_must_follow_the_contract(tmp_path: Path) -> None:
    from runtime.common.errors import ConfigError

    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    graph = onnx.helper.make_graph(
        [node],
        "wrong",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    path = tmp_path / "other.onnx"
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8)
    onnx.save_model(model, str(path))
    with pytest.raises(ConfigError, match="'images'"):
        Cartoonizer(path, device="cpu")


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider'")
def test_a_gpu_host_whose_cuda_provider_fails_refuses_instead_of_running_on_cpu(
    model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.cartoonizer import engine as engine_module
    from runtime.common.errors import ConfigError

    real_exists = Path.exists
    monkeypatch.setattr(
        engine_module.ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    monkeypatch.setattr(Path, "exists", lambda self: True if str(self) == "/dev/nvidiactl" else real_exists(self))
    with pytest.raises(ConfigError, match="refusing to run a GPU job on the CPU"):
        Cartoonizer(model_path, device="auto")
    monkeypatch.setattr(Path, "exists", lambda self: False if str(self) == "/dev/nvidiactl" else real_exists(self))
    assert Cartoonizer(model_path, device="auto").device == "cpu"  # no GPU here: CPU is the right answer
