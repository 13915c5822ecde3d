"""FastAPI app implementing the SageMaker container contract (/ping, /invocations) for Stable Diffusion."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..common.errors import BusyError, InputError
from .batcher import Batcher, BatchOutcome
from .compile_cache import download_compile_cache, s3_cache_location, upload_compile_cache
from .encoding import CONTENT_TYPES, encode_image
from .output_store import OutputStore
from .pipeline_setup import load_pipeline, resolve_devices, resolve_dtype
from .request_context import BodyLimitMiddleware, RequestContextMiddleware, request_id_var
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
    406: {"model": ErrorResponse, "description": "no acceptable media type in Accept"},
    408: {"model": ErrorResponse, "description": "request body not received in time"},
    413: {"model": ErrorResponse, "description": "request body too large"},
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
    cache_upload: asyncio.Task[bool] | None = None


class NotReadyError(BusyError):
    """The model is still loading (or failed to); the client retries later (503)."""

    code = "loading"


class NotAcceptableError(InputError):
    """No media type this endpoint produces is acceptable to the client (406)."""

    code = "not_acceptable"


# What /invocations can answer with, in order of preference when the client rates several equally.
_OFFERS = ("application/json", "image/png", "image/jpeg")
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg"}
# Bytes of JSON around the images of one response (ids, numbers, keys), generously.
_JSON_OVERHEAD = 2048
_JSON_PER_IMAGE = 256


def png_bytes_bound(width: int, height: int) -> int:
    """Upper bound of one encoded RGB image: raw rows with a filter byte, plus deflate/chunk framing and headers.

    PNG at worst stores the rows uncompressed (5 bytes per 64 KiB deflate block, 12 per IDAT chunk); JPEG at
    quality 92 stays below it for photographic content, and the encoded size is checked again afterwards.
    """
    raw = height * (3 * width + 1)
    return raw + 17 * math.ceil(raw / 65535) + 1024


def inline_bytes_bound(width: int, height: int, count: int, *, raw_image: bool) -> int:
    """Upper bound of an inline response: base64 of count images plus the JSON around them (or one raw image)."""
    image = png_bytes_bound(width, height)
    if raw_image:
        return image
    return _JSON_OVERHEAD + count * (4 * math.ceil(image / 3) + _JSON_PER_IMAGE)


def negotiate(accept: str, image_format: str | None) -> str | None:
    """Pick the response type from Accept (q-values honoured): None for JSON, "png"/"jpeg" for raw image bytes.

    image_format is the body's explicit choice (None when not given). Raises NotAcceptableError (406) when
    nothing we produce is acceptable, InputError naming image_format when Accept only allows the other image type.
    """
    ranges: list[tuple[str, float]] = []
    for item in (accept or "*/*").split(","):
        media, *params = (part.strip() for part in item.split(";"))
        media = media.lower().replace("image/jpg", "image/jpeg")
        if not media:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = min(1.0, max(0.0, float(value)))
                except ValueError:
                    quality = 0.0
        ranges.append((media, quality))

    def quality_of(offer: str) -> float:
        """q of the most specific range matching offer (exact, then type/*, then */*); 0 when none does."""
        kind = offer.split("/", maxsplit=1)[0]
        best_rank, best_quality = -1, 0.0
        for media, quality in ranges:
            rank = 2 if media == offer else 1 if media == f"{kind}/*" else 0 if media == "*/*" else -1
            if rank > best_rank:
                best_rank, best_quality = rank, quality
        return best_quality

    scores = {offer: quality_of(offer) for offer in _OFFERS}
    if image_format is not None:
        wanted = f"image/{image_format}"
        other = next(offer for offer in _IMAGE_FORMATS if offer != wanted)
        refused_other = scores.pop(other)
        if max(scores.values()) <= 0 and refused_other > 0:
            raise InputError(
                f"image_format {image_format!r} conflicts with Accept {accept!r}; accept {wanted} or drop image_format",
                field="image_format",
                code="format_conflict",
            )
    best = max(scores, key=lambda offer: scores[offer])  # the first of equals, in _OFFERS order
    if scores[best] <= 0:
        raise NotAcceptableError(f"none of {', '.join(_OFFERS)} is acceptable to Accept {accept!r}", field="accept")
    return _IMAGE_FORMATS.get(best)


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
    on_load_failure: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """Build the app; the model loads in the background at startup so /ping answers 503 until it is warm.

    load_before_serving makes startup itself wait for the model (for embedding the app in-process);
    on_load_failure is called when loading fails (serve stops the process with a non-zero status).
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
            # Compiled: never more images in one call than the largest warmed batch (no unwarmed shape).
            max_batch=max(settings.warmup_batches) if settings.compile else settings.max_batch,
            batch_window_ms=settings.batch_window_ms,
            max_queue=settings.max_queue,
            queue_timeout_s=settings.queue_timeout_s,
        )
        state = ServerState(settings=settings, workers=workers, batcher=batcher, output_store=store)
        app.state.server = state
        loader = asyncio.create_task(_load(state, on_load_failure))
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
            if settings.compile:
                import torch  # noqa: PLC0415

                torch.compiler.set_stance("default")  # set by _load once warm

    app = FastAPI(
        title="GenArt Stable Diffusion endpoint",
        version="1.0.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    app.add_middleware(RequestContextMiddleware)  # outermost: the request id is set for everything inside

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
        status = 406 if isinstance(exc, NotAcceptableError) else 400
        return JSONResponse(_error_body(exc.code, exc.message, fields), status_code=status)

    @app.exception_handler(BusyError)
    async def on_busy_error(_request: Request, exc: BusyError) -> JSONResponse:
        status = 503 if isinstance(exc, NotReadyError) else 429
        headers = {"Retry-After": str(getattr(exc, "retry_after", 1))}
        return JSONResponse(_error_body(exc.code, exc.message), status_code=status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            _error_body("http_error", str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.get("/ping", response_model=PingResponse, responses={503: {"model": PingResponse}})
    async def ping(request: Request) -> Response:
        """200 while serving; 503 while loading, after a failed load, or after repeated failed batches."""
        status = _health(request.app.state.server)
        code = 200 if status == "healthy" else 503
        if request.method == "HEAD":
            return Response(status_code=code, media_type="application/json")
        return JSONResponse({"status": status}, status_code=code)

    app.head("/ping", include_in_schema=False)(ping)

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
        explicit_format = body.image_format if "image_format" in body.model_fields_set else None
        raw_format = negotiate(request.headers.get("accept", ""), explicit_format)
        _check_request(state, body, raw_format)
        negative = body.negative_prompt or ""
        specs = [ImageSpec(prompt=body.prompt, negative_prompt=negative, seed=seed) for seed in _seeds(body)]
        key = BatchKey(
            body.num_inference_steps, body.width, body.height, body.guidance_scale, body.scheduler, body.deterministic
        )
        request_id = request_id_var.get()
        outcome = await _submit_unless_gone(request, state, request_id=request_id, key=key, specs=specs)
        if outcome is None:  # the client went away; nobody reads this
            return Response(status_code=499)
        if raw_format is not None:
            data = await asyncio.to_thread(encode_image, outcome.images[0], raw_format)
            headers = {"X-Seed": str(specs[0].seed), "X-NSFW": str(outcome.nsfw[0]).lower()}
            return Response(data, media_type=CONTENT_TYPES[raw_format], headers=headers)
        images = await asyncio.to_thread(_package_images, state, body, request_id, specs, outcome)
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
            safety_checker=state.workers[0].has_safety_checker,
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


def _health(state: ServerState) -> str:
    """The /ping status: the load state, or "unhealthy" after settings.unhealthy_after_failed_batches in a row."""
    if state.status == "healthy" and (
        state.batcher.metrics.consecutive_failed_batches >= state.settings.unhealthy_after_failed_batches
    ):
        return "unhealthy"
    return state.status


async def _wait_for_disconnect(request: Request) -> None:
    """Return when the client closes the connection (the body has been read, so only a disconnect can arrive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _submit_unless_gone(
    request: Request, state: ServerState, *, request_id: str, key: BatchKey, specs: list[ImageSpec]
) -> BatchOutcome | None:
    """Queue the job and wait for it; if the client disconnects first, withdraw it (None) so no GPU time is spent."""
    job = asyncio.ensure_future(state.batcher.submit(request_id=request_id, key=key, specs=specs))
    gone = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        await asyncio.wait({job, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not job.done():
            job.cancel()
    if job.cancelled():
        log.info("client disconnected before its images were made")
        return None
    return job.result()


def _check_request(state: ServerState, body: GenerationRequest, raw_format: str | None) -> None:
    """Reject requests that are valid JSON but cannot be served in this deployment (before any GPU time)."""
    settings = state.settings
    if state.status != "healthy":
        raise NotReadyError("model is not ready yet")
    if settings.sizes and (body.width, body.height) not in settings.sizes:
        allowed = ", ".join(f"{w}x{h}" for w, h in settings.sizes)
        field = "height" if body.width in {w for w, _ in settings.sizes} else "width"
        message = f"width x height {body.width}x{body.height} is not served here; allowed sizes: {allowed}"
        raise InputError(message, field=field, code="size_not_served")
    if body.output == "inline":
        bound = inline_bytes_bound(body.width, body.height, body.num_images, raw_image=raw_format is not None)
        if bound > settings.max_inline_bytes:
            raise _too_large(bound, body, settings.max_inline_bytes)
    if body.output == "s3" and state.output_store is None:
        raise InputError("output 's3' needs GENART_OUTPUTS_BUCKET", field="output", code="s3_not_configured")
    if raw_format is not None:
        if body.num_images != 1:
            message = "a raw image response carries exactly one image"
            raise InputError(message, field="num_images", code="one_image_only")
        if body.output != "inline":
            raise InputError("a raw image response cannot be written to S3", field="output", code="raw_needs_inline")


def _too_large(size: int, body: GenerationRequest, limit: int) -> InputError:
    what = f"{body.num_images} x {body.width}x{body.height} {body.image_format}"
    message = (
        f"an inline response for {what} can reach {size / 1e6:.2f} MB, over the {limit / 1e6:.2f} MB limit of a"
        ' real-time response; send "output": "s3" (or fewer or smaller images)'
    )
    return InputError(message, field="output", code="response_too_large")


def _package_images(
    state: ServerState, body: GenerationRequest, request_id: str, specs: list[ImageSpec], outcome: BatchOutcome
) -> list[ImageResult]:
    """Encode every image and either inline it as base64 (size checked again) or upload it to the outputs bucket."""
    encoded = [encode_image(image, body.image_format) for image in outcome.images]
    results = []
    if body.output == "inline":
        size = _JSON_OVERHEAD + sum(4 * math.ceil(len(data) / 3) + _JSON_PER_IMAGE for data in encoded)
        if size > state.settings.max_inline_bytes:
            raise _too_large(size, body, state.settings.max_inline_bytes)
    for index, (spec, data, nsfw) in enumerate(zip(specs, encoded, outcome.nsfw, strict=True)):
        if body.output == "s3":
            assert state.output_store is not None
            uri = state.output_store.put(
                request_id=request_id, index=index, seed=spec.seed, data=data, image_format=body.image_format
            )
            results.append(ImageResult(seed=spec.seed, format=body.image_format, nsfw=nsfw, s3_uri=uri))
        else:
            b64 = base64.b64encode(data).decode("ascii")
            results.append(ImageResult(seed=spec.seed, format=body.image_format, nsfw=nsfw, b64=b64))
    return results


def _shared_cache(settings: Settings, device: str) -> tuple[str, str] | None:
    """(bucket, key) of the compile cache shared through S3, when compiling with GENART_COMPILE_CACHE_S3_URI set."""
    if not (settings.compile and settings.compile_cache_s3_uri):
        return None
    dtype = str(resolve_dtype(settings, device)).removeprefix("torch.")
    # The warmed shapes are part of the key: a cache made for other buckets or batch sizes would miss graphs.
    shapes = ",".join(f"{w}x{h}" for w, h in settings.sizes) + "/" + ",".join(map(str, settings.warmup_batches))
    variant = f"{dtype}-{settings.compile_mode}-{hashlib.sha256(shapes.encode()).hexdigest()[:12]}"
    return s3_cache_location(settings.compile_cache_s3_uri, device=device, variant=variant)


async def _load(state: ServerState, on_failure: Callable[[BaseException], None] | None) -> None:
    """Load and warm every worker, then start batching and flip /ping to healthy (on_failure if loading fails).

    With a shared compile cache, the artifacts are fetched from S3 before compiling, and after a cold warm-up
    uploaded for the next instance (in the background: healthy does not wait for the upload).
    """
    shared = _shared_cache(state.settings, state.workers[0].device)
    try:
        if shared is not None:
            bucket, key = shared
            await asyncio.to_thread(
                download_compile_cache, bucket=bucket, key=key, cache_dir=state.settings.compile_cache_dir
            )
        await asyncio.gather(*(worker.start() for worker in state.workers))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        state.status = "failed"
        log.exception("model loading failed: %s", exc)
        if on_failure is not None:
            on_failure(exc)
        return
    if state.settings.compile:
        import torch  # noqa: PLC0415

        # Every accepted shape is warmed; anything unforeseen runs eagerly rather than compiling on the worker.
        torch.compiler.set_stance("eager_on_recompile")
    state.batcher.start()
    if shared is not None and any(worker.loaded_cache is None for worker in state.workers):
        bucket, key = shared
        cache_dir = state.settings.compile_cache_dir
        state.cache_upload = asyncio.create_task(
            asyncio.to_thread(upload_compile_cache, bucket=bucket, key=key, cache_dir=cache_dir)
        )
    state.seconds_to_healthy = time.perf_counter() - state.started
    state.status = "healthy"
    log.info("healthy after %.1f s on %s", state.seconds_to_healthy, [worker.device for worker in state.workers])
