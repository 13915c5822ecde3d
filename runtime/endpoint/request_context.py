"""Request ids: taken from a trusted header or generated, kept in a context variable, echoed and logged."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import IO, Any

from ..common.jsonlog import RedactingFilter
from ..common.jsonlog import configure_logging as configure_json_logging

REQUEST_ID_HEADER = "X-Request-Id"
_INCOMING_HEADERS = (b"x-request-id", b"x-amzn-sagemaker-inference-id", b"x-amzn-requestid")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def pick_request_id(headers: list[tuple[bytes, bytes]]) -> str:
    """Use the first well-formed incoming id header, else a new uuid4 hex."""
    lookup = {name.lower(): value for name, value in headers}
    for name in _INCOMING_HEADERS:
        value = lookup.get(name, b"").decode("latin-1").strip()
        if _SAFE_ID.match(value):
            return value
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Adds the current request id to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Attach request_id and keep the record."""
        record.request_id = request_id_var.get()
        return True


def configure_logging(*, level: str, stream: IO[str] | None = None) -> RedactingFilter:
    """The shared JSON lines (runtime/common/jsonlog.py) with a `request_id` field, to stderr (CloudWatch)."""
    return configure_json_logging(level=level, stream=stream, filters=[RequestIdFilter()])


class RequestContextMiddleware:
    """Sets the request id, echoes it as X-Request-Id, and turns any escaped exception into a 500 JSON body."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap the ASGI app."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = list(scope.get("headers", []))
        request_id = pick_request_id(headers)
        if scope.get("path") == "/invocations":
            # /invocations only speaks JSON; SageMaker async and some clients send other content types for it.
            scope["headers"] = [(k, v) for k, v in headers if k.lower() != b"content-type"]
            scope["headers"].append((b"content-type", b"application/json"))
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            body = json.dumps(
                {"error": "internal_error", "message": "internal server error", "request_id": request_id, "fields": []}
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"x-request-id", request_id.encode("latin-1")),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
        finally:
            request_id_var.reset(token)
