"""The quality gate's decision, as the pipeline's ConditionStep makes it (the tests hold the two to each other)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..stylegan2.contract import QUALITY_FID, QUALITY_FINITE


@dataclass(frozen=True)
class GateDecision:
    """Publish or not, and why (one sentence)."""

    publish: bool
    reason: str


def decide(quality: Mapping[str, Any], *, max_fid: float) -> GateDecision:
    """Publish when every image was finite and FID < max_fid; a negative max_fid publishes whatever the FID."""
    if int(quality[QUALITY_FINITE]) != 1:
        return GateDecision(False, "the generated images are not finite (NaN or infinity): training diverged")
    fid = float(quality[QUALITY_FID])
    if max_fid < 0:
        return GateDecision(True, f"FID {fid:.2f}; MaxFid {max_fid:g} is negative, so any score publishes")
    if fid < max_fid:
        return GateDecision(True, f"FID {fid:.2f} is below MaxFid {max_fid:g}")
    return GateDecision(False, f"FID {fid:.2f} is not below MaxFid {max_fid:g}")
