"""Run the StyleGAN2 pipeline locally on CPU through the entry points SageMaker calls.

    python -m runtime.pipeline.local_run --workdir DIR [--images 24] [--kimg 0.05] [--max-fid -1] [--break-generator]

The pipeline's steps in its order, each through the entry point the service uses:
  ValidateParameters  the pipeline function (runtime.lambdas.notify.handler) under moto, with this run's parameters
  PrepareDataset      python -m runtime.pipeline.stylegan2.dataset_tool with the step's container arguments
  TrainStyleGAN2      the image's `train` (runtime.pipeline.container.sagemaker_train) in an emulated /opt/ml:
                      hyperparameters.json (strings, as SageMaker writes them), resourceconfig.json, the train
                      channel, checkpoints synced from and to the checkpoint prefix; /opt/ml/model -> model.tar.gz
  GenerateAndExport   python -m runtime.pipeline.stylegan2.generate with the step's arguments, given model.tar.gz,
                      the prepared dataset and the feature extractor as its processing inputs
  QualityGate         the ConditionStep's decision on quality.json and MaxFid
  PublishGenerator + NotifyPublished, or NotifyNotPublished: the pipeline function under moto
Folders stand in for the buckets (DIR/s3/datasets/..., DIR/s3/models/...); the function's steps see them through a
moto S3 mirror, and a published generator comes back to DIR/s3/models/stylegan/latest.onnx, which
`python -m runtime.bot --console --model DIR/s3/models/stylegan/latest.onnx` loads. The synthetic dataset (coloured
shapes, packed into a zip like the seed's Kaggle download) and the tiny random feature extractor are made here.
--break-generator fills the trained generator with NaN (a diverged run): the gate then refuses it and says why.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from ..lambdas.notify import contract as notify_contract
from .quality.gate import GateDecision, decide
from .stylegan2.contract import (
    AUTO_BATCH_GPU,
    CFG_GAMMA,
    CFG_LEARNING_RATE,
    CHECKPOINTS_PREFIX,
    ENV_OPT_ML,
    EXPORTED_MODEL_FILE,
    FEATURE_EXTRACTOR_KEY,
    OPT_ML,
    PROCESSING_DATASET,
    PROCESSING_EXTRACTOR,
    PROCESSING_INPUT_DATA,
    PROCESSING_MODEL,
    PROCESSING_QUALITY,
    PROCESSING_REFERENCE,
    PROCESSING_SAMPLES,
    PUBLISH_ALWAYS,
    PUBLISHED_MODEL_KEY,
    QUALITY_FID,
    QUALITY_FILE,
    QUALITY_FINITE,
    QUALITY_KID,
    RUNS_PREFIX,
    TRAIN_ENTRY_MODULE,
    TRAINING_HYPERPARAMETERS,
    export_arguments,
    prepare_arguments,
    step_module,
)

PIPELINE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PIPELINE_DIR.parents[1]
PIPELINE_NAME = "local"
RUN_ID = "local"
REGION = "us-east-1"
ACCOUNT = "123456789012"
# The moto buckets that mirror DIR/s3/<name>/.
BUCKETS = {"datasets": "genart-local-datasets", "models": "genart-local-models"}
TRAINING_JOB = f"pipelines-{RUN_ID}-trainstylegan2"
SOURCE_SIZE = 64
SHAPES = ("ellipse", "rectangle", "triangle")


class StepFailed(RuntimeError):
    """A step failed; the message names the step and why (as the pipeline's FailureReason would)."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"step {step} failed: {reason}")
        self.step = step
        self.reason = reason


@dataclass(frozen=True)
class LocalLayout:
    """Local stand-ins for the pipeline's S3 locations (same key layout under DIR/s3/<bucket>/) and containers."""

    workdir: Path

    def bucket(self, name: str) -> Path:
        """DIR/s3/<datasets|models>."""
        return self.workdir / "s3" / name

    @property
    def images(self) -> Path:
        """s3://<datasets>/anime-faces/ (the InputDataUri default)."""
        return self.bucket("datasets") / "anime-faces"

    @property
    def run(self) -> Path:
        """s3://<models>/stylegan/runs/<execution id>/."""
        return self.bucket("models") / RUNS_PREFIX / RUN_ID

    @property
    def dataset(self) -> Path:
        return self.run / "dataset"

    @property
    def checkpoints(self) -> Path:
        """s3://<models>/stylegan/checkpoints/<execution id>/ (the training step's CheckpointConfig)."""
        return self.bucket("models") / CHECKPOINTS_PREFIX / RUN_ID

    @property
    def model_archive(self) -> Path:
        """The training job's model.tar.gz (<S3OutputPath>/<job name>/output/model.tar.gz)."""
        return self.run / "training" / TRAINING_JOB / "output" / "model.tar.gz"

    @property
    def samples(self) -> Path:
        return self.run / "samples"

    @property
    def quality(self) -> Path:
        return self.run / "quality"

    @property
    def extractor(self) -> Path:
        """s3://<models>/stylegan/feature-extractor/extractor.pt (what the one-time upload helper writes)."""
        return self.bucket("models") / FEATURE_EXTRACTOR_KEY

    @property
    def published(self) -> Path:
        """s3://<models>/stylegan/latest.onnx, the generator the bot serves."""
        return self.bucket("models") / PUBLISHED_MODEL_KEY

    @property
    def notifications(self) -> Path:
        """What the SNS topic received, one text file per message."""
        return self.workdir / "notifications"

    def container(self, step: str) -> Path:
        """The emulated container filesystem of one job (its /opt/ml is <this>/opt/ml)."""
        return self.workdir / "containers" / step

    def uri(self, path: Path) -> str:
        """The s3:// URI a path under DIR/s3/ stands for."""
        relative = path.relative_to(self.workdir / "s3")
        bucket, *key = relative.parts
        return f"s3://{BUCKETS[bucket]}/{'/'.join(key)}"


@dataclass(frozen=True)
class LocalResult:
    """How the run ended: the gate's decision, the score and the published generator (None when held back)."""

    decision: GateDecision
    quality: dict[str, Any]
    published: Path | None


def draw_shapes_dataset(folder: Path, *, count: int, seed: int) -> list[Path]:
    """Write `count` PNGs of one or two random coloured shapes on a coloured background (deterministic per seed)."""
    rng = random.Random(seed)  # noqa: S311 (test images, not secrets)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        background = tuple(rng.randrange(256) for _ in range(3))
        image = Image.new("RGB", (SOURCE_SIZE, SOURCE_SIZE), background)
        draw = ImageDraw.Draw(image)
        for _ in range(rng.randint(1, 2)):
            colour = tuple(rng.randrange(256) for _ in range(3))
            x0, y0 = rng.randrange(0, SOURCE_SIZE // 2), rng.randrange(0, SOURCE_SIZE // 2)
            x1, y1 = x0 + rng.randrange(16, SOURCE_SIZE // 2), y0 + rng.randrange(16, SOURCE_SIZE // 2)
            shape = rng.choice(SHAPES)
            if shape == "ellipse":
                draw.ellipse((x0, y0, x1, y1), fill=colour)
            elif shape == "rectangle":
                draw.rectangle((x0, y0, x1, y1), fill=colour)
            else:
                draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=colour)
        path = folder / f"shape-{index:04d}.png"
        image.save(path)
        paths.append(path)
    return paths


def upload_input(layout: LocalLayout, *, count: int, seed: int, input_format: str) -> Path:
    """Draw the synthetic images into the input prefix as loose PNGs or one zip/tar.gz archive."""
    if input_format == "folder":
        draw_shapes_dataset(layout.images, count=count, seed=seed)
        return layout.images
    with tempfile.TemporaryDirectory() as scratch:
        drawn = draw_shapes_dataset(Path(scratch) / "shapes", count=count, seed=seed)
        layout.images.mkdir(parents=True, exist_ok=True)
        if input_format == "zip":
            archive = layout.images / "shapes.zip"
            with zipfile.ZipFile(archive, "w") as packed:
                for path in drawn:
                    packed.write(path, f"shapes/{path.name}")
        else:
            archive = layout.images / "shapes.tar.gz"
            with tarfile.open(archive, "w:gz") as packed:
                for path in drawn:
                    packed.add(path, f"shapes/{path.name}")
    return archive


def _python_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **extra}


def _run(step: str, command: list[str], env: Mapping[str, str]) -> None:
    print(f"\n=== {step}: {' '.join(command[1:])}", flush=True)
    started = time.monotonic()
    completed = subprocess.run(command, env=dict(env), cwd=REPO_ROOT, check=False)
    if completed.returncode != 0:
        raise StepFailed(step, f"AlgorithmError: exit code {completed.returncode} from {' '.join(command[1:])}")
    print(f"=== {step} done in {time.monotonic() - started:.1f} s", flush=True)


def _copy_in(source: Path, target: Path) -> None:
    """What a File-mode S3 input does: the prefix's objects below the local path (a single object keeps its name)."""
    target.mkdir(parents=True, exist_ok=True)
    if source.is_file():
        shutil.copy2(source, target / source.name)
    elif source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)


