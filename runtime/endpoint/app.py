"""FastAPI app implementing the SageMaker container contract (/ping, /invocations) for Stable Diffusion."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..common.errors import BusyError, InputError
from .batcher import Batcher
from .encoding import CONTENT_TYPES, encode_image
from .output_store import OutputStore
from .pipeline_setup import load_pipeline, resolve_devices, resolve_dtype
from .request_context import RequestContextMiddleware, request_id_var
from .schemas import (
    MAX_SEED,
    ErrorResponse,
    GenerationRequest,
    ImageResult,
    InvocationResponse,
    PingResponse,
    build_request_model,
)
from .settings import Settings
from .worker import BatchKey, DiffusionWorker, ImageSpec, PipelineFactory

log = logging.getLogger(__name__)

_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "request cannot be served as asked (field named)"},
    422: {"model": ErrorResponse, "description": "invalid field(s)"},
    429: {"model": ErrorResponse, "description": "queue full, retry later"},
    500: {"model": ErrorResponse, "description": "internal error (request id only)"},
    503: {"model": ErrorResponse, "description": "model still loading"},
}


@dataclasses.dataclass
class ServerState:
    """Mutable runtime state shared by the routes."""

    settings: Settings
    workers: list[DiffusionWorker]
    batcher: Batcher
    output_store: OutputStore | None
    status: str = "loading"
    started: float = dataclasses.field(default_factory=time.perf_counter)
    seconds_to_healthy: float | None = None


class NotReadyError(BusyError):
    """The model is still loading (or failed to); the client retries later (503)."""

    code = "loading"


def _error_body(error: str, message: str, fields: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    return ErrorResponse(
        error=error,
        message=message,
        request_id=request_id_var.get(),
        fields=[{"field": name, "message": text} for name, text in fields],  # type: ignore[misc]
    ).model_dump()


def _field_name(loc: Sequence[int | str]) -> str:
    parts = [str(part) for part in loc if part != "body"]
    return ".".join(parts) if parts else "body"


def _wants_raw_image(accept: str) -> str | None:
    """Return "png"/"jpeg" when the first recognised Accept type is an image type, else None (JSON)."""
    for item in accept.split(","):
        media = item.split(";", 1)[0].strip().lower()
        if media == "image/png":
            return "png"
        if media in {"image/jpeg", "image/jpg"}:
            return "jpeg"
        if media in {"application/json", "*/*", "application/*"}:
            return None
    return None


def _seeds(request: GenerationRequest) -> list[int]:
    """Image i gets base + i, so a response is reproduced by sending its first seed back."""
    base = secrets.randbelow(MAX_SEED + 1) if request.seed is None else request.seed
    return [(base + index) % (MAX_SEED + 1) for index in range(request.num_images)]


def _default_factory(settings: Settings) -> PipelineFactory:
    def factory(device: str) -> Any:
        return load_pipeline(settings, dtype=resolve_dtype(settings, device))

    return factory


def create_app(
    *,
    settings: Settings,
    factory: PipelineFactory | None = None,
    devices: Sequence[str] | None = None,
    output_store: OutputStore | None = None,
    load_before_serving: bool = False,
) -> FastAPI:
    """Build the app; the model loads in the background at startup so /ping answers 503 until it is warm.

    load_before_serving makes startup itself wait for the model (for embedding the app in-process).
    """
    request_model = build_request_model(settings)
    pipeline_factory = factory or _default_factory(settings)
    store = output_store
    if store is None and settings.outputs_bucket:
        store = OutputStore(bucket=settings.outputs_bucket, prefix=settings.outputs_prefix)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        workers = [
            DiffusionWorker(device=device, settings=settings, factory=pipeline_factory)
            for device in (devices or resolve_devices(settings.device))
        ]
        batcher = Batcher(
            workers=workers,
            max_batch=settings.max_batch,
            batch_window_ms=settings.batch_window_ms,
            max_queue=settings.max_queue,
        )
        state = ServerState(settings=settings, workers=workers, batcher=batcher, output_store=store)
        app.state.server = state
        loader = asyncio.create_task(_load(state))
        if load_before_serving:
            await asyncio.shield(loader)
        try:
            yield
        finally:
            loader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loader
            await batcher.stop()
            for worker in workers:
                worker.shutdown()

    app = FastAPI(
        title="GenArt Stable Diffusion endpoint",
        version="1.0.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(RequestContextMiddleware)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            ("body" if err.get("type") == "json_invalid" else _field_name(err.get("loc", ())), str(err.get("msg")))
            for err in exc.errors()
        ]
        names = ", ".join(dict.fromkeys(name for name, _ in fields))
        log.info("rejected invalid request: %s", names)
        return JSONResponse(_error_body("invalid_request", f"invalid field(s): {names}", fields), status_code=422)

    @app.exception_handler(InputError)
    async def on_input_error(_request: Request, exc: InputError) -> JSONResponse:
        fields = [(exc.field, exc.message)] if exc.field else []
        return JSONResponse(_error_body(exc.code, exc.message, fields), status_code=400)

    @app.exception_handler(BusyError)
    async def on_busy_error(_request: Request, exc: BusyError) -> JSONResponse:
        status = 503 if isinstance(exc, NotReadyError) else 429
        return JSONResponse(_error_body(exc.code, exc.message), status_code=status, headers={"Retry-After": "1"})

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            _error_body("http_error", str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.get("/ping", response_model=PingResponse, responses={503: {"model": PingResponse}})
    async def ping(request: Request) -> JSONResponse:
        """200 once every model copy is loaded and warmed, 503 before (or if loading failed)."""
        status = request.app.state.server.status
        return JSONResponse({"status": status}, status_code=200 if status == "healthy" else 503)

    @app.get("/metrics")
    async def metrics(request: Request) -> dict[str, Any]:
        """Batching counters and load timings, for operators and tests."""
        state: ServerState = request.app.state.server
        return {
            "status": state.status,
            "seconds_to_healthy": state.seconds_to_healthy,
            "queued": state.batcher.queued,
            "devices": [worker.device for worker in state.workers],
            **dataclasses.asdict(state.batcher.metrics),
        }

    async def invocations(request: Request, body: GenerationRequest) -> Response:
        """Generate images; JSON by default, raw image bytes for Accept: image/png (one image)."""
        state: ServerState = request.app.state.server
        raw_format = _wants_raw_image(request.headers.get("accept", ""))
        _check_request(state, body, raw_format)
        negative = body.negative_prompt or ""
        specs = [ImageSpec(prompt=body.prompt, negative_prompt=negative, seed=seed) for seed in _seeds(body)]
        key = BatchKey(body.num_inference_steps, body.width, body.height, body.guidance_scale, body.scheduler)
        request_id = request_id_var.get()
        try:
            outcome = await state.batcher.submit(request_id=request_id, key=key, specs=specs)
        except BusyError:
            raise BusyError("server is busy; retry later") from None
        if raw_format is not None:
            data = await asyncio.to_thread(encode_image, outcome.images[0], raw_format)
            return Response(data, media_type=CONTENT_TYPES[raw_format], headers={"X-Seed": str(specs[0].seed)})
        images = await asyncio.to_thread(_package_images, state, body, request_id, specs, outcome.images)
        payload = InvocationResponse(
            request_id=request_id,
            images=images,
            width=body.width,
            height=body.height,
            num_inference_steps=body.num_inference_steps,
            guidance_scale=body.guidance_scale,
            scheduler=body.scheduler,
            batch_size=outcome.batch_images,
            queue_ms=round(outcome.queue_ms, 2),
            inference_ms=round(outcome.inference_ms, 2),
        )
        return JSONResponse(payload.model_dump(exclude_none=True))

    # The request model is built at run time from Settings, so the annotation is set here rather than in the signature.
    invocations.__annotations__["body"] = request_model
    app.post(
        "/invocations",
        response_model=InvocationResponse,
        response_model_exclude_none=True,
        responses={
            200: {"content": {"image/png": {}, "image/jpeg": {}}, "description": "images (JSON) or raw image bytes"},
            **_ERROR_RESPONSES,
        },
    )(invocations)
    return app


def _check_request(state: ServerState, body: GenerationRequest, raw_format: str | None) -> None:
    """Reject requests that are valid JSON but cannot be served in this deployment."""
    if state.status != "healthy":
        raise NotReadyError("model is not ready yet")
    if body.output == "s3" and state.output_store is None:
        raise InputError("output 's3' needs GENART_OUTPUTS_BUCKET", field="output", code="s3_not_configured")
    if raw_format is not None:
        if body.num_images != 1:
            message = "a raw image response carries exactly one image"
            raise InputError(message, field="num_images", code="one_image_only")
        if body.output != "inline":
            raise InputError("a raw image response cannot be written to S3", field="output", code="raw_needs_inline")


def _package_images(
    state: ServerState, body: GenerationRequest, request_id: str, specs: list[ImageSpec], images: Sequence[Any]
) -> list[ImageResult]:
    """Encode every image and either inline it as base64 or upload it to the outputs bucket."""
    results = []
    for index, (spec, image) in enumerate(zip(specs, images, strict=True)):
        data = encode_image(image, body.image_format)
        if body.output == "s3":
            assert state.output_store is not None
            uri = state.output_store.put(
                request_id=request_id, index=index, seed=spec.seed, data=data, image_format=body.image_format
            )
            results.append(ImageResult(seed=spec.seed, format=body.image_format, s3_uri=uri))
        else:
            b64 = base64.b64encode(data).decode("ascii")
            results.append(ImageResult(seed=spec.seed, format=body.image_format, b64=b64))
    return results


async def _load(state: ServerState) -> None:
    """Load and warm every worker, then start batching and flip /ping to healthy."""
    try:
        await asyncio.gather(*(worker.start() for worker in state.workers))
    except asyncio.CancelledError:
        raise
    except Exception:
        state.status = "failed"
        log.exception("model loading failed; /ping stays unhealthy")
        return
    state.batcher.start()
    state.seconds_to_healthy = time.perf_counter() - state.started
    state.status = "healthy"
    log.info("healthy after %.1f s on %s", state.seconds_to_healthy, [worker.device for worker in state.workers])
