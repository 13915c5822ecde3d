"""Structured JSON-lines logging to stdout with token redaction as defense in depth."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import IO, Any

REDACTED = "[REDACTED]"
# Discord bot tokens: base64(user id) . timestamp . HMAC; redacted even when the exact token is unknown.
DISCORD_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,}")
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


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
            record.fields = {k: self.redact(v) if isinstance(v, str) else v for k, v in fields.items()}
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, plus `extra={"fields": {...}}` and exception text."""

    def format(self, record: logging.LogRecord) -> str:
        """Serialize the record."""
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            payload.update({k: v for k, v in fields.items() if k not in payload})
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key != "fields" and key not in payload:
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            payload["exc"] = record.exc_text
        return json.dumps(payload, default=str, ensure_ascii=False)


def configure_logging(*, level: str = "INFO", stream: IO[str] | None = None) -> RedactingFilter:
    """Send all logging (ours and discord.py's) as JSON lines to stdout; return the redaction filter."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    redactor = RedactingFilter()
    handler.addFilter(redactor)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    resolved = logging.getLevelName(level.upper())
    root.setLevel(resolved if isinstance(resolved, int) else logging.INFO)
    logging.getLogger("discord.gateway").setLevel(max(root.level, logging.INFO))
    logging.getLogger("botocore").setLevel(logging.WARNING)
    return redactor
