"""The web studio's API: an HTTP API whose every route needs a Cognito JWT, one Lambda, the jobs table."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import jsii
from aws_cdk import Duration, Fn, IgnoreMode, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from infra.components.function_role import allow, function_logs_and_role
from infra.components.log_retention import set_retention_days
from infra.components.nag import wildcard_objects
from runtime.web import contract

HANDLER = "runtime.web.api.handler.handler"
# The function ships the runtime package with only its web and common parts (stdlib + boto3: nothing to bundle).
# Git-style patterns, anchored at the repository root: everything is excluded, then those parts are put back.
CODE_EXCLUDES = (
    "/*",
    "!/runtime",
    "/runtime/*",
    "!/runtime/__init__.py",
    "!/runtime/web",
    "!/runtime/common",
    "/runtime/web/static",
    "/runtime/web/local",
    "__pycache__",
    "*.pyc",
)
TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query")
API_MEMORY_MB = 512
API_TIMEOUT = Duration.seconds(15)
# Access log fields of the default stage (JSON, one line per request; the user is the token's sub).
ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTime",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "integrationLatency": "$context.integrationLatency",
    "user": "$context.authorizer.claims.sub",
    "authorizerError": "$context.authorizer.error",
}


class WebApi(Construct):
    """Owns the HTTP API (JWT authorizer on every route, throttled default stage), its function, role, logs, table."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        repo_root: Path,
        issuer: str,
        audience: str,
        environment: Mapping[str, str],
        reserved_concurrency: int | None,
        throttle_rate_per_second: int,
        throttle_burst: int,
        log_retention_days: int,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Jobs",
            partition_key=dynamodb.Attribute(name=contract.TABLE_PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=contract.TABLE_SORT_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=contract.TABLE_TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=removal_policy,
        )

        self.log_group, self.role = function_logs_and_role(
            self,
            description="GenArt web studio API: sign uploads, start jobs, read their results, its table and logs",
            log_retention_days=log_retention_days,
            removal_policy=removal_policy,
        )
        self.allow("Table", list(TABLE_ACTIONS), [self.table.table_arn])
        self.function = lambda_.Function(
            self,
            "Function",
            description="GenArt web studio API: uploads, jobs, results (every route behind the Cognito JWT authorizer)",
            runtime=lambda_.Runtime.PYTHON_3_11,
            architecture=lambda_.Architecture.ARM_64,
            handler=HANDLER,
            code=lambda_.Code.from_asset(str(repo_root), exclude=list(CODE_EXCLUDES), ignore_mode=IgnoreMode.GIT),
            memory_size=API_MEMORY_MB,
            timeout=API_TIMEOUT,
            reserved_concurrent_executions=reserved_concurrency,
            environment={**environment, contract.ENV_TABLE: self.table.table_name},
            role=self.role,
            log_group=self.log_group,
        )
        self.function.node.add_dependency(self.role)
        NagSuppressions.add_resource_suppressions(
            self.function,
            [
                NagPackSuppression(
                    id="AwsSolutions-L1",
                    reason="Python 3.11 is the app's one Python (docs/architecture.md: every runtime, test and "
                    "image uses it); the API code is tested on it.",
                )
            ],
        )

        self.authorizer = authorizers.HttpJwtAuthorizer(
            "Cognito", jwt_issuer=issuer, jwt_audience=[audience], identity_source=["$request.header.Authorization"]
        )
        self.http_api = apigwv2.HttpApi(
            self,
            "Http",
            description="GenArt web studio API (CloudFront sends /api/* here)",
            create_default_stage=False,
            default_authorizer=self.authorizer,
        )
        self.access_logs = logs.LogGroup(self, "AccessLogs", removal_policy=removal_policy)
        set_retention_days(self.access_logs, log_retention_days)
        self.stage = self.http_api.add_stage(
            # Not "Default": CDK drops that id from logical ids, which would then clash with the API's own.
            "Stage",
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(rate_limit=throttle_rate_per_second, burst_limit=throttle_burst),
            access_log_settings=_AccessLogs(self.access_logs),
        )
        integration = integrations.HttpLambdaIntegration("Handler", self.function)
        for route in contract.ROUTES:
            method, path = route.split(" ", 1)
            self.http_api.add_routes(
                path=path,
                methods=[apigwv2.HttpMethod(method)],
                integration=integration,
                authorizer=self.authorizer,
            )

    @property
    def domain_name(self) -> str:
        """The API's execute-api host name (CloudFront's origin for /api/*)."""
        return Fn.select(2, Fn.split("/", self.http_api.api_endpoint))

    @property
    def url(self) -> str:
        """The API's own URL (the page uses CloudFront's /api instead)."""
        return self.http_api.api_endpoint

    def allow(self, sid: str, actions: list[str], resources: list[str], **conditions: object) -> None:
        """Add one statement to the function's role."""
        allow(self.role, sid, actions, resources, **conditions)

    def allow_objects(self, sid: str, actions: list[str], bucket: s3.IBucket, prefixes: Sequence[str]) -> None:
        """Allow actions on the objects under each prefix of bucket (and nothing else of it)."""
        self.allow(sid, actions, [bucket.arn_for_objects(f"{prefix}*") for prefix in prefixes])
        NagSuppressions.add_resource_suppressions(
            self.role,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason=f"{sid}: object wildcards stay inside these prefixes: {', '.join(prefixes)}.",
                    applies_to=[wildcard_objects(f"{prefix}*") for prefix in prefixes],
                )
            ],
            apply_to_children=True,
        )


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogs:
    """Stage access logs as JSON lines in a log group."""

    def __init__(self, group: logs.ILogGroup) -> None:
        self._destination = apigwv2.LogGroupLogDestination(group)

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FORMAT))
