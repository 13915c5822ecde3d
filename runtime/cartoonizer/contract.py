"""Names the Cartoonizer stack passes to its runtimes: env vars, S3 keys, job and progress fields (no imports)."""

from __future__ import annotations

# Environment variables of both runtimes (the image Lambda and the video endpoint).
ENV_MODELS_BUCKET = "GENART_MODELS_BUCKET"
ENV_MODEL_KEY = "GENART_MODEL_KEY"  # the Lambda downloads this key to /tmp at cold start
ENV_OUTPUTS_BUCKET = "GENART_OUTPUTS_BUCKET"
ENV_DEVICE = "GENART_DEVICE"  # "cpu", "cuda" or "auto" (cuda on a GPU host, refusing a GPU it cannot use)
ENV_MAX_IMAGE_SIDE = "GENART_MAX_IMAGE_SIDE"
ENV_MAX_IMAGE_BYTES = "GENART_MAX_IMAGE_BYTES"
ENV_MAX_VIDEO_SIDE = "GENART_MAX_VIDEO_SIDE"
ENV_MAX_VIDEO_SECONDS = "GENART_MAX_VIDEO_SECONDS"
ENV_PROGRESS_INTERVAL_S = "GENART_PROGRESS_INTERVAL_S"
ENV_LOG_LEVEL = "GENART_LOG_LEVEL"
# The endpoint: SageMaker copies s3://<models>/cartoonizer/<name>/ to MODEL_DIR and sets the port.
ENV_MODEL_DIR = "SM_MODEL_DIR"
ENV_PORT = "SAGEMAKER_BIND_TO_PORT"

MODEL_DIR = "/opt/ml/model"
PORT = 8080
DEFAULT_MAX_IMAGE_SIDE = 1920
DEFAULT_MAX_VIDEO_SIDE = 1920
DEFAULT_PROGRESS_INTERVAL_S = 3.0

# Model <name> lives under this prefix of the models bucket: MODEL_FILE plus MANIFEST_FILE (sha256, source, licence).
MODELS_PREFIX = "cartoonizer/"
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
# Inputs (uploads) and results live in the outputs bucket, which expires them by lifecycle.
INPUTS_PREFIX = "cartoonizer/inputs/"
RESULTS_PREFIX = "cartoonizer/results/"
# Asynchronous endpoint: job manifests are uploaded here; SageMaker writes responses and failures beside them.
ASYNC_INPUT_PREFIX = "async/cartoonizer/in/"
ASYNC_OUTPUT_PREFIX = "async/cartoonizer/out/"
ASYNC_FAILURE_PREFIX = "async/cartoonizer/failed/"
# Progress is JSON written next to the output: s3://<bucket>/<output key> + PROGRESS_SUFFIX.
PROGRESS_SUFFIX = ".progress.json"

# A job (the Lambda's event, and the body of an async invocation) is a JSON object with these fields:
#   {"input": "s3://bucket/key", "output": "s3://bucket/key", "options": {"smooth": false}}
JOB_INPUT = "input"
JOB_OUTPUT = "output"
JOB_OPTIONS = "options"
# Progress and the final response carry these fields; STATE is one of the PROGRESS_STATES.
PROGRESS_STATE = "state"
PROGRESS_FRAMES_DONE = "frames_done"
PROGRESS_FRAMES_TOTAL = "frames_total"
PROGRESS_FPS = "fps"
PROGRESS_ETA_S = "eta_s"
PROGRESS_ERROR = "error"
PROGRESS_STATES = ("queued", "running", "done", "failed")

# Both images build from the repository's runtime/ folder (runtime/common ships beside runtime/cartoonizer).
IMAGE_BUILD_CONTEXT = "runtime"
ENDPOINT_DOCKERFILE = "cartoonizer/Dockerfile"
LAMBDA_DOCKERFILE = "cartoonizer/Dockerfile.lambda"
LAMBDA_HANDLER = "runtime.cartoonizer.lambda_handler.handler"
IMAGE_EXCLUDES = (
    "*",
    "!__init__.py",
    "!cartoonizer",
    "!common",
    "**/__pycache__",
    "**/*.pyc",
    "**/.pytest_cache",
    "**/.mypy_cache",
    "**/.ruff_cache",
)


def model_prefix(model_name: str) -> str:
    """Key prefix of one cartoonizer model in the models bucket."""
    return f"{MODELS_PREFIX}{model_name}/"


def progress_key(output_key: str) -> str:
    """Key of the progress JSON written next to an output."""
    return f"{output_key}{PROGRESS_SUFFIX}"
