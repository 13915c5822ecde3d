"""Metric line format and the SageMaker metric definitions that parse it (torch-free on purpose)."""

from __future__ import annotations

# The names and the SageMaker regexes live in the contract (the Pipeline stack passes them to the training job).
from .contract import METRIC_DEFINITIONS, METRIC_NAMES

__all__ = ["METRIC_DEFINITIONS", "METRIC_NAMES", "format_metrics"]


def format_metrics(
    *,
    kimg: float,
    loss_g: float,
    loss_d: float,
    r1: float,
    sec_per_kimg: float,
    pl: float = 0.0,
    augment_p: float = 0.0,
) -> str:
    """The exact metric line the training script prints once per log tick (pl: path-length penalty, ADA's p)."""
    return (
        f"[metrics] kimg={kimg:.3f} loss_G={loss_g:.5f} loss_D={loss_d:.5f} r1={r1:.5f} sec_per_kimg={sec_per_kimg:.3f}"
        f" pl={pl:.5f} augment_p={augment_p:.4f}"
    )
