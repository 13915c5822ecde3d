"""Renders the StyleGAN2 SageMaker Pipeline definition offline with the SageMaker Python SDK 3.x."""

# The SDK is imported inside functions, under the environment that lets it import without AWS calls.
# ruff: noqa: PLC0415

from __future__ import annotations

import contextlib
import copy
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from infra.config import PipelineConfig
from runtime.pipeline.stylegan2.contract import (
    CHECKPOINT_LOCAL_PATH,
    CHECKPOINTS_DIR,
    MODELS_PREFIX,
    PROCESSING_DATASET,
    PROCESSING_INPUT_DATA,
    PROCESSING_MODEL,
    PROCESSING_PUBLISH,
    PROCESSING_SAMPLES,
    PUBLISHED_MODEL_NAME,
    RUNS_PREFIX,
    SAMPLES_DIR,
    TRAIN_CHANNEL,
    step_module,
)

STEP_PREPARE = "PrepareDataset"
STEP_TRAIN = "TrainStyleGAN2"
STEP_EXPORT = "GenerateAndExport"
STEP_NOTIFY = "NotifySuccess"
STEP_NAMES = (STEP_PREPARE, STEP_TRAIN, STEP_EXPORT, STEP_NOTIFY)
DEFAULT_DATASET_PREFIX = "anime-faces/"

DEFAULT_SNAPSHOT_KIMG = 50
DEFAULT_LEARNING_RATE = 0.0025
PREPARE_MAX_RUNTIME_SECONDS = 4 * 3600
EXPORT_MAX_RUNTIME_SECONDS = 2 * 3600
TRAINING_VOLUME_GB = 100
PROCESSING_VOLUME_GB = 50

# Telemetry off and no SDK defaults read from ~/.config/sagemaker: the rendering must not depend on the machine.
_SDK_CONFIG: dict[str, Any] = {
    "SchemaVersion": "1.0",
    "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
}


@dataclass(frozen=True)
class PipelineResources:
    """Names and ARNs the definition points at; in the stack these are CDK tokens that resolve at deploy."""

    pipeline_name: str
    role_arn: str
    image_uri: str
    notify_function_arn: str
    models_bucket_name: str
    datasets_bucket_name: str


