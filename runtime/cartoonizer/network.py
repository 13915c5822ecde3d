"""The White-box Cartoonization generator as data: its 18 convolutions, their TF variable names, and its constants.

Names follow TF-Slim's defaults inside the `generator` variable scope, as the public checkpoint stores them:
unnamed `slim.convolution2d` layers become `Conv`, `Conv_1`, ... `Conv_9` in creation order, and the residual
blocks `block_<i>/conv1` and `block_<i>/conv2` (the frozen graphs people publish end in `generator/Conv_9/BiasAdd`).
Each conv has `weights` (kernel, HWIO as TF stores it) and `biases`. Where a checkpoint uses another outer scope
the converter strips it; the per-layer names and shapes must match.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# The ONNX model's input and output names (onnx_model.py builds it; engine.py checks and runs it without onnx).
INPUT_NAME = "images"
OUTPUT_NAME = "cartoons"

SCOPE = "generator"
LEAKY_SLOPE = 0.2
GUIDED_RADIUS = 1
GUIDED_EPS = 5e-3
# Two stride-2 stages and two x2 upsamplings; the original also needed multiples of 8.
SIZE_MULTIPLE = 8
CHANNELS = 32
RES_BLOCKS = 4


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """One convolution of the generator: its TF scope, kernel size, channels and stride."""

    scope: str
    kernel: int
    cin: int
    cout: int
    stride: int = 1

    @property
    def weights(self) -> str:
        """TF variable name of the kernel."""
        return f"{self.scope}/weights"

    @property
    def biases(self) -> str:
        """TF variable name of the bias."""
        return f"{self.scope}/biases"

    @property
    def kernel_shape(self) -> tuple[int, int, int, int]:
        """Kernel shape as TF stores it (height, width, in, out)."""
        return (self.kernel, self.kernel, self.cin, self.cout)


def _layers() -> tuple[ConvSpec, ...]:
    c = CHANNELS
    encoder = (
        ConvSpec("Conv", 7, 3, c),  # x0 (skip of the last upsampling)
        ConvSpec("Conv_1", 3, c, c, stride=2),
        ConvSpec("Conv_2", 3, c, 2 * c),  # x1 (skip of the first upsampling)
        ConvSpec("Conv_3", 3, 2 * c, 2 * c, stride=2),
        ConvSpec("Conv_4", 3, 2 * c, 4 * c),
    )
    blocks = tuple(
        ConvSpec(f"block_{index}/{name}", 3, 4 * c, 4 * c) for index in range(RES_BLOCKS) for name in ("conv1", "conv2")
    )
    decoder = (
        ConvSpec("Conv_5", 3, 4 * c, 2 * c),
        ConvSpec("Conv_6", 3, 2 * c, 2 * c),  # after upsampling + x1
        ConvSpec("Conv_7", 3, 2 * c, c),
        ConvSpec("Conv_8", 3, c, c),  # after upsampling + x0
        ConvSpec("Conv_9", 7, c, 3),
    )
    return encoder + blocks + decoder


LAYERS: tuple[ConvSpec, ...] = _layers()
BY_SCOPE = {layer.scope: layer for layer in LAYERS}


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Every variable the generator needs (relative to SCOPE), with its TF shape: 36 tensors."""
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in LAYERS:
        shapes[layer.weights] = layer.kernel_shape
        shapes[layer.biases] = (layer.cout,)
    return shapes


def parameter_count() -> int:
    """Number of scalars in the generator (about 1.47 M)."""
    return sum(int(np.prod(shape)) for shape in expected_shapes().values())


def random_weights(*, seed: int = 0) -> dict[str, np.ndarray]:
    """Random TF-layout weights with the real shapes, scaled so activations neither vanish nor saturate.

    For demos, tests and benchmarks (speed does not depend on the values); the output looks like coloured noise.
    """
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for layer in LAYERS:
        fan_in = layer.kernel * layer.kernel * layer.cin
        scale = np.sqrt(1.0 / fan_in) * (0.3 if layer.scope.endswith("conv2") else 1.0)
        weights[layer.weights] = (rng.standard_normal(layer.kernel_shape) * scale).astype(np.float32)
        weights[layer.biases] = (rng.standard_normal(layer.cout) * 0.05).astype(np.float32)
    return weights
