"""Build the cartoonizer ONNX model (generator + guided filter) node by node from TF-layout weights.

Built with onnx.helper rather than traced from a framework, so each TF semantic is stated exactly: "SAME"
padding as explicit Conv pads (stride-2 convs pad only bottom/right: (0, 1, 0, 1)), TF1 `resize_bilinear` as
Resize(linear, coordinate_transformation_mode="asymmetric"), and the box means of the guided filter as
AveragePool without padded pixels. The I/O contract (also for a model you bring yourself):
  input  `images`   float32 [N, 3, H, W], BGR, values in [-1, 1], H and W multiples of 8
  output `cartoons` float32 [N, 3, H, W], BGR, values in [-1, 1]
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .network import (
    GUIDED_EPS,
    GUIDED_RADIUS,
    INPUT_NAME,
    LAYERS,
    LEAKY_SLOPE,
    OUTPUT_NAME,
    RES_BLOCKS,
    SCOPE,
    ConvSpec,
    expected_shapes,
)

OPSET = 17
IR_VERSION = 8  # readable by every onnxruntime >= 1.10


def _same_pads(spec: ConvSpec) -> list[int]:
    """ONNX pads [top, left, bottom, right]; valid for inputs whose sides are multiples of 8 (always padded so)."""
    if spec.stride == 2:
        return [0, 0, 1, 1]  # TF puts the odd padding pixel at the end; for even sizes that is all of it
    half = spec.kernel // 2
    return [half, half, half, half]


def check_weights(weights: Mapping[str, np.ndarray], *, scope: str = SCOPE) -> None:
    """Raise ValueError naming every missing or mis-shaped tensor."""
    problems = []
    for name, shape in expected_shapes().items():
        value = weights.get(f"{scope}/{name}")
        if value is None:
            problems.append(f"{scope}/{name} missing")
        elif tuple(value.shape) != shape:
            problems.append(f"{scope}/{name} has shape {tuple(value.shape)}, expected {shape}")
    if problems:
        raise ValueError("; ".join(problems))


def build_model(
    weights: Mapping[str, np.ndarray], *, scope: str = SCOPE, metadata: Mapping[str, str] | None = None
) -> onnx.ModelProto:
    """The full model from TF-layout weights (keys `<scope>/<layer>/weights|biases`), checked with onnx.checker."""
    check_weights(weights, scope=scope)
    nodes: list[onnx.NodeProto] = []
    initializers: list[TensorProto] = []
    counter = iter(range(10_000))

    def name(prefix: str) -> str:
        return f"{prefix}_{next(counter)}"

    def conv(spec: ConvSpec, value: str, *, activate: bool) -> str:
        kernel = np.transpose(weights[f"{scope}/{spec.weights}"], (3, 2, 0, 1)).astype(np.float32)  # HWIO -> OIHW
        bias = np.asarray(weights[f"{scope}/{spec.biases}"], dtype=np.float32)
        w_name, b_name = f"{SCOPE}/{spec.weights}", f"{SCOPE}/{spec.biases}"
        initializers.extend([numpy_helper.from_array(kernel, w_name), numpy_helper.from_array(bias, b_name)])
        out = name(spec.scope.replace("/", "_"))
        nodes.append(
            helper.make_node(
                "Conv",
                [value, w_name, b_name],
                [out],
                name=out,
                kernel_shape=[spec.kernel, spec.kernel],
                strides=[spec.stride, spec.stride],
                pads=_same_pads(spec),
            )
        )
        if not activate:
            return out
        activated = name("lrelu")
        nodes.append(helper.make_node("LeakyRelu", [out], [activated], name=activated, alpha=LEAKY_SLOPE))
        return activated

    def binary(op: str, left: str, right: str) -> str:
        out = name(op.lower())
        nodes.append(helper.make_node(op, [left, right], [out], name=out))
        return out

    def upsample(value: str) -> str:
        out = name("resize")
        nodes.append(
            helper.make_node(
                "Resize",
                [value, "", "upsample_scales"],
                [out],
                name=out,
                mode="linear",
                coordinate_transformation_mode="asymmetric",
            )
        )
        return out

    def box_mean(value: str) -> str:
        out = name("boxmean")
        size = 2 * GUIDED_RADIUS + 1
        nodes.append(
            helper.make_node(
                "AveragePool",
                [value],
                [out],
                name=out,
                kernel_shape=[size, size],
                pads=[GUIDED_RADIUS] * 4,
                count_include_pad=0,
            )
        )
        return out

    initializers.append(numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "upsample_scales"))
    initializers.append(numpy_helper.from_array(np.array(GUIDED_EPS, dtype=np.float32), "guided_eps"))
    initializers.append(numpy_helper.from_array(np.array(-1.0, dtype=np.float32), "clip_min"))
    initializers.append(numpy_helper.from_array(np.array(1.0, dtype=np.float32), "clip_max"))

    layers = iter(LAYERS)
    x = INPUT_NAME
    x0 = conv(next(layers), x, activate=True)
    x1 = conv(next(layers), x0, activate=True)
    x1 = conv(next(layers), x1, activate=True)
    x2 = conv(next(layers), x1, activate=True)
    x2 = conv(next(layers), x2, activate=True)
    for _ in range(RES_BLOCKS):
        inner = conv(next(layers), x2, activate=True)
        x2 = binary("Add", conv(next(layers), inner, activate=False), x2)
    x2 = conv(next(layers), x2, activate=True)
    x3 = conv(next(layers), binary("Add", upsample(x2), x1), activate=True)
    x3 = conv(next(layers), x3, activate=True)
    x4 = conv(next(layers), binary("Add", upsample(x3), x0), activate=True)
    raw = conv(next(layers), x4, activate=False)

    # Guided filter (radius 1, eps 5e-3), each output channel guided by the same input channel.
    mean_i, mean_p = box_mean(x), box_mean(raw)
    cov_ip = binary("Sub", box_mean(binary("Mul", x, raw)), binary("Mul", mean_i, mean_p))
    var_i = binary("Sub", box_mean(binary("Mul", x, x)), binary("Mul", mean_i, mean_i))
    a = binary("Div", cov_ip, binary("Add", var_i, "guided_eps"))
    b = binary("Sub", mean_p, binary("Mul", a, mean_i))
    filtered = binary("Add", binary("Mul", box_mean(a), x), box_mean(b))
    nodes.append(helper.make_node("Clip", [filtered, "clip_min", "clip_max"], [OUTPUT_NAME], name="clip"))

    shape: list[str | int | None] = ["N", 3, "H", "W"]
    graph = helper.make_graph(
        nodes,
        "white_box_cartoonization",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, shape)],
        initializer=initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="genart-cartoonizer", ir_version=IR_VERSION
    )
    helper.set_model_props(model, dict(metadata or {}))
    onnx.checker.check_model(model, full_check=True)
    return model
