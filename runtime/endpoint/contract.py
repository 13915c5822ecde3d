"""Names the Diffusion stack passes to the serving container: environment variables, prefixes, paths (no imports)."""

from __future__ import annotations

ENV_OUTPUTS_BUCKET = "GENART_OUTPUTS_BUCKET"
ENV_OUTPUTS_PREFIX = "GENART_OUTPUTS_PREFIX"
ENV_COMPILE = "GENART_COMPILE"
ENV_DTYPE = "GENART_DTYPE"
ENV_COMPILE_CACHE_DIR = "GENART_COMPILE_CACHE_DIR"
ENV_HF_HUB_OFFLINE = "HF_HUB_OFFLINE"

# Images written with output "s3" land under this prefix of the outputs bucket.
OUTPUTS_PREFIX = "diffusion/"
# Weights for model <name> live under this prefix of the models bucket; SageMaker copies it to MODEL_DIR.
MODELS_PREFIX = "diffusion/"
MODEL_DIR = "/opt/ml/model"
# /opt/ml/model is read-only on the instance; the inductor cache lives on the instance's own disk.
COMPILE_CACHE_DIR = "/tmp/genart-compile-cache"  # noqa: S108 - a path inside the container
PORT = 8080
# Asynchronous endpoint: requests are uploaded here and SageMaker writes results and failures beside them.
ASYNC_INPUT_PREFIX = "async/diffusion/in/"
ASYNC_OUTPUT_PREFIX = "async/diffusion/out/"
ASYNC_FAILURE_PREFIX = "async/diffusion/failed/"


def model_prefix(model_name: str) -> str:
    """Key prefix of one model's diffusers folder in the models bucket."""
    return f"{MODELS_PREFIX}{model_name}/"
