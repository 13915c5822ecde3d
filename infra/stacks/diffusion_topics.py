"""Encrypted, TLS-only SNS topics for the Diffusion stack and the customer managed key behind them."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

# Publishers to an SSE-KMS topic need both; CloudWatch alarms and SageMaker async notifications publish here.
PUBLISH_KMS_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")


class TopicKey(Construct):
    """Customer managed KMS key for the stack's topics; the AWS managed SNS key cannot admit CloudWatch alarms."""

    def __init__(self, scope: Construct, construct_id: str, *, alias: str) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            alias=alias,
            description="Encrypts the GenArt Diffusion SNS topics (async results, alarms)",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=list(PUBLISH_KMS_ACTIONS),
                resources=["*"],
            )
        )


def encrypted_topic(scope: Construct, construct_id: str, *, key: kms.IKey, display_name: str) -> sns.Topic:
    """A topic encrypted with key that refuses requests without TLS (cdk-nag SNS2, SNS3)."""
    return sns.Topic(scope, construct_id, display_name=display_name, master_key=key, enforce_ssl=True)
