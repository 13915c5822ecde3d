"""StyleGAN2 generator (mapping + skip synthesis) and residual discriminator, with equalized learning rate."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig

NoiseMode = Literal["random", "const", "none"]
SQRT2 = math.sqrt(2.0)
LRELU_SLOPE = 0.2
SQRT_HALF = math.sqrt(0.5)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU scaled by sqrt(2) so activations keep unit magnitude."""
    return F.leaky_relu(x, LRELU_SLOPE) * SQRT2


def fp32_affine(layer: nn.Module, w: torch.Tensor) -> torch.Tensor:
    """Run a mapping/affine layer in float32 even under autocast (lr multiplier 0.01 weights lose bits in bf16)."""
    if not torch.is_autocast_enabled(w.device.type):
        out: torch.Tensor = layer(w)
        return out
    with torch.autocast(device_type=w.device.type, enabled=False):
        out = layer(w.float())
    return out


def fir_kernel() -> torch.Tensor:
    """The 4x4 blur: outer product of [1, 3, 3, 1] with itself, normalized to sum 1."""
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    kernel = torch.outer(taps, taps)
    return kernel / kernel.sum()


def upfirdn2d(
    x: torch.Tensor,
    kernel: torch.Tensor,
    *,
    up: int = 1,
    down: int = 1,
    pad: tuple[int, int, int, int] = (0, 0, 0, 0),
    gain: float = 1.0,
    channels: int | None = None,
) -> torch.Tensor:
    """Zero-insert up-sampling, zero padding (x0, x1, y0, y1), convolution with kernel * gain, decimation.

    Pass channels (a Python int) when tracing for ONNX, so the depthwise weight has a static shape.
    """
    n, c, h, w = x.shape
    c = c if channels is None else channels
    if up > 1:
        x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    if any(pad):
        x = F.pad(x, list(pad))
    # conv2d correlates; flipping the kernel makes it a true convolution (the [1, 3, 3, 1] blur is symmetric anyway).
    weight = (kernel * gain).flip([0, 1]).to(device=x.device, dtype=x.dtype)
    weight = weight[None, None].expand(c, 1, *kernel.shape)
    return F.conv2d(x, weight, stride=down, groups=c)


def conv_transpose_stride2(x: torch.Tensor, weight: torch.Tensor, *, polyphase: bool = False) -> torch.Tensor:
    """Stride-2 transposed conv of a [out, in, 3, 3] weight: T[p] = sum_a x[a] * w[p - 2a] per axis, size 2H + 1.

    polyphase=True computes the same sums as four small convolutions at the input resolution (even output rows
    take taps 0 and 2, odd rows tap 1) and interleaves them; onnxruntime's ConvTranspose spends most of its time
    in a single-threaded col2im, so the export uses this form. It returns 2H + 2 rows and columns, the last ones zero.
    """
    if not polyphase:
        return F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
    # Even output rows/cols take taps [2, 0] over (x[i - 1], x[i]); odd ones tap 1 over x[i]. One zero padding
    # serves all four phases: the odd phases start one row/column later in it (their last entry is zero).
    xp = F.pad(x, [1, 1, 1, 1])
    even, odd = [2, 0], [1]
    ee = F.conv2d(xp, weight[:, :, even][:, :, :, even])
    eo = F.conv2d(xp[:, :, :, 1:], weight[:, :, even][:, :, :, odd])
    oe = F.conv2d(xp[:, :, 1:, :], weight[:, :, odd][:, :, :, even])
    oo = F.conv2d(xp[:, :, 1:, 1:], weight[:, :, odd][:, :, :, odd])
    # Interleave by stacking (a Concat in ONNX; onnxruntime's DepthToSpace for pixel_shuffle measured slower).
    t = torch.stack([torch.stack([ee, eo], dim=-1), torch.stack([oe, oo], dim=-1)], dim=3)  # [N, out, H+1, 2, W+1, 2]
    n, c, h, _, w, _ = t.shape
    return t.reshape(n, c, 2 * h, 2 * w)


def upsample_conv2d(
    x: torch.Tensor, weight: torch.Tensor, kernel: torch.Tensor, *, polyphase: bool = False
) -> torch.Tensor:
    """StyleGAN2's up-sampling 3x3 conv: stride-2 transposed conv [.., 2H + 1], then blur (gain 4, zero pad 1) to 2H."""
    channels = int(weight.shape[0])
    if polyphase:  # its extra last row and column are zero, so they stand in for the blur's trailing padding
        return upfirdn2d(
            conv_transpose_stride2(x, weight, polyphase=True), kernel, pad=(1, 0, 1, 0), gain=4.0, channels=channels
        )
    return upfirdn2d(conv_transpose_stride2(x, weight), kernel, pad=(1, 1, 1, 1), gain=4.0, channels=channels)


