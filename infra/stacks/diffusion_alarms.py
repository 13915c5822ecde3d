"""CloudWatch alarms on the Diffusion endpoint, all notifying one encrypted SNS alarm topic."""

from __future__ import annotations

from aws_cdk import Aws, Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.config import DiffusionConfig
from infra.stacks.diffusion_scaling import endpoint_metric
from infra.stacks.diffusion_topics import encrypted_topic

# ModelLatency is reported in microseconds.
MICROSECONDS = 1_000_000
# A wake-up from zero (instance start, model download, warm-up) is allowed this long before it counts as stuck.
STUCK_WITHOUT_CAPACITY = Duration.minutes(30)


class EndpointAlarms(Construct):
    """Server errors, slow generations and (async) a queue that is too old or has no capacity for too long."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DiffusionConfig,
        endpoint_name: str,
        variant_name: str,
        topic_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = encrypted_topic(self, "Topic", key=topic_key, display_name="GenArt Diffusion alarms")
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarms",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "ArnLike": {
                        "aws:SourceArn": f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:{Aws.ACCOUNT_ID}:alarm:*"
                    }
                },
            )
        )
        if config.alarm_email is not None:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        self.alarms: list[cloudwatch.Alarm] = []

        def metric(name: str, statistic: str, *, variant: bool = True) -> cloudwatch.Metric:
            return endpoint_metric(
                name,
                endpoint_name=endpoint_name,
                variant_name=variant_name if variant else None,
                statistic=statistic,
            ).with_(period=Duration.minutes(5))

        self._add(
            "ServerErrors",
            "The endpoint returned 5XX errors (model or container failures).",
            metric("Invocation5XXErrors", "Sum"),
            threshold=1,
            evaluation_periods=1,
        )
        self._add(
            "SlowGenerations",
            f"p90 model latency stayed above {config.latency_alarm_p90_seconds} s for 15 minutes.",
            metric("ModelLatency", "p90"),
            threshold=config.latency_alarm_p90_seconds * MICROSECONDS,
            evaluation_periods=3,
        )
        if config.mode == "async":
            self._add(
                "OldestRequestAge",
                f"The oldest queued request waited more than {config.backlog_age_alarm_seconds} s.",
                metric("ApproximateAgeOfOldestRequest", "Maximum", variant=False),
                threshold=config.backlog_age_alarm_seconds,
                evaluation_periods=1,
            )
            periods = int(STUCK_WITHOUT_CAPACITY.to_minutes() // 5)
            self._add(
                "StuckWithoutCapacity",
                "Requests have waited with zero instances for 30 minutes: scale-out from zero is failing "
                "(instance quota, capacity or a container that never turns healthy).",
                metric("HasBacklogWithoutCapacity", "Minimum", variant=False),
                threshold=1,
                evaluation_periods=periods,
            )

    def _add(
        self,
        construct_id: str,
        description: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        evaluation_periods: int,
    ) -> None:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=evaluation_periods,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        action = cloudwatch_actions.SnsAction(self.topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        self.alarms.append(alarm)
