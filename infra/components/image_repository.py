"""App-owned ECR repositories and the synthesizer that makes `cdk deploy` publish a stack's images into one."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

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
# What the Lambda service needs to pull a container-image function's image (AWS's documented repository policy).
LAMBDA_PULL_ACTIONS = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")


BOOTSTRAP_QUALIFIER_CONTEXT = "@aws-cdk/core:bootstrapQualifier"


class TooManyImagesError(ValueError):
    """More different images are published into a repository than it was sized for."""


class UnsupportedSynthesizerError(TypeError):
    """The app's stack synthesizer cannot publish image assets into an app-owned repository."""


class MixedBootstrapError(ValueError):
    """The stacks of one app would deploy with different bootstrap qualifiers or roles (images would go unpublished)."""


def bootstrap_qualifier(stack: Stack) -> str:
    """The bootstrap qualifier a stack deploys with: the cdk.json context key, else CDK's default."""
    # A synthesizer's own qualifier is not readable from Python once an app-wide default is copied per stack;
    # assert_one_bootstrap() catches such an app after synthesis instead of letting a deploy fail.
    qualifier = stack.synthesizer.bootstrap_qualifier or stack.node.try_get_context(BOOTSTRAP_QUALIFIER_CONTEXT)
    return str(qualifier or DefaultStackSynthesizer.DEFAULT_QUALIFIER)


def _bootstrap_of(assembly: cx_api.CloudAssembly, artifact: cx_api.CloudFormationStackArtifact) -> dict[str, Any]:
    """What a stack deploys with: qualifier, deploy and execution roles, and the roles that publish its assets."""
    default = artifact.template.get("Parameters", {}).get("BootstrapVersion", {}).get("Default", "")
    match = re.fullmatch(r"/cdk-bootstrap/([^/]+)/version", str(default))
    publishers: dict[str, set[str]] = {"files": set(), "dockerImages": set()}
    manifest = Path(assembly.directory) / f"{artifact.id}.assets.json"
    if manifest.exists():
        assets = json.loads(manifest.read_text())
        for kind, roles in publishers.items():
            for asset in assets.get(kind, {}).values():
                roles |= {str(d.get("assumeRoleArn")) for d in asset["destinations"].values()}
    return {
        "qualifier": match.group(1) if match else None,
        "deploy role": artifact.assume_role_arn,
        "execution role": artifact.cloud_formation_execution_role_arn,
        "file publishing role": sorted(publishers["files"]) or None,
        "image publishing role": sorted(publishers["dockerImages"]) or None,
    }


def assert_one_bootstrap(assembly: cx_api.CloudAssembly) -> None:
    """Fail when the synthesized stacks would deploy or publish through different bootstrap qualifiers or roles."""
    seen = {artifact.stack_name: _bootstrap_of(assembly, artifact) for artifact in assembly.stacks}
    for aspect in ("qualifier", "deploy role", "execution role", "file publishing role", "image publishing role"):
        # A stack without assets of a kind has no say in that kind's role.
        values = {name: bootstrap[aspect] for name, bootstrap in seen.items() if bootstrap[aspect] is not None}
        if len({json.dumps(value) for value in values.values()}) > 1:
            raise MixedBootstrapError(
                f"stacks deploy with different bootstrap {aspect}s {values}; image stacks use "
                f"DefaultStackSynthesizer(qualifier=...) built from the cdk.json context key "
                f"{BOOTSTRAP_QUALIFIER_CONTEXT!r}: set the qualifier there instead of a custom synthesizer"
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
        images: int = 1,
        keep_images: int = 5,
        description: str,
    ) -> None:
        super().__init__(scope, construct_id)
        if images < 1 or keep_images < 1:
            raise ValueError(f"ImageRepository: images and keep_images must be >= 1, got {images}, {keep_images}")
        # The count rule sees every image of the repository: with k different images it keeps k x keep_images,
        # so rebuilding one image keep_images times can never expire the current version of another.
        self.images = images
        self.lambda_pull = False
        self._published: list[str] = []
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
                    description=f"Keep the {keep_images} newest versions of each of its {images} image(s)",
                    rule_priority=2,
                    tag_status=ecr.TagStatus.ANY,
                    max_image_count=keep_images * images,
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

    def register_image(self, name: str) -> None:
        """Count one more image published here; more than `images` would let the lifecycle expire a live one."""
        if len(self._published) >= self.images:
            raise TooManyImagesError(
                f"{self.repository_name} holds {self.images} image(s) ({', '.join(self._published)}); "
                f"{name!r} is one more: create the repository with images={self.images + 1}"
            )
        self._published.append(name)

    def grant_pull(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let grantee pull images (and get an ECR login token)."""
        return self.repository.grant_pull(grantee)

    def grant_lambda_pull(self) -> None:
        """Let the Lambda service pull images for this account's functions in this region."""
        if self.lambda_pull:
            return
        # Granted where the repository lives, once: a consuming stack must not edit Storage's resources (and an
        # imported repository silently ignores the grant CDK's DockerImageCode.from_ecr attempts).
        self.repository.add_to_resource_policy(
            iam.PolicyStatement(
                sid="LambdaImagePull",
                principals=[iam.ServicePrincipal("lambda.amazonaws.com")],
                actions=list(LAMBDA_PULL_ACTIONS),
                conditions={
                    "StringLike": {
                        "aws:sourceArn": f"arn:{Aws.PARTITION}:lambda:{Aws.REGION}:{Aws.ACCOUNT_ID}:function:*"
                    }
                },
            )
        )
        self.lambda_pull = True

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
