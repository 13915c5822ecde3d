"""The bot's errors: the shared vocabulary of runtime/common/errors.py (messages are shown as-is)."""

from __future__ import annotations

from ..common.errors import BusyError, ConfigError, InputError

__all__ = ["BusyError", "ConfigError", "InputError"]