def _copy_out(source: Path, target: Path) -> None:
    """What an EndOfJob output upload does: the local path's files to the S3 prefix."""
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)


def run_processing(
    step: str,
    module: str,
    arguments: Sequence[object],
    *,
    layout: LocalLayout,
    python: str,
    inputs: Mapping[str, Path],
    outputs: Mapping[str, Path],
) -> None:
    """A processing job: inputs copied to their container paths, the step's arguments, outputs copied back."""
    root = layout.container(step)
    shutil.rmtree(root, ignore_errors=True)
    local = {path: str(root) + path for path in (*inputs, *outputs)}
    for container_path, source in inputs.items():
        _copy_in(source, Path(local[container_path]))
    for container_path in outputs:
        Path(local[container_path]).mkdir(parents=True, exist_ok=True)
    args = [local.get(str(arg), str(arg)) for arg in arguments]
    _run(step, [python, "-m", step_module(module), *args], _python_env())
    for container_path, target in outputs.items():
        _copy_out(Path(local[container_path]), target)


def hyperparameters(args: argparse.Namespace) -> dict[str, str]:
    """hyperparameters.json as SageMaker writes it: the pipeline's names, every value a string."""
    values = {
        "Kimg": args.kimg,
        "Batch": args.batch,
        "BatchGpu": args.batch_gpu,
        "Gamma": CFG_GAMMA,
        "LearningRate": CFG_LEARNING_RATE,
        "Resolution": args.resolution,
        "ModelPreset": args.cfg,
        "Mirror": 1,
        "SnapshotKimg": max(args.kimg / 2, 0.001),
    }
    written = {name: str(values[parameter]) for name, parameter in TRAINING_HYPERPARAMETERS.items()}
    # Local extras the train CLI also accepts: a fixed seed and progress ticks short enough for a tiny run.
    return {**written, "seed": str(args.seed), "tick-kimg": written["snapshot-kimg"]}


