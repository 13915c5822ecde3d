"""The bot's errors: the shared vocabulary of runtime/common/errors.py (messages are shown as-is), plus model states."""

from __future__ import annotations

from typing import Literal

from ..common.errors import BusyError, ConfigError, InputError

__all__ = ["BusyError", "ConfigError", "InputError", "ModelRejected", "ModelUnavailable"]

UnavailableState = Literal["missing", "forbidden", "error"]


class ModelUnavailable(ConfigError):
    """The model cannot be fetched: not published yet ("missing"), not readable ("forbidden"), or S3/disk trouble."""

    def __init__(self, message: str, *, state: UnavailableState) -> None:
        super().__init__(message, code=f"model_{state}")
        self.state: UnavailableState = state


class ModelRejected(ConfigError):
    """A fetched model did not load; the previous one (if any) keeps serving. `version` names what was rejected."""

    def __init__(self, message: str, *, version: str) -> None:
        super().__init__(message, code="model_rejected")
        self.version = version
