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
from runtime.lambdas.notify.contract import (
    ACTION,
    ACTION_NOTIFY_NOT_PUBLISHED,
    ACTION_NOTIFY_PUBLISHED,
    ACTION_PUBLISH,
    ACTION_VALIDATE,
)
from runtime.pipeline.stylegan2.contract import (
    AUTO_BATCH_GPU,
    CFG_BATCH,
    CFG_GAMMA,
    CFG_LEARNING_RATE,
    CHECKPOINT_LOCAL_PATH,
    CHECKPOINTS_PREFIX,
    DEFAULT_QUALITY_SAMPLES,
    FEATURE_EXTRACTOR_KEY,
    PROCESSING_DATASET,
    PROCESSING_EXTRACTOR,
    PROCESSING_INPUT_DATA,
    PROCESSING_MODEL,
    PROCESSING_QUALITY,
    PROCESSING_REFERENCE,
    PROCESSING_SAMPLES,
    PUBLISH_ALWAYS,
    QUALITY_DIR,
    QUALITY_FID,
    QUALITY_FILE,
    QUALITY_FINITE,
    QUALITY_KID,
    RUNS_PREFIX,
    SAMPLES_DIR,
    TRAIN_CHANNEL,
    TRAINING_HYPERPARAMETERS,
    export_arguments,
    prepare_arguments,
    step_module,
)

STEP_VALIDATE = "ValidateParameters"
STEP_PREPARE = "PrepareDataset"
STEP_TRAIN = "TrainStyleGAN2"
STEP_EXPORT = "GenerateAndExport"
STEP_GATE = "QualityGate"
STEP_PUBLISH = "PublishGenerator"
STEP_NOTIFY = "NotifyPublished"
STEP_NOT_PUBLISHED = "NotifyNotPublished"
# Top-level steps in order; the last three run inside the quality gate's branches.
STEP_NAMES = (STEP_VALIDATE, STEP_PREPARE, STEP_TRAIN, STEP_EXPORT, STEP_GATE)
QUALITY_PROPERTY_FILE = "Quality"
DEFAULT_DATASET_PREFIX = "anime-faces/"

