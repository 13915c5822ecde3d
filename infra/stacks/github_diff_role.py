"""The read-only role GitHub Actions assumes through OIDC to run `cdk diff` for one environment's stacks."""

from __future__ import annotations

from aws_cdk import Aws, Stack
from aws_cdk import aws_iam as iam
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"


class GithubDiffRole(Construct):
    """Owns GitHub's OIDC provider (optional) and a role only pull-request workflows of one repository assume."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        repository: str,
        create_oidc_provider: bool,
        stack_name_prefix: str,
        bootstrap_qualifier: str,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        if create_oidc_provider:
            provider_arn = iam.CfnOIDCProvider(
                self, "GithubOidc", url=f"https://{GITHUB_OIDC_HOST}", client_id_list=["sts.amazonaws.com"]
            ).attr_arn
        else:
            provider_arn = f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:oidc-provider/{GITHUB_OIDC_HOST}"
        self.role = iam.Role(
            self,
            "Role",
            description=f"cdk diff for {stack_name_prefix}-* from pull requests of {repository} (read-only)",
            assumed_by=iam.WebIdentityPrincipal(
                provider_arn,
                conditions={
                    "StringEquals": {f"{GITHUB_OIDC_HOST}:aud": "sts.amazonaws.com"},
                    "StringLike": {f"{GITHUB_OIDC_HOST}:sub": f"repo:{repository}:pull_request"},
                },
            ),
        )
        # The CLI reads deployed templates through the bootstrap's read-only lookup role when it may assume it,
        # and falls back to these credentials (templates of this environment's stacks, the bootstrap version).
        lookup_role = (
            f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/"
            f"cdk-{bootstrap_qualifier}-lookup-role-{Aws.ACCOUNT_ID}-{Aws.REGION}"
        )
        self.role.add_to_policy(
            iam.PolicyStatement(sid="AssumeCdkLookupRole", actions=["sts:AssumeRole"], resources=[lookup_role])
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadThisEnvironmentsTemplates",
                actions=["cloudformation:DescribeStacks", "cloudformation:GetTemplate"],
                resources=[
                    stack.format_arn(
                        service="cloudformation", resource="stack", resource_name=f"{stack_name_prefix}-*/*"
                    )
                ],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadBootstrapVersion",
                actions=["ssm:GetParameter"],
                resources=[
                    stack.format_arn(
                        service="ssm",
                        resource="parameter",
                        resource_name=f"cdk-bootstrap/{bootstrap_qualifier}/version",
                    )
                ],
            )
        )
        NagSuppressions.add_resource_suppressions(
            self.role,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Stack ARNs end in a generated id, so the read-only template statement names this "
                    "environment's stack-name prefix and any id.",
                    applies_to=[
                        RegexAppliesTo(regex=r"/^Resource::arn:.*:cloudformation:.*:stack\/GenArt-[a-z0-9]+-\*\/\*$/")
                    ],
                )
            ],
            apply_to_children=True,
        )
