"""Names shared by the Pipeline stack and the step scripts: S3 key layout and container paths (no imports)."""

from __future__ import annotations

# Key layout in the models bucket; the stack's IAM policies are scoped to these prefixes.
MODELS_PREFIX = "stylegan"
RUNS_PREFIX = f"{MODELS_PREFIX}/runs"
PUBLISHED_MODEL_NAME = "latest.onnx"
# The generator the bot serves (runtime/bot/contract.py DEFAULT_MODEL_KEY names the same object).
PUBLISHED_MODEL_KEY = f"{MODELS_PREFIX}/{PUBLISHED_MODEL_NAME}"
SAMPLES_DIR = "samples"
CHECKPOINTS_DIR = "checkpoints"
SAMPLE_GRID_FILE = "grid.png"
# Keys the notify function presigns and the checkpoint sync may delete, for the stack's IAM policies.
SAMPLE_GRID_KEY_PATTERN = f"{RUNS_PREFIX}/*/{SAMPLES_DIR}/{SAMPLE_GRID_FILE}"
CHECKPOINT_KEY_PATTERN = f"{RUNS_PREFIX}/*/{CHECKPOINTS_DIR}/*"

# Paths inside the step containers (SageMaker conventions); the step scripts default to them.
PROCESSING_INPUT_DATA = "/opt/ml/processing/input/data"
PROCESSING_DATASET = "/opt/ml/processing/output/dataset"
PROCESSING_MODEL = "/opt/ml/processing/input/model"
PROCESSING_SAMPLES = "/opt/ml/processing/output/samples"
PROCESSING_PUBLISH = "/opt/ml/processing/output/publish"
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
TRAIN_CHANNEL = "train"

# The step image: its build context is the repository's runtime/ folder (so runtime/common ships beside the step
# code) and its Dockerfile path is relative to that context:
#   docker build -f runtime/pipeline/Dockerfile runtime
IMAGE_BUILD_CONTEXT = "runtime"
IMAGE_DOCKERFILE = "pipeline/Dockerfile"
# What the image asset stages from the context (Docker ignore syntax, later patterns win); the Dockerfile's
# Dockerfile.dockerignore says the same for a plain `docker build`.
IMAGE_EXCLUDES = (
    "*",
    "!__init__.py",
    "!pipeline",
    "!common",
    "pipeline/local_run.py",
    "common/settings.py",
    "**/__pycache__",
    "**/*.pyc",
)
# Where the image keeps the code (PYTHONPATH) and the package whose modules the steps run with `python -m`.
CODE_DIR = "/opt/ml/code"
STEP_PACKAGE = "runtime.pipeline.stylegan2"
TRAIN_ENTRY_MODULE = "runtime.pipeline.container.sagemaker_train"


def step_module(tool: str) -> str:
    """The `python -m` module of one step script, e.g. runtime.pipeline.stylegan2.generate."""
    return f"{STEP_PACKAGE}.{tool}"


# The training job's metric line, `[metrics] kimg=<f> loss_G=<f> ... augment_p=<f>` (metrics.format_metrics writes
# it), and one SageMaker metric definition per value, which the Pipeline stack passes to the training step.
_NUMBER = r"([-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)"
METRIC_NAMES: tuple[str, ...] = ("kimg", "loss_G", "loss_D", "r1", "sec_per_kimg", "pl", "augment_p")
METRIC_DEFINITIONS: list[dict[str, str]] = [
    {"Name": name, "Regex": rf"\[metrics\].*\b{name}={_NUMBER}"} for name in METRIC_NAMES
]
