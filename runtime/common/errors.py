"""The error vocabulary every runtime uses; each message names the setting or field at fault.

- ConfigError: a setting or environment variable is missing or unusable (found at start; exit non-zero).
- InputError: a client request, command argument or event is invalid (`field` names it when known).
- BusyError: a work queue is full or shutting down (the caller retries later).
"""

from __future__ import annotations


class GenArtError(Exception):
    """Base of the errors a runtime reports as-is; `code` is a short machine-readable kind, `field` the culprit."""

    code = "error"

    def __init__(self, message: str = "", *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code


class ConfigError(GenArtError):
    """A setting or environment variable is missing or unusable; found at start, the process exits non-zero."""

    code = "config_error"


class InputError(GenArtError, ValueError):
    """A client request, command argument or event is invalid; the message names the offending field."""

    code = "invalid_input"


class BusyError(GenArtError, RuntimeError):
    """The work queue is full or shutting down; the caller should retry later."""

    code = "busy"
