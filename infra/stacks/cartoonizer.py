"""Cartoonizer stack: images on a container-image Lambda (CPU), videos on an async GPU endpoint that idles at zero."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.components.endpoint_alarms import EndpointAlarmThresholds
from infra.components.endpoint_scaling import EndpointCapacity
from infra.components.image_repository import ImageRepository
from infra.components.log_retention import set_retention_days
from infra.components.ops_alerts import OpsAlertsTopic
from infra.components.published_image import PublishedImage
from infra.components.sagemaker_endpoint import (
    AsyncInvocation,
    ModelData,
    SageMakerEndpoint,
    instance_scoped_endpoint_name,
)
from infra.config import CartoonizerConfig
from infra.stacks.cartoonizer_image_function import CartoonizerImageFunction
from infra.stacks.web_api import WebApi
from infra.stacks.web_studio import StudioTargets, WebStudio
from runtime.cartoonizer import contract
from runtime.endpoint import contract as diffusion_contract
from runtime.web import contract as web_contract

REPO_ROOT = Path(__file__).resolve().parents[2]
LOG_LEVEL = "INFO"


def video_endpoint_name(*, env_name: str, config: CartoonizerConfig) -> str:
    """Physical name of the video endpoint; it carries the instance type, so changing the type replaces it."""
    return instance_scoped_endpoint_name(f"genart-{env_name}-cartoon", config.video.instance_type)


def image_function_environment(
    *, config: CartoonizerConfig, models_bucket_name: str, outputs_bucket_name: str
) -> dict[str, str]:
    """What the image function reads (runtime/cartoonizer/contract.py): its model key, buckets and limits, on CPU."""
    return {
        contract.ENV_MODELS_BUCKET: models_bucket_name,
        contract.ENV_MODEL_KEY: contract.model_prefix(config.model_name) + contract.MODEL_FILE,
        contract.ENV_OUTPUTS_BUCKET: outputs_bucket_name,
        contract.ENV_DEVICE: "cpu",
        contract.ENV_MAX_IMAGE_SIDE: str(config.image.max_side),
        contract.ENV_MAX_IMAGE_BYTES: str(config.image.max_bytes),
        contract.ENV_LOG_LEVEL: LOG_LEVEL,
    }


def video_endpoint_environment(*, config: CartoonizerConfig, outputs_bucket_name: str) -> dict[str, str]:
    """What the endpoint container reads: the model folder SageMaker fills, the GPU it must use, its limits."""
    return {
        contract.ENV_MODEL_DIR: contract.MODEL_DIR,
        contract.ENV_OUTPUTS_BUCKET: outputs_bucket_name,
        # "cuda", not "auto": on a GPU endpoint a container that cannot use the GPU must fail, not crawl on CPU.
        contract.ENV_DEVICE: "cuda",
        contract.ENV_MAX_IMAGE_SIDE: str(config.image.max_side),
        contract.ENV_MAX_IMAGE_BYTES: str(config.image.max_bytes),
        contract.ENV_MAX_VIDEO_SIDE: str(config.video.max_side),
        contract.ENV_MAX_VIDEO_SECONDS: str(config.video.max_seconds),
        contract.ENV_PROGRESS_INTERVAL_S: str(config.video.progress_interval_seconds),
        contract.ENV_LOG_LEVEL: LOG_LEVEL,
    }


class CartoonizerStack(Stack):
    """Owns the image function and the video endpoint; both images are published into Storage's cartoonizer repo."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: CartoonizerConfig,
        env_name: str,
        image_repository: ImageRepository,
        models_bucket: s3.IBucket,
        outputs_bucket: s3.IBucket,
        access_logs_bucket: s3.IBucket,
        ops_alerts: OpsAlertsTopic,
        retain_logs: bool,
        diffusion_endpoint: SageMakerEndpoint | None = None,
        **kwargs: object,
    ) -> None:
        synthesizer = image_repository.asset_synthesizer()
        super().__init__(scope, construct_id, synthesizer=synthesizer, **kwargs)  # type: ignore[arg-type]
        self.outputs_bucket = outputs_bucket
        self.invocation_timeout_seconds = config.video.invocation_timeout_seconds
        model_prefix = contract.model_prefix(config.model_name)
        context = REPO_ROOT / contract.IMAGE_BUILD_CONTEXT

        self.function_image = PublishedImage(
            self,
            "FunctionImage",
            repository=image_repository,
            directory=context,
            dockerfile=contract.LAMBDA_DOCKERFILE,
            exclude=contract.IMAGE_EXCLUDES,
            display_name="Cartoonizer image function",
        )
        self.endpoint_image = PublishedImage(
            self,
            "EndpointImage",
            repository=image_repository,
            directory=context,
            dockerfile=contract.ENDPOINT_DOCKERFILE,
            exclude=contract.IMAGE_EXCLUDES,
            display_name="Cartoonizer video endpoint image",
        )

        self.images = CartoonizerImageFunction(
            self,
            "Images",
            config=config.image,
            image=self.function_image,
            models_bucket=models_bucket,
            model_prefix=model_prefix,
            outputs_bucket=outputs_bucket,
            environment=image_function_environment(
                config=config,
                models_bucket_name=models_bucket.bucket_name,
                outputs_bucket_name=outputs_bucket.bucket_name,
            ),
            log_retention_days=config.log_retention_days,
            removal_policy=RemovalPolicy.RETAIN if retain_logs else RemovalPolicy.DESTROY,
        )

        video = config.video
        self.async_invocation = AsyncInvocation(
            bucket=outputs_bucket,
            input_prefix=contract.ASYNC_INPUT_PREFIX,
            output_prefix=contract.ASYNC_OUTPUT_PREFIX,
            failure_prefix=contract.ASYNC_FAILURE_PREFIX,
            max_concurrent_invocations_per_instance=video.max_concurrent_invocations_per_instance,
        )
        self.model_data = ModelData(bucket=models_bucket, prefix=model_prefix)
        self.videos = SageMakerEndpoint(
            self,
            "Videos",
            endpoint_name=video_endpoint_name(env_name=env_name, config=config),
            image=self.endpoint_image,
            model_data=self.model_data,
            capacity=EndpointCapacity(
                instance_type=video.instance_type,
                min_instances=video.min_instances,
                max_instances=video.max_instances,
                target_backlog_per_instance=video.target_backlog_per_instance,
                inference_ami_version=video.inference_ami_version,
            ),
            environment=video_endpoint_environment(config=config, outputs_bucket_name=outputs_bucket.bucket_name),
            async_invocation=self.async_invocation,
            startup_timeout_seconds=video.startup_timeout_seconds,
            download_timeout_seconds=video.download_timeout_seconds,
            alarm_thresholds=EndpointAlarmThresholds(
                latency_p90_seconds=video.latency_alarm_p90_seconds,
                backlog_age_seconds=video.backlog_age_alarm_seconds,
            ),
            alarm_action=ops_alerts.alarm_action(),
            description="GenArt Cartoonizer video endpoint: pull its image, read its model, inputs and jobs, "
            "write results",
        )
        set_retention_days(self.videos.log_group, config.log_retention_days)
        # A job names an uploaded input and a result key; progress JSON is written next to the result.
        self.videos.grant_container_read(outputs_bucket, contract.INPUTS_PREFIX)
        self.videos.grant_container_write(outputs_bucket, contract.RESULTS_PREFIX)

        # Generate needs the Diffusion endpoint asynchronous (app_builder passes it only then).
        self.diffusion_endpoint = diffusion_endpoint
        self.studio: WebStudio | None = None
        if config.web.enabled:
            self.studio = self._studio(
                config=config,
                env_name=env_name,
                outputs_bucket=outputs_bucket,
                access_logs_bucket=access_logs_bucket,
                removal_policy=RemovalPolicy.RETAIN if retain_logs else RemovalPolicy.DESTROY,
            )

        assert self.videos.success_topic is not None and self.videos.error_topic is not None
        invocation = self.async_invocation
        for output_id, value, description in (
            ("ImageFunctionName", self.images.function.function_name, "Lambda that cartoonizes one image"),
            ("ImageFunctionArn", self.images.function.function_arn, "Invoke with a job naming S3 input and output"),
            ("VideoEndpointName", self.videos.endpoint.attr_endpoint_name, "Async GPU endpoint for videos"),
            ("ModelDataUri", f"s3://{models_bucket.bucket_name}/{model_prefix}", "The converted model folder"),
            ("InputsLocation", f"s3://{outputs_bucket.bucket_name}/{contract.INPUTS_PREFIX}", "Upload inputs here"),
            ("ResultsLocation", f"s3://{outputs_bucket.bucket_name}/{contract.RESULTS_PREFIX}", "Results, progress"),
            ("AsyncInputLocation", invocation.s3_uri(invocation.input_prefix), "Upload video job JSON here"),
            ("AsyncOutputLocation", invocation.s3_uri(invocation.output_prefix), "Async responses"),
            ("AsyncFailureLocation", invocation.s3_uri(invocation.failure_prefix), "Async failures"),
            ("SuccessTopicArn", self.videos.success_topic.topic_arn, "Async success notifications"),
            ("ErrorTopicArn", self.videos.error_topic.topic_arn, "Async error notifications"),
            (
                "InvocationTimeoutSeconds",
                str(self.invocation_timeout_seconds),
                "Pass as InvokeEndpointAsync's InvocationTimeoutSeconds (SageMaker's default is 900)",
            ),
        ):
            CfnOutput(self, output_id, value=value, description=description)

    def _studio(
        self,
        *,
        config: CartoonizerConfig,
        env_name: str,
        outputs_bucket: s3.IBucket,
        access_logs_bucket: s3.IBucket,
        removal_policy: RemovalPolicy,
    ) -> WebStudio:
        diffusion = self.diffusion_endpoint
        studio = WebStudio(
            self,
            "Studio",
            config=config,
            env_name=env_name,
            repo_root=REPO_ROOT,
            outputs_bucket=outputs_bucket,
            # Referenced, not granted to: Storage admits the page bucket's logs itself (a grant here would make
            # Storage depend on this stack).
            access_logs_bucket=s3.Bucket.from_bucket_attributes(
                self,
                "AccessLogs",
                bucket_arn=access_logs_bucket.bucket_arn,
                bucket_name=access_logs_bucket.bucket_name,
            ),
            targets=StudioTargets(
                image_function_name=self.images.function.function_name,
                video_endpoint_name=self.videos.endpoint_name,
                video_invocation_timeout_seconds=config.video.invocation_timeout_seconds,
                diffusion_endpoint_name=diffusion.endpoint_name if diffusion is not None else "",
            ),
            removal_policy=removal_policy,
        )
        self._grant_studio(studio.api, outputs_bucket)
        # The studio starts image jobs as events and fails a job without progress after stale_after_seconds: a
        # retry, or an event that waited longer than that, would run an image nobody is waiting for any more.
        self.images.function.configure_async_invoke(
            retry_attempts=0, max_event_age=Duration.seconds(config.web.stale_after_seconds)
        )
        for output_id, value, description in (
            ("StudioUrl", studio.site.url, "The web studio (sign in with a user an operator invited)"),
            ("UserPoolId", studio.auth.user_pool.user_pool_id, "Cognito user pool of the studio's users"),
            ("UserPoolClientId", studio.auth.client.user_pool_client_id, "The page's app client"),
            ("ApiUrl", studio.api.url, "The studio's HTTP API (the page calls it as <StudioUrl>/api)"),
            ("InviteUserCommand", studio.invite_command, "Invite a user (Cognito emails a temporary password)"),
        ):
            CfnOutput(self, output_id, value=value, description=description)
        return studio

    def _grant_studio(self, api: WebApi, bucket: s3.IBucket) -> None:
        """Least privilege for the studio's API: sign uploads and write job inputs, read what jobs make, invoke."""
        writes = [web_contract.UPLOADS_PREFIX, web_contract.VIDEO_JOBS_PREFIX]
        reads = [
            web_contract.UPLOADS_PREFIX,
            web_contract.CARTOON_RESULTS_PREFIX,
            contract.ASYNC_OUTPUT_PREFIX,
            contract.ASYNC_FAILURE_PREFIX,
        ]
        endpoints = [self.videos]
        diffusion = self.diffusion_endpoint
        if diffusion is not None:
            assert diffusion.async_invocation is not None
            writes.append(web_contract.GENERATE_JOBS_PREFIX)
            reads += [
                diffusion_contract.OUTPUTS_PREFIX,
                diffusion.async_invocation.output_prefix,
                diffusion.async_invocation.failure_prefix,
            ]
            endpoints.append(diffusion)
        # Presigned POSTs carry the API's signature, so the API needs the PutObject it lets the browser do.
        api.allow_objects("WriteUploadsAndJobInputs", ["s3:PutObject"], bucket, writes)
        # GetObject also covers HeadObject (is the upload there?) and the presigned GETs of inputs and results.
        api.allow_objects("ReadUploadsAndResults", ["s3:GetObject"], bucket, reads)
        # Listing those prefixes turns a missing object into a 404 the API can name, instead of a 403.
        api.allow(
            "ListUploadsAndResults",
            ["s3:ListBucket"],
            [bucket.bucket_arn],
            StringLike={"s3:prefix": [f"{prefix}*" for prefix in reads]},
        )
        self.images.grant_invoke(api.role)
        api.allow(
            "StartAndWatchEndpointJobs",
            ["sagemaker:InvokeEndpointAsync", "sagemaker:DescribeEndpoint"],
            [endpoint.endpoint_arn for endpoint in endpoints],
        )

    def grant_invoke(self, grantee: iam.IGrantable) -> None:
        """Let grantee run a job end to end: upload an input, invoke the function or the endpoint, read the result."""
        bucket = self.outputs_bucket
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["s3:PutObject", "s3:AbortMultipartUpload"],
            resource_arns=[bucket.arn_for_objects(f"{contract.INPUTS_PREFIX}*")],
        )
        # Results and the progress JSON beside them (presigned for the browser by the caller).
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["s3:GetObject"],
            resource_arns=[bucket.arn_for_objects(f"{contract.RESULTS_PREFIX}*")],
        )
        self.images.grant_invoke(grantee)
        self.videos.grant_invoke(grantee)
