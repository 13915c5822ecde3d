"""A 3x3 convolution by Winograd's minimal filtering F(4x4, 3x3): 36 multiplies per 4x4 outputs instead of 144.

Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks" (2016), with the interpolation points
0, 1, -1, 2, -2 and infinity. For a 6x6 input tile d and a 3x3 filter g, the 4x4 tile of the cross-correlation
(what conv2d computes) is A^T [(G g G^T) * (B^T d B)] A. Only the ONNX export uses it (onnx_graph.py), for the
layers where onnxruntime's CPU kernels run it faster than the direct convolution (`winograd_pays`):

- the input transform B^T d B is a grouped Conv (stride 4, one 6x6 kernel per product) of the padded input;
- the 36 products are one batched MatMul with the transformed filters G g G^T, which onnxruntime folds into
  constants when it loads the model (the file keeps the 3x3 weights);
- the output transform A^T m A is a grouped ConvTranspose (stride 4, 4x4): it also writes the tiles in place.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

TILE = 4  # output tile side; the input tile is TILE + 2
INPUT_TRANSFORM = np.array(  # B^T
    [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ],
    dtype=np.float64,
)
FILTER_TRANSFORM = np.array(  # G
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ],
    dtype=np.float64,
)
OUTPUT_TRANSFORM = np.array(  # A^T
    [
        [1, 1, 1, 1, 1, 0],
        [0, 1, -1, 2, -2, 0],
        [0, 1, 1, 4, 4, 0],
        [0, 1, -1, 8, -8, 1],
    ],
    dtype=np.float64,
)


def winograd_pays(*, channels: int, resolution: int) -> bool:
    """Whether F(4x4, 3x3) beats onnxruntime's direct CPU convolution for a channels -> channels layer.

    Measured per layer (docs/benchmarks.md): 1.3-1.6x faster at 512 channels on 32 and 64 px and 256 on 64 px;
    slower at 256 on 128 px and 128 on 128 px (its transformed tensors are 2.25x the input and memory-bound),
    and at 16 px and below (per-operator overhead on 16 tiles or fewer).
    """
    return resolution >= 32 and channels >= 4 * resolution


# One kernel per product: product (u, v) reads input tile pixel (p, q) with B^T[u, p] B^T[v, q] and adds into
# output tile pixel (r, s) with A^T[r, u] A^T[s, v].
INPUT_KERNELS = np.einsum("up,vq->uvpq", INPUT_TRANSFORM, INPUT_TRANSFORM).reshape(36, 1, TILE + 2, TILE + 2)
OUTPUT_KERNELS = np.einsum("ru,sv->uvrs", OUTPUT_TRANSFORM, OUTPUT_TRANSFORM).reshape(36, 1, TILE, TILE)


def _per_channel(kernels: np.ndarray, groups: int, dtype: torch.dtype) -> torch.Tensor:
    """The 36 transform kernels repeated for each of `groups` channels, as a grouped convolution's weight.

    Built outside the traced graph so the exporter sees a constant of known shape (it cannot type a Conv whose
    weight comes from a Tile).
    """
    return torch.tensor(np.tile(kernels, (groups, 1, 1, 1)), dtype=dtype)


def transformed_filters(weight: torch.Tensor) -> torch.Tensor:
    """G g G^T of each [out, in, 3, 3] filter, as [36, out, in] (one matrix per product)."""
    out_channels, in_channels = int(weight.shape[0]), int(weight.shape[1])
    kron = torch.tensor(np.kron(FILTER_TRANSFORM, FILTER_TRANSFORM), dtype=weight.dtype)  # [36, 9]
    flat = weight.permute(2, 3, 0, 1).reshape(9, out_channels * in_channels)
    return (kron @ flat).reshape(36, out_channels, in_channels)


def winograd_conv3x3(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """conv2d(x, weight, padding=1) for a [out, in, 3, 3] weight; x's height and width must be multiples of 4."""
    channels, height, width = (int(size) for size in x.shape[1:])
    out_channels = int(weight.shape[0])
    if tuple(weight.shape[1:]) != (channels, 3, 3):
        raise ValueError(f"weight must be [out, {channels}, 3, 3] for x of {channels} channels, got {weight.shape}")
    if height % TILE or width % TILE:
        raise ValueError(f"x's height and width must be multiples of {TILE}, got {height}x{width}")
    tiles = (height // TILE, width // TILE)
    products = F.conv2d(x, _per_channel(INPUT_KERNELS, channels, x.dtype), stride=TILE, padding=1, groups=channels)
    products = products.reshape(-1, channels, 36, tiles[0] * tiles[1]).transpose(1, 2)  # [N, 36, in, tiles]
    mixed = transformed_filters(weight) @ products  # [N, 36, out, tiles]
    mixed = mixed.transpose(1, 2).reshape(-1, out_channels * 36, *tiles)
    out: torch.Tensor = F.conv_transpose2d(
        mixed, _per_channel(OUTPUT_KERNELS, out_channels, x.dtype), stride=TILE, groups=out_channels
    )
    return out
