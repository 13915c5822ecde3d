"""The one ops-alerts topic every system reports trouble to: CloudWatch alarms and EventBridge rules publish here."""

from __future__ import annotations

from typing import cast

from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra.components.encrypted_topic import EncryptedTopic

# The id of the topic reference a consuming scope holds (one per scope, shared by all its rules).
IMPORTED_TOPIC_ID = "OpsAlertsTopic"


class OpsAlertsTopic(Construct):
    """Owns the encrypted alerts topic and admits this account's alarms and rules; other stacks only reference it."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        display_name: str,
        email: str | None = None,
        removal_policy: RemovalPolicy = RemovalPolicy.DESTROY,
    ) -> None:
        super().__init__(scope, construct_id)
        self.encrypted = EncryptedTopic(self, "Alerts", display_name=display_name, removal_policy=removal_policy)
        self.topic: sns.ITopic = self.encrypted.topic
        # Granted here, once, for the whole account and region: stacks that add alarms or rules later must not
        # edit this stack's policies (that would make Storage depend on them, a cycle).
        self.encrypted.grant_service_publish(
            service="cloudwatch.amazonaws.com",
            source_arn_pattern=f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:{Aws.ACCOUNT_ID}:alarm:*",
            sid="CloudWatchAlarms",
        )
        self.encrypted.grant_service_publish(
            service="events.amazonaws.com",
            source_arn_pattern=f"arn:{Aws.PARTITION}:events:{Aws.REGION}:{Aws.ACCOUNT_ID}:rule/*",
            key_conditions=False,
            sid="EventBridgeRules",
        )
        if email is not None:
            self.encrypted.add_email_subscription(email)

    @property
    def topic_arn(self) -> str:
        """ARN of the alerts topic."""
        return self.topic.topic_arn

    def grant_publish(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let a role of any stack publish (sns:Publish and the key actions, on the grantee's own policy)."""
        return self.encrypted.grant_publish(grantee)

    def alarm_action(self) -> cloudwatch.IAlarmAction:
        """An alarm action that notifies this topic (use for both ALARM and OK)."""
        return cloudwatch_actions.SnsAction(self.topic)

    def rule_target(self, scope: Construct, *, message: events.RuleTargetInput | None = None) -> events.IRuleTarget:
        """A rule target for a rule in another stack; the topic policy already admits it, so nothing here changes."""
        existing = scope.node.try_find_child(IMPORTED_TOPIC_ID)
        imported = (
            cast(sns.ITopic, existing)
            if existing is not None
            else sns.Topic.from_topic_arn(scope, IMPORTED_TOPIC_ID, self.topic.topic_arn)
        )
        return targets.SnsTopic(imported, message=message)
