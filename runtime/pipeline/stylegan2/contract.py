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
