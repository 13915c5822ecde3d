"""The generator in the graph form onnxruntime's CPU kernels run fastest: same images, fewer memory-bound nodes.

Only the ONNX export uses this module. ExportGenerator reads a Generator's parameters and buffers (it holds no
copies) and renders with the constant noise, like ContractGenerator, but:

- each polyphase convolution of the up-sampling conv pads its own input (one ONNX Conv with asymmetric pads):
  no Pad + Slice copies, and the four phase convolutions share one NCHWc reorder of their input;
- the blurs (after it, and of the skip image) are padded depthwise Convs (no Pad in front);
- demodulation is deferred: as d > 0, lrelu(c * d + noise + b) = d * lrelu(c + noise / d + b / d), so each
  layer adds noise / d and b / d in one com.microsoft FusedConv that accumulates into the conv output (a 1x1
  conv of the constant (noise, ones) image with per-sample weights) and then applies LeakyRelu: two passes
  over the activations instead of four; d, with the leaky ReLU's sqrt(2) gain, joins the style multipliers of
  the layers that read that output;
- toRGB is a batched MatMul with per-sample modulated [3, C] weights (no full-size style Mul, and no NCHWc
  convolution padded from 3 to 16 output channels);
- the 3x3 convolutions of many channels on few pixels (`winograd.winograd_pays`) run as Winograd F(4x4, 3x3):
  2.25 multiply-adds per output and input channel instead of 9 (winograd.py).
"""

from __future__ import annotations

from typing import Any

import onnx
import onnx.numpy_helper
import torch
import torch.nn.functional as F
from torch import nn

from . import winograd
from .networks import (
    LRELU_SLOPE,
    SQRT2,
    Generator,
    ModulatedConv2d,
    SynthesisBlock,
    SynthesisLayer,
    ToRGB,
    fp32_affine,
    upsample2x,
)

# opset of onnxruntime's contrib domain, for FusedConv
CONTRIB_OPSETS = {"com.microsoft": 1}


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


class _NoiseBiasLeakyRelu(torch.autograd.Function):
    """leaky_relu(z + noise * scale + bias, 0.2) with per-sample [N, C] scale and bias: a FusedConv, then LeakyRelu.

    The FusedConv is a 1x1 conv of the constant [1, 2, H, W] image (noise, ones) with [N * C, 2, 1, 1] weights
    (scale, bias) whose "sum" input is z viewed as [1, N * C, H, W]: onnxruntime accumulates into z's buffer on
    every thread. Its own bias and activation would run in a single-threaded pass, hence neither is used here.
    """

    @staticmethod
    def forward(
        ctx: object, z: torch.Tensor, noise: torch.Tensor, pairs: torch.Tensor, chw: tuple[int, ...]
    ) -> torch.Tensor:
        """Eager value; pairs [N, C, 2] holds (scale, bias), chw z's channels, height and width."""
        scale, bias = pairs[..., 0, None, None], pairs[..., 1, None, None]
        return F.leaky_relu(z + noise * scale + bias, LRELU_SLOPE)

    @staticmethod
    def symbolic(g: Any, z: torch.Value, noise: torch.Value, pairs: torch.Value, chw: tuple[int, ...]) -> torch.Value:
        """Reshape to one image of N * C channels, FusedConv, reshape back, LeakyRelu."""
        channels, height, width = chw

        def const(*values: int) -> torch.Value:
            return g.op("Constant", value_t=torch.tensor(values, dtype=torch.int64))  # type: ignore[no-any-return]

        ones = g.op("ConstantOfShape", g.op("Shape", noise), value_t=torch.ones(1))
        image = g.op("Concat", noise, ones, axis_i=1)  # folded to a constant when onnxruntime loads the model
        absent = g.op("prim::Constant")  # an empty input name: FusedConv without its own bias
        absent.setType(torch._C.OptionalType.ofTensor())
        out = g.op(
            "com.microsoft::FusedConv",
            image,
            g.op("Reshape", pairs, const(-1, 2, 1, 1)),
            absent,
            g.op("Reshape", z, const(1, -1, height, width)),
            kernel_shape_i=[1, 1],
        )
        back = g.op("Reshape", out, const(-1, channels, height, width))
        result: torch.Value = g.op("LeakyRelu", back, alpha_f=LRELU_SLOPE)
        result.setType(z.type())
        return result


