"""Log groups of the Bot stack, with retention taken from config as a plain number of days."""

from __future__ import annotations

from typing import cast

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs
from constructs import Construct


def retained_log_group(
    scope: Construct, construct_id: str, *, retention_days: int, removal_policy: RemovalPolicy
) -> logs.LogGroup:
    """A log group that keeps events for retention_days (a CloudWatch-allowed value, checked by BotConfig)."""
    group = logs.LogGroup(scope, construct_id, removal_policy=removal_policy)
    # Python's RetentionDays enum carries names, not day counts; the L1 property takes the number directly.
    cast(logs.CfnLogGroup, group.node.default_child).retention_in_days = retention_days
    return group
