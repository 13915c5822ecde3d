"""CloudWatch alarms on a SageMaker endpoint: server errors, slow invocations and (async) a stuck or old queue."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from infra.components.endpoint_metrics import endpoint_metric

# ModelLatency is reported in microseconds.
MICROSECONDS = 1_000_000
ALARM_PERIOD = Duration.minutes(5)
# A wake-up from zero (instance start, model download, warm-up) is allowed this long before it counts as stuck.
STUCK_WITHOUT_CAPACITY = Duration.minutes(30)


@dataclass(frozen=True)
class EndpointAlarmThresholds:
    """When an endpoint counts as unhealthy."""

    latency_p90_seconds: int = 30
    backlog_age_seconds: int = 1800


class EndpointAlarms(Construct):
    """Owns the endpoint's alarms; each notifies the given action on ALARM and on OK."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        endpoint_name: str,
        variant_name: str,
        asynchronous: bool,
        thresholds: EndpointAlarmThresholds,
        action: cloudwatch.IAlarmAction | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._action = action
        self.alarms: list[cloudwatch.Alarm] = []

        def metric(name: str, statistic: str) -> cloudwatch.Metric:
            return endpoint_metric(
                name, endpoint_name=endpoint_name, variant_name=variant_name, statistic=statistic, period=ALARM_PERIOD
            )

        self._add(
            "ServerErrors",
            f"{endpoint_name} returned 5XX errors (model or container failures).",
            metric("Invocation5XXErrors", "Sum"),
            threshold=1,
            evaluation_periods=1,
        )
        self._add(
            "SlowInvocations",
            f"{endpoint_name}: p90 model latency stayed above {thresholds.latency_p90_seconds} s for 15 minutes.",
            metric("ModelLatency", "p90"),
            threshold=thresholds.latency_p90_seconds * MICROSECONDS,
            evaluation_periods=3,
        )
        if asynchronous:
            self._add(
                "OldestRequestAge",
                f"{endpoint_name}: the oldest queued request waited more than {thresholds.backlog_age_seconds} s.",
                metric("ApproximateAgeOfOldestRequest", "Maximum"),
                threshold=thresholds.backlog_age_seconds,
                evaluation_periods=1,
            )
            self._add(
                "StuckWithoutCapacity",
                f"{endpoint_name}: requests have waited with zero instances for 30 minutes; scale-out from zero "
                "is failing (instance quota, capacity or a container that never turns healthy).",
                metric("HasBacklogWithoutCapacity", "Minimum"),
                threshold=1,
                evaluation_periods=int(STUCK_WITHOUT_CAPACITY.to_minutes() // ALARM_PERIOD.to_minutes()),
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
        if self._action is not None:
            alarm.add_alarm_action(self._action)
            alarm.add_ok_action(self._action)
        self.alarms.append(alarm)
