"""Diffusion stack: the Stable Diffusion image and its GPU SageMaker endpoint (async by default), composed."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnOutput, CfnResource, Stack
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.components.endpoint_alarms import EndpointAlarmThresholds
from infra.components.endpoint_scaling import EndpointCapacity
from infra.components.image_repository import ImageRepository
from infra.components.model_seed import ModelPrefixCheck, ModelSeed
from infra.components.ops_alerts import OpsAlertsTopic
from infra.components.published_image import PublishedImage
from infra.components.sagemaker_endpoint import (
    AsyncInvocation,
    ModelData,
    SageMakerEndpoint,
    instance_scoped_endpoint_name,
)
from infra.config import DiffusionConfig
from infra.model_sources import model_source
from runtime.endpoint import contract

REPO_ROOT = Path(__file__).resolve().parents[2]
SCALABLE_TARGET_LOGICAL_ID = "ScalingTarget6760FBAF"


def endpoint_name(*, env_name: str, config: DiffusionConfig) -> str:
    """Physical endpoint name; it carries the mode and instance type, so changing either replaces the endpoint."""
    # A replacement also makes switching between async and realtime a plain deploy.
    return instance_scoped_endpoint_name(f"genart-{env_name}-sd-{config.mode}", config.instance_type)


# The file whose presence means a complete diffusers folder (upload_model and the seed both write it last).
MODEL_MARKER = "model_index.json"

# An asynchronous endpoint's response is an S3 object (up to 1 GB), not the 6 MB real-time payload.
ASYNC_MAX_INLINE_BYTES = 500_000_000


def container_environment(
    *, outputs_bucket_name: str, compile_cache_s3_uri: str, asynchronous: bool = False
) -> dict[str, str]:
    """Server settings (runtime/endpoint/settings.py) the container gets; limits keep the server's defaults."""
    extra = {contract.ENV_MAX_INLINE_BYTES: str(ASYNC_MAX_INLINE_BYTES)} if asynchronous else {}
    return {
        **extra,
        contract.ENV_COMPILE_CACHE_S3_URI: compile_cache_s3_uri,
        contract.ENV_OUTPUTS_BUCKET: outputs_bucket_name,
        contract.ENV_OUTPUTS_PREFIX: contract.OUTPUTS_PREFIX,
        contract.ENV_COMPILE: "1",
        contract.ENV_DTYPE: "fp16",
        contract.ENV_COMPILE_CACHE_DIR: contract.COMPILE_CACHE_DIR,
        contract.ENV_HF_HUB_OFFLINE: "1",
    }


