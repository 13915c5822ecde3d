"""Bare-Stack fixtures for the reusable constructs: no app config, no cdk-nag, one small synth each."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Template

from infra.components.image_repository import ImageRepository
from infra.components.published_image import PublishedImage
from tests.infra.intrinsics import as_list
from tests.infra.synth import resources_of_type as resources
from tests.infra.synth import suffix, text

__all__ = ["as_list", "resources", "suffix", "text"]


def new_app(**kwargs: Any) -> cdk.App:
    """An app that writes to a temporary folder and skips asset bundling (no Docker in tests)."""
    context = {"aws:cdk:bundling-stacks": [], **kwargs.pop("context", {})}
    return cdk.App(context=context, outdir=tempfile.mkdtemp(prefix="cdk-component-"), **kwargs)


@pytest.fixture(scope="session")
def docker_context() -> Iterator[Path]:
    """A minimal build context; image assets are only staged at synth, never built."""
    with tempfile.TemporaryDirectory(prefix="image-") as folder:
        (Path(folder) / "Dockerfile").write_text("FROM scratch\n")
        yield Path(folder)


class SystemFixture:
    """A shared-resources stack (repository, buckets) and a system stack whose images go to that repository."""

    def __init__(self, docker_context: Path, app: cdk.App | None = None) -> None:
        self.app = app or new_app()
        self.shared = cdk.Stack(self.app, "Shared")
        self.repository = ImageRepository(
            self.shared, "Images", repository_name="genart-test/system", description="test images"
        )
        self.models = s3.Bucket(self.shared, "Models")
        self.outputs = s3.Bucket(self.shared, "Outputs")
        self.stack = cdk.Stack(self.app, "System", synthesizer=self.repository.asset_synthesizer())
        self.image = PublishedImage(
            self.stack, "Image", repository=self.repository, directory=docker_context, display_name="test image"
        )

    def template(self) -> dict[str, Any]:
        """The system stack's template as JSON."""
        return Template.from_stack(self.stack).to_json()  # type: ignore[no-any-return]


def only(template: dict[str, Any], cfn_type: str) -> dict[str, Any]:
    """Properties of the single resource of a type (fails if there are zero or several)."""
    (resource,) = resources(template, cfn_type).values()
    return resource["Properties"]  # type: ignore[no-any-return]


def statements_of_role(template: dict[str, Any], role_logical_id: str) -> list[dict[str, Any]]:
    """Every statement of every IAM policy attached to one role."""
    found = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_logical_id} in policy["Properties"]["Roles"]:
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def by_sid(statements: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in statements if "Sid" in s}
