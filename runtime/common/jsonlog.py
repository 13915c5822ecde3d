"""The one JSON-lines log format of every runtime (bot, endpoint, notify Lambda, pipeline steps), with redaction.

Stdlib only: the notify Lambda and the pipeline image import it without extra packages.
Each record is one JSON object: `time` (ISO-8601 UTC), `level`, `logger`, `message`, then any extras
(`extra={"fields": {...}}` or plain `extra={...}` keys) and, for exceptions, `error` (the traceback text).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import IO, Any

REDACTED = "[REDACTED]"
# The fields every record carries, in this order; extras follow.
FIELDS: tuple[str, ...] = ("time", "level", "logger", "message")
ERROR_FIELD = "error"
# Discord bot tokens: base64(user id) . timestamp . HMAC; redacted even when the exact token is unknown.
DISCORD_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,}")
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# Chatty third-party loggers held at WARNING unless the caller says otherwise.
DEFAULT_QUIET: Mapping[str, int] = {"botocore": logging.WARNING, "urllib3": logging.WARNING}


def _redact_value(value: Any, redact: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class RedactingFilter(logging.Filter):
    """Replace known secrets and anything shaped like a Discord token in every record."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: set[str] = {s for s in secrets if s}

    def add_secret(self, secret: str) -> None:
        """Redact this exact value from now on."""
        if secret:
            self._secrets.add(secret)

    def redact(self, text: str) -> str:
        """Return the text with secrets replaced."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return DISCORD_TOKEN_PATTERN.sub(REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message once, redact it, and drop the args so nothing unredacted is formatted later."""
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            record.fields = {k: _redact_value(v, self.redact) for k, v in fields.items()}
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS and key != "fields" and isinstance(value, str):
                setattr(record, key, self.redact(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extras, and `error` for exceptions."""

    def format(self, record: logging.LogRecord) -> str:
        """Serialize the record."""
        stamp = datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")
        payload: dict[str, Any] = {
            "time": stamp.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            payload.update({k: v for k, v in fields.items() if k not in payload})
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key != "fields" and key not in payload:
                payload[key] = value
        if record.exc_info:
            payload[ERROR_FIELD] = self.formatException(record.exc_info)
        elif record.exc_text:
            payload[ERROR_FIELD] = record.exc_text
        return json.dumps(payload, default=str, ensure_ascii=False)


def configure_logging(
    *,
    level: str | int = "INFO",
    stream: IO[str] | None = None,
    secrets: Iterable[str] = (),
    filters: Iterable[logging.Filter] = (),
    quiet: Mapping[str, int] = DEFAULT_QUIET,
) -> RedactingFilter:
    """Send all logging as redacted JSON lines to the stream (stderr by default); return the redaction filter."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    # Extra filters (e.g. a request id) run first so what they add is redacted too.
    for extra_filter in filters:
        handler.addFilter(extra_filter)
    redactor = RedactingFilter(secrets)
    handler.addFilter(redactor)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    resolved = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    root.setLevel(resolved if isinstance(resolved, int) else logging.INFO)
    for name, floor in quiet.items():
        logging.getLogger(name).setLevel(max(root.level, floor))
    return redactor
