"""Metric line format and the SageMaker metric definitions that parse it (torch-free on purpose)."""

from __future__ import annotations

_NUMBER = r"([-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)"
METRIC_NAMES: tuple[str, ...] = ("kimg", "loss_G", "loss_D", "r1", "sec_per_kimg", "pl", "augment_p")

# One definition per value of `[metrics] kimg=<f> loss_G=<f> loss_D=<f> r1=<f> sec_per_kimg=<f> pl=<f> augment_p=<f>`.
METRIC_DEFINITIONS: list[dict[str, str]] = [
    {"Name": name, "Regex": rf"\[metrics\].*\b{name}={_NUMBER}"} for name in METRIC_NAMES
]


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
