"""Model configurations (torch-free) and the named presets the training CLI accepts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

UPSAMPLE_MODES = ("transposed", "bilinear")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Sizes of the generator and discriminator; channels at resolution r are min(channel_base // r, channel_max)."""

    resolution: int = 256
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    channel_base: int = 16384
    channel_max: int = 512
    mbstd_group: int = 4
    # "transposed": StyleGAN2's stride-2 transposed conv + blur; "bilinear": the legacy path (4x the MACs per
    # up-sampling conv), kept for benchmarks and for generators trained before the change.
    upsample: str = "transposed"

    def __post_init__(self) -> None:
        if self.upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {self.upsample!r}")
        log2 = self.resolution.bit_length() - 1
        if self.resolution < 4 or 2**log2 != self.resolution:
            raise ValueError(f"resolution must be a power of two >= 4, got {self.resolution}")

    def channels(self, res: int) -> int:
        """Feature maps used at a given resolution."""
        return min(self.channel_base // res, self.channel_max)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for checkpoints and JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of to_dict; unknown keys are an error."""
        return cls(**data)


# z_dim stays 512 everywhere: the generator ONNX contract fixes latents to [N, 512].
# Fixed model presets: tiny/small are this project's; the others carry the values stylegan2-ada-pytorch documents
# for its --cfg (ADA paper, appendix D; channels at r = min(channel_base / r, 512)). `auto` depends on the resolution
# and the GPU count, see auto_spec.
PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"w_dim": 32, "mapping_layers": 2, "channel_base": 256, "channel_max": 32, "mbstd_group": 4},
    "small": {"w_dim": 256, "mapping_layers": 4, "channel_base": 4096, "channel_max": 256, "mbstd_group": 4},
    "stylegan2": {"w_dim": 512, "mapping_layers": 8, "channel_base": 32768, "channel_max": 512, "mbstd_group": 4},
    "paper256": {"w_dim": 512, "mapping_layers": 8, "channel_base": 16384, "channel_max": 512, "mbstd_group": 8},
    "paper512": {"w_dim": 512, "mapping_layers": 8, "channel_base": 32768, "channel_max": 512, "mbstd_group": 8},
    "paper1024": {"w_dim": 512, "mapping_layers": 8, "channel_base": 32768, "channel_max": 512, "mbstd_group": 4},
    "cifar": {"w_dim": 512, "mapping_layers": 2, "channel_base": 32768, "channel_max": 512, "mbstd_group": 32},
}
CFG_NAMES = ("auto", *PRESETS)


@dataclass(frozen=True, kw_only=True)
class TrainingPreset:
    """Training values a preset carries (stylegan2-ada-pytorch's documented --cfg values for the paper configs)."""

    batch: int
    gamma: float
    ema_kimg: float | None  # None: batch * 10 / 32 of the batch actually used (tiny, small)
    ema_rampup: float  # 0: no ramp-up
    lr: float = 0.0025
    pl_weight: float = 2.0  # cifar: 0 (no path-length regularization)
    mixing_prob: float = 0.9  # cifar: 0 (no style mixing)


TRAINING_PRESETS: dict[str, TrainingPreset] = {
    "tiny": TrainingPreset(batch=32, gamma=1.0, ema_kimg=None, ema_rampup=0.05),
    "small": TrainingPreset(batch=32, gamma=1.0, ema_kimg=None, ema_rampup=0.05),
    "stylegan2": TrainingPreset(batch=32, gamma=10.0, ema_kimg=10.0, ema_rampup=0.0, lr=0.002),
    "paper256": TrainingPreset(batch=64, gamma=1.0, ema_kimg=20.0, ema_rampup=0.0),
    "paper512": TrainingPreset(batch=64, gamma=0.5, ema_kimg=20.0, ema_rampup=0.0),
    "paper1024": TrainingPreset(batch=32, gamma=2.0, ema_kimg=10.0, ema_rampup=0.0, lr=0.002),
    "cifar": TrainingPreset(batch=64, gamma=0.01, ema_kimg=500.0, ema_rampup=0.05, pl_weight=0.0, mixing_prob=0.0),
}


