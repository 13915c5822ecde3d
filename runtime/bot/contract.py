"""Names the Bot stack passes to the bot: environment variables, S3 keys and paths on the instance (no imports)."""

from __future__ import annotations

# Environment variables the systemd unit sets (values are names and ARNs only, never the token).
ENV_TOKEN_SECRET_ARN = "GENART_TOKEN_SECRET_ARN"  # noqa: S105 - a variable name, not a credential
ENV_MODELS_BUCKET = "GENART_MODELS_BUCKET"
ENV_MODEL_KEY = "GENART_MODEL_KEY"
ENV_MODEL_CACHE = "GENART_MODEL_CACHE"
ENV_LOG_LEVEL = "GENART_LOG_LEVEL"
ENV_OPERATOR_IDS = "GENART_OPERATOR_IDS"

# The generator the pipeline publishes and the bot serves (runtime/pipeline/stylegan2/contract.py writes it).
DEFAULT_MODEL_KEY = "stylegan/latest.onnx"
# Where the bot keeps its copy of the model on the instance (systemd CacheDirectory=genart).
MODEL_CACHE_PATH = "/var/cache/genart/model.onnx"
