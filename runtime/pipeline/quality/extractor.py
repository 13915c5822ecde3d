"""The feature extractor behind FID/KID: a TorchScript file called as extractor(uint8 images, return_features=True).

NVIDIA's `inception-2015-12-05.pt` (the Inception-v3 port StyleGAN2-ADA's metrics use) follows this convention, so
it works unchanged; tests and local runs use `tiny_extractor`, a small random network made here.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..stylegan2.contract import FEATURE_EXTRACTOR_FILE

TINY_FEATURES = 64


class ExtractorError(ValueError):
    """The feature extractor file is missing, not TorchScript, or does not return [N, D] finite features."""


class TinyExtractor(nn.Module):
    """A small random convolutional network with the Inception extractor's calling convention (tests, local runs)."""

    def __init__(self, *, features: int = TINY_FEATURES) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(32, features, 3, stride=2, padding=1)
        self.head = nn.Linear(features, 10)
        for conv in (self.conv1, self.conv2, self.conv3):
            # He initialisation without bias: activations keep the input's scale, so distances are not all ~0.
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        """uint8 [N, 3, H, W] (any size) -> features [N, D], or class logits when return_features is false."""
        x = img.to(torch.float32) / 127.5 - 1.0
        x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        features: torch.Tensor = self.conv3(x).mean(dim=(2, 3))
        if return_features:
            return features
        logits: torch.Tensor = self.head(features)
        return logits


def tiny_extractor(path: Path, *, seed: int = 0, features: int = TINY_FEATURES) -> Path:
    """Write a TinyExtractor with seeded random weights as TorchScript to path and return path."""
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # TorchScript is deprecated, but it is the format the Inception extractor ships in.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.manual_seed(seed)
        module = torch.jit.script(TinyExtractor(features=features).eval())
    path.parent.mkdir(parents=True, exist_ok=True)
    module.save(str(path))  # type: ignore[no-untyped-call]
    return path


def resolve_extractor_file(source: Path) -> Path:
    """The extractor file itself, or the one inside a folder (where a processing input downloads it)."""
    if source.is_file():
        return source
    if source.is_dir():
        preferred = source / FEATURE_EXTRACTOR_FILE
        if preferred.is_file():
            return preferred
        found = sorted(source.rglob("*.pt"))
        if len(found) == 1:
            return found[0]
    raise ExtractorError(
        f"no feature extractor at {source}: upload one once with python -m runtime.pipeline.quality.upload_extractor"
    )


def load_extractor(source: Path, *, device: torch.device | str = "cpu") -> torch.jit.ScriptModule:
    """Load the TorchScript extractor from a file or folder onto device, in eval mode."""
    path = resolve_extractor_file(Path(source))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module: torch.jit.ScriptModule = torch.jit.load(str(path), map_location=device)  # type: ignore[no-untyped-call]
    except (RuntimeError, ValueError) as error:
        raise ExtractorError(f"{path} is not a TorchScript feature extractor: {error}") from error
    module.eval()
    return module


@torch.no_grad()
def features_of(extractor: torch.jit.ScriptModule, images: torch.Tensor) -> np.ndarray:
    """Features [N, D] (float64) of uint8 images [N, 3, H, W]; raises ExtractorError on a wrong output."""
    device = next(iter(extractor.parameters()), torch.empty(0)).device
    output = extractor(images.to(device), return_features=True)
    if not isinstance(output, torch.Tensor) or output.ndim != 2 or output.shape[0] != images.shape[0]:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ExtractorError(f"the feature extractor returned {shape} for {images.shape[0]} images; expected [N, D]")
    return output.detach().to(torch.float64).cpu().numpy()


def check_extractor(path: Path) -> int:
    """Load path and run it on random images of two sizes; returns the feature dimension or raises ExtractorError."""
    extractor = load_extractor(path)
    generator = torch.Generator().manual_seed(0)
    dims = set()
    for size in (64, 256):
        images = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8, generator=generator)
        features = features_of(extractor, images)
        if features.shape[1] < 2 or not np.isfinite(features).all():
            raise ExtractorError(f"{path} returned unusable features {features.shape} at {size} px")
        dims.add(features.shape[1])
    if len(dims) != 1:
        raise ExtractorError(f"{path} returns a feature size that depends on the image size: {sorted(dims)}")
    return int(dims.pop())
