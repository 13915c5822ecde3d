"""The error vocabulary every runtime uses; each message names the setting or field at fault."""

from __future__ import annotations


class GenArtError(Exception):
    """Base of the errors a runtime reports as-is (to an operator, a client or a pipeline step)."""


class ConfigError(GenArtError):
    """A setting or environment variable is missing or unusable; found at start, the process exits non-zero."""


class InputError(GenArtError, ValueError):
    """A client request or event is invalid; the message names the offending field."""


class BusyError(GenArtError, RuntimeError):
    """The work queue is full or shutting down; the caller should retry later."""
