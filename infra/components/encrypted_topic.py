"""An SNS topic encrypted with a customer managed key, TLS-only, that admits AWS services by source condition."""

from __future__ import annotations

from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

# What a publisher to an SSE-KMS topic needs on the key.
PUBLISH_KMS_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey*")


class EncryptedTopic(Construct):
    """Owns a TLS-only topic and (unless one is shared in) the rotating customer managed key that encrypts it."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        display_name: str,
        key: kms.Key | None = None,
        removal_policy: RemovalPolicy = RemovalPolicy.DESTROY,
    ) -> None:
        super().__init__(scope, construct_id)
        # A customer managed key because the AWS managed SNS key cannot admit service principals (alarms, rules).
        self.key = key or kms.Key(
            self,
            "Key",
            description=f"Encrypts the SNS topic '{display_name}'",
            enable_key_rotation=True,
            removal_policy=removal_policy,
        )
        self.topic = sns.Topic(self, "Topic", display_name=display_name, master_key=self.key, enforce_ssl=True)

    @property
    def topic_arn(self) -> str:
        """ARN of the topic."""
        return self.topic.topic_arn

    def grant_publish(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let grantee publish (sns:Publish on the topic plus the key actions SSE needs)."""
        return self.topic.grant_publish(grantee)

    def grant_service_publish(
        self, *, service: str, source_arn_pattern: str, key_conditions: bool = True, sid: str
    ) -> None:
        """Let an AWS service publish on behalf of resources of this account whose ARN matches source_arn_pattern."""
        source = {
            "ArnLike": {"aws:SourceArn": source_arn_pattern},
            "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
        }
        principal = iam.ServicePrincipal(service)
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid=sid,
                principals=[principal],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions=source,
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid=sid,
                principals=[principal],
                actions=list(PUBLISH_KMS_ACTIONS),
                resources=["*"],
                # EventBridge's KMS requests carry no source keys (AWS documents this); a condition there would
                # drop every delivery silently, so such grants rely on the topic policy's conditions alone.
                conditions=source if key_conditions else None,
            )
        )

    def add_email_subscription(self, email: str) -> None:
        """Subscribe an email address (AWS sends a confirmation link first)."""
        self.topic.add_subscription(subscriptions.EmailSubscription(email))
