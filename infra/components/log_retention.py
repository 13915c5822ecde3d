"""Log retention as a plain number of days (from config), which Python's RetentionDays enum cannot express."""

from __future__ import annotations

from typing import cast

from aws_cdk import aws_logs as logs


def set_retention_days(group: logs.LogGroup, days: int) -> None:
    """Keep the group's events for days (a CloudWatch-allowed value, checked by the config model)."""
    # Python's RetentionDays enum carries names, not day counts; the L1 property takes the number directly.
    cast(logs.CfnLogGroup, group.node.default_child).retention_in_days = days