@dataclass(frozen=True, kw_only=True)
class AutoSpec:
    """What cfg `auto` picks for a resolution and GPU count (the ADA paper's heuristics)."""

    batch: int  # max(min(gpus * min(4096 / res, 32), 64), gpus)
    mbstd_group: int  # min(batch / gpus, 4)
    channel_base: int  # 32768 at 512 px and above, else 16384
    lr: float  # 0.002 at 1024 px and above, else 0.0025
    gamma: float  # 0.0002 * res^2 / batch
    ema_kimg: float  # batch * 10 / 32
    mapping_layers: int = 2
    ema_rampup: float = 0.05


def auto_spec(*, resolution: int, gpus: int = 1) -> AutoSpec:
    """cfg `auto`: sizes and training values from the resolution and the GPU count."""
    if gpus < 1:
        raise ValueError(f"gpus must be at least 1, got {gpus}")
    batch = max(min(gpus * min(4096 // resolution, 32), 64), gpus)
    return AutoSpec(
        batch=batch,
        mbstd_group=min(batch // gpus, 4),
        channel_base=32768 if resolution >= 512 else 16384,
        lr=0.002 if resolution >= 1024 else 0.0025,
        gamma=0.0002 * resolution**2 / batch,
        ema_kimg=batch * 10 / 32,
    )


# The most images one GPU puts through G and D in one forward/backward round when --batch-gpu is auto (0), by
# resolution (the first key >= the resolution; above the last, its cap). The per-GPU batch is split into rounds
# of the largest divisor of it up to the cap, whose gradients are accumulated. These caps are conservative picks,
# no larger than the per-GPU batches of NVIDIA's own configurations at each resolution (paper256/512: 8, 1024: 4,
# auto below 256 px: 32); how much GPU memory they take here has NOT been measured.
BATCH_GPU_CAPS: dict[int, int] = {128: 32, 256: 8, 512: 8, 1024: 4}


def auto_batch_gpu(*, resolution: int, batch_per_gpu: int) -> int:
    """--batch-gpu auto: the per-GPU batch, or its largest divisor within the resolution's cap (BATCH_GPU_CAPS)."""
    if batch_per_gpu < 1:
        raise ValueError(f"the per-GPU batch must be at least 1, got {batch_per_gpu}")
    caps = sorted(BATCH_GPU_CAPS.items())
    cap = next((limit for res, limit in caps if resolution <= res), caps[-1][1])
    return max(d for d in range(1, min(cap, batch_per_gpu) + 1) if batch_per_gpu % d == 0)


def training_preset(name: str, *, resolution: int, gpus: int = 1) -> TrainingPreset:
    """The training values of a cfg (`auto` computes them from resolution and GPU count)."""
    if name == "auto":
        spec = auto_spec(resolution=resolution, gpus=gpus)
        return TrainingPreset(
            batch=spec.batch, gamma=spec.gamma, ema_kimg=spec.ema_kimg, ema_rampup=spec.ema_rampup, lr=spec.lr
        )
    if name not in TRAINING_PRESETS:
        raise ValueError(f"unknown cfg {name!r}; choose from {sorted(CFG_NAMES)}")
    return TRAINING_PRESETS[name]


def preset(name: str, *, resolution: int, gpus: int = 1) -> ModelConfig:
    """Build a named preset at the requested resolution (`auto` also depends on the GPU count)."""
    if name == "auto":
        spec = auto_spec(resolution=resolution, gpus=gpus)
        return ModelConfig(
            resolution=resolution,
            mapping_layers=spec.mapping_layers,
            channel_base=spec.channel_base,
            mbstd_group=spec.mbstd_group,
        )
    if name not in PRESETS:
        raise ValueError(f"unknown cfg {name!r}; choose from {sorted(CFG_NAMES)}")
    values = PRESETS[name]
    return ModelConfig(
        resolution=resolution,
        w_dim=values["w_dim"],
        mapping_layers=values["mapping_layers"],
        channel_base=values["channel_base"],
        channel_max=values["channel_max"],
        mbstd_group=values["mbstd_group"],
    )
