"""Names the Diffusion stack passes to the serving container: environment variables, prefixes, paths (no imports)."""

from __future__ import annotations

ENV_OUTPUTS_BUCKET = "GENART_OUTPUTS_BUCKET"
ENV_OUTPUTS_PREFIX = "GENART_OUTPUTS_PREFIX"
ENV_COMPILE = "GENART_COMPILE"
ENV_DTYPE = "GENART_DTYPE"
ENV_COMPILE_CACHE_DIR = "GENART_COMPILE_CACHE_DIR"
# s3://<models bucket>/<COMPILE_CACHE_PREFIX><model name>/: compile artifacts shared by every instance.
ENV_COMPILE_CACHE_S3_URI = "GENART_COMPILE_CACHE_S3_URI"
ENV_HF_HUB_OFFLINE = "HF_HUB_OFFLINE"
# Further settings the server reads (runtime/endpoint/settings.py); SageMaker sets the first two.
ENV_MODEL_DIR = "SM_MODEL_DIR"
ENV_PORT = "SAGEMAKER_BIND_TO_PORT"
ENV_DEVICE = "GENART_DEVICE"
ENV_MAX_SIDE = "GENART_MAX_SIDE"
ENV_MAX_IMAGES = "GENART_MAX_IMAGES"
ENV_MAX_STEPS = "GENART_MAX_STEPS"
ENV_MAX_PROMPT_CHARS = "GENART_MAX_PROMPT_CHARS"
ENV_COMPILE_MODE = "GENART_COMPILE_MODE"
ENV_CHANNELS_LAST = "GENART_CHANNELS_LAST"
ENV_FUSE_QKV = "GENART_FUSE_QKV"
ENV_WARMUP_SIZES = "GENART_WARMUP_SIZES"
ENV_WARMUP_BATCHES = "GENART_WARMUP_BATCHES"
ENV_WARMUP_STEPS = "GENART_WARMUP_STEPS"
ENV_SAFETY_CHECKER = "GENART_SAFETY_CHECKER"
ENV_LOG_LEVEL = "GENART_LOG_LEVEL"
# Micro-batching knobs: the same names as the bot's (runtime/bot/contract.py).
ENV_MAX_BATCH = "GENART_MAX_BATCH"
ENV_BATCH_WINDOW_MS = "GENART_BATCH_WINDOW_MS"
ENV_MAX_QUEUE = "GENART_MAX_QUEUE"
# Shape policy, admission, health and response limits.
ENV_SIZES = "GENART_SIZES"
ENV_QUEUE_TIMEOUT_S = "GENART_QUEUE_TIMEOUT_S"
ENV_UNHEALTHY_AFTER_FAILED_BATCHES = "GENART_UNHEALTHY_AFTER_FAILED_BATCHES"
ENV_MAX_INLINE_BYTES = "GENART_MAX_INLINE_BYTES"
ENV_MAX_BODY_BYTES = "GENART_MAX_BODY_BYTES"
ENV_BODY_TIMEOUT_S = "GENART_BODY_TIMEOUT_S"

# Images written with output "s3" land under this prefix of the outputs bucket.
OUTPUTS_PREFIX = "diffusion/"
# Weights for model <name> live under this prefix of the models bucket; SageMaker copies it to MODEL_DIR.
MODELS_PREFIX = "diffusion/"
MODEL_DIR = "/opt/ml/model"
# /opt/ml/model is read-only on the instance; the inductor cache lives on the instance's own disk.
COMPILE_CACHE_DIR = "/tmp/genart-compile-cache"  # noqa: S108 - a path inside the container
# ... and is shared between instances under this prefix of the models bucket (read and written by the endpoint).
COMPILE_CACHE_PREFIX = "diffusion-compile-cache/"
PORT = 8080
# Asynchronous endpoint: requests are uploaded here and SageMaker writes results and failures beside them.
ASYNC_INPUT_PREFIX = "async/diffusion/in/"
ASYNC_OUTPUT_PREFIX = "async/diffusion/out/"
ASYNC_FAILURE_PREFIX = "async/diffusion/failed/"


def model_prefix(model_name: str) -> str:
    """Key prefix of one model's diffusers folder in the models bucket."""
    return f"{MODELS_PREFIX}{model_name}/"


def compile_cache_prefix(model_name: str) -> str:
    """Key prefix of one model's shared compile cache in the models bucket (torch version and GPU below it)."""
    return f"{COMPILE_CACHE_PREFIX}{model_name}/"


# The serving image: its build context is the repository's runtime/ folder (so runtime/common ships beside
# runtime/endpoint) and its Dockerfile path is relative to that context:
#   docker build -f runtime/endpoint/Dockerfile runtime
IMAGE_BUILD_CONTEXT = "runtime"
IMAGE_DOCKERFILE = "endpoint/Dockerfile"
# What the image asset stages from the context (Docker ignore syntax, later patterns win): __init__.py, endpoint/
# and common/ only; endpoint/Dockerfile.dockerignore says the same for a plain `docker build`.
IMAGE_EXCLUDES = (
    "*",
    "!__init__.py",
    "!endpoint",
    "!common",
    "**/__pycache__",
    "**/*.pyc",
    "**/.pytest_cache",
    "**/.mypy_cache",
    "**/.ruff_cache",
)