class DiffusionStack(Stack):
    """Owns the Stable Diffusion endpoint; its image is published into Storage's diffusion repository."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DiffusionConfig,
        env_name: str,
        image_repository: ImageRepository,
        models_bucket: s3.IBucket,
        outputs_bucket: s3.IBucket,
        ops_alerts: OpsAlertsTopic,
        **kwargs: object,
    ) -> None:
        synthesizer = image_repository.asset_synthesizer()
        super().__init__(scope, construct_id, synthesizer=synthesizer, **kwargs)  # type: ignore[arg-type]
        asynchronous = config.mode == "async"
        self.image = PublishedImage(
            self,
            "Image",
            repository=image_repository,
            directory=REPO_ROOT / contract.IMAGE_BUILD_CONTEXT,
            dockerfile=contract.IMAGE_DOCKERFILE,
            exclude=contract.IMAGE_EXCLUDES,
            display_name="Stable Diffusion endpoint image",
        )
        self.async_invocation = (
            AsyncInvocation(
                bucket=outputs_bucket,
                input_prefix=contract.ASYNC_INPUT_PREFIX,
                output_prefix=contract.ASYNC_OUTPUT_PREFIX,
                failure_prefix=contract.ASYNC_FAILURE_PREFIX,
                max_concurrent_invocations_per_instance=config.max_concurrent_invocations_per_instance,
            )
            if asynchronous
            else None
        )
        self.model_data = ModelData(bucket=models_bucket, prefix=contract.model_prefix(config.model_name))
        compile_cache_prefix = contract.compile_cache_prefix(config.model_name)
        self.endpoint = SageMakerEndpoint(
            self,
            "Endpoint",
            endpoint_name=endpoint_name(env_name=env_name, config=config),
            image=self.image,
            model_data=self.model_data,
            capacity=EndpointCapacity(
                instance_type=config.instance_type,
                min_instances=config.min_instances,
                max_instances=config.max_instances,
                target_invocations_per_instance=config.target_invocations_per_instance,
                target_backlog_per_instance=config.target_backlog_per_instance,
                idle_scale_in_minutes=config.idle_scale_in_minutes if asynchronous else None,
                inference_ami_version=config.inference_ami_version,
            ),
            environment=container_environment(
                outputs_bucket_name=outputs_bucket.bucket_name,
                compile_cache_s3_uri=f"s3://{models_bucket.bucket_name}/{compile_cache_prefix}",
                asynchronous=asynchronous,
            ),
            async_invocation=self.async_invocation,
            startup_timeout_seconds=config.startup_timeout_seconds,
            download_timeout_seconds=config.download_timeout_seconds,
            alarm_thresholds=EndpointAlarmThresholds(
                latency_p90_seconds=config.latency_alarm_p90_seconds,
                backlog_age_seconds=config.backlog_age_alarm_seconds,
            ),
            alarm_action=ops_alerts.alarm_action(),
            description="GenArt Diffusion endpoint: pull its image, read its model prefix, write outputs",
        )
        self.endpoint.grant_container_write(outputs_bucket, contract.OUTPUTS_PREFIX)
        # New instances start from the compile artifacts an earlier instance saved after its warm-up.
        self.endpoint.grant_container_read(models_bucket, compile_cache_prefix)
        self.endpoint.grant_container_write(models_bucket, compile_cache_prefix)
        # A scalable target is identified by its endpoint and variant, not by its logical id: a new logical id
        # would register the same target again and then delete the old resource, which deregisters it and
        # leaves the endpoint without scaling. Keep the id it had before the endpoint became a construct.
        scalable_target = self.endpoint.scaling.target.node.default_child
        assert isinstance(scalable_target, CfnResource)
        scalable_target.override_logical_id(SCALABLE_TARGET_LOGICAL_ID)
        self.weights, self.weights_source = self._weights(config, models_bucket)

        outputs = [
            ("EndpointName", self.endpoint.endpoint.attr_endpoint_name, f"SageMaker endpoint ({config.mode})"),
            ("ImageUri", self.image.image_uri, "Image the endpoint runs"),
            ("ModelDataUri", f"s3://{models_bucket.bucket_name}/{self.model_data.prefix}", "The diffusers folder"),
            ("ModelSource", self.weights_source, "Where the deploy seeds the weights from"),
        ]
        if self.async_invocation is not None:
            invocation = self.async_invocation
            assert self.endpoint.success_topic is not None and self.endpoint.error_topic is not None
            outputs += [
                ("AsyncInputLocation", invocation.s3_uri(invocation.input_prefix), "Upload request JSON here"),
                ("AsyncOutputLocation", invocation.s3_uri(invocation.output_prefix), "Async results"),
                ("AsyncFailureLocation", invocation.s3_uri(invocation.failure_prefix), "Async failures"),
                ("SuccessTopicArn", self.endpoint.success_topic.topic_arn, "Async success notifications"),
                ("ErrorTopicArn", self.endpoint.error_topic.topic_arn, "Async error notifications"),
            ]
        for output_id, value, description in outputs:
            CfnOutput(self, output_id, value=value, description=description)

    def _weights(self, config: DiffusionConfig, models_bucket: s3.IBucket) -> tuple[ModelSeed | ModelPrefixCheck, str]:
        """Seed the model prefix from config.model_source, or check it holds a model; the SageMaker model waits.

        Returns the construct and a one-line description of where the weights come from (a stack output).

        The endpoint copies the prefix when an instance starts and never reaches a model hub itself
        (HF_HUB_OFFLINE=1), so the weights must be in S3 before the model, endpoint config and endpoint exist.
        """
        prefix = self.model_data.prefix
        if config.model_source is None:
            check = ModelPrefixCheck(
                self,
                "ModelCheck",
                bucket=models_bucket,
                prefix=prefix,
                required=(MODEL_MARKER,),
                how_to_fix=(
                    "diffusion.model_source is null, so the deploy does not download weights: upload a diffusers "
                    f"folder with `python -m runtime.endpoint.upload_model --source <folder> --bucket "
                    f"{models_bucket.bucket_name} --name {config.model_name}` (docs/diffusion-operations.md), "
                    "then deploy again."
                ),
                dependents=[self.endpoint.model],
                description="GenArt Diffusion: fails the deploy before the endpoint while the weights are missing",
            )
            return check, "none: uploaded by an operator (diffusion.model_source is null)"
        source = model_source(config.model_source)
        seed = ModelSeed(
            self,
            "ModelSeed",
            bucket=models_bucket,
            prefix=prefix,
            files=source.files,
            marker=source.marker,
            dependents=[self.endpoint.model],
            description=f"GenArt Diffusion: seeds {prefix} from {source.repository}",
        )
        return seed, f"{config.model_source}: {source.describe()}"