def noise_bias_leaky_relu(
    z: torch.Tensor, noise: torch.Tensor, *, scale: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """leaky_relu(z + noise * scale + bias, 0.2); noise [1, 1, H, W], scale and bias [N, C]."""
    chw = tuple(int(size) for size in z.shape[1:])
    pairs = torch.stack([scale, bias], dim=2)
    out: torch.Tensor = _NoiseBiasLeakyRelu.apply(z, noise, pairs, chw)  # type: ignore[no-untyped-call]
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
    c, h, w = (int(size) for size in (t.shape[1], t.shape[2], t.shape[4]))
    return t.reshape(-1, c, 2 * h, 2 * w)


def blur(x: torch.Tensor, kernel: torch.Tensor, *, pad: tuple[int, int, int, int], gain: float) -> torch.Tensor:
    """networks.upfirdn2d without resampling: the depthwise (kernel * gain) convolution as one padded Conv."""
    channels = int(x.shape[1])
    weight = (kernel * gain).flip([0, 1])[None, None].expand(channels, 1, *kernel.shape).contiguous()
    return padded_conv(x, weight, pad, groups=channels)


def upsample_image(img: torch.Tensor, kernel: torch.Tensor | None) -> torch.Tensor:
    """networks.upsample2x of the skip image: zero insertion, then the blur as one padded Conv (no Pad)."""
    if kernel is None:
        return upsample2x(img, None)
    c, h, w = (int(size) for size in img.shape[1:])
    zeros = F.pad(img.reshape(-1, c, h, 1, w, 1), [0, 1, 0, 0, 0, 1]).reshape(-1, c, 2 * h, 2 * w)
    return blur(zeros, kernel, pad=(2, 1, 2, 1), gain=4.0)


class ExportSynthesis(nn.Module):
    """SynthesisNetwork.forward(ws, noise_mode='const'), in the graph form described in the module docstring."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator

    @staticmethod
    def _modulated(
        conv: ModulatedConv2d, x: torch.Tensor, weight: torch.Tensor, multipliers: torch.Tensor
    ) -> torch.Tensor:
        """Convolve x scaled by multipliers (styles times what the producing layer left out) with weight."""
        x = x * multipliers[:, :, None, None]
        if conv.upsample and conv.kernel is not None:
            # Transposed conv + blur: the zero last row/column of the phases is the blur's trailing padding.
            return blur(phase_conv_transpose(x, weight), conv.kernel, pad=(1, 0, 1, 0), gain=4.0)
        if conv.upsample:
            return F.conv2d(upsample2x(x, None), weight, padding=conv.padding)
        channels, resolution = int(x.shape[1]), int(x.shape[2])
        if weight.shape[-1] == 3 and winograd.winograd_pays(channels=channels, resolution=resolution):
            return winograd.winograd_conv3x3(x, weight)
        return F.conv2d(x, weight, padding=conv.padding)

    def _layer(
        self, layer: SynthesisLayer, x: torch.Tensor, w: torch.Tensor, *, carry: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer's output divided by its demodulation d, and d times sqrt(2) for the layers that read it.

        carry is what the producing layer left out of x ([N, C_in]; None for the constant input).
        """
        conv = layer.conv
        styles = fp32_affine(conv.affine, w)
        weight = conv.weight * conv.weight_gain
        x = self._modulated(conv, x, weight, styles if carry is None else styles * carry)
        energy = styles.square() @ weight.square().sum(dim=(2, 3)).T + 1e-8  # demodulation d = energy ** -0.5
        inverse = energy.sqrt()
        x = noise_bias_leaky_relu(
            x, layer.noise_const, scale=layer.noise_strength * inverse, bias=layer.bias[None, :] * inverse
        )
        return x, energy.rsqrt() * SQRT2

    @staticmethod
    def _torgb(torgb: ToRGB, x: torch.Tensor, w: torch.Tensor, *, carry: torch.Tensor) -> torch.Tensor:
        """Modulated 1x1 conv to RGB as [N, 3, C] @ [N, C, H*W]; carry [N, C] is what x's producer left out."""
        conv = torgb.conv
        styles = fp32_affine(conv.affine, w) * carry
        weight = conv.weight[:, :, 0, 0] * conv.weight_gain
        c, h, wd = (int(size) for size in x.shape[1:])
        rgb = (weight[None] * styles[:, None, :]) @ x.reshape(-1, c, h * wd)
        return rgb.reshape(-1, 3, h, wd) + torgb.bias[None, :, None, None]

    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        """Images [N, 3, R, R] from per-layer styles [N, num_ws, w_dim]."""
        x: torch.Tensor | None = None
        carry: torch.Tensor | None = None
        img: torch.Tensor | None = None
        start = 0
        for block in self.generator.synthesis.blocks:
            assert isinstance(block, SynthesisBlock)
            bws = ws[:, start : start + block.num_ws]
            start += block.num_ws - 1
            if block.conv0 is None:
                assert block.const is not None
                x = block.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
                x, carry = self._layer(block.conv1, x, bws[:, 0], carry=None)
            else:
                assert x is not None
                x, carry = self._layer(block.conv0, x, bws[:, 0], carry=carry)
                x, carry = self._layer(block.conv1, x, bws[:, 1], carry=carry)
            rgb = self._torgb(block.torgb, x, bws[:, block.num_ws - 1], carry=carry)
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


def name_fused_dims(model: onnx.ModelProto) -> int:
    """Name the dims around each FusedConv so onnxruntime runs it and the LeakyRelu after it in place.

    onnxruntime reuses an input's buffer for an output only when it can prove both shapes equal; the reshapes to
    [1, N * C, H, W] and back leave unknown dims it cannot compare, so without names each FusedConv copies its
    "sum" input first (a single-threaded pass into fresh pages). Returns how many FusedConv nodes were named.
    """
    (latents, *_) = model.graph.input
    batch = latents.type.tensor_type.shape.dim[0].dim_param or "batch"
    producers = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def constant(name: str) -> list[int]:
        (attr,) = producers[name].attribute
        return [int(v) for v in onnx.numpy_helper.to_array(attr.t).ravel()]

    named = 0
    for node in [n for n in model.graph.node if n.op_type == "FusedConv"]:
        view = producers[node.input[3]]
        (back,) = consumers[node.output[0]]
        (act,) = consumers[back.output[0]]
        _, _, height, width = constant(view.input[1])
        _, channels, _, _ = constant(back.input[1])
        flat: list[int | str] = [1, f"{batch}*{channels}", height, width]
        full: list[int | str] = [batch, channels, height, width]
        shapes = {view.output[0]: flat, node.output[0]: flat, back.output[0]: full, act.output[0]: full}
        for name, dims in shapes.items():
            model.graph.value_info.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, dims))
        named += 1
    return named
