"""ImageRepository and PublishedImage: scanned, immutable, pruned, and pushed to by the role the CLI really uses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Template

from infra.app_builder import synthesize
from infra.components.image_repository import (
    ImageRepository,
    MixedBootstrapError,
    TooManyImagesError,
    UnsupportedSynthesizerError,
    assert_one_bootstrap,
)
from infra.components.published_image import ImageNotInRepositoryError, PublishedImage, RepositoryClosedToLambdaError
from tests.infra.components.conftest import SystemFixture, new_app, only, text
from tests.infra.synth import resources_of_type


def _repository_template(app: cdk.App, synthesizer: cdk.IStackSynthesizer | None = None) -> dict[str, Any]:
    stack = cdk.Stack(app, "Shared", synthesizer=synthesizer)
    ImageRepository(stack, "Images", repository_name="genart-test/system", description="d")
    return Template.from_stack(stack).to_json()  # type: ignore[no-any-return]


def _publisher(template: dict[str, Any]) -> str:
    (statement,) = only(template, "AWS::ECR::Repository")["RepositoryPolicyText"]["Statement"]
    return text(statement["Principal"])


def test_repository_scans_on_push_keeps_tags_immutable_and_prunes_old_images() -> None:
    repo = only(_repository_template(new_app()), "AWS::ECR::Repository")
    assert repo["RepositoryName"] == "genart-test/system"
    assert repo["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert repo["ImageTagMutability"] == "IMMUTABLE"
    rules = json.loads(repo["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
    selections = {rule["selection"]["tagStatus"]: rule["selection"] for rule in rules}
    assert selections["untagged"] == {
        "tagStatus": "untagged",
        "countType": "sinceImagePushed",
        "countNumber": 1,
        "countUnit": "days",
    }
    assert selections["any"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 5}


def test_publishing_role_gets_exactly_the_push_actions() -> None:
    (statement,) = only(_repository_template(new_app()), "AWS::ECR::Repository")["RepositoryPolicyText"]["Statement"]
    assert sorted(statement["Action"]) == [
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:CompleteLayerUpload",
        "ecr:DescribeImages",
        "ecr:DescribeRepositories",
        "ecr:GetDownloadUrlForLayer",
        "ecr:InitiateLayerUpload",
        "ecr:PutImage",
        "ecr:UploadLayerPart",
    ]


@pytest.mark.parametrize(
    ("app_kwargs", "synthesizer", "qualifier"),
    [
        ({}, None, "hnb659fds"),
        ({"context": {"@aws-cdk/core:bootstrapQualifier": "ctxqual"}}, None, "ctxqual"),
    ],
    ids=["default", "context"],
)
def test_publishing_role_follows_the_bootstrap_qualifier(
    app_kwargs: dict[str, Any], synthesizer: cdk.IStackSynthesizer | None, qualifier: str
) -> None:
    principal = _publisher(_repository_template(new_app(**app_kwargs), synthesizer))
    assert f"role/cdk-{qualifier}-image-publishing-role-" in principal


@pytest.mark.parametrize("shared_synthesizer", ["app-default", "explicit"])
def test_an_app_whose_stacks_use_different_qualifiers_fails_synthesis_naming_them(
    docker_context: Path, shared_synthesizer: str
) -> None:
    custom = cdk.DefaultStackSynthesizer(qualifier="otherq")
    app = new_app(default_stack_synthesizer=custom) if shared_synthesizer == "app-default" else new_app()
    shared = cdk.Stack(app, "Shared", synthesizer=None if shared_synthesizer == "app-default" else custom)
    repository = ImageRepository(shared, "Images", repository_name="genart-test/system", description="d")
    system = cdk.Stack(app, "System", synthesizer=repository.asset_synthesizer())
    PublishedImage(system, "Image", repository=repository, directory=docker_context, display_name="x")
    with pytest.raises(MixedBootstrapError, match=r"'Shared': 'otherq'.*'System': 'hnb659fds'"):
        assert_one_bootstrap(app.synth())


def test_an_app_with_custom_bootstrap_roles_fails_synthesis_naming_the_roles(docker_context: Path) -> None:
    """Same qualifier, custom role names: the image stacks would deploy and push as the default roles."""
    custom = cdk.DefaultStackSynthesizer(
        deploy_role_arn="arn:aws:iam::123456789012:role/my-deploy",
        image_asset_publishing_role_arn="arn:aws:iam::123456789012:role/my-images",
    )
    app = new_app(default_stack_synthesizer=custom)
    system = SystemFixture(docker_context, app)
    with pytest.raises(MixedBootstrapError, match=r"different bootstrap deploy roles .*my-deploy"):
        synthesize(app)
    assert system.stack.stack_name == "System"


def test_cli_credentials_synthesizer_needs_no_repository_grant() -> None:
    app = new_app(default_stack_synthesizer=cdk.CliCredentialsStackSynthesizer(qualifier="cliq"))
    repo = only(_repository_template(app), "AWS::ECR::Repository")
    assert "RepositoryPolicyText" not in repo


def test_unsupported_synthesizer_is_refused_with_a_clear_error() -> None:
    with pytest.raises(UnsupportedSynthesizerError, match="LegacyStackSynthesizer"):
        _repository_template(new_app(), cdk.LegacyStackSynthesizer())


def _destination(stack: cdk.Stack) -> dict[str, Any]:
    outdir = Path(stack.node.root.outdir)  # type: ignore[attr-defined]
    manifest = json.loads((outdir / f"{stack.artifact_id}.assets.json").read_text())
    (image,) = manifest["dockerImages"].values()
    assert image["source"]["platform"] == "linux/amd64"
    (destination,) = image["destinations"].values()
    return destination  # type: ignore[no-any-return]


@pytest.mark.parametrize("qualifier", ["hnb659fds", "custom1"])
def test_consuming_stack_publishes_into_the_repository_as_the_granted_role(
    docker_context: Path, qualifier: str
) -> None:
    app = new_app(context={"@aws-cdk/core:bootstrapQualifier": qualifier})
    system = SystemFixture(docker_context, app)
    app.synth()
    destination = _destination(system.stack)
    assert destination["repositoryName"] == "genart-test/system"
    assert f"role/cdk-{qualifier}-image-publishing-role-" in destination["assumeRoleArn"]
    assert f"role/cdk-{qualifier}-image-publishing-role-" in _publisher(Template.from_stack(system.shared).to_json())
    # The CLI publishes a stack's images after the stacks it depends on are deployed.
    assert system.shared in system.stack.dependencies
    assert_one_bootstrap(app.synth())


def test_a_repository_sized_for_one_image_refuses_a_second_and_keeps_versions_per_image(
    docker_context: Path,
) -> None:
    system = SystemFixture(docker_context)
    with pytest.raises(TooManyImagesError, match="images=2"):
        PublishedImage(
            system.stack, "Second", repository=system.repository, directory=docker_context, display_name="second"
        )
    stack = cdk.Stack(new_app(), "Shared")
    ImageRepository(stack, "Images", repository_name="genart-test/two", images=2, description="d")
    rules = json.loads(
        only(Template.from_stack(stack).to_json(), "AWS::ECR::Repository")["LifecyclePolicy"]["LifecyclePolicyText"]
    )["rules"]
    (count_rule,) = [r for r in rules if r["selection"]["tagStatus"] == "any"]
    assert count_rule["selection"]["countNumber"] == 10


def test_image_in_a_stack_without_the_repository_synthesizer_is_refused(docker_context: Path) -> None:
    app = new_app()
    shared = cdk.Stack(app, "Shared")
    repository = ImageRepository(shared, "Images", repository_name="genart-test/system", description="d")
    plain = cdk.Stack(app, "Plain")
    with pytest.raises(ImageNotInRepositoryError, match="asset_synthesizer"):
        PublishedImage(plain, "Image", repository=repository, directory=docker_context, display_name="x")


def test_build_caches_stay_out_of_an_image_context_that_re_includes_its_folders(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    for name in ("app/main.py", "app/__pycache__/main.cpython-311.pyc", "other/skip.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    app = new_app()
    shared = cdk.Stack(app, "Shared")
    repository = ImageRepository(shared, "Images", repository_name="genart-test/system", description="d")
    stack = cdk.Stack(app, "System", synthesizer=repository.asset_synthesizer())
    image = PublishedImage(
        stack,
        "Image",
        repository=repository,
        directory=tmp_path,
        exclude=["*", "!Dockerfile", "!app"],
        display_name="x",
    )
    app.synth()
    staged = Path(app.outdir) / f"asset.{image.asset.asset_hash}"
    files = sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file())
    assert files == ["Dockerfile", "app/main.py"]


def _lambda_statements(shared: cdk.Stack) -> list[dict[str, Any]]:
    policy = only(Template.from_stack(shared).to_json(), "AWS::ECR::Repository")["RepositoryPolicyText"]
    return [s for s in policy["Statement"] if "lambda.amazonaws.com" in text(s["Principal"])]


def test_repository_admits_the_lambda_service_only_when_asked_and_only_for_this_accounts_functions() -> None:
    app = new_app()
    closed, opened = cdk.Stack(app, "Closed"), cdk.Stack(app, "Opened")
    ImageRepository(closed, "Images", repository_name="genart-test/closed", description="d")
    repository = ImageRepository(opened, "Images", repository_name="genart-test/opened", description="d")
    repository.grant_lambda_pull()
    repository.grant_lambda_pull()
    assert _lambda_statements(closed) == []
    (statement,) = _lambda_statements(opened)
    assert statement["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert sorted(statement["Action"]) == ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    assert statement["Condition"] == {
        "StringLike": {
            "aws:sourceArn": {
                "Fn::Join": [
                    "",
                    [
                        "arn:",
                        {"Ref": "AWS::Partition"},
                        ":lambda:",
                        {"Ref": "AWS::Region"},
                        ":",
                        {"Ref": "AWS::AccountId"},
                        ":function:*",
                    ],
                ]
            }
        }
    }


def test_lambda_code_runs_the_published_image_and_leaves_the_repository_policy_to_its_owner(
    docker_context: Path,
) -> None:
    system = SystemFixture(docker_context)
    system.repository.grant_lambda_pull()
    lambda_.DockerImageFunction(system.stack, "Function", code=system.image.lambda_code(cmd=["app.handler"]))
    template = system.template()
    (function,) = resources_of_type(template, "AWS::Lambda::Function").values()
    uri = function["Properties"]["Code"]["ImageUri"]["Fn::Join"][1][-1]
    assert uri == f"/genart-test/system:{_destination(system.stack)['imageTag']}"
    assert function["Properties"]["ImageConfig"] == {"Command": ["app.handler"]}
    # CDK's from_ecr grant (no source condition) must not reach the owning stack's repository.
    sids = [
        s.get("Sid")
        for s in only(Template.from_stack(system.shared).to_json(), "AWS::ECR::Repository")["RepositoryPolicyText"][
            "Statement"
        ]
    ]
    assert sids == ["CdkImagePublishing", "LambdaImagePull"]


def test_lambda_code_from_a_repository_closed_to_lambda_is_refused(docker_context: Path) -> None:
    system = SystemFixture(docker_context)
    with pytest.raises(RepositoryClosedToLambdaError, match="grant_lambda_pull"):
        system.image.lambda_code()