def run_training(layout: LocalLayout, args: argparse.Namespace) -> None:
    """The image's `train` entry point in an emulated /opt/ml, then model/ packed into model.tar.gz."""
    opt_ml = layout.container("TrainStyleGAN2") / OPT_ML.lstrip("/")
    shutil.rmtree(opt_ml, ignore_errors=True)
    config = opt_ml / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters(args), indent=2))
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    _copy_in(layout.dataset, opt_ml / "input" / "data" / "train")
    _copy_in(layout.checkpoints, opt_ml / "checkpoints")  # a restart resumes from the synced checkpoints
    (opt_ml / "model").mkdir()
    _run("TrainStyleGAN2", [args.python, "-m", TRAIN_ENTRY_MODULE], _python_env(**{ENV_OPT_ML: str(opt_ml)}))
    shutil.rmtree(layout.checkpoints, ignore_errors=True)  # the sync mirrors deletions too
    _copy_out(opt_ml / "checkpoints", layout.checkpoints)
    if args.break_generator:
        break_generator(opt_ml / "model")
    layout.model_archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(layout.model_archive, "w:gz") as archive:
        for path in sorted((opt_ml / "model").rglob("*")):
            archive.add(path, str(path.relative_to(opt_ml / "model")), recursive=False)


def break_generator(model_dir: Path) -> None:
    """Fill the trained generator's weights with NaN, as a diverged GAN's are."""
    import torch  # noqa: PLC0415 (only this option needs torch in the orchestrating process)

    from .stylegan2.checkpoint import GENERATOR_FILE, save_atomic  # noqa: PLC0415

    path = model_dir / GENERATOR_FILE
    state = torch.load(path, map_location="cpu", weights_only=True)
    for name, tensor in state["G_ema"].items():
        if name.startswith("synthesis") and tensor.is_floating_point():
            state["G_ema"][name] = torch.full_like(tensor, float("nan"))
    save_atomic(state, path)
    print(f"=== --break-generator: filled the synthesis weights in {path} with NaN", flush=True)