def upsample2x(x: torch.Tensor, kernel: torch.Tensor | None) -> torch.Tensor:
    """2x up-sampling of the skip image: zero insertion + blur (gain 4, pad 2/1); kernel None is legacy bilinear."""
    if kernel is None:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
    return upfirdn2d(x, kernel, up=2, pad=(2, 1, 2, 1), gain=4.0, channels=3)


class EqualLinear(nn.Module):
    """Fully connected layer whose weights are scaled at run time (equalized learning rate)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.bias_gain = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the scaled affine map (and the activation if configured)."""
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return lrelu(x) if self.activation else x


class EqualConv2d(nn.Module):
    """Convolution with equalized learning rate, optional 2x down-sampling, optional activation.

    Down-sampling follows StyleGAN2: a 3x3 conv blurs at full resolution (zero pad 2) and then convolves with
    stride 2; a 1x1 conv blurs (zero pad 1) and keeps every other pixel, then convolves.
    """

    kernel: torch.Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        bias: bool = True,
        activation: bool = False,
        down: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2
        self.activation = activation
        self.down = down
        self.register_buffer("kernel", fir_kernel(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Down-sample (if configured) and convolve, add bias, activate."""
        weight = self.weight * self.weight_gain
        if not self.down:
            x = F.conv2d(x, weight, self.bias, padding=self.padding)
        elif self.weight.shape[-1] == 1:
            x = F.conv2d(upfirdn2d(x, self.kernel, down=2, pad=(1, 1, 1, 1)), weight, self.bias)
        else:
            p = self.padding + 1  # conv2d_resample pads (4 - 2 + 1) // 2 = 1 more on each side for down=2
            x = F.conv2d(upfirdn2d(x, self.kernel, pad=(p, p, p, p)), weight, self.bias, stride=2)
        return lrelu(x) if self.activation else x


class ModulatedConv2d(nn.Module):
    """Convolution whose input channels are scaled per sample by a style, then demodulated to unit variance.

    With upsample_mode "transposed" the up-sampling 3x3 conv is StyleGAN2's: a stride-2 transposed conv of the
    [out, in, 3, 3] weight (transposed to [in, out, 3, 3], not flipped), then the 4x4 blur with gain 4 and zero
    padding 1. "bilinear" is the legacy path (bilinear 2x, then the conv at the high resolution: 4x the MACs).
    """

    kernel: torch.Tensor | None

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        kernel_size: int,
        demodulate: bool = True,
        upsample: bool = False,
        upsample_mode: str = "transposed",
    ) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2
        self.demodulate = demodulate
        self.upsample = upsample
        if upsample and kernel_size != 3:
            raise ValueError("only 3x3 up-sampling convolutions are supported")
        self.register_buffer("kernel", fir_kernel() if upsample_mode == "transposed" else None, persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Modulate by the style from w [N, w_dim], convolve with shared weights, demodulate per output channel."""
        styles = fp32_affine(self.affine, w)
        weight = self.weight * self.weight_gain
        # Scaling activations instead of weights keeps one shared weight tensor (a plain conv), which
        # is faster than grouped per-sample convolutions and exports cleanly to ONNX. Scaling commutes
        # with the (linear) upsampling, so it happens first, at the lower resolution.
        x = x * styles.to(x.dtype)[:, :, None, None]
        if self.upsample and self.kernel is not None:
            # ONNX export: the same sums in the form onnxruntime runs faster (see conv_transpose_stride2).
            x = upsample_conv2d(x, weight, self.kernel, polyphase=torch.onnx.is_in_onnx_export())
        elif self.upsample:
            x = F.conv2d(upsample2x(x, None), weight, padding=self.padding)
        else:
            x = F.conv2d(x, weight, padding=self.padding)  # autocast (if on) casts both operands
        if self.demodulate:
            # sum_{i,k} (w[o,i,k] * s[n,i])^2 == s^2 @ (sum_k w^2)^T
            dcoefs = (styles.float().square() @ weight.square().sum(dim=(2, 3)).T + 1e-8).rsqrt()
            x = x * dcoefs.to(x.dtype)[:, :, None, None]
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv + per-pixel noise + bias + activation."""

    noise_const: torch.Tensor

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        upsample: bool,
        upsample_mode: str = "transposed",
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channels=in_channels,
            out_channels=out_channels,
            w_dim=w_dim,
            kernel_size=3,
            upsample=upsample,
            upsample_mode=upsample_mode,
        )
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.resolution = resolution

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: NoiseMode) -> torch.Tensor:
        """Apply the layer; noise_mode 'const' uses the fixed buffer so outputs are deterministic."""
        x = self.conv(x, w)
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype)
            x = x + noise * self.noise_strength.to(x.dtype)
        elif noise_mode == "const":
            x = x + (self.noise_const * self.noise_strength).to(x.dtype)
        return lrelu(x + self.bias.to(x.dtype)[None, :, None, None])


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB without demodulation."""

    def __init__(self, *, in_channels: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channels=in_channels, out_channels=3, w_dim=w_dim, kernel_size=1, demodulate=False
        )
        self.bias = nn.Parameter(torch.zeros(3))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Project features to an RGB residual."""
        rgb: torch.Tensor = self.conv(x, w)
        return rgb + self.bias.to(x.dtype)[None, :, None, None]


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: (constant or upsampling conv), conv, toRGB added to the upsampled image."""

    kernel: torch.Tensor | None

    def __init__(
        self, *, in_channels: int, out_channels: int, w_dim: int, resolution: int, upsample_mode: str = "transposed"
    ) -> None:
        super().__init__()
        self.const = nn.Parameter(torch.randn(out_channels, 4, 4)) if resolution == 4 else None
        self.conv0 = (
            None
            if resolution == 4
            else SynthesisLayer(
                in_channels=in_channels,
                out_channels=out_channels,
                w_dim=w_dim,
                resolution=resolution,
                upsample=True,
                upsample_mode=upsample_mode,
            )
        )
        self.conv1 = SynthesisLayer(
            in_channels=out_channels, out_channels=out_channels, w_dim=w_dim, resolution=resolution, upsample=False
        )
        self.torgb = ToRGB(in_channels=out_channels, w_dim=w_dim)
        self.num_ws = 2 if resolution == 4 else 3
        self.register_buffer("kernel", fir_kernel() if upsample_mode == "transposed" else None, persistent=False)

    def forward(
        self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, noise_mode: NoiseMode
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ws holds this block's num_ws styles [N, num_ws, w_dim]; returns the new features and image."""
        if self.conv0 is None:
            assert self.const is not None
            x = self.const.to(ws.dtype).unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        else:
            assert x is not None
            x = self.conv0(x, ws[:, 0], noise_mode)
        x = self.conv1(x, ws[:, self.num_ws - 2], noise_mode)
        rgb = self.torgb(x, ws[:, self.num_ws - 1])
        img = rgb if img is None else upsample2x(img, self.kernel) + rgb
        return x, img


class SynthesisNetwork(nn.Module):
    """Learned 4x4 constant grown to the target resolution; each block adds its RGB output to the image (skip)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        resolutions = [2**i for i in range(2, cfg.resolution.bit_length())]
        self.blocks = nn.ModuleList(
            SynthesisBlock(
                in_channels=cfg.channels(res // 2) if res > 4 else 0,
                out_channels=cfg.channels(res),
                w_dim=cfg.w_dim,
                resolution=res,
                upsample_mode=cfg.upsample,
            )
            for res in resolutions
        )
        # The toRGB of one block shares its style with the first conv of the next block.
        self.num_ws = 2 * len(resolutions)

    def forward(self, ws: torch.Tensor, noise_mode: NoiseMode = "random") -> torch.Tensor:
        """Render images [N, 3, R, R] from per-layer styles ws [N, num_ws, w_dim]."""
        x: torch.Tensor | None = None
        img: torch.Tensor | None = None
        start = 0
        for block in self.blocks:
            assert isinstance(block, SynthesisBlock)
            x, img = block(x, img, ws[:, start : start + block.num_ws], noise_mode)
            start += block.num_ws - 1
        assert img is not None
        return img


class MappingNetwork(nn.Module):
    """MLP from normalized z to the intermediate latent w; tracks the running average w_avg for truncation."""

    w_avg: torch.Tensor

    def __init__(self, *, z_dim: int, w_dim: int, num_layers: int, lr_mul: float = 0.01, w_avg_beta: float = 0.995):
        super().__init__()
        self.layers = nn.Sequential(
            *(EqualLinear(z_dim if i == 0 else w_dim, w_dim, lr_mul=lr_mul, activation=True) for i in range(num_layers))
        )
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.w_avg_beta = w_avg_beta

    def forward(self, z: torch.Tensor, *, update_w_avg: bool = False) -> torch.Tensor:
        """Map z [N, z_dim] to w [N, w_dim]."""
        x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        w = fp32_affine(self.layers, x)
        if update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().float().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        return w


class Generator(nn.Module):
    """StyleGAN2 generator: mapping network, style mixing, truncation toward w_avg, skip synthesis."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.z_dim = cfg.z_dim
        self.resolution = cfg.resolution
        self.synthesis = SynthesisNetwork(cfg)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=cfg.z_dim, w_dim=cfg.w_dim, num_layers=cfg.mapping_layers)

    def styles(self, z: torch.Tensor, *, mixing_prob: float = 0.0, update_w_avg: bool = False) -> torch.Tensor:
        """Per-layer styles [N, num_ws, w_dim]; with prob. mixing_prob, layers past a random cutoff use a 2nd z."""
        w: torch.Tensor = self.mapping(z, update_w_avg=update_w_avg)
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)
        if mixing_prob > 0 and float(torch.rand(())) < mixing_prob:
            cutoff = int(torch.randint(1, self.num_ws, ()))
            w2 = self.mapping(torch.randn_like(z))
            ws = torch.cat([ws[:, :cutoff], w2.unsqueeze(1).expand(-1, self.num_ws - cutoff, -1)], dim=1)
        return ws

    def truncate(self, ws: torch.Tensor, psi: float | torch.Tensor) -> torch.Tensor:
        """Pull styles toward w_avg: psi=0 gives w_avg, psi=1 leaves ws unchanged (lerp is exact at both ends)."""
        if isinstance(psi, float | int) and psi == 1:
            return ws
        weight = psi if isinstance(psi, torch.Tensor) else torch.tensor(float(psi), device=ws.device)
        return torch.lerp(self.mapping.w_avg.to(ws.dtype), ws, weight.to(ws.dtype))

    def forward(
        self, z: torch.Tensor, truncation: float | torch.Tensor = 1.0, *, noise_mode: NoiseMode = "random"
    ) -> torch.Tensor:
        """Images [N, 3, R, R] (roughly in [-1, 1], not clamped) from latents z [N, z_dim]."""
        images: torch.Tensor = self.synthesis(self.truncate(self.styles(z), truncation), noise_mode=noise_mode)
        return images


class MinibatchStdDev(nn.Module):
    """Appends the mean standard deviation over groups of samples as one extra feature map."""

    def __init__(self, *, group_size: int) -> None:
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, C, H, W] -> [N, C + 1, H, W]."""
        n, c, h, w = x.shape
        group = max(g for g in range(1, min(self.group_size, n) + 1) if n % g == 0)
        y = x.float().reshape(group, -1, c, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0)
        y = (y + 1e-8).sqrt().mean(dim=(1, 2, 3))
        y = y.reshape(-1, 1, 1, 1).repeat(group, 1, h, w)
        return torch.cat([x, y.to(x.dtype)], dim=1)


class DiscriminatorBlock(nn.Module):
    """Residual block: two 3x3 convs (the second downsamples) plus a 1x1 downsampling skip, scaled by sqrt(1/2)."""

    def __init__(self, *, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, activation=True)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, activation=True, down=True)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Halve the resolution."""
        skip: torch.Tensor = self.skip(x)
        main: torch.Tensor = self.conv1(self.conv0(x))
        return (skip + main) * SQRT_HALF


class Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator with a minibatch-stddev epilogue; returns one logit per image."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        resolutions = [2**i for i in range(cfg.resolution.bit_length() - 1, 2, -1)]
        self.from_rgb = EqualConv2d(3, cfg.channels(cfg.resolution), 1, activation=True)
        self.blocks = nn.Sequential(
            *(
                DiscriminatorBlock(in_channels=cfg.channels(res), out_channels=cfg.channels(res // 2))
                for res in resolutions
            )
        )
        c4 = cfg.channels(4)
        self.mbstd = MinibatchStdDev(group_size=cfg.mbstd_group)
        self.conv = EqualConv2d(c4 + 1, c4, 3, activation=True)
        self.fc = EqualLinear(c4 * 16, c4, activation=True)
        self.out = EqualLinear(c4, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """img [N, 3, R, R] -> logits [N]."""
        x = self.blocks(self.from_rgb(img))
        x = self.conv(self.mbstd(x))
        logits: torch.Tensor = self.out(self.fc(x.flatten(1)))
        return logits.squeeze(1)
