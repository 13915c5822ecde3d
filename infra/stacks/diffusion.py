"""Diffusion stack: the Stable Diffusion image, SageMaker endpoint (async or realtime), autoscaling and alarms."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnOutput, DefaultStackSynthesizer, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import DiffusionConfig
from infra.stacks.diffusion_alarms import EndpointAlarms
from infra.stacks.diffusion_async import ASYNC_FAILURE_PREFIX, ASYNC_INPUT_PREFIX, ASYNC_OUTPUT_PREFIX, AsyncInference
from infra.stacks.diffusion_endpoint import OUTPUTS_PREFIX, VARIANT_NAME, DiffusionEndpoint, endpoint_log_group_name
from infra.stacks.diffusion_endpoint import endpoint_name as diffusion_endpoint_name
from infra.stacks.diffusion_image_repo import DiffusionImageRepoStack
from infra.stacks.diffusion_role import EndpointExecutionRole
from infra.stacks.diffusion_scaling import EndpointScaling
from infra.stacks.diffusion_topics import TopicKey

IMAGE_DIRECTORY = Path(__file__).resolve().parents[2] / "runtime" / "endpoint"
# Kept out of the Docker build context (and out of the asset hash, so they never trigger a new image).
IMAGE_EXCLUDES = ["**/__pycache__", "**/*.pyc", ".pytest_cache", ".mypy_cache", ".ruff_cache"]


class DiffusionStack(Stack):
    """Owns the Stable Diffusion endpoint: image (pushed into the DiffusionImages repo), model, scaling, alarms."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DiffusionConfig,
        env_name: str,
        image_repository_stack: DiffusionImageRepoStack,
        models_bucket: s3.IBucket,
        outputs_bucket: s3.IBucket,
        image_directory: Path = IMAGE_DIRECTORY,
        **kwargs: object,
    ) -> None:
        # Docker assets of this stack go to our repository instead of the bootstrap's shared one; the CLI
        # publishes them once the stacks this one depends on are deployed, so the repository exists by then.
        image_repository_name = image_repository_stack.repository_name
        synthesizer = DefaultStackSynthesizer(image_assets_repository_name=image_repository_name)
        super().__init__(scope, construct_id, synthesizer=synthesizer, **kwargs)  # type: ignore[arg-type]
        self.add_stack_dependency(image_repository_stack, "its image asset is published into that repository")
        endpoint_name = diffusion_endpoint_name(env_name=env_name, config=config)
        model_prefix = f"diffusion/{config.model_name}/"

        self.image = ecr_assets.DockerImageAsset(
            self,
            "Image",
            directory=str(image_directory),
            platform=ecr_assets.Platform.LINUX_AMD64,
            exclude=IMAGE_EXCLUDES,
            display_name="Stable Diffusion endpoint image",
        )
        self.repository = ecr.Repository.from_repository_name(self, "Repository", image_repository_name)
        topic_key = TopicKey(self, "TopicKey", alias=f"alias/genart/{env_name}/diffusion-topics").key
        self.async_inference = (
            AsyncInference(
                self,
                "Async",
                outputs_bucket=outputs_bucket,
                topic_key=topic_key,
                max_concurrent_invocations_per_instance=config.max_concurrent_invocations_per_instance,
            )
            if config.mode == "async"
            else None
        )
        self.execution = EndpointExecutionRole(
            self,
            "Execution",
            repository=self.repository,
            models_bucket=models_bucket,
            model_prefix=model_prefix,
            outputs_bucket=outputs_bucket,
            outputs_prefix=OUTPUTS_PREFIX,
            log_group_name=endpoint_log_group_name(endpoint_name),
            async_inference=self.async_inference,
        )
        self.endpoint = DiffusionEndpoint(
            self,
            "Endpoint",
            config=config,
            endpoint_name=endpoint_name,
            image_uri=self.image.image_uri,
            role=self.execution.role,
            models_bucket=models_bucket,
            model_prefix=model_prefix,
            outputs_bucket=outputs_bucket,
            async_inference=self.async_inference,
            log_retention=logs.RetentionDays.ONE_MONTH,
        )
        # SageMaker checks the role's access to the image and model data when it creates the model.
        self.endpoint.model.node.add_dependency(self.execution.policy)

        self.scaling = EndpointScaling(
            self, "Scaling", config=config, endpoint_name=endpoint_name, variant_name=VARIANT_NAME
        )
        self.scaling.node.add_dependency(self.endpoint.endpoint)
        self.alarms = EndpointAlarms(
            self,
            "Alarms",
            config=config,
            endpoint_name=endpoint_name,
            variant_name=VARIANT_NAME,
            topic_key=topic_key,
        )

        outputs = [
            ("EndpointName", self.endpoint.endpoint.attr_endpoint_name, f"SageMaker endpoint ({config.mode})"),
            ("RepositoryUri", self.repository.repository_uri, "ECR repository of the endpoint image"),
            ("ImageUri", self.image.image_uri, "Image the endpoint runs"),
            ("ModelDataUri", f"s3://{models_bucket.bucket_name}/{model_prefix}", "Upload the diffusers folder here"),
            ("AlarmTopicArn", self.alarms.topic.topic_arn, "SNS topic of the endpoint alarms"),
        ]
        if self.async_inference is not None:
            outputs += [
                ("AsyncInputLocation", self.async_inference.s3_uri(ASYNC_INPUT_PREFIX), "Upload request JSON here"),
                ("AsyncOutputLocation", self.async_inference.s3_uri(ASYNC_OUTPUT_PREFIX), "Async results"),
                ("AsyncFailureLocation", self.async_inference.s3_uri(ASYNC_FAILURE_PREFIX), "Async failures"),
                ("SuccessTopicArn", self.async_inference.success_topic.topic_arn, "Async success notifications"),
                ("ErrorTopicArn", self.async_inference.error_topic.topic_arn, "Async error notifications"),
            ]
        for output_id, value, description in outputs:
            CfnOutput(self, output_id, value=value, description=description)
