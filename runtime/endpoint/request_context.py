"""Request ids: taken from a trusted header or generated, kept in a context variable, echoed and logged."""

from __future__ import annotations

import asyncio
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


def _json_error(status: int, error: str, message: str, field: str) -> tuple[Message, Message]:
    body = json.dumps(
        {
            "error": error,
            "message": message,
            "request_id": request_id_var.get(),
            "fields": [{"field": field, "message": message}],
        }
    ).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    return start, {"type": "http.response.body", "body": body}


class BodyLimitMiddleware:
    """Reads a request body up to max_bytes within timeout_s before the app sees it: 413 if larger, 408 if slower."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout_s: float) -> None:
        """Wrap the ASGI app with the limits."""
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Buffer the body (bounded in size and time), then replay it to the app."""
        if scope["type"] != "http" or scope.get("method") not in {"POST", "PUT", "PATCH"}:
            await self.app(scope, receive, send)
            return
        too_large = f"request body is larger than {self.max_bytes} bytes"
        declared = dict(scope.get("headers", [])).get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send, 413, "body_too_large", too_large)
            return
        chunks: list[bytes] = []
        size = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), timeout=max(0.0, deadline - loop.time()))
            except TimeoutError:
                message_text = f"request body not received within {self.timeout_s:g} s"
                await self._reject(send, 408, "body_timeout", message_text)
                return
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reject(send, 413, "body_too_large", too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect the app may watch for

        await self.app(scope, replay, send)

    @staticmethod
    async def _reject(send: Send, status: int, error: str, message: str) -> None:
        log.info("rejected request body: %s", message)
        start, body = _json_error(status, error, message, "body")
        await send(start)
        await send(body)
