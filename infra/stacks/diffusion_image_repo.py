"""Diffusion image repository stack: the ECR repository the Diffusion stack's image asset is published into."""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, DefaultStackSynthesizer, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from constructs import Construct

# Old images are kept for rollbacks; a deploy pushes one image per change of runtime/endpoint.
KEEP_IMAGES = 5

# What `cdk deploy` (cdk-assets, acting as the bootstrap's image-publishing role) needs to push an image.
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


def diffusion_repository_name(prefix: str) -> str:
    """Name of the Diffusion image repository for one environment (stack prefix, e.g. GenArt-dev)."""
    return f"{prefix.lower()}/diffusion-endpoint"


class DiffusionImageRepoStack(Stack):
    """Owns the Diffusion ECR repository; it deploys before the Diffusion stack, whose image asset lands in it."""

    def __init__(self, scope: Construct, construct_id: str, *, repository_name: str, **kwargs: object) -> None:
        # Not part of the Diffusion stack: the CLI publishes a stack's assets before deploying that stack, so
        # the repository must exist earlier. Images are rebuilt from runtime/endpoint, so nothing here is
        # stateful: the repository is emptied and deleted with the stack.
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        # A plain string (not a token): the Diffusion stack's synthesizer needs it at construction time.
        self.repository_name = repository_name
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
                    description=f"Keep the {KEEP_IMAGES} newest images for rollbacks",
                    rule_priority=2,
                    tag_status=ecr.TagStatus.ANY,
                    max_image_count=KEEP_IMAGES,
                ),
            ],
            removal_policy=RemovalPolicy.DESTROY,
            empty_on_delete=True,
        )
        self.repository.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CdkImagePublishing",
                principals=[iam.ArnPrincipal(self._image_publishing_role_arn())],
                actions=list(PUBLISH_ACTIONS),
            )
        )
        CfnOutput(
            self,
            "RepositoryUri",
            value=self.repository.repository_uri,
            description="ECR repository of the Stable Diffusion endpoint image (filled by cdk deploy)",
        )

    def _image_publishing_role_arn(self) -> str:
        # The bootstrap stack's role that `cdk deploy` assumes to push Docker assets; its own policy only
        # covers the bootstrap repository, so this repository grants it push access.
        qualifier = self.node.try_get_context("@aws-cdk/core:bootstrapQualifier") or (
            DefaultStackSynthesizer.DEFAULT_QUALIFIER
        )
        return (
            f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/"
            f"cdk-{qualifier}-image-publishing-role-{Aws.ACCOUNT_ID}-{Aws.REGION}"
        )
