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
PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"w_dim": 32, "mapping_layers": 2, "channel_base": 256, "channel_max": 32, "mbstd_group": 4},
    "small": {"w_dim": 256, "mapping_layers": 4, "channel_base": 4096, "channel_max": 256, "mbstd_group": 4},
    "paper256": {"w_dim": 512, "mapping_layers": 8, "channel_base": 16384, "channel_max": 512, "mbstd_group": 8},
    "paper512": {"w_dim": 512, "mapping_layers": 8, "channel_base": 32768, "channel_max": 512, "mbstd_group": 8},
}


@dataclass(frozen=True, kw_only=True)
class TrainingPreset:
    """Training values a preset carries (stylegan2-ada-pytorch cfg_specs for paper256/paper512)."""

    batch: int
    gamma: float
    ema_kimg: float | None  # None: batch * 10 / 32 (the ADA 'auto' rule)
    ema_rampup: float  # 0: no ramp-up


TRAINING_PRESETS: dict[str, TrainingPreset] = {
    "tiny": TrainingPreset(batch=32, gamma=1.0, ema_kimg=None, ema_rampup=0.05),
    "small": TrainingPreset(batch=32, gamma=1.0, ema_kimg=None, ema_rampup=0.05),
    "paper256": TrainingPreset(batch=64, gamma=1.0, ema_kimg=20.0, ema_rampup=0.0),
    "paper512": TrainingPreset(batch=64, gamma=0.5, ema_kimg=20.0, ema_rampup=0.0),
}


def preset(name: str, *, resolution: int) -> ModelConfig:
    """Build a named preset at the requested resolution."""
    if name not in PRESETS:
        raise ValueError(f"unknown cfg {name!r}; choose from {sorted(PRESETS)}")
    values = PRESETS[name]
    return ModelConfig(
        resolution=resolution,
        w_dim=values["w_dim"],
        mapping_layers=values["mapping_layers"],
        channel_base=values["channel_base"],
        channel_max=values["channel_max"],
        mbstd_group=values["mbstd_group"],
    )
