"""Score a generator against the training set: FID and KID of extractor features, and whether its images are finite."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...common.hashing import sha256_of
from ..stylegan2.contract import QUALITY_FID, QUALITY_FINITE, QUALITY_KID, UNMEASURED_SCORE
from .extractor import features_of, load_extractor, resolve_extractor_file
from .scores import frechet_distance, kernel_inception_distance

LOG = logging.getLogger("stylegan2.quality")

# Renders latents [N, z_dim] to float images [N, 3, R, R] in [-1, 1] (not clamped, so NaN shows).
Render = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class QualityReport:
    """What quality.json holds; the ConditionStep reads fid and finite."""

    fid: float
    kid: float
    finite: int
    generated: int
    reference: int
    feature_dim: int
    extractor_sha256: str
    seconds: float
    note: str

    def to_json(self) -> dict[str, Any]:
        """The JSON object, with the contract's field names for the gate's fields."""
        data = asdict(self)
        data[QUALITY_FID], data[QUALITY_KID], data[QUALITY_FINITE] = self.fid, self.kid, self.finite
        return data


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float images -> uint8 (what the extractor sees, like the published PNGs)."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def measure_quality(
    *,
    render: Render,
    z_dim: int,
    reference: np.ndarray,
    extractor_path: Path,
    samples: int,
    seed: int = 0,
    batch: int = 32,
    device: torch.device | str = "cpu",
) -> QualityReport:
    """FID/KID of `samples` generated images against up to `samples` training images (uint8 [N, 3, R, R])."""
    if samples < 2:
        raise ValueError(f"quality samples must be at least 2, got {samples}")
    if len(reference) < 2:
        raise ValueError(f"the training set has {len(reference)} image(s); FID/KID need at least 2")
    started = time.monotonic()
    extractor_file = resolve_extractor_file(extractor_path)
    extractor = load_extractor(extractor_file, device=device)
    generator = torch.Generator().manual_seed(seed)
    fake: list[np.ndarray] = []
    for start in range(0, samples, batch):
        latents = torch.randn(min(batch, samples - start), z_dim, generator=generator).to(device)
        with torch.no_grad():
            images = render(latents)
        if not bool(torch.isfinite(images).all()):
            LOG.warning(f"generated images {start}..{start + len(latents)} are not finite: the generator diverged")
            return QualityReport(
                fid=UNMEASURED_SCORE,
                kid=UNMEASURED_SCORE,
                finite=0,
                generated=start + len(latents),
                reference=0,
                feature_dim=0,
                extractor_sha256=sha256_of(extractor_file),
                seconds=round(time.monotonic() - started, 3),
                note="generated images are not finite (NaN or infinity): training diverged",
            )
        fake.append(features_of(extractor, to_uint8(images)))
        LOG.info(f"quality: featurized {start + len(latents)}/{samples} generated images")
    rng = np.random.default_rng(seed)
    count = min(samples, len(reference))
    chosen = np.sort(rng.choice(len(reference), count, replace=False))
    real: list[np.ndarray] = []
    for start in range(0, count, batch):
        images_u8 = torch.from_numpy(np.ascontiguousarray(reference[chosen[start : start + batch]]))
        real.append(features_of(extractor, images_u8))
        LOG.info(f"quality: featurized {min(start + batch, count)}/{count} training images")
    fake_features, real_features = np.concatenate(fake), np.concatenate(real)
    fid = frechet_distance(real_features, fake_features)
    kid = kernel_inception_distance(real_features, fake_features, seed=seed)
    report = QualityReport(
        fid=round(fid, 6),
        kid=round(kid, 8),
        finite=1,
        generated=len(fake_features),
        reference=len(real_features),
        feature_dim=int(real_features.shape[1]),
        extractor_sha256=sha256_of(extractor_file),
        seconds=round(time.monotonic() - started, 3),
        note=f"FID and KID of {len(fake_features)} generated vs {len(real_features)} training images",
    )
    LOG.info(f"quality: FID {report.fid:.3f}, KID {report.kid:.5f} ({report.note}, {report.seconds:.1f} s)")
    return report