@contextlib.contextmanager
def _offline_sdk_environment() -> Iterator[None]:
    """Environment under which the SDK imports and renders without any AWS call; restored afterwards."""
    overrides = {
        # Importing sagemaker.mlops builds boto3 clients, which need a region; none of it reaches the JSON.
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        # ModelTrainer otherwise simulates the role's IAM policies through the IAM API.
        "SAGEMAKER_VALIDATE_ROLE": "false",
        # Without credentials, botocore would probe the EC2 instance metadata service.
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    saved = {key: os.environ.get(key) for key in overrides}
    # The SDK's "sagemaker.config" logger carries its own level; both are quietened while rendering.
    sdk_loggers = [logging.getLogger(name) for name in ("sagemaker", "sagemaker.config")]
    saved_levels = [logger.level for logger in sdk_loggers]
    os.environ.update(overrides)
    # Its warnings here (job names popped from the definition, no wait/logs) are expected when rendering.
    for logger in sdk_loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # "No Wait, No Logs" and "Lambda function won't be updated" are expected when only rendering.
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        for logger, level in zip(sdk_loggers, saved_levels, strict=True):
            logger.setLevel(level)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def default_model_preset(resolution: int) -> str:
    """The training code's paper preset (`--cfg`) for a resolution."""
    return "paper512" if resolution >= 512 else "paper256"


def render_pipeline_definition(
    *, resources: PipelineResources, config: PipelineConfig, metric_definitions: list[dict[str, str]]
) -> str:
    """The pipeline definition JSON (preprocess, train, generate+export, notify) for CfnPipeline."""
    with _offline_sdk_environment(), _sdk_config_validated_once():
        return _render(resources=resources, config=config, metric_definitions=metric_definitions)


@contextlib.contextmanager
def _sdk_config_validated_once() -> Iterator[None]:
    """Validate each SDK-defaults dict once per render instead of on every lookup; restored afterwards."""
    from sagemaker.core.config.config_manager import SageMakerConfig

    # The SDK re-checks its whole JSON schema on each of ~10 config lookups (0.3 s apiece), which would
    # dominate synth and test time; the dict it checks is our constant _SDK_CONFIG.
    original = SageMakerConfig.__dict__["validate_sagemaker_config"]
    validated: list[Any] = []

    def validate_once(sagemaker_config: dict[str, Any] | None = None) -> None:
        if sagemaker_config not in validated:
            original.__func__(sagemaker_config)
            validated.append(copy.deepcopy(sagemaker_config))

    SageMakerConfig.validate_sagemaker_config = staticmethod(validate_once)
    try:
        yield
    finally:
        SageMakerConfig.validate_sagemaker_config = original


def _render(*, resources: PipelineResources, config: PipelineConfig, metric_definitions: list[dict[str, str]]) -> str:
    import boto3
    from sagemaker.core.lambda_helper import Lambda
    from sagemaker.core.processing import Processor
    from sagemaker.core.shapes import ProcessingInput, ProcessingOutput, ProcessingS3Input, ProcessingS3Output
    from sagemaker.core.training.configs import (
        CheckpointConfig,
        Compute,
        InputData,
        MetricDefinition,
        OutputDataConfig,
        StoppingCondition,
    )
    from sagemaker.core.workflow.execution_variables import ExecutionVariables
    from sagemaker.core.workflow.functions import Join
    from sagemaker.core.workflow.parameters import ParameterFloat, ParameterInteger, ParameterString
    from sagemaker.core.workflow.pipeline_context import PipelineSession
    from sagemaker.mlops.workflow.lambda_step import LambdaOutput, LambdaOutputTypeEnum, LambdaStep
    from sagemaker.mlops.workflow.pipeline import Pipeline
    from sagemaker.mlops.workflow.retry import SageMakerJobExceptionTypeEnum, SageMakerJobStepRetryPolicy
    from sagemaker.mlops.workflow.steps import ProcessingStep, TrainingStep
    from sagemaker.train.model_trainer import ModelTrainer

    boto_session = boto3.Session(region_name=os.environ["AWS_DEFAULT_REGION"])
    # Every S3 location below is explicit; the default bucket only stops the SDK from looking one up.
    session = PipelineSession(
        boto_session=boto_session, default_bucket=resources.models_bucket_name, sagemaker_config=_SDK_CONFIG
    )

    input_data_uri = ParameterString(
        name="InputDataUri", default_value=f"s3://{resources.datasets_bucket_name}/{DEFAULT_DATASET_PREFIX}"
    )
    processing_instance_type = ParameterString(
        name="ProcessingInstanceType", default_value=config.processing_instance_type
    )
    training_instance_type = ParameterString(name="TrainingInstanceType", default_value=config.training_instance_type)
    training_instance_count = ParameterInteger(
        name="TrainingInstanceCount", default_value=config.training_instance_count
    )
    export_instance_type = ParameterString(name="ExportInstanceType", default_value=config.export_instance_type)
    resolution = ParameterInteger(name="Resolution", default_value=config.resolution)
    model_preset = ParameterString(name="ModelPreset", default_value=default_model_preset(config.resolution))
    kimg = ParameterInteger(name="Kimg", default_value=config.kimg)
    batch = ParameterInteger(name="Batch", default_value=config.batch)
    gamma = ParameterFloat(name="Gamma", default_value=config.gamma)
    learning_rate = ParameterFloat(name="LearningRate", default_value=DEFAULT_LEARNING_RATE)
    mirror = ParameterInteger(name="Mirror", default_value=1)
    snapshot_kimg = ParameterInteger(name="SnapshotKimg", default_value=DEFAULT_SNAPSHOT_KIMG)
    max_run_seconds = ParameterInteger(name="MaxRunSeconds", default_value=config.max_run_hours * 3600)
    parameters: list[Any] = [
        input_data_uri,
        processing_instance_type,
        training_instance_type,
        training_instance_count,
        export_instance_type,
        resolution,
        model_preset,
        kimg,
        batch,
        gamma,
        learning_rate,
        mirror,
        snapshot_kimg,
        max_run_seconds,
    ]
    # SageMaker rejects MaxWaitTimeInSeconds unless managed Spot is on, and a definition cannot drop a field
    # at run time, so Spot on/off is fixed per environment (cdk.json) while the wait stays a parameter.
    max_wait_seconds = None
    if config.use_spot:
        max_wait_seconds = ParameterInteger(name="MaxWaitSeconds", default_value=config.max_wait_hours * 3600)
        parameters.append(max_wait_seconds)

    models = f"s3://{resources.models_bucket_name}"
    execution_id = ExecutionVariables.PIPELINE_EXECUTION_ID

    def run_uri(name: str) -> Any:
        return Join(on="/", values=[f"{models}/{RUNS_PREFIX}", execution_id, name])

    prepare = Processor(
        role=resources.role_arn,
        image_uri=resources.image_uri,
        instance_count=1,
        instance_type=processing_instance_type,
        entrypoint=["python", "-m", step_module("dataset_tool")],
        volume_size_in_gb=PROCESSING_VOLUME_GB,
        max_runtime_in_seconds=PREPARE_MAX_RUNTIME_SECONDS,
        env={"PYTHONUNBUFFERED": "1"},
        sagemaker_session=session,
    )
    step_prepare = ProcessingStep(
        name=STEP_PREPARE,
        description="Center-crop and resize the uploaded images into the compact training format.",
        step_args=prepare.run(
            inputs=[
                ProcessingInput(
                    input_name="images",
                    s3_input=ProcessingS3Input(
                        s3_uri=input_data_uri,
                        local_path=PROCESSING_INPUT_DATA,
                        s3_data_type="S3Prefix",
                        s3_input_mode="File",
                    ),
                )
            ],
            outputs=[
                ProcessingOutput(
                    output_name="dataset",
                    s3_output=ProcessingS3Output(
                        s3_uri=run_uri("dataset"), local_path=PROCESSING_DATASET, s3_upload_mode="EndOfJob"
                    ),
                )
            ],
            arguments=[
                "--source",
                PROCESSING_INPUT_DATA,
                "--dest",
                PROCESSING_DATASET,
                "--resolution",
                resolution.to_string(),
            ],
        ),
    )

    stopping = {"max_runtime_in_seconds": max_run_seconds}
    if max_wait_seconds is not None:
        stopping["max_wait_time_in_seconds"] = max_wait_seconds
    trainer = ModelTrainer(
        role=resources.role_arn,
        training_image=resources.image_uri,
        base_job_name="stylegan2",
        sagemaker_session=session,
        compute=Compute(
            instance_type=training_instance_type,
            instance_count=training_instance_count,
            volume_size_in_gb=TRAINING_VOLUME_GB,
            enable_managed_spot_training=config.use_spot,
        ),
        # The SDK's StoppingCondition model only types plain ints; the service accepts parameter references.
        stopping_condition=StoppingCondition.model_construct(**stopping),
        # Per execution, so a Spot restart or a step retry of the same execution resumes from its checkpoints.
        checkpoint_config=CheckpointConfig(s3_uri=run_uri(CHECKPOINTS_DIR), local_path=CHECKPOINT_LOCAL_PATH),
        output_data_config=OutputDataConfig(s3_output_path=run_uri("training")),
        environment={"PYTHONUNBUFFERED": "1"},
        # Our image's `train` entry turns these into `python -m runtime.pipeline.stylegan2.train --<name> <value>`.
        hyperparameters={
            "kimg": kimg.to_string(),
            "batch": batch.to_string(),
            "gamma": gamma.to_string(),
            "lr": learning_rate.to_string(),
            "resolution": resolution.to_string(),
            "cfg": model_preset.to_string(),
            "mirror": mirror.to_string(),
            "snapshot-kimg": snapshot_kimg.to_string(),
        },
    ).with_metric_definitions([MetricDefinition(name=m["Name"], regex=m["Regex"]) for m in metric_definitions])
    step_train = TrainingStep(
        name=STEP_TRAIN,
        description="Train StyleGAN2 on the prepared dataset (managed Spot with S3 checkpoints when enabled).",
        step_args=trainer.train(
            input_data_config=[
                InputData(
                    channel_name=TRAIN_CHANNEL,
                    data_source=step_prepare.properties.ProcessingOutputConfig.Outputs["dataset"].S3Output.S3Uri,
                )
            ]
        ),
        retry_policies=[
            SageMakerJobStepRetryPolicy(
                exception_types=[SageMakerJobExceptionTypeEnum.CAPACITY_ERROR],
                interval_seconds=300,
                backoff_rate=2.0,
                max_attempts=3,
            )
        ],
    )

    export = Processor(
        role=resources.role_arn,
        image_uri=resources.image_uri,
        instance_count=1,
        instance_type=export_instance_type,
        entrypoint=["python", "-m", step_module("generate")],
        volume_size_in_gb=PROCESSING_VOLUME_GB,
        max_runtime_in_seconds=EXPORT_MAX_RUNTIME_SECONDS,
        env={"PYTHONUNBUFFERED": "1"},
        sagemaker_session=session,
    )
    step_export = ProcessingStep(
        name=STEP_EXPORT,
        description="Sample grid + images, ONNX export verified against PyTorch, publish stylegan/latest.onnx.",
        step_args=export.run(
            inputs=[
                ProcessingInput(
                    input_name="model",
                    s3_input=ProcessingS3Input(
                        s3_uri=step_train.properties.ModelArtifacts.S3ModelArtifacts,
                        local_path=PROCESSING_MODEL,
                        s3_data_type="S3Prefix",
                        s3_input_mode="File",
                    ),
                )
            ],
            outputs=[
                ProcessingOutput(
                    output_name="samples",
                    s3_output=ProcessingS3Output(
                        s3_uri=run_uri(SAMPLES_DIR), local_path=PROCESSING_SAMPLES, s3_upload_mode="EndOfJob"
                    ),
                ),
                ProcessingOutput(
                    output_name="publish",
                    s3_output=ProcessingS3Output(
                        # A Join, not a string: the SDK would urlparse a plain string, and CDK tokens in it
                        # ("${Token[...]}") read as a malformed IPv6 host.
                        s3_uri=Join(on="/", values=[models, MODELS_PREFIX]),
                        local_path=PROCESSING_PUBLISH,
                        s3_upload_mode="EndOfJob",
                    ),
                ),
            ],
            arguments=[
                "--checkpoint",
                PROCESSING_MODEL,
                "--outdir",
                PROCESSING_SAMPLES,
                "--publish-dir",
                PROCESSING_PUBLISH,
                "--num-images",
                "16",
                "--grid",
                "4x4",
            ],
        ),
    )

    export_outputs = step_export.properties.ProcessingOutputConfig.Outputs
    step_notify = LambdaStep(
        name=STEP_NOTIFY,
        description="Publish the run's S3 locations and a presigned sample-grid link to the SNS topic.",
        # An existing function (the stack's); the SDK only references its ARN and never creates or updates it.
        lambda_func=Lambda(function_arn=resources.notify_function_arn, session=session),
        inputs={
            "pipeline_name": resources.pipeline_name,
            "execution_arn": ExecutionVariables.PIPELINE_EXECUTION_ARN,
            "execution_id": execution_id,
            "dataset_uri": step_prepare.properties.ProcessingOutputConfig.Outputs["dataset"].S3Output.S3Uri,
            "training_artifacts_uri": step_train.properties.ModelArtifacts.S3ModelArtifacts,
            "samples_uri": export_outputs["samples"].S3Output.S3Uri,
            "model_uri": Join(on="/", values=[export_outputs["publish"].S3Output.S3Uri, PUBLISHED_MODEL_NAME]),
            "kimg": kimg,
        },
        outputs=[LambdaOutput(output_name="message_id", output_type=LambdaOutputTypeEnum.String)],
    )

    pipeline = Pipeline(
        name=resources.pipeline_name,
        parameters=parameters,
        steps=[step_prepare, step_train, step_export, step_notify],
        sagemaker_session=session,
        pipeline_experiment_config=None,
    )
    return str(pipeline.definition())
