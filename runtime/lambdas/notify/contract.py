"""Names the Pipeline stack, the pipeline definition and the notify function share (no imports)."""

from __future__ import annotations

ENV_TOPIC_ARN = "TOPIC_ARN"
# Optional: failures also go to the app's ops-alerts topic when this is set.
ENV_OPS_TOPIC_ARN = "OPS_TOPIC_ARN"
ENV_MODELS_BUCKET = "MODELS_BUCKET"
ENV_DATASETS_BUCKET = "DATASETS_BUCKET"
ENV_LINK_EXPIRY_SECONDS = "LINK_EXPIRY_SECONDS"
# Optional: the function logs at INFO unless this says otherwise.
ENV_LOG_LEVEL = "GENART_LOG_LEVEL"
DEFAULT_LINK_EXPIRY_SECONDS = 6 * 3600
# The sample grid and the exported generator inside a run's samples prefix, and where a published one goes
# (runtime/pipeline/stylegan2/contract.py SAMPLE_GRID_FILE, EXPORTED_MODEL_FILE, PUBLISHED_MODEL_KEY).
SAMPLE_GRID_FILE = "grid.png"
EXPORTED_MODEL_FILE = "generator.onnx"
PUBLISHED_MODEL_KEY = "stylegan/latest.onnx"
RUNS_PREFIX = "stylegan/runs/"
FEATURE_EXTRACTOR_PREFIX = "stylegan/feature-extractor/"
# The training code's model presets (runtime/pipeline/stylegan2/config.py PRESETS).
MODEL_PRESETS = ("auto", "cifar", "paper256", "paper512", "paper1024", "small", "stylegan2", "tiny")
# Batch, Gamma and LearningRate values that mean "the preset's own value" (runtime/pipeline/stylegan2/contract.py
# CFG_BATCH, CFG_GAMMA, CFG_LEARNING_RATE; any negative Gamma means the same).
CFG_BATCH = 0
CFG_GAMMA = -1.0
CFG_LEARNING_RATE = 0.0
# BatchGpu's "auto" (runtime/pipeline/stylegan2/contract.py AUTO_BATCH_GPU).
AUTO_BATCH_GPU = 0

# What a pipeline step asks of the function (the event's "action"); EventBridge's status events carry none.
ACTION = "action"
ACTION_VALIDATE = "validate"
ACTION_PUBLISH = "publish"
ACTION_NOTIFY_PUBLISHED = "notify_published"
ACTION_NOTIFY_NOT_PUBLISHED = "notify_not_published"
PIPELINE_EVENT_SOURCE = "aws.sagemaker"
PIPELINE_EVENT_TYPE = "SageMaker Model Building Pipeline Execution Status Change"

# The function's code asset: the repository's runtime/ folder cut down to the `runtime` package, lambdas/ and
# the stdlib-only shared modules (glob excludes, later patterns win), so the handler imports runtime.common.
CODE_ASSET_DIR = "runtime"
CODE_ASSET_EXCLUDE = (
    "*",
    "!__init__.py",
    "!lambdas",
    "!lambdas/**",
    "!common",
    "!common/**",
    "common/settings.py",
    "**/__pycache__",
    "**/*.pyc",
)
HANDLER = "runtime.lambdas.notify.handler.handler"
