"""Notifications of the StyleGAN2 pipeline: KMS-encrypted SNS topic, email subscription, and the pipeline's function
(validates parameters, publishes a gated generator, formats every run's message)."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from infra.components.nag import wildcard_objects
from infra.components.ops_alerts import OpsAlertsTopic
from runtime.lambdas.notify import contract as notify_contract
from runtime.pipeline.stylegan2.contract import (
    EXPORTED_MODEL_KEY_PATTERN,
    FEATURE_EXTRACTOR_PREFIX,
    PUBLISHED_MODEL_KEY,
    SAMPLE_GRID_KEY_PATTERN,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


class PipelineNotifications(Construct):
    """Owns the topic (TLS-only, KMS), its key, the optional email subscription and the notify function."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        notification_email: str | None,
        models_bucket: s3.IBucket,
        datasets_bucket: s3.IBucket,
        pipeline_execution_arns: str,
        ops_alerts: OpsAlertsTopic | None,
        removal_policy: RemovalPolicy,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)

        self.key = kms.Key(
            self,
            "TopicKey",
            description="GenArt StyleGAN2 pipeline notifications (SNS server-side encryption)",
            enable_key_rotation=True,
            removal_policy=removal_policy,
        )
        self.topic = sns.Topic(
            self,
            "Topic",
            display_name="GenArt StyleGAN2 pipeline",
            master_key=self.key,
            enforce_ssl=True,
        )
        # Only the function publishes here (EventBridge invokes the function, not the topic): no service principal in
        # the topic or key policy.
        if notification_email is not None:
            self.topic.add_subscription(subscriptions.EmailSubscription(notification_email))

        self.log_group = logs.LogGroup(self, "NotifyLogs", retention=log_retention, removal_policy=removal_policy)
        self.role = iam.Role(
            self,
            "NotifyRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="GenArt pipeline notify function: publish to its topic, presign sample grids, write its logs",
        )
        self.topic.grant_publish(self.role)
        if ops_alerts is not None:
            ops_alerts.grant_publish(self.role)

        def allow(sid: str, actions: list[str], resources: list[str]) -> None:
            self.role.add_to_principal_policy(iam.PolicyStatement(sid=sid, actions=actions, resources=resources))

        allow("PresignSampleGrids", ["s3:GetObject"], [models_bucket.arn_for_objects(SAMPLE_GRID_KEY_PATTERN)])
        # The publish step: copy a run's verified generator.onnx over stylegan/latest.onnx, the one writer of it.
        allow("ReadExportedGenerators", ["s3:GetObject"], [models_bucket.arn_for_objects(EXPORTED_MODEL_KEY_PATTERN)])
        allow("PublishGenerator", ["s3:PutObject"], [models_bucket.arn_for_objects(PUBLISHED_MODEL_KEY)])
        # The validate step: the input prefix holds objects, the feature extractor exists.
        allow("ListDatasets", ["s3:ListBucket"], [datasets_bucket.bucket_arn])
        allow(
            "FindFeatureExtractor",
            ["s3:GetObject"],
            [models_bucket.arn_for_objects(f"{FEATURE_EXTRACTOR_PREFIX}/*")],
        )
        # Failure messages name the failed step and its reason.
        allow("ListExecutionSteps", ["sagemaker:ListPipelineExecutionSteps"], [pipeline_execution_arns])
        self.log_group.grant_write(self.role)

        self.function = lambda_.Function(
            self,
            "NotifyFunction",
            description="StyleGAN2 pipeline: validates parameters, publishes gated generators, formats run messages",
            runtime=lambda_.Runtime.PYTHON_3_11,
            architecture=lambda_.Architecture.ARM_64,
            handler=notify_contract.HANDLER,
            code=lambda_.Code.from_asset(
                str(REPO_ROOT / notify_contract.CODE_ASSET_DIR), exclude=list(notify_contract.CODE_ASSET_EXCLUDE)
            ),
            role=self.role,
            log_group=self.log_group,
            # Publishing copies a generator of up to a few hundred MB inside S3.
            timeout=Duration.seconds(120),
            memory_size=256,
            environment={
                notify_contract.ENV_TOPIC_ARN: self.topic.topic_arn,
                notify_contract.ENV_MODELS_BUCKET: models_bucket.bucket_name,
                notify_contract.ENV_DATASETS_BUCKET: datasets_bucket.bucket_name,
                notify_contract.ENV_LINK_EXPIRY_SECONDS: str(notify_contract.DEFAULT_LINK_EXPIRY_SECONDS),
                **({notify_contract.ENV_OPS_TOPIC_ARN: ops_alerts.topic_arn} if ops_alerts is not None else {}),
            },
        )
        NagSuppressions.add_resource_suppressions(
            self.function,
            [
                NagPackSuppression(
                    id="AwsSolutions-L1",
                    reason="Pinned to Python 3.11, the one Python of the app (tests, images, bot host; "
                    "docs/decisions.md); a newer managed runtime is adopted for all of them at once, not by drift.",
                )
            ],
        )
        NagSuppressions.add_resource_suppressions(
            self.role,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Sample grids and exported generators live under one key per pipeline execution id, "
                    "known only at run time, as do the pipeline's executions; the feature extractor has its own "
                    "prefix; kms:GenerateDataKey* is CDK's SNS publish grant on the topics' own keys only.",
                    applies_to=[
                        "Action::kms:GenerateDataKey*",
                        wildcard_objects(SAMPLE_GRID_KEY_PATTERN),
                        wildcard_objects(EXPORTED_MODEL_KEY_PATTERN),
                        wildcard_objects(f"{FEATURE_EXTRACTOR_PREFIX}/*"),
                        RegexAppliesTo(regex=r"/^Resource::arn:.*:sagemaker:.*:pipeline\/.*\/execution\/\*$/"),
                    ],
                )
            ],
            apply_to_children=True,
        )
