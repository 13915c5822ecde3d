"""A Lambda function's own log group and role: the role is assumed by Lambda and may write only that group."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.components.log_retention import set_retention_days


def function_logs_and_role(
    scope: Construct, *, description: str, log_retention_days: int, removal_policy: RemovalPolicy
) -> tuple[logs.LogGroup, iam.Role]:
    """Add "Logs" and "Role" to scope (the ids name them in templates, so they stay fixed)."""
    log_group = logs.LogGroup(scope, "Logs", removal_policy=removal_policy)
    set_retention_days(log_group, log_retention_days)
    role = iam.Role(scope, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=description)
    log_group.grant_write(role)
    return log_group, role


def allow(role: iam.Role, sid: str, actions: list[str], resources: list[str], **conditions: object) -> None:
    """Add one statement, named by sid, to role."""
    role.add_to_principal_policy(
        iam.PolicyStatement(sid=sid, actions=actions, resources=resources, conditions=conditions or None)
    )