def run_parameters(layout: LocalLayout, args: argparse.Namespace) -> dict[str, Any]:
    """This run's values of the pipeline parameters (what ValidateParameters receives)."""
    return {
        "InputDataUri": layout.uri(layout.images) + "/",
        "ProcessingInstanceType": "ml.m5.xlarge",
        "TrainingInstanceType": "ml.g5.2xlarge",
        "TrainingInstanceCount": 1,
        "ExportInstanceType": "ml.m5.xlarge",
        "Resolution": args.resolution,
        "ModelPreset": args.cfg,
        "Kimg": args.kimg,
        "Batch": args.batch,
        "BatchGpu": args.batch_gpu,
        "Gamma": CFG_GAMMA,
        "LearningRate": CFG_LEARNING_RATE,
        "Mirror": 1,
        "SnapshotKimg": max(args.kimg / 2, 0.001),
        "MaxRunSeconds": 3600,
        "MaxWaitSeconds": 7200,
        "MaxFid": args.max_fid,
        "QualitySamples": args.quality_samples,
        "FeatureExtractorUri": layout.uri(layout.extractor),
    }


def step_events(
    layout: LocalLayout, parameters: Mapping[str, Any], quality: Mapping[str, Any], publish_outputs: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """The events the pipeline's Lambda steps send, by step name (the tests hold their keys to the definition's)."""
    run = {"pipeline_name": PIPELINE_NAME, "execution_id": RUN_ID}
    score = {"fid": quality.get(QUALITY_FID), "kid": quality.get(QUALITY_KID), "max_fid": parameters["MaxFid"]}
    outcome = {
        **run,
        "execution_arn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/{PIPELINE_NAME}/execution/{RUN_ID}",
        "dataset_uri": layout.uri(layout.dataset),
        "training_artifacts_uri": layout.uri(layout.model_archive),
        "samples_uri": layout.uri(layout.samples),
        "kimg": parameters["Kimg"],
        **score,
        "finite": quality.get(QUALITY_FINITE),
    }
    return {
        "ValidateParameters": {notify_contract.ACTION: notify_contract.ACTION_VALIDATE, **run, **parameters},
        "PublishGenerator": {
            notify_contract.ACTION: notify_contract.ACTION_PUBLISH,
            **run,
            "samples_uri": layout.uri(layout.samples),
            **score,
        },
        "NotifyPublished": {
            notify_contract.ACTION: notify_contract.ACTION_NOTIFY_PUBLISHED,
            **outcome,
            "model_uri": publish_outputs.get("model_uri"),
            "version_id": publish_outputs.get("version_id"),
        },
        "NotifyNotPublished": {notify_contract.ACTION: notify_contract.ACTION_NOTIFY_NOT_PUBLISHED, **outcome},
    }


class MotoAccount:
    """The pipeline function's AWS side under moto: both buckets, the topic, and a queue that reads the topic."""

    def __init__(self, layout: LocalLayout) -> None:
        self.layout = layout
        self.messages: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def running(self) -> Iterator[MotoAccount]:
        """Start moto with fake credentials and the function's environment; both restored afterwards."""
        import boto3  # noqa: PLC0415 (boto3 and moto are development tools: the step image has neither)
        from moto import mock_aws  # noqa: PLC0415

        saved = dict(os.environ)
        os.environ.update(
            {
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_SESSION_TOKEN": "local",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
            }
        )
        try:
            with mock_aws():
                self.s3 = boto3.client("s3", region_name=REGION)
                for bucket in BUCKETS.values():
                    self.s3.create_bucket(Bucket=bucket)
                self.s3.put_bucket_versioning(Bucket=BUCKETS["models"], VersioningConfiguration={"Status": "Enabled"})
                sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
                topic = sns.create_topic(Name="genart-local-pipeline")["TopicArn"]
                self.queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
                queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])
                sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])
                self.sqs = sqs
                os.environ.update(
                    {
                        notify_contract.ENV_TOPIC_ARN: topic,
                        notify_contract.ENV_MODELS_BUCKET: BUCKETS["models"],
                        notify_contract.ENV_DATASETS_BUCKET: BUCKETS["datasets"],
                    }
                )
                yield self
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def mirror(self, *paths: Path) -> None:
        """Upload local files (or folders) under DIR/s3/ to the same keys in the moto buckets."""
        for path in paths:
            for file in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
                bucket, key = self.layout.uri(file).removeprefix("s3://").split("/", 1)
                self.s3.upload_file(str(file), bucket, key)

    def invoke(self, step: str, event: Mapping[str, Any]) -> dict[str, str]:
        """Call the function's handler as the Lambda step does; its SNS messages land in DIR/notifications/."""
        from ..lambdas.notify.handler import handler  # noqa: PLC0415

        print(f"\n=== {step}: runtime.lambdas.notify.handler action={event.get(notify_contract.ACTION)}", flush=True)
        try:
            result = handler(json.loads(json.dumps(event)), None)
        except Exception as error:  # the step fails with the function's error message, as in SageMaker
            raise StepFailed(step, f"{type(error).__name__}: {error}") from error
        for message in self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", []):
            envelope = json.loads(message["Body"])
            self.messages.append(envelope)
            self.layout.notifications.mkdir(parents=True, exist_ok=True)
            text = f"Subject: {envelope['Subject']}\n\n{envelope['Message']}\n"
            (self.layout.notifications / f"{len(self.messages):02d}-{step}.txt").write_text(text)
            print(f"--- SNS message\n{text}", flush=True)
        return result

    def download(self, path: Path) -> None:
        """Fetch one object of the moto buckets back to its place under DIR/s3/."""
        bucket, key = self.layout.uri(path).removeprefix("s3://").split("/", 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.s3.download_file(bucket, key, str(path))


def run_pipeline(args: argparse.Namespace) -> LocalResult:
    """The pipeline's steps in order; returns the gate's decision and the published generator, if any."""
    from .quality.extractor import tiny_extractor  # noqa: PLC0415 (torch, once the run starts)

    layout = LocalLayout(args.workdir.resolve())
    shutil.rmtree(layout.workdir / "s3", ignore_errors=True)
    shutil.rmtree(layout.notifications, ignore_errors=True)
    source = upload_input(layout, count=args.images, seed=args.seed, input_format=args.input_format)
    print(f"drew {args.images} synthetic images into {source}", flush=True)
    if not layout.extractor.is_file():  # the one-time upload; the tiny random extractor stands in for Inception
        tiny_extractor(layout.extractor, seed=args.seed)
    parameters = run_parameters(layout, args)

    with MotoAccount(layout).running() as aws:
        aws.mirror(layout.images, layout.extractor)
        events = step_events(layout, parameters, {}, {})
        aws.invoke("ValidateParameters", events["ValidateParameters"])

        run_processing(
            "PrepareDataset",
            "dataset_tool",
            prepare_arguments(resolution=args.resolution),
            layout=layout,
            python=args.python,
            inputs={PROCESSING_INPUT_DATA: layout.images},
            outputs={PROCESSING_DATASET: layout.dataset},
        )
        run_training(layout, args)
        run_processing(
            "GenerateAndExport",
            "generate",
            export_arguments(quality_samples=args.quality_samples),
            layout=layout,
            python=args.python,
            inputs={
                PROCESSING_MODEL: layout.model_archive,
                PROCESSING_REFERENCE: layout.dataset,
                PROCESSING_EXTRACTOR: layout.extractor,
            },
            outputs={PROCESSING_SAMPLES: layout.samples, PROCESSING_QUALITY: layout.quality},
        )

        quality = json.loads((layout.quality / QUALITY_FILE).read_text())
        decision = decide(quality, max_fid=args.max_fid)
        print(f"\n=== QualityGate: {'publish' if decision.publish else 'do not publish'} ({decision.reason})")
        if not decision.publish:
            aws.invoke("NotifyNotPublished", step_events(layout, parameters, quality, {})["NotifyNotPublished"])
            return LocalResult(decision=decision, quality=quality, published=None)
        aws.mirror(layout.samples / EXPORTED_MODEL_FILE)
        outputs = aws.invoke("PublishGenerator", step_events(layout, parameters, quality, {})["PublishGenerator"])
        aws.download(layout.published)
        aws.invoke("NotifyPublished", step_events(layout, parameters, quality, outputs)["NotifyPublished"])
    return LocalResult(decision=decision, quality=quality, published=layout.published)


def failure_message(step: str, reason: str) -> str:
    """The failure rule's message for a local failure, from the same formatter the function uses."""
    from ..lambdas.notify.messages import failed  # noqa: PLC0415

    detail = {
        "pipelineArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/{PIPELINE_NAME}",
        "pipelineExecutionArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/{PIPELINE_NAME}/execution/{RUN_ID}",
        "pipelineExecutionDisplayName": RUN_ID,
        "currentPipelineExecutionStatus": "Failed",
    }
    steps = [{"StepName": step, "StepStatus": "Failed", "FailureReason": reason}]
    message = failed(detail, region=REGION, steps=steps, steps_error=None)
    return f"Subject: {message.subject}\n\n{message.body}\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """CLI flags; the defaults give a CPU run of about a minute."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="folder for the fake buckets and outputs")
    parser.add_argument("--images", type=int, default=24, help="synthetic training images to draw")
    parser.add_argument("--input-format", choices=("zip", "tar", "folder"), default="zip")
    parser.add_argument("--kimg", type=float, default=0.05, help="training length in thousands of images")
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--cfg", default="tiny", help="model preset of stylegan2.train (tiny, small, paper256, ...)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--batch-gpu", type=int, default=AUTO_BATCH_GPU, help="the BatchGpu parameter (0: auto)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-fid", type=float, default=PUBLISH_ALWAYS, help="the MaxFid parameter (negative: publish always)"
    )
    parser.add_argument("--quality-samples", type=int, default=64, help="the QualitySamples parameter")
    parser.add_argument("--break-generator", action="store_true", help="NaN weights after training (diverged run)")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the step scripts")
    args = parser.parse_args(argv)
    if args.images < 1 or args.kimg <= 0 or args.batch < 1:
        parser.error("--images, --kimg and --batch must be positive")
    if args.batch_gpu < 0:
        parser.error(f"--batch-gpu must be positive or {AUTO_BATCH_GPU} (auto)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 when the run finished (published or not, as the pipeline's execution would), 1 on failure."""
    args = parse_args(argv)
    started = time.monotonic()
    try:
        result = run_pipeline(args)
    except StepFailed as error:
        text = failure_message(error.step, error.reason)
        LocalLayout(args.workdir.resolve()).notifications.mkdir(parents=True, exist_ok=True)
        (LocalLayout(args.workdir.resolve()).notifications / "failure.txt").write_text(text)
        print(f"local run failed: {error}\n\n{text}", file=sys.stderr, flush=True)
        return 1
    elapsed = time.monotonic() - started
    if result.published is None:
        print(f"\nlocal run finished in {elapsed:.1f} s: trained but not published: {result.decision.reason}")
    else:
        print(f"\nlocal run finished in {elapsed:.1f} s: published {result.published} ({result.decision.reason})")
        print(f"Try it: python -m runtime.bot --console --model {result.published}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
