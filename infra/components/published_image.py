"""A container image built from a folder of this repository and published by `cdk deploy` into an app-owned repo."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aws_cdk import Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.components.image_repository import ImageRepository

# Kept out of every build context (and the asset hash, so they never trigger a new image).
DEFAULT_EXCLUDES = ("**/__pycache__", "**/*.pyc", "**/.pytest_cache", "**/.mypy_cache", "**/.ruff_cache")


class ImageNotInRepositoryError(ValueError):
    """The stack's synthesizer would publish the image somewhere other than the repository it was given."""


class RepositoryClosedToLambdaError(ValueError):
    """A Lambda function would run an image from a repository whose policy does not admit the Lambda service."""


class PublishedImage(Construct):
    """Owns one Docker image asset; the stack must be synthesized with `repository.asset_synthesizer()`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        repository: ImageRepository,
        directory: Path,
        dockerfile: str = "Dockerfile",
        exclude: Sequence[str] = (),
        display_name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.asset = ecr_assets.DockerImageAsset(
            self,
            "Asset",
            directory=str(directory),
            file=dockerfile,
            platform=ecr_assets.Platform.LINUX_AMD64,
            # Later patterns win: the caches stay out even after a context's `!folder` re-includes.
            exclude=[*exclude, *DEFAULT_EXCLUDES],
            display_name=display_name,
        )
        published_to = self.asset.repository.repository_name
        if published_to != repository.repository_name:
            raise ImageNotInRepositoryError(
                f"{display_name}: the stack publishes images to {published_to!r}, not {repository.repository_name!r}; "
                "create the stack with synthesizer=repository.asset_synthesizer()"
            )
        self.repository = repository
        repository.register_image(display_name)
        # The CLI publishes a stack's images once the stacks it depends on are deployed, so the repository exists.
        Stack.of(self).add_stack_dependency(
            Stack.of(repository), "its images are published into that stack's repository"
        )

    @property
    def image_uri(self) -> str:
        """URI (repository:content-hash tag) of the image."""
        return self.asset.image_uri

    def grant_pull(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let grantee pull this image."""
        return self.repository.grant_pull(grantee)

    def lambda_code(self, *, cmd: Sequence[str] | None = None) -> lambda_.DockerImageCode:
        """Code for a DockerImageFunction running this image; its repository must have granted Lambda pull."""
        if not self.repository.lambda_pull:
            raise RepositoryClosedToLambdaError(
                f"{self.asset.node.path}: {self.repository.repository_name} does not admit the Lambda service; "
                "call grant_lambda_pull() on its ImageRepository where the repository is created"
            )
        # A reference, not the repository itself: from_ecr's own grant (no source condition) must not reach the
        # owning stack's repository policy; an imported repository ignores it.
        reference = ecr.Repository.from_repository_name(self, "LambdaRepository", self.repository.repository_name)
        return lambda_.DockerImageCode.from_ecr(
            reference, tag_or_digest=self.asset.image_tag, cmd=list(cmd) if cmd is not None else None
        )
