"""The bot's heartbeat: a metric filter counting its heartbeat log lines and an alarm when they stop."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_logs as logs
from constructs import Construct

from runtime.bot import contract as bot_contract

HEARTBEAT_METRIC = "BotHeartbeats"
# Fifteen quiet minutes: longer than a first boot (packages, venv, model download) and a Spot replacement.
SILENT_PERIODS = 3
PERIOD = Duration.minutes(5)


class BotHeartbeat(Construct):
    """Owns the metric filter on the bot's log group and the alarm that fires when no heartbeat arrives."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        log_group: logs.ILogGroup,
        namespace: str,
        action: cloudwatch.IAlarmAction,
    ) -> None:
        super().__init__(scope, construct_id)
        self.metric_filter = logs.MetricFilter(
            self,
            "Filter",
            log_group=log_group,
            filter_pattern=logs.FilterPattern.string_value("$.message", "=", bot_contract.HEARTBEAT_MESSAGE),
            metric_namespace=namespace,
            metric_name=HEARTBEAT_METRIC,
            metric_value="1",
        )
        self.alarm = cloudwatch.Alarm(
            self,
            "Silent",
            alarm_description=(
                f"No bot heartbeat for {SILENT_PERIODS * int(PERIOD.to_minutes())} minutes: the bot is not running "
                "(failed boot, crash loop, placeholder token, or no Spot capacity). See docs/bot-operations.md."
            ),
            metric=cloudwatch.Metric(namespace=namespace, metric_name=HEARTBEAT_METRIC, statistic="Sum", period=PERIOD),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=SILENT_PERIODS,
            # No data at all is the failure this alarm exists for.
            treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
        )
        self.alarm.add_alarm_action(action)
        self.alarm.add_ok_action(action)
