"""Names shared by the Pipeline stack and the step scripts: S3 key layout and container paths (no imports)."""

from __future__ import annotations

# Key layout in the models bucket; the stack's IAM policies are scoped to these prefixes.
MODELS_PREFIX = "stylegan"
RUNS_PREFIX = f"{MODELS_PREFIX}/runs"
PUBLISHED_MODEL_NAME = "latest.onnx"
# The generator the bot serves (runtime/bot/contract.py DEFAULT_MODEL_KEY names the same object).
PUBLISHED_MODEL_KEY = f"{MODELS_PREFIX}/{PUBLISHED_MODEL_NAME}"
SAMPLES_DIR = "samples"
QUALITY_DIR = "quality"
SAMPLE_GRID_FILE = "grid.png"
# The export step's ONNX file inside a run's samples prefix; the publish step copies it to PUBLISHED_MODEL_KEY.
EXPORTED_MODEL_FILE = "generator.onnx"
# Checkpoints live outside the runs prefix, one folder per execution, under a prefix whose noncurrent versions
# expire within a day (the Storage stack's lifecycle rule): pruning a 0.7 GB checkpoint frees it by the next day.
CHECKPOINTS_PREFIX = f"{MODELS_PREFIX}/checkpoints"
# Keys the notify function presigns or copies and the checkpoint sync may delete, for the stack's IAM policies.
SAMPLE_GRID_KEY_PATTERN = f"{RUNS_PREFIX}/*/{SAMPLES_DIR}/{SAMPLE_GRID_FILE}"
EXPORTED_MODEL_KEY_PATTERN = f"{RUNS_PREFIX}/*/{SAMPLES_DIR}/{EXPORTED_MODEL_FILE}"
CHECKPOINT_KEY_PATTERN = f"{CHECKPOINTS_PREFIX}/*"

# Quality gate: the export step scores the generator against the training set with a feature extractor
# (TorchScript, called as extractor(uint8 images [N, 3, H, W], return_features=True) -> [N, D]) that the operator
# uploads once (python -m runtime.pipeline.quality.upload_extractor); nothing is downloaded at run time.
FEATURE_EXTRACTOR_PREFIX = f"{MODELS_PREFIX}/feature-extractor"
FEATURE_EXTRACTOR_FILE = "extractor.pt"
FEATURE_EXTRACTOR_KEY = f"{FEATURE_EXTRACTOR_PREFIX}/{FEATURE_EXTRACTOR_FILE}"
# quality.json in a run's quality prefix; the ConditionStep reads these fields (JsonGet) with the pipeline role.
QUALITY_FILE = "quality.json"
QUALITY_KEY_PATTERN = f"{RUNS_PREFIX}/*/{QUALITY_DIR}/{QUALITY_FILE}"
QUALITY_FID = "fid"
QUALITY_KID = "kid"
# 1 when every generated image was finite (a diverged generator renders NaN), else 0: such a run never publishes.
QUALITY_FINITE = "finite"
# What the score fields hold when the images were not finite: a value no threshold admits.
UNMEASURED_SCORE = 1.0e9
# MaxFid below zero means "publish whatever the score" (the default: a first run has no threshold to compare to).
PUBLISH_ALWAYS = -1.0
DEFAULT_QUALITY_SAMPLES = 5000

# Paths inside the step containers (SageMaker conventions); the step scripts default to them.
PROCESSING_INPUT_DATA = "/opt/ml/processing/input/data"
PROCESSING_DATASET = "/opt/ml/processing/output/dataset"
PROCESSING_MODEL = "/opt/ml/processing/input/model"
PROCESSING_SAMPLES = "/opt/ml/processing/output/samples"
PROCESSING_QUALITY = "/opt/ml/processing/output/quality"
PROCESSING_REFERENCE = "/opt/ml/processing/input/reference"
PROCESSING_EXTRACTOR = "/opt/ml/processing/input/extractor"
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
TRAIN_CHANNEL = "train"
# Root of SageMaker's container layout; the image's `train` reads GENART_OPT_ML instead when set (local runs).
OPT_ML = "/opt/ml"
ENV_OPT_ML = "GENART_OPT_ML"

# Training hyperparameters the pipeline passes (name -> pipeline parameter); SageMaker writes them, as strings, to
# /opt/ml/input/config/hyperparameters.json, and the image's `train` turns each into `--<name> <value>`.
TRAINING_HYPERPARAMETERS: dict[str, str] = {
    "kimg": "Kimg",
    "batch": "Batch",
    "batch_gpu": "BatchGpu",
    "gamma": "Gamma",
    "lr": "LearningRate",
    "resolution": "Resolution",
    "cfg": "ModelPreset",
    "mirror": "Mirror",
    "snapshot-kimg": "SnapshotKimg",
}
# The values of Batch, Gamma and LearningRate (the pipeline's defaults) that mean "the cfg's own value": a run with
# the default parameters trains the ModelPreset as it is defined (config.TRAINING_PRESETS); any other value
# overrides it. The train CLI reads --batch 0, a negative --gamma and --lr 0 the same way.
CFG_BATCH = 0
CFG_GAMMA = -1.0
CFG_LEARNING_RATE = 0.0
# BatchGpu (the train CLI's --batch-gpu, images per GPU per forward/backward round) of 0, the default: the per-GPU
# batch, capped by resolution (config.BATCH_GPU_CAPS); any other value must divide the per-GPU batch.
AUTO_BATCH_GPU = 0

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
    "pipeline/quality/upload_extractor.py",
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


def prepare_arguments(*, resolution: object) -> list[object]:
    """Container arguments of the dataset step (the pipeline passes a parameter, a local run its value)."""
    return ["--source", PROCESSING_INPUT_DATA, "--dest", PROCESSING_DATASET, "--resolution", resolution]


def export_arguments(*, quality_samples: object) -> list[object]:
    """Container arguments of the generate/export step: samples, ONNX export and the quality score."""
    return [
        *("--checkpoint", PROCESSING_MODEL, "--outdir", PROCESSING_SAMPLES),
        *("--publish-dir", "", "--num-images", "16", "--grid", "4x4"),
        *("--reference", PROCESSING_REFERENCE, "--extractor", PROCESSING_EXTRACTOR),
        *("--quality-dir", PROCESSING_QUALITY, "--quality-samples", quality_samples),
    ]


# The training job's metric line, `[metrics] kimg=<f> loss_G=<f> ... augment_p=<f>` (metrics.format_metrics writes
# it), and one SageMaker metric definition per value, which the Pipeline stack passes to the training step.
_NUMBER = r"([-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)"
METRIC_NAMES: tuple[str, ...] = ("kimg", "loss_G", "loss_D", "r1", "sec_per_kimg", "pl", "augment_p")
METRIC_DEFINITIONS: list[dict[str, str]] = [
    {"Name": name, "Regex": rf"\[metrics\].*\b{name}={_NUMBER}"} for name in METRIC_NAMES
]
