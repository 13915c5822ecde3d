"""Exceptions whose message is shown to an operator or a user as-is."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration or environment problem; the process exits non-zero with this one-line message."""


class UserInputError(ValueError):
    """A command argument a user got wrong; the message is the friendly reply."""


class BusyError(RuntimeError):
    """The generation queue is full (or shutting down); the user is asked to retry later."""