DEFAULT_SNAPSHOT_KIMG = 50
PREPARE_MAX_RUNTIME_SECONDS = 4 * 3600
EXPORT_MAX_RUNTIME_SECONDS = 4 * 3600
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
    # The role the jobs run as (the pipeline's own role is the CfnPipeline's RoleArn, not in the definition).
    job_role_arn: str
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
    return "paper1024" if resolution >= 1024 else "paper512" if resolution >= 512 else "paper256"


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
    from sagemaker.core.workflow.conditions import ConditionEquals, ConditionLessThan, ConditionOr
    from sagemaker.core.workflow.execution_variables import ExecutionVariables
    from sagemaker.core.workflow.functions import Join, JsonGet
    from sagemaker.core.workflow.parameters import ParameterFloat, ParameterInteger, ParameterString
    from sagemaker.core.workflow.pipeline_context import PipelineSession
    from sagemaker.core.workflow.properties import PropertyFile
    from sagemaker.mlops.workflow.condition_step import ConditionStep
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
    models = f"s3://{resources.models_bucket_name}"

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
    # Unless cdk.json sets them, Batch, Gamma and LearningRate default to "the ModelPreset's value" (contract.CFG_*).
    batch = ParameterInteger(name="Batch", default_value=CFG_BATCH if config.batch is None else config.batch)
    # Images per GPU per forward/backward round (gradients accumulated over the rounds); 0: auto.
    batch_gpu = ParameterInteger(
        name="BatchGpu", default_value=AUTO_BATCH_GPU if config.batch_gpu is None else config.batch_gpu
    )
    gamma = ParameterFloat(name="Gamma", default_value=CFG_GAMMA if config.gamma is None else config.gamma)
    learning_rate = ParameterFloat(name="LearningRate", default_value=CFG_LEARNING_RATE)
    mirror = ParameterInteger(name="Mirror", default_value=1)
    snapshot_kimg = ParameterInteger(name="SnapshotKimg", default_value=DEFAULT_SNAPSHOT_KIMG)
    max_run_seconds = ParameterInteger(name="MaxRunSeconds", default_value=config.max_run_hours * 3600)
    # The quality gate: publish only when FID < MaxFid; the negative default publishes whatever the score.
    max_fid = ParameterFloat(name="MaxFid", default_value=PUBLISH_ALWAYS)
    quality_samples = ParameterInteger(name="QualitySamples", default_value=DEFAULT_QUALITY_SAMPLES)
    extractor_uri = ParameterString(name="FeatureExtractorUri", default_value=f"{models}/{FEATURE_EXTRACTOR_KEY}")
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
        batch_gpu,
        gamma,
        learning_rate,
        mirror,
        snapshot_kimg,
        max_run_seconds,
        max_fid,
        quality_samples,
        extractor_uri,
    ]
    # SageMaker rejects MaxWaitTimeInSeconds unless managed Spot is on, and a definition cannot drop a field
    # at run time, so Spot on/off is fixed per environment (cdk.json) while the wait stays a parameter.
    max_wait_seconds = None
    if config.use_spot:
        max_wait_seconds = ParameterInteger(name="MaxWaitSeconds", default_value=config.max_wait_hours * 3600)
        parameters.append(max_wait_seconds)
    by_name = {parameter.name: parameter for parameter in parameters}
    # The image's `train` entry turns these into `python -m runtime.pipeline.stylegan2.train --<name> <value>`;
    # CreateTrainingJob takes strings, so numbers go through to_string().
    hyperparameters = {
        name: by_name[parameter] if isinstance(by_name[parameter], ParameterString) else by_name[parameter].to_string()
        for name, parameter in TRAINING_HYPERPARAMETERS.items()
    }

    execution_id = ExecutionVariables.PIPELINE_EXECUTION_ID
    run = {"pipeline_name": resources.pipeline_name, "execution_id": execution_id}
    # An existing function (the stack's); the SDK only references its ARN and never creates or updates it.
    function = Lambda(function_arn=resources.notify_function_arn, session=session)

    def run_uri(name: str) -> Any:
        return Join(on="/", values=[f"{models}/{RUNS_PREFIX}", execution_id, name])

    def s3_input(name: str, uri: Any, local_path: str) -> Any:
        return ProcessingInput(
            input_name=name,
            s3_input=ProcessingS3Input(
                s3_uri=uri, local_path=local_path, s3_data_type="S3Prefix", s3_input_mode="File"
            ),
        )

    def s3_output(name: str, uri: Any, local_path: str) -> Any:
        return ProcessingOutput(
            output_name=name,
            s3_output=ProcessingS3Output(s3_uri=uri, local_path=local_path, s3_upload_mode="EndOfJob"),
        )

    def processor(module: str, instance_type: Any, max_runtime: int) -> Any:
        return Processor(
            role=resources.job_role_arn,
            image_uri=resources.image_uri,
            instance_count=1,
            instance_type=instance_type,
            entrypoint=["python", "-m", step_module(module)],
            volume_size_in_gb=PROCESSING_VOLUME_GB,
            max_runtime_in_seconds=max_runtime,
            env={"PYTHONUNBUFFERED": "1"},
            sagemaker_session=session,
        )

    # First, in seconds and on no instance: parameters that cannot work together fail the run here.
    step_validate = LambdaStep(
        name=STEP_VALIDATE,
        description="Check the run-time parameters together and that the input and feature extractor exist.",
        lambda_func=function,
        inputs={ACTION: ACTION_VALIDATE, **run, **by_name},
        outputs=[LambdaOutput(output_name="status", output_type=LambdaOutputTypeEnum.String)],
    )

    prepare = processor("dataset_tool", processing_instance_type, PREPARE_MAX_RUNTIME_SECONDS)
    step_prepare = ProcessingStep(
        name=STEP_PREPARE,
        description="Center-crop and resize the uploaded images (folders, zip and tar archives) into one array.",
        step_args=prepare.run(
            inputs=[s3_input("images", input_data_uri, PROCESSING_INPUT_DATA)],
            outputs=[s3_output("dataset", run_uri("dataset"), PROCESSING_DATASET)],
            arguments=prepare_arguments(resolution=resolution.to_string()),
        ),
        depends_on=[step_validate],
    )
    dataset_uri = step_prepare.properties.ProcessingOutputConfig.Outputs["dataset"].S3Output.S3Uri

    stopping = {"max_runtime_in_seconds": max_run_seconds}
    if max_wait_seconds is not None:
        stopping["max_wait_time_in_seconds"] = max_wait_seconds
    trainer = ModelTrainer(
        role=resources.job_role_arn,
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
        # Per execution, so a Spot restart or a step retry of the same execution resumes from its checkpoints;
        # outside the runs prefix, where the Storage stack expires noncurrent versions (pruned checkpoints) in a day.
        checkpoint_config=CheckpointConfig(
            s3_uri=Join(on="/", values=[f"{models}/{CHECKPOINTS_PREFIX}", execution_id]),
            local_path=CHECKPOINT_LOCAL_PATH,
        ),
        output_data_config=OutputDataConfig(s3_output_path=run_uri("training")),
        environment={"PYTHONUNBUFFERED": "1"},
        hyperparameters=hyperparameters,
    ).with_metric_definitions([MetricDefinition(name=m["Name"], regex=m["Regex"]) for m in metric_definitions])
    step_train = TrainingStep(
        name=STEP_TRAIN,
        description="Train StyleGAN2 on the prepared dataset (managed Spot with S3 checkpoints when enabled).",
        step_args=trainer.train(input_data_config=[InputData(channel_name=TRAIN_CHANNEL, data_source=dataset_uri)]),
        retry_policies=[
            SageMakerJobStepRetryPolicy(
                exception_types=[SageMakerJobExceptionTypeEnum.CAPACITY_ERROR],
                interval_seconds=300,
                backoff_rate=2.0,
                max_attempts=3,
            )
        ],
    )
    training_artifacts = step_train.properties.ModelArtifacts.S3ModelArtifacts

    quality_file = PropertyFile(name=QUALITY_PROPERTY_FILE, output_name=QUALITY_DIR, path=QUALITY_FILE)
    export = processor("generate", export_instance_type, EXPORT_MAX_RUNTIME_SECONDS)
    step_export = ProcessingStep(
        name=STEP_EXPORT,
        description="Sample grid + images, FID/KID against the training set, ONNX export verified against PyTorch.",
        step_args=export.run(
            inputs=[
                # SageMaker copies model.tar.gz itself into this folder; generate.py unpacks it.
                s3_input("model", training_artifacts, PROCESSING_MODEL),
                s3_input("reference", dataset_uri, PROCESSING_REFERENCE),
                s3_input("extractor", extractor_uri, PROCESSING_EXTRACTOR),
            ],
            outputs=[
                s3_output(SAMPLES_DIR, run_uri(SAMPLES_DIR), PROCESSING_SAMPLES),
                s3_output(QUALITY_DIR, run_uri(QUALITY_DIR), PROCESSING_QUALITY),
            ],
            arguments=export_arguments(quality_samples=quality_samples.to_string()),
        ),
        property_files=[quality_file],
    )
    samples_uri = step_export.properties.ProcessingOutputConfig.Outputs[SAMPLES_DIR].S3Output.S3Uri
    fid, kid, finite = (
        JsonGet(step_name=step_export.name, property_file=quality_file, json_path=field)
        for field in (QUALITY_FID, QUALITY_KID, QUALITY_FINITE)
    )
    outcome = {
        **run,
        "execution_arn": ExecutionVariables.PIPELINE_EXECUTION_ARN,
        "dataset_uri": dataset_uri,
        "training_artifacts_uri": training_artifacts,
        "samples_uri": samples_uri,
        "kimg": kimg,
        "fid": fid,
        "kid": kid,
        "finite": finite,
        "max_fid": max_fid,
    }
    message_id = [LambdaOutput(output_name="message_id", output_type=LambdaOutputTypeEnum.String)]

    step_publish = LambdaStep(
        name=STEP_PUBLISH,
        description="Copy the run's verified generator.onnx to stylegan/latest.onnx (the only writer of that key).",
        lambda_func=function,
        inputs={ACTION: ACTION_PUBLISH, **run, "samples_uri": samples_uri, "fid": fid, "kid": kid, "max_fid": max_fid},
        outputs=[
            LambdaOutput(output_name="model_uri", output_type=LambdaOutputTypeEnum.String),
            LambdaOutput(output_name="version_id", output_type=LambdaOutputTypeEnum.String),
        ],
    )
    publish_outputs = step_publish.properties.Outputs
    step_notify = LambdaStep(
        name=STEP_NOTIFY,
        description="Tell the SNS topic: published, with the score, the S3 locations and a sample-grid link.",
        lambda_func=function,
        inputs={
            ACTION: ACTION_NOTIFY_PUBLISHED,
            **outcome,
            "model_uri": publish_outputs["model_uri"],
            "version_id": publish_outputs["version_id"],
        },
        outputs=message_id,
    )
    step_not_published = LambdaStep(
        name=STEP_NOT_PUBLISHED,
        description="Tell the SNS topic: trained but not published, why, the score and a sample-grid link.",
        lambda_func=function,
        inputs={ACTION: ACTION_NOTIFY_NOT_PUBLISHED, **outcome},
        outputs=message_id,
    )
    step_gate = ConditionStep(
        name=STEP_GATE,
        description="Publish only a generator whose images are finite and whose FID is below MaxFid (<0: any).",
        conditions=[
            ConditionEquals(left=finite, right=1),
            ConditionOr(
                conditions=[ConditionLessThan(left=max_fid, right=0), ConditionLessThan(left=fid, right=max_fid)]
            ),
        ],
        if_steps=[step_publish, step_notify],
        else_steps=[step_not_published],
    )

    pipeline = Pipeline(
        name=resources.pipeline_name,
        parameters=parameters,
        steps=[step_validate, step_prepare, step_train, step_export, step_gate],
        sagemaker_session=session,
        pipeline_experiment_config=None,
    )
    return str(pipeline.definition())
