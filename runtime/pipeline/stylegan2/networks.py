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
SQRT_HALF = math.sqrt(0.5)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU scaled by sqrt(2) so activations keep unit magnitude."""
    return F.leaky_relu(x, 0.2) * SQRT2


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """2x bilinear upsampling, which is the separable [1, 3, 3, 1] FIR filter used by StyleGAN2."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class Downsample2x(nn.Module):
    """Anti-aliased 2x downsampling: blur with the [1, 3, 3, 1] filter, keep every other pixel."""

    kernel: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
        kernel = torch.outer(taps, taps)
        self.register_buffer("kernel", (kernel / kernel.sum())[None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Halve height and width."""
        channels = x.shape[1]
        kernel = self.kernel.to(x.dtype).expand(channels, 1, 4, 4)
        return F.conv2d(x, kernel, stride=2, padding=1, groups=channels)


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
    """Convolution with equalized learning rate, optional 2x downsampling before it, optional activation."""

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
        self.down = Downsample2x() if down else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Downsample (if configured), convolve, add bias, activate."""
        if self.down is not None:
            x = self.down(x)
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding)
        return lrelu(x) if self.activation else x


class ModulatedConv2d(nn.Module):
    """Convolution whose input channels are scaled per sample by a style, then demodulated to unit variance."""

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        kernel_size: int,
        demodulate: bool = True,
        upsample: bool = False,
    ) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2
        self.demodulate = demodulate
        self.upsample = upsample

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Modulate by the style from w [N, w_dim], convolve with shared weights, demodulate per output channel."""
        styles = self.affine(w)
        weight = self.weight * self.weight_gain
        # Scaling activations instead of weights keeps one shared weight tensor (a plain conv), which
        # is faster than grouped per-sample convolutions and exports cleanly to ONNX. Scaling commutes
        # with the (linear) upsampling, so it happens first, at the lower resolution.
        x = x * styles.to(x.dtype)[:, :, None, None]
        if self.upsample:
            x = upsample2x(x)
        x = F.conv2d(x, weight, padding=self.padding)  # autocast (if on) casts both operands
        if self.demodulate:
            # sum_{i,k} (w[o,i,k] * s[n,i])^2 == s^2 @ (sum_k w^2)^T
            dcoefs = (styles.float().square() @ weight.square().sum(dim=(2, 3)).T + 1e-8).rsqrt()
            x = x * dcoefs.to(x.dtype)[:, :, None, None]
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv + per-pixel noise + bias + activation."""

    noise_const: torch.Tensor

    def __init__(self, *, in_channels: int, out_channels: int, w_dim: int, resolution: int, upsample: bool) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channels=in_channels, out_channels=out_channels, w_dim=w_dim, kernel_size=3, upsample=upsample
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

    def __init__(self, *, in_channels: int, out_channels: int, w_dim: int, resolution: int) -> None:
        super().__init__()
        self.const = nn.Parameter(torch.randn(out_channels, 4, 4)) if resolution == 4 else None
        self.conv0 = (
            None
            if resolution == 4
            else SynthesisLayer(
                in_channels=in_channels, out_channels=out_channels, w_dim=w_dim, resolution=resolution, upsample=True
            )
        )
        self.conv1 = SynthesisLayer(
            in_channels=out_channels, out_channels=out_channels, w_dim=w_dim, resolution=resolution, upsample=False
        )
        self.torgb = ToRGB(in_channels=out_channels, w_dim=w_dim)
        self.num_ws = 2 if resolution == 4 else 3

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
        img = rgb if img is None else upsample2x(img) + rgb
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
        w: torch.Tensor = self.layers(x)
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
