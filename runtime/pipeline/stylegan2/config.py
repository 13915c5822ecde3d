"""Model configurations (torch-free) and the named presets the training CLI accepts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


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

    def __post_init__(self) -> None:
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
    "tiny": {"w_dim": 32, "mapping_layers": 2, "channel_base": 256, "channel_max": 32},
    "small": {"w_dim": 256, "mapping_layers": 4, "channel_base": 4096, "channel_max": 256},
    "paper256": {"w_dim": 512, "mapping_layers": 8, "channel_base": 16384, "channel_max": 512},
    "paper512": {"w_dim": 512, "mapping_layers": 8, "channel_base": 32768, "channel_max": 512},
}


def preset(name: str, *, resolution: int) -> ModelConfig:
    """Build a named preset at the requested resolution."""
    if name not in PRESETS:
        raise ValueError(f"unknown cfg {name!r}; choose from {sorted(PRESETS)}")
    return ModelConfig(resolution=resolution, **PRESETS[name])
