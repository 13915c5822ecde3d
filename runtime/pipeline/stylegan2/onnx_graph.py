"""The generator in the graph form onnxruntime's CPU kernels run fastest: same images, fewer memory-bound nodes.

Only the ONNX export uses this module. ExportGenerator reads a Generator's parameters and buffers (it holds no
copies) and renders with the constant noise, like ContractGenerator, but:

- each polyphase convolution of the up-sampling conv pads its own input (one ONNX Conv with asymmetric pads):
  no Pad + Slice copies, and the four phase convolutions share one NCHWc reorder of their input;
- the blurs (after it, and of the skip image) are padded depthwise Convs (no Pad in front);
- the leaky ReLU's sqrt(2) gain is folded into the style multipliers of the layers that read its output;
- toRGB is a batched MatMul with per-sample modulated [3, C] weights (no full-size style Mul, and no NCHWc
  convolution padded from 3 to 16 output channels).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .networks import Generator, ModulatedConv2d, SynthesisBlock, SynthesisLayer, ToRGB, fp32_affine, upsample2x

SQRT2 = math.sqrt(2.0)


class _PaddedConv(torch.autograd.Function):
    """conv2d of x zero-padded by (left, right, top, bottom), exported as one ONNX Conv carrying those pads.

    torch's conv2d pads symmetrically only; F.pad in front of it exports as a Pad whose pads are computed from the
    input's rank at run time, which onnxruntime can neither fold into the Conv nor skip (one more copy per conv).
    """

    @staticmethod
    def forward(
        ctx: object, x: torch.Tensor, weight: torch.Tensor, pad: tuple[int, int, int, int], groups: int
    ) -> torch.Tensor:
        """Eager value: pad, then convolve."""
        return F.conv2d(F.pad(x, list(pad)), weight, groups=groups)

    @staticmethod
    def symbolic(
        g: Any, x: torch.Value, weight: torch.Value, pad: tuple[int, int, int, int], groups: int
    ) -> torch.Value:
        """ONNX Conv; its pads list the begin values (top, left), then the end values (bottom, right)."""
        left, right, top, bottom = pad
        kernel = weight.type().sizes()[2:]  # type: ignore[attr-defined]
        conv: torch.Value = g.op(
            "Conv", x, weight, pads_i=[top, left, bottom, right], group_i=groups, kernel_shape_i=list(kernel)
        )
        return conv


def padded_conv(
    x: torch.Tensor, weight: torch.Tensor, pad: tuple[int, int, int, int], *, groups: int = 1
) -> torch.Tensor:
    """conv2d(F.pad(x, pad), weight, groups=groups), exported as a single Conv node."""
    out: torch.Tensor = _PaddedConv.apply(x, weight, pad, groups)  # type: ignore[no-untyped-call]
    return out


def phase_conv_transpose(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """networks.conv_transpose_stride2(polyphase=True) with each phase convolution padding its own input.

    Even output rows/columns take taps [2, 0] over (x[i - 1], x[i]), so they pad 1 before and 1 after; odd ones
    take tap 1 over x[i] and pad 1 after only. Returns [N, out, 2H + 2, 2W + 2], the last row and column zero.
    """
    even, odd = [2, 0], [1]
    ee = padded_conv(x, weight[:, :, even][:, :, :, even], (1, 1, 1, 1))
    eo = padded_conv(x, weight[:, :, even][:, :, :, odd], (0, 1, 1, 1))
    oe = padded_conv(x, weight[:, :, odd][:, :, :, even], (1, 1, 0, 1))
    oo = padded_conv(x, weight[:, :, odd][:, :, :, odd], (0, 1, 0, 1))
    # Stacking measured faster in onnxruntime than DepthToSpace or Transpose-based interleaves (docs/benchmarks.md).
    t = torch.stack([torch.stack([ee, eo], dim=-1), torch.stack([oe, oo], dim=-1)], dim=3)  # [N, out, H+1, 2, W+1, 2]
    n, c, h, _, w, _ = t.shape
    return t.reshape(n, c, 2 * h, 2 * w)


def blur(x: torch.Tensor, kernel: torch.Tensor, *, pad: tuple[int, int, int, int], gain: float) -> torch.Tensor:
    """networks.upfirdn2d without resampling: the depthwise (kernel * gain) convolution as one padded Conv."""
    channels = int(x.shape[1])
    weight = (kernel * gain).flip([0, 1])[None, None].expand(channels, 1, *kernel.shape).contiguous()
    return padded_conv(x, weight, pad, groups=channels)


def upsample_image(img: torch.Tensor, kernel: torch.Tensor | None) -> torch.Tensor:
    """networks.upsample2x of the skip image: zero insertion, then the blur as one padded Conv (no Pad)."""
    if kernel is None:
        return upsample2x(img, None)
    n, c, h, w = img.shape
    zeros = F.pad(img.reshape(n, c, h, 1, w, 1), [0, 1, 0, 0, 0, 1]).reshape(n, c, 2 * h, 2 * w)
    return blur(zeros, kernel, pad=(2, 1, 2, 1), gain=4.0)


class ExportSynthesis(nn.Module):
    """SynthesisNetwork.forward(ws, noise_mode='const'), in the graph form described in the module docstring."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator

    @staticmethod
    def _modulated(conv: ModulatedConv2d, x: torch.Tensor, styles: torch.Tensor, *, in_gain: float) -> torch.Tensor:
        """Convolve x scaled by styles * in_gain (in_gain: the sqrt(2) the producing layer left out)."""
        weight = conv.weight * conv.weight_gain
        x = x * (styles * in_gain if in_gain != 1.0 else styles)[:, :, None, None]
        if conv.upsample and conv.kernel is not None:
            # Transposed conv + blur: the zero last row/column of the phases is the blur's trailing padding.
            return blur(phase_conv_transpose(x, weight), conv.kernel, pad=(1, 0, 1, 0), gain=4.0)
        if conv.upsample:
            return F.conv2d(upsample2x(x, None), weight, padding=conv.padding)
        return F.conv2d(x, weight, padding=conv.padding)

    def _layer(self, layer: SynthesisLayer, x: torch.Tensor, w: torch.Tensor, *, in_gain: float) -> torch.Tensor:
        """Modulated conv, demodulation, constant noise, bias, leaky ReLU without its sqrt(2) gain."""
        conv = layer.conv
        styles = fp32_affine(conv.affine, w)
        x = self._modulated(conv, x, styles, in_gain=in_gain)
        weight = conv.weight * conv.weight_gain
        dcoefs = (styles.square() @ weight.square().sum(dim=(2, 3)).T + 1e-8).rsqrt()
        x = x * dcoefs[:, :, None, None] + layer.noise_const * layer.noise_strength
        return F.leaky_relu(x + layer.bias[None, :, None, None], 0.2)

    @staticmethod
    def _torgb(torgb: ToRGB, x: torch.Tensor, w: torch.Tensor, *, in_gain: float) -> torch.Tensor:
        """Modulated 1x1 conv to RGB as [N, 3, C] @ [N, C, H*W]."""
        conv = torgb.conv
        styles = fp32_affine(conv.affine, w)
        weight = conv.weight[:, :, 0, 0] * (conv.weight_gain * in_gain)
        n, c, h, wd = x.shape
        rgb = (weight[None] * styles[:, None, :]) @ x.reshape(n, c, h * wd)
        return rgb.reshape(n, 3, h, wd) + torgb.bias[None, :, None, None]

    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        """Images [N, 3, R, R] from per-layer styles [N, num_ws, w_dim]."""
        x: torch.Tensor | None = None
        img: torch.Tensor | None = None
        start = 0
        for block in self.generator.synthesis.blocks:
            assert isinstance(block, SynthesisBlock)
            bws = ws[:, start : start + block.num_ws]
            start += block.num_ws - 1
            if block.conv0 is None:
                assert block.const is not None
                x = block.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
                x = self._layer(block.conv1, x, bws[:, 0], in_gain=1.0)
            else:
                assert x is not None
                x = self._layer(block.conv0, x, bws[:, 0], in_gain=SQRT2)
                x = self._layer(block.conv1, x, bws[:, 1], in_gain=SQRT2)
            rgb = self._torgb(block.torgb, x, bws[:, block.num_ws - 1], in_gain=SQRT2)
            img = rgb if img is None else upsample_image(img, block.kernel) + rgb
        assert img is not None
        return img


class ExportGenerator(nn.Module):
    """Contract-shaped generator for the export: latents [N, z_dim] and truncation [1] in, images in [-1, 1] out."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator
        self.synthesis = ExportSynthesis(generator)

    def forward(self, latents: torch.Tensor, truncation: torch.Tensor) -> torch.Tensor:
        """Render with the fixed noise buffers so the same latent always gives the same image."""
        ws = self.generator.truncate(self.generator.styles(latents), truncation)
        images: torch.Tensor = self.synthesis(ws)
        return images.clamp(-1.0, 1.0)
