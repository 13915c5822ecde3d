"""Notifications of the StyleGAN2 pipeline: KMS-encrypted SNS topic, email subscription, notify Lambda."""

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
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from infra.components.nag import wildcard_objects
from runtime.lambdas.notify import contract as notify_contract

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
        grid_key_pattern: str,
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
        # EventBridge's kms:GenerateDataKey*/Decrypt grant on the key comes with the SnsTopic rule target.
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
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="PresignSampleGrids",
                actions=["s3:GetObject"],
                resources=[models_bucket.arn_for_objects(grid_key_pattern)],
            )
        )
        self.log_group.grant_write(self.role)

        self.function = lambda_.Function(
            self,
            "NotifyFunction",
            description="Publishes a finished StyleGAN2 run's S3 locations and sample-grid link to SNS",
            runtime=lambda_.Runtime.PYTHON_3_11,
            architecture=lambda_.Architecture.ARM_64,
            handler=notify_contract.HANDLER,
            code=lambda_.Code.from_asset(
                str(REPO_ROOT / notify_contract.CODE_ASSET_DIR), exclude=list(notify_contract.CODE_ASSET_EXCLUDE)
            ),
            role=self.role,
            log_group=self.log_group,
            timeout=Duration.seconds(30),
            memory_size=256,
            environment={
                notify_contract.ENV_TOPIC_ARN: self.topic.topic_arn,
                notify_contract.ENV_LINK_EXPIRY_SECONDS: str(notify_contract.DEFAULT_LINK_EXPIRY_SECONDS),
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
                    reason="Sample grids live under one key per pipeline execution id, known only at run time; "
                    "kms:GenerateDataKey* is CDK's SNS publish grant on the topic's own key only.",
                    applies_to=["Action::kms:GenerateDataKey*", wildcard_objects(grid_key_pattern)],
                )
            ],
            apply_to_children=True,
        )
