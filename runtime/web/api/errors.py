"""API errors: each maps to an HTTP status and the JSON body {"error": {"code", "message", "field"}}."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A client-facing error; the message is safe to show and names the field at fault when there is one."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def body(self) -> dict[str, Any]:
        """The JSON body of the error response."""
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}

    def headers(self) -> dict[str, str]:
        """Extra response headers."""
        return {}


class InvalidError(ApiError):
    """The request is malformed or out of limits (400)."""

    status, code = 400, "invalid"


class NotFoundError(ApiError):
    """No such route, job or upload for this user (404; another user's job reads the same)."""

    status, code = 404, "not_found"


class NotUploadedError(ApiError):
    """The upload id is known but its object is not in the bucket yet (409)."""

    status, code = 409, "not_uploaded"


class TooLargeError(ApiError):
    """The file is larger than its medium allows (413)."""

    status, code = 413, "too_large"


class UnsupportedTypeError(ApiError):
    """The content type is not one the studio takes (415)."""

    status, code = 415, "unsupported_type"


class RateLimitedError(ApiError):
    """The caller used up an hourly allowance (429, with Retry-After)."""

    status, code = 429, "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after_s = max(1, retry_after_s)

    def body(self) -> dict[str, Any]:
        """The error body plus retry_after_s."""
        return {**super().body(), "retry_after_s": self.retry_after_s}

    def headers(self) -> dict[str, str]:
        """Retry-After in seconds."""
        return {"Retry-After": str(self.retry_after_s)}


class UnavailableError(ApiError):
    """A backend the request needs is off or failing (503)."""

    status, code = 503, "unavailable"


class InternalError(ApiError):
    """Anything unexpected (500, no details; the logs have them)."""

    status, code = 500, "internal_error"

    def __init__(self) -> None:
        super().__init__("internal error; try again later")
