"""Small argparse helpers shared by the step scripts."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ...common.jsonlog import configure_logging

LOG_LEVEL_ENV = "GENART_LOG_LEVEL"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def str2bool(value: str) -> bool:
    """Parse 0/1/true/false (any case), the way SageMaker passes boolean hyperparameters."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected 0/1/true/false, got {value!r}")


def env_path(name: str, fallback: str) -> Path:
    """Path from an environment variable (SageMaker contract) or a local fallback."""
    return Path(os.environ.get(name) or fallback)


def configure_step_logging() -> None:
    """The shared JSON log lines on stderr (CloudWatch); stdout keeps the `[metrics]` lines SageMaker parses."""
    configure_logging(level=os.environ.get(LOG_LEVEL_ENV) or "INFO")
