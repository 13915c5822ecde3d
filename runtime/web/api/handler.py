"""The API Lambda: HTTP API (payload v2) events routed by routeKey to thin handlers; JSON in, JSON out.

API Gateway's JWT authorizer has checked the Cognito token; the caller is requestContext.authorizer.jwt.claims.sub,
and every key and record the handlers touch is under it. `make web-local` calls this same function with `app=`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from ...common.jsonlog import configure_logging
from .. import contract
from ..settings import SettingsError, WebSettings
from .backends import AwsBackends, Backends
from .errors import ApiError, InternalError, NotFoundError
from .jobs import Jobs
from .models import UploadRequest, parse_job_request, parse_json_body
from .store import Store
from .uploads import create_upload

log = logging.getLogger(__name__)


@dataclasses.dataclass
class App:
    """What the handlers share: settings, the store, S3 and the job backends."""

    settings: WebSettings
    store: Store
    s3: Any
    backends: Backends
    jobs: Jobs

    @classmethod
    def build(cls, *, settings: WebSettings, s3: Any, dynamodb: Any, backends: Backends) -> App:
        """Wire the parts together around the given clients."""
        store = Store(table=settings.table, client=dynamodb, ttl_days=settings.job_ttl_days)
        jobs = Jobs(settings=settings, store=store, s3=s3, backends=backends)
        return cls(settings=settings, store=store, s3=s3, backends=backends, jobs=jobs)

    @classmethod
    def from_env(cls) -> App:
        """The Lambda's app: settings from the environment and boto3 clients (S3 links signed with SigV4)."""
        import boto3  # noqa: PLC0415
        from botocore.config import Config  # noqa: PLC0415

        settings = WebSettings.from_env()
        # Links name the regional endpoint (bucket.s3.<region>.amazonaws.com): no redirect for a browser's POST.
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        s3 = boto3.client(
            "s3",
            region_name=region,
            endpoint_url=f"https://s3.{region}.amazonaws.com",
            config=Config(signature_version="s3v4", s3={"addressing_style": "virtual"}),
        )
        backends = AwsBackends(
            image_function=settings.image_function,
            lambda_client=boto3.client("lambda"),
            runtime_client=boto3.client("sagemaker-runtime"),
            sagemaker_client=boto3.client("sagemaker"),
        )
        return cls.build(settings=settings, s3=s3, dynamodb=boto3.client("dynamodb"), backends=backends)


@dataclasses.dataclass(frozen=True)
class Request:
    """What a handler gets from the event: the caller, the path parameters and the raw body."""

    user: str
    path: dict[str, str]
    body: str | None


def create_upload_route(app: App, request: Request) -> tuple[int, dict[str, Any]]:
    """POST /api/uploads: a presigned POST for one image or video."""
    upload = UploadRequest.parse(parse_json_body(request.body), settings=app.settings)
    app.store.take(request.user, what="uploads", amount=1, limit=app.settings.uploads_per_hour)
    return 201, create_upload(request.user, upload, settings=app.settings, store=app.store, s3=app.s3)


def create_job_route(app: App, request: Request) -> tuple[int, dict[str, Any]]:
    """POST /api/jobs: start a cartoonize or generate job."""
    job_request = parse_job_request(parse_json_body(request.body), settings=app.settings)
    return 202, {"job": app.jobs.create(request.user, job_request)}


def list_jobs_route(app: App, request: Request) -> tuple[int, dict[str, Any]]:
    """GET /api/jobs: the caller's newest jobs."""
    return 200, {"jobs": app.jobs.list(request.user)}


def get_job_route(app: App, request: Request) -> tuple[int, dict[str, Any]]:
    """GET /api/jobs/{id}: one of the caller's jobs."""
    return 200, {"job": app.jobs.get(request.user, request.path.get("id", ""))}


ROUTES: dict[str, Callable[[App, Request], tuple[int, dict[str, Any]]]] = {
    contract.ROUTE_CREATE_UPLOAD: create_upload_route,
    contract.ROUTE_CREATE_JOB: create_job_route,
    contract.ROUTE_LIST_JOBS: list_jobs_route,
    contract.ROUTE_GET_JOB: get_job_route,
}

_lock = threading.Lock()
_state: dict[str, Any] = {}  # the app built once per container, and whether logging is configured


def _default_app() -> App:
    with _lock:
        if "app" not in _state:
            _state["app"] = App.from_env()
        return _state["app"]  # type: ignore[no-any-return]


def respond(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    """An HTTP API (payload v2) response with a JSON body that no cache keeps."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", "Cache-Control": "no-store", **(headers or {})},
        "body": json.dumps(body),
    }


def _decoded_body(event: dict[str, Any]) -> str | None:
    body = event.get("body")
    if body is not None and event.get("isBase64Encoded"):
        import base64  # noqa: PLC0415

        return base64.b64decode(body).decode("utf-8", errors="replace")
    return body if isinstance(body, str) else None


def handler(event: Any, context: Any = None, *, app: App | None = None) -> dict[str, Any]:
    """Lambda entry point: route the event, answer every error as {"error": {"code", "message", "field"}}."""
    if "configured" not in _state:
        _state["configured"] = True
        if not logging.getLogger().handlers:
            configure_logging(level=os.environ.get(contract.ENV_LOG_LEVEL, "INFO"))
    event = event if isinstance(event, dict) else {}
    route = ROUTES.get(str(event.get("routeKey", "")))
    claims = (((event.get("requestContext") or {}).get("authorizer") or {}).get("jwt") or {}).get("claims") or {}
    user = str(claims.get("sub", ""))
    if not user:  # API Gateway's authorizer never lets this through; answer as it would
        return {
            "statusCode": 401,
            "headers": {"Content-Type": "application/json"},
            "body": '{"message":"Unauthorized"}',
        }
    try:
        if route is None:
            raise NotFoundError(f"no route {event.get('routeKey')!r}")
        request = Request(user=user, path=dict(event.get("pathParameters") or {}), body=_decoded_body(event))
        status, body = route(app or _default_app(), request)
        return respond(status, body)
    except ApiError as exc:
        log.info("refused", extra={"fields": {"route": event.get("routeKey"), "code": exc.code, "field": exc.field}})
        return respond(exc.status, exc.body(), exc.headers())
    except SettingsError:
        log.exception("the API is misconfigured")
        error = InternalError()
        return respond(error.status, error.body())
    except Exception:
        log.exception("request failed", extra={"fields": {"route": event.get("routeKey")}})
        error = InternalError()
        return respond(error.status, error.body())
