"""App-owned ECR repositories and the synthesizer that makes `cdk deploy` publish a stack's images into one."""

from __future__ import annotations

import re

from aws_cdk import (
    Aws,
    CliCredentialsStackSynthesizer,
    DefaultStackSynthesizer,
    Duration,
    RemovalPolicy,
    Stack,
    cx_api,
)
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from constructs import Construct

# What cdk-assets (acting as the bootstrap's image-publishing role) needs to push an image.
PUBLISH_ACTIONS = (
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:CompleteLayerUpload",
    "ecr:DescribeImages",
    "ecr:DescribeRepositories",
    "ecr:GetDownloadUrlForLayer",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
)


BOOTSTRAP_QUALIFIER_CONTEXT = "@aws-cdk/core:bootstrapQualifier"


class UnsupportedSynthesizerError(TypeError):
    """The app's stack synthesizer cannot publish image assets into an app-owned repository."""


class MixedBootstrapQualifiersError(ValueError):
    """The stacks of one app would deploy with different bootstrap qualifiers (images would go unpublished)."""


def bootstrap_qualifier(stack: Stack) -> str:
    """The bootstrap qualifier a stack deploys with: the cdk.json context key, else CDK's default."""
    # A synthesizer's own qualifier is not readable from Python once an app-wide default is copied per stack;
    # assert_one_bootstrap_qualifier() catches such an app after synthesis instead of letting a deploy fail.
    qualifier = stack.synthesizer.bootstrap_qualifier or stack.node.try_get_context(BOOTSTRAP_QUALIFIER_CONTEXT)
    return str(qualifier or DefaultStackSynthesizer.DEFAULT_QUALIFIER)


def assert_one_bootstrap_qualifier(assembly: cx_api.CloudAssembly) -> None:
    """Fail when the synthesized stacks name different bootstrap qualifiers; the message names each stack's."""
    qualifiers: dict[str, str] = {}
    for artifact in assembly.stacks:
        default = artifact.template.get("Parameters", {}).get("BootstrapVersion", {}).get("Default", "")
        match = re.fullmatch(r"/cdk-bootstrap/([^/]+)/version", str(default))
        if match:
            qualifiers[artifact.stack_name] = match.group(1)
    if len(set(qualifiers.values())) > 1:
        raise MixedBootstrapQualifiersError(
            f"stacks deploy with different bootstrap qualifiers {qualifiers}; set the qualifier once with the "
            f"cdk.json context key {BOOTSTRAP_QUALIFIER_CONTEXT!r} instead of a custom synthesizer"
        )


def image_publishing_role_arn(qualifier: str) -> str:
    """The bootstrap role `cdk deploy` assumes to push Docker assets (DefaultStackSynthesizer's default name)."""
    return (
        f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/"
        f"cdk-{qualifier}-image-publishing-role-{Aws.ACCOUNT_ID}-{Aws.REGION}"
    )


class ImageRepository(Construct):
    """Owns one app-owned ECR repository (scan on push, immutable tags, lifecycle) that `cdk deploy` pushes into."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        repository_name: str,
        keep_images: int = 5,
        description: str,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        # A plain string, not a token: consuming stacks need it in their synthesizer at construction time.
        self.repository_name = repository_name
        self.qualifier = bootstrap_qualifier(stack)
        self._publisher_kind = _synthesizer_kind(stack)
        # Images are rebuilt from the repository's sources by any deploy, so nothing here is stateful.
        self.repository = ecr.Repository(
            self,
            "Repository",
            repository_name=repository_name,
            image_scan_on_push=True,
            # Asset tags are content hashes: a tag never has to move, so none may.
            image_tag_mutability=ecr.TagMutability.IMMUTABLE,
            encryption=ecr.RepositoryEncryption.AES_256,
            lifecycle_rules=[
                ecr.LifecycleRule(
                    description="Drop untagged layers left by interrupted pushes",
                    rule_priority=1,
                    tag_status=ecr.TagStatus.UNTAGGED,
                    max_image_age=Duration.days(1),
                ),
                ecr.LifecycleRule(
                    description=f"Keep the {keep_images} newest images for rollbacks",
                    rule_priority=2,
                    tag_status=ecr.TagStatus.ANY,
                    max_image_count=keep_images,
                ),
            ],
            removal_policy=RemovalPolicy.DESTROY,
            empty_on_delete=True,
        )
        if self._publisher_kind == "default":
            # The bootstrap role's own policy covers only the bootstrap repository; this one must admit it.
            self.repository.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="CdkImagePublishing",
                    principals=[iam.ArnPrincipal(image_publishing_role_arn(self.qualifier))],
                    actions=list(PUBLISH_ACTIONS),
                )
            )
        self.description = description

    def grant_pull(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let grantee pull images (and get an ECR login token)."""
        return self.repository.grant_pull(grantee)

    def asset_synthesizer(self) -> DefaultStackSynthesizer | CliCredentialsStackSynthesizer:
        """A new synthesizer for a consuming stack: same qualifier, Docker assets go to this repository."""
        if self._publisher_kind == "cli":
            return CliCredentialsStackSynthesizer(
                qualifier=self.qualifier, image_assets_repository_name=self.repository_name
            )
        return DefaultStackSynthesizer(qualifier=self.qualifier, image_assets_repository_name=self.repository_name)


def _synthesizer_kind(stack: Stack) -> str:
    synthesizer = stack.synthesizer
    if isinstance(synthesizer, DefaultStackSynthesizer):
        return "default"
    if isinstance(synthesizer, CliCredentialsStackSynthesizer):
        return "cli"
    raise UnsupportedSynthesizerError(
        f"{type(synthesizer).__name__} cannot publish images into an app-owned repository; use "
        "DefaultStackSynthesizer or CliCredentialsStackSynthesizer (any qualifier) for the app"
    )
