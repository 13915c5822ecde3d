"""Errors a cartoonizer job reports to its caller, each with the HTTP status an API would answer with."""

from __future__ import annotations

from ..common.errors import InputError


class MediaError(InputError):
    """The input cannot be cartoonized as sent; `status` is the 4xx an API answers, the message says why."""

    code = "bad_media"
    status = 400

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


class CorruptMediaError(MediaError):
    """The input is not a readable image or video (corrupt, truncated or an unknown format)."""

    code = "corrupt_media"
    status = 400


class UnsupportedMediaError(MediaError):
    """The input or output format is not one the cartoonizer handles."""

    code = "unsupported_media"
    status = 415


class TooLargeError(MediaError):
    """The input is over a configured limit (bytes, pixels or duration)."""

    code = "too_large"
    status = 413
