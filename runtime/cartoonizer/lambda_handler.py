"""Image Lambda (container image, CPU): the event is a job manifest; the answer is JSON with the output and timings.

The model key (GENART_MODEL_KEY in GENART_MODELS_BUCKET) is downloaded to /tmp once per container, with the
manifest.json beside it when there is one (its sha256 is checked). Bad input is answered, not raised:
{"state": "failed", "status": 4xx, "error": {"code", "message", "field"}}; internal errors answer 500.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path, PurePosixPath
from typing import Any

from ..common.errors import ConfigError, InputError
from ..common.jsonlog import configure_logging
from . import contract
from .engine import Cartoonizer
from .errors import MediaError
from .jobs import Job, run_job
from .model_store import ModelInfo, load_model_info
from .settings import Settings

log = logging.getLogger(__name__)

MODEL_CACHE_DIR = Path("/tmp/cartoonizer-model")  # noqa: S108 - /tmp is the only writable place in Lambda
_lock = threading.Lock()
_loaded: dict[str, Any] = {}


def _s3() -> Any:
    if "s3" not in _loaded:
        import boto3  # noqa: PLC0415

        _loaded["s3"] = boto3.client("s3")
    return _loaded["s3"]


def load_engine(settings: Settings, *, s3: Any, cache_dir: Path = MODEL_CACHE_DIR) -> tuple[Cartoonizer, ModelInfo]:
    """Download the model (and its manifest) once per container, then keep the session for later invocations."""
    with _lock:
        if "engine" in _loaded:
            return _loaded["engine"], _loaded["model"]
        if not settings.models_bucket or not settings.model_key:
            raise ConfigError(f"{contract.ENV_MODELS_BUCKET} and {contract.ENV_MODEL_KEY} must be set")
        cache_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        target = cache_dir / contract.MODEL_FILE
        s3.download_file(settings.models_bucket, settings.model_key, str(target))
        manifest_key = str(PurePosixPath(settings.model_key).with_name(contract.MANIFEST_FILE))
        try:
            s3.download_file(settings.models_bucket, manifest_key, str(cache_dir / contract.MANIFEST_FILE))
        except Exception:  # a model brought without a manifest still serves (its licence then reads "unknown")
            log.warning("model has no manifest", extra={"fields": {"key": manifest_key}})
        model = load_model_info(target)
        engine = Cartoonizer(model.path, device="cpu")
        _loaded.update(engine=engine, model=model)
        log.info("model loaded", extra={"fields": {"seconds": round(time.perf_counter() - started, 3)}})
        return engine, model


def failure(exc: Exception) -> dict[str, Any]:
    """The answer for a job that could not be done: 4xx with the reason, or 500 without details."""
    if isinstance(exc, MediaError | InputError):
        status = exc.status if isinstance(exc, MediaError) else 400
        error = {"code": exc.code, "message": exc.message, "field": exc.field}
    else:
        status, error = 500, {"code": "internal_error", "message": "internal error; see the function's logs"}
    return {contract.PROGRESS_STATE: "failed", "status": status, "error": error}


def handler(event: Any, context: Any = None, *, s3: Any = None, settings: Settings | None = None) -> dict[str, Any]:
    """Lambda entry point: cartoonize the image the event names into the output it names."""
    if not logging.getLogger().handlers or "configured" not in _loaded:
        configure_logging(level=(settings or Settings.from_env()).log_level)
        _loaded["configured"] = True
    client = s3 or _s3()
    try:
        config = settings or Settings.from_env()
        job = Job.parse(event if isinstance(event, dict | str | bytes) else {})
        engine, model = load_engine(config, s3=client)
        answer = run_job(
            job,
            engine=engine,
            model=model,
            settings=config,
            s3=client,
            allow_video=False,
            max_input_bytes=config.max_image_bytes,
        )
        answer["status"] = 200
        return answer
    except Exception as exc:
        if isinstance(exc, InputError):
            log.info("job refused", extra={"fields": {"error": str(exc)}})
        else:
            log.exception("job failed")
        return failure(exc)
