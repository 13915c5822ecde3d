"""What the Cartoonizer stack would create, made on an S3/DynamoDB emulation: buckets, table, model, backends.

Used by `python -m runtime.web.local` (against a moto server) and by the tests (against moto's in-process mock).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ...cartoonizer import contract as cartoon_contract
from ...endpoint import contract as endpoint_contract
from .. import contract
from ..api.handler import App
from ..settings import WebSettings
from .backends import EmulatedEndpoint, LocalBackends

log = logging.getLogger(__name__)

REGION = "us-east-1"
OUTPUTS_BUCKET = "genart-outputs-local"
MODELS_BUCKET = "genart-models-local"
TABLE = "genart-web-local"
IMAGE_FUNCTION = "genart-cartoonizer-image-local"
VIDEO_ENDPOINT = "genart-cartoonizer-video-local"
DIFFUSION_ENDPOINT = "genart-diffusion-local"
CARTOONIZER_MODEL = Path("models") / "cartoonizer" / cartoon_contract.MODEL_FILE
CARTOONIZER_MODEL_KEY = cartoon_contract.model_prefix("local") + cartoon_contract.MODEL_FILE
# Local defaults: sizes the tiny random pipeline draws in a few seconds on a laptop CPU. GENART_WEB_* overrides.
LOCAL_ENV = {
    contract.ENV_TABLE: TABLE,
    contract.ENV_OUTPUTS_BUCKET: OUTPUTS_BUCKET,
    contract.ENV_IMAGE_FUNCTION: IMAGE_FUNCTION,
    contract.ENV_VIDEO_ENDPOINT: VIDEO_ENDPOINT,
    contract.ENV_DIFFUSION_ENDPOINT: DIFFUSION_ENDPOINT,
    contract.ENV_MAX_GENERATE_SIDE: "512",
    contract.ENV_GENERATE_SIZES: "256x256,512x512",
    contract.ENV_STALE_AFTER_S: "120",
}


def local_settings(environ: Mapping[str, str] | None = None, **overrides: str) -> WebSettings:
    """The API settings of the local studio: LOCAL_ENV, then GENART_WEB_* variables of environ, then overrides."""
    source = os.environ if environ is None else environ
    env = {**LOCAL_ENV, **{k: v for k, v in source.items() if k.startswith("GENART_WEB_")}, **overrides}
    return WebSettings.from_env(env)


def create_resources(*, s3: Any, dynamodb: Any, settings: WebSettings) -> None:
    """The outputs and models buckets and the jobs table (keys and TTL as the stack declares them)."""
    for bucket in (settings.outputs_bucket, MODELS_BUCKET):
        s3.create_bucket(Bucket=bucket)
    dynamodb.create_table(
        TableName=settings.table,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[
            {"AttributeName": contract.TABLE_PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": contract.TABLE_SORT_KEY, "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": contract.TABLE_PARTITION_KEY, "AttributeType": "S"},
            {"AttributeName": contract.TABLE_SORT_KEY, "AttributeType": "S"},
        ],
    )
    dynamodb.update_time_to_live(
        TableName=settings.table,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": contract.TABLE_TTL_ATTRIBUTE},
    )


def upload_cartoonizer_model(*, s3: Any, model: Path | None, work_dir: Path) -> str:
    """Put the cartoonizer model (and its manifest) where the stack keeps it; random weights when model is None."""
    if model is None:
        from ...cartoonizer.network import random_weights  # noqa: PLC0415
        from ...cartoonizer.onnx_model import build_model  # noqa: PLC0415

        model = work_dir / cartoon_contract.MODEL_FILE
        weights = {f"generator/{name}": value for name, value in random_weights(seed=0).items()}
        model.write_bytes(build_model(weights).SerializeToString())
    s3.upload_file(str(model), MODELS_BUCKET, CARTOONIZER_MODEL_KEY)
    manifest = model.with_name(cartoon_contract.MANIFEST_FILE)
    if manifest.is_file():
        key = CARTOONIZER_MODEL_KEY.rsplit("/", 1)[0] + "/" + cartoon_contract.MANIFEST_FILE
        s3.upload_file(str(manifest), MODELS_BUCKET, key)
    return str(model)


def _cartoonizer_settings(settings: WebSettings, *, progress_interval_s: float, log_level: str) -> Any:
    from ...cartoonizer.settings import Settings  # noqa: PLC0415

    return Settings.from_env(
        {
            cartoon_contract.ENV_MODELS_BUCKET: MODELS_BUCKET,
            cartoon_contract.ENV_MODEL_KEY: CARTOONIZER_MODEL_KEY,
            cartoon_contract.ENV_OUTPUTS_BUCKET: settings.outputs_bucket,
            cartoon_contract.ENV_DEVICE: "cpu",
            cartoon_contract.ENV_MAX_IMAGE_BYTES: str(settings.max_image_bytes),
            cartoon_contract.ENV_PROGRESS_INTERVAL_S: str(progress_interval_s),
            # The image Lambda's handler configures logging itself; keep it at the studio's level.
            cartoon_contract.ENV_LOG_LEVEL: log_level,
        }
    )


def _diffusion_settings(settings: WebSettings) -> Any:
    from ...endpoint.settings import Settings  # noqa: PLC0415

    smallest = min(min(size) for size in settings.generate_sizes)
    return Settings.from_env(
        {
            endpoint_contract.ENV_DEVICE: "cpu",
            endpoint_contract.ENV_OUTPUTS_BUCKET: settings.outputs_bucket,
            endpoint_contract.ENV_MAX_SIDE: str(settings.max_generate_side),
            endpoint_contract.ENV_MAX_STEPS: str(settings.max_generate_steps),
            endpoint_contract.ENV_MAX_IMAGES: str(settings.max_generate_images),
            endpoint_contract.ENV_SIZES: ",".join(f"{w}x{h}" for w, h in settings.generate_sizes),
            endpoint_contract.ENV_WARMUP_SIZES: str(smallest),
            endpoint_contract.ENV_WARMUP_STEPS: "1",
            endpoint_contract.ENV_WARMUP_BATCHES: "1",
            endpoint_contract.ENV_BATCH_WINDOW_MS: "0",
        }
    )


@dataclasses.dataclass
class LocalStudio:
    """The API app over emulated services, and what must be closed at the end."""

    app: App
    backends: LocalBackends
    exits: contextlib.ExitStack


@contextlib.contextmanager
def local_studio(
    *,
    s3: Any,
    dynamodb: Any,
    settings: WebSettings,
    cartoonizer_model: Path | None,
    warmup_s: float,
    progress_interval_s: float = 0.5,
    log_level: str = "WARNING",
) -> Iterator[LocalStudio]:
    """Create the resources, start the emulated backends and yield the API app wired to them."""
    from fastapi.testclient import TestClient  # noqa: PLC0415

    from ...cartoonizer import lambda_handler  # noqa: PLC0415
    from ...cartoonizer.engine import Cartoonizer  # noqa: PLC0415
    from ...cartoonizer.model_store import ModelInfo, load_model_info  # noqa: PLC0415
    from ...cartoonizer.server import create_app as create_cartoonizer_app  # noqa: PLC0415
    from ...endpoint.app import create_app as create_diffusion_app  # noqa: PLC0415
    from ...endpoint.output_store import OutputStore  # noqa: PLC0415
    from ...endpoint.tiny_pipeline import build_random_pipeline  # noqa: PLC0415

    with contextlib.ExitStack() as exits:
        work_dir = Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="genart-web-local-")))
        create_resources(s3=s3, dynamodb=dynamodb, settings=settings)
        model_path = Path(upload_cartoonizer_model(s3=s3, model=cartoonizer_model, work_dir=work_dir))
        cartoon_settings = _cartoonizer_settings(settings, progress_interval_s=progress_interval_s, log_level=log_level)
        # The image Lambda keeps its model per container; a fresh local studio is a fresh container.
        lambda_handler._loaded.pop("engine", None)
        lambda_handler._loaded.pop("model", None)
        lambda_cache = work_dir / "lambda-model"

        def image_handler(manifest: dict[str, Any]) -> Any:
            # The cold start, into this studio's own folder rather than the Lambda's /tmp/cartoonizer-model.
            lambda_handler.load_engine(cartoon_settings, s3=s3, cache_dir=lambda_cache)
            return lambda_handler.handler(manifest, None, s3=s3, settings=cartoon_settings)

        def start_cartoonizer() -> Any:
            def factory() -> tuple[Cartoonizer, ModelInfo | None]:
                info = load_model_info(model_path)
                return Cartoonizer(info.path, device="cpu"), info

            client = TestClient(create_cartoonizer_app(settings=cartoon_settings, factory=factory, s3=s3))
            return exits.enter_context(client)

        def start_diffusion() -> Any:
            app = create_diffusion_app(
                settings=_diffusion_settings(settings),
                factory=lambda _device: build_random_pipeline(preset="tiny", seed=0),
                devices=["cpu"],
                output_store=OutputStore(
                    bucket=settings.outputs_bucket, prefix=endpoint_contract.OUTPUTS_PREFIX, client=s3
                ),
            )
            return exits.enter_context(TestClient(app))

        endpoints = {
            settings.video_endpoint: EmulatedEndpoint(
                name=settings.video_endpoint,
                start_app=start_cartoonizer,
                s3=s3,
                bucket=settings.outputs_bucket,
                output_prefix=cartoon_contract.ASYNC_OUTPUT_PREFIX,
                failure_prefix=cartoon_contract.ASYNC_FAILURE_PREFIX,
                warmup_s=warmup_s,
            )
        }
        if settings.diffusion_endpoint:
            endpoints[settings.diffusion_endpoint] = EmulatedEndpoint(
                name=settings.diffusion_endpoint,
                start_app=start_diffusion,
                s3=s3,
                bucket=settings.outputs_bucket,
                output_prefix=endpoint_contract.ASYNC_OUTPUT_PREFIX,
                failure_prefix=endpoint_contract.ASYNC_FAILURE_PREFIX,
                warmup_s=warmup_s,
            )
        backends = LocalBackends(image_handler=image_handler, endpoints=endpoints)
        exits.callback(backends.shutdown)
        for endpoint in endpoints.values():
            endpoint.start()
        app = App.build(settings=settings, s3=s3, dynamodb=dynamodb, backends=backends)
        yield LocalStudio(app=app, backends=backends, exits=exits)
