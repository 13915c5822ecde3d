"""Pipeline stack: the StyleGAN2 SageMaker Pipeline, its step image, function, notifications, failure rule, roles."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Aws, CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from infra.components.image_repository import ImageRepository
from infra.components.ops_alerts import OpsAlertsTopic
from infra.components.published_image import PublishedImage
from infra.config import PipelineConfig
from infra.stacks.pipeline_definition import PipelineResources, render_pipeline_definition
from infra.stacks.pipeline_notifications import PipelineNotifications
from infra.stacks.pipeline_role import PipelineRoles
from runtime.lambdas.notify.contract import PIPELINE_EVENT_SOURCE, PIPELINE_EVENT_TYPE
from runtime.pipeline.stylegan2 import contract as pipeline_contract
from runtime.pipeline.stylegan2.contract import METRIC_DEFINITIONS

REPO_ROOT = Path(__file__).resolve().parents[2]
PIPELINE_DIR = REPO_ROOT / "runtime" / "pipeline"
FAILURE_STATUSES = ["Failed", "Stopped"]


class PipelineStack(Stack):
    """Owns the StyleGAN2 pipeline (definition rendered by the SageMaker SDK at synth), its image and alerts."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PipelineConfig,
        pipeline_name: str,
        models_bucket: s3.IBucket,
        datasets_bucket: s3.IBucket,
        image_repository: ImageRepository,
        ops_alerts: OpsAlertsTopic,
        retain_logs: bool,
        **kwargs: object,
    ) -> None:
        synthesizer = image_repository.asset_synthesizer()
        super().__init__(scope, construct_id, synthesizer=synthesizer, **kwargs)  # type: ignore[arg-type]
        removal = RemovalPolicy.RETAIN if retain_logs else RemovalPolicy.DESTROY
        # SageMaker lower-cases pipeline names inside ARNs; a lower-case name keeps name, ARN and events aligned.
        self.pipeline_name = pipeline_name.lower()
        self.pipeline_arn = self.format_arn(service="sagemaker", resource="pipeline", resource_name=self.pipeline_name)

        self.image = PublishedImage(
            self,
            "StepImage",
            repository=image_repository,
            directory=REPO_ROOT / pipeline_contract.IMAGE_BUILD_CONTEXT,
            dockerfile=pipeline_contract.IMAGE_DOCKERFILE,
            exclude=pipeline_contract.IMAGE_EXCLUDES,
            display_name="StyleGAN2 pipeline step image",
        )
        self.notifications = PipelineNotifications(
            self,
            "Notifications",
            notification_email=config.notification_email,
            models_bucket=models_bucket,
            datasets_bucket=datasets_bucket,
            pipeline_execution_arns=self.format_arn(
                service="sagemaker", resource="pipeline", resource_name=f"{self.pipeline_name}/execution/*"
            ),
            ops_alerts=ops_alerts,
            removal_policy=removal,
            log_retention=logs.RetentionDays.ONE_MONTH,
        )
        self.roles = PipelineRoles(
            self,
            "Roles",
            models_bucket=models_bucket,
            datasets_bucket=datasets_bucket,
            image=self.image,
            notify_function=self.notifications.function,
        )

        definition = render_pipeline_definition(
            resources=PipelineResources(
                pipeline_name=self.pipeline_name,
                job_role_arn=self.roles.job_role_arn_from_tokens,
                image_uri=self.image.image_uri,
                notify_function_arn=self.notifications.function.function_arn,
                models_bucket_name=models_bucket.bucket_name,
                datasets_bucket_name=datasets_bucket.bucket_name,
            ),
            config=config,
            metric_definitions=METRIC_DEFINITIONS,
        )
        self.pipeline = sagemaker.CfnPipeline(
            self,
            "Pipeline",
            pipeline_name=self.pipeline_name,
            pipeline_display_name=self.pipeline_name,
            pipeline_description="StyleGAN2: validate, prepare dataset, train, score + export, publish if good enough",
            role_arn=self.roles.pipeline_role.role_arn,
            pipeline_definition={"PipelineDefinitionBody": definition},
        )
        # Both roles' policies must exist before SageMaker validates and later runs the pipeline.
        self.pipeline.node.add_dependency(self.roles)

        self.failure_rule = events.Rule(
            self,
            "FailedOrStoppedRule",
            description=f"Failed or stopped executions of {self.pipeline_name} to the pipeline's function",
            event_pattern=events.EventPattern(
                source=[PIPELINE_EVENT_SOURCE],
                detail_type=[PIPELINE_EVENT_TYPE],
                detail={"pipelineArn": [self.pipeline_arn], "currentPipelineExecutionStatus": FAILURE_STATUSES},
            ),
        )
        # The function names the failed step and its reason in plain text, to the pipeline and ops-alerts topics.
        self.failure_rule.add_target(targets.LambdaFunction(self.notifications.function, retry_attempts=4))
        for permission in self.failure_rule.node.find_all():
            if isinstance(permission, lambda_.CfnPermission):
                # CDK sets the rule as aws:SourceArn; the account closes the confused-deputy gap completely.
                permission.source_account = Aws.ACCOUNT_ID

        for output_id, value, description in (
            ("PipelineName", self.pipeline_name, "SageMaker pipeline to start (start-pipeline-execution)"),
            ("PipelineArn", self.pipeline_arn, "SageMaker pipeline ARN"),
            ("TopicArn", self.notifications.topic.topic_arn, "SNS topic for run results and failures"),
            ("StepImageUri", self.image.image_uri, "Training/processing image built from runtime/pipeline"),
            (
                "NotifyFunctionName",
                self.notifications.function.function_name,
                "Pipeline function: validates parameters, publishes gated generators, sends run messages",
            ),
        ):
            CfnOutput(self, output_id, value=value, description=description)
