"""The local studio's HTTP server on 127.0.0.1: the page, config.json, the sign-in stub and /api/* like API Gateway.

/api/* requests become HTTP API (payload v2) events for the API Lambda's handler, with the claims of the verified
ID token, as API Gateway's JWT authorizer passes them; without a valid token the answer is API Gateway's 401.
"""

from __future__ import annotations

import base64
import json
import logging
import mimetypes
import re
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .. import contract
from .auth import AuthError, SignInStub

log = logging.getLogger(__name__)

AUTH_PATH = "/local-auth/"
MAX_BODY_BYTES = 1024 * 1024  # API Gateway's own limit is 10 MB; the API's bodies are small JSON
_ROUTES = [
    (route, method, re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$"))
    for route in contract.ROUTES
    for method, path in [route.split(" ", 1)]
]

Handler = Callable[[dict[str, Any]], dict[str, Any]]


def match_route(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """(routeKey, path parameters) of the API route a request matches, as API Gateway selects it."""
    for route, route_method, pattern in _ROUTES:
        found = pattern.match(path)
        if found and route_method == method:
            return route, found.groupdict()
    return None


def build_event(
    *,
    route: str,
    path: str,
    query: str,
    params: dict[str, str],
    headers: dict[str, str],
    body: bytes,
    claims: dict[str, Any],
) -> dict[str, Any]:
    """An HTTP API payload v2 event as API Gateway sends it after its JWT authorizer (claims as strings)."""
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    method = route.split(" ", 1)[0]
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": route,
        "rawPath": path,
        "rawQueryString": query,
        "headers": {name.lower(): value for name, value in headers.items()},
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "authorizer": {"jwt": {"claims": {key: str(value) for key, value in claims.items()}, "scopes": None}},
            "domainName": "127.0.0.1",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
            "requestId": str(uuid.uuid4()),
            "routeKey": route,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "pathParameters": params or None,
        "body": text if body else None,
        "isBase64Encoded": encoded,
    }


def make_server(
    *, host: str, port: int, static_dir: Path, page_config: dict[str, Any], auth: SignInStub, api: Handler
) -> ThreadingHTTPServer:
    """A threading HTTP server; serve_forever() runs it."""

    class StudioHandler(BaseHTTPRequestHandler):
        server_version = "genart-web-local"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: " + format, *args)

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, document: Any, content_type: str = "application/json") -> None:
            self._send(
                status, json.dumps(document).encode(), {"Content-Type": content_type, "Cache-Control": "no-store"}
            )

        def _body(self) -> bytes | None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._json(413, {"message": "Request Entity Too Large"})
                return None
            return self.rfile.read(length) if length else b""

        def do_GET(self) -> None:
            self._dispatch()

        def do_HEAD(self) -> None:
            self._dispatch()

        def do_POST(self) -> None:
            self._dispatch()

        def do_PUT(self) -> None:
            self._dispatch()

        def do_DELETE(self) -> None:
            self._dispatch()

        def _dispatch(self) -> None:
            url = urlsplit(self.path)
            try:
                if url.path.startswith(contract.API_PATH_PREFIX + "/") or url.path == contract.API_PATH_PREFIX:
                    self._api(url.path, url.query)
                elif url.path.rstrip("/") + "/" == AUTH_PATH:
                    self._auth()
                elif self.command in ("GET", "HEAD"):
                    self._static(url.path)
                else:
                    self._json(405, {"message": "Method Not Allowed"})
            except Exception:
                log.exception("local server error")
                self._json(500, {"message": "Internal Server Error"})

        def _api(self, path: str, query: str) -> None:
            found = match_route(self.command, path)
            if found is None:
                self._json(404, {"message": "Not Found"})
                return
            header = self.headers.get("Authorization", "")
            token = header[len("Bearer ") :] if header.startswith("Bearer ") else header
            claims = auth.verify(token.strip()) if token.strip() else None
            if claims is None:
                self._send(
                    401,
                    b'{"message":"Unauthorized"}',
                    {"Content-Type": "application/json", "WWW-Authenticate": "Bearer"},
                )
                return
            body = self._body()
            if body is None:
                return
            route, params = found
            event = build_event(
                route=route, path=path, query=query, params=params, headers=dict(self.headers), body=body, claims=claims
            )
            answer = api(event)
            payload = answer.get("body") or ""
            data = base64.b64decode(payload) if answer.get("isBase64Encoded") else str(payload).encode()
            self._send(int(answer.get("statusCode", 200)), data, dict(answer.get("headers") or {}))

        def _auth(self) -> None:
            if self.command != "POST":
                self._json(405, {"message": "Method Not Allowed"})
                return
            body = self._body()
            if body is None:
                return
            content_type = "application/x-amz-json-1.1"
            try:
                request = json.loads(body or b"{}")
                if not isinstance(request, dict):
                    raise AuthError("SerializationException", "the body must be a JSON object")
                answer = auth.call(self.headers.get("X-Amz-Target", ""), request)
            except ValueError:
                self._json(400, {"__type": "SerializationException", "message": "the body is not JSON"}, content_type)
                return
            except AuthError as exc:
                self._json(400, {"__type": exc.kind, "message": exc.message}, content_type)
                return
            self._json(200, answer, content_type)

        def _static(self, path: str) -> None:
            if path == "/" + contract.PAGE_CONFIG_FILE:
                self._json(200, page_config)
                return
            relative = unquote(path).lstrip("/") or "index.html"
            root = static_dir.resolve()
            target = (root / relative).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_relative_to(root) or not target.is_file():
                self._send(404, b"Not Found", {"Content-Type": "text/plain"})
                return
            content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            if content_type.startswith("text/") or content_type in ("application/javascript", "application/json"):
                content_type += "; charset=utf-8"
            self._send(200, target.read_bytes(), {"Content-Type": content_type, "Cache-Control": "no-cache"})

    return ThreadingHTTPServer((host, port), StudioHandler)
