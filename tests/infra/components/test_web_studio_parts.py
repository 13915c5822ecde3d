"""Parts of the web studio on bare stacks: the API's code asset, the sign-up switch, the sizes it offers."""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Template

from infra.config import DIFFUSION_MAX_IMAGES, DIFFUSION_MAX_SIDE, DIFFUSION_MAX_STEPS, DIFFUSION_SIZES
from infra.stacks.web_api import CODE_EXCLUDES, HANDLER
from infra.stacks.web_auth import WebAuth
from infra.stacks.web_studio import generate_sizes
from tests.infra.synth import REPO_ROOT, resources_of_type


def test_api_code_ships_only_the_runtime_package_with_its_web_and_common_parts() -> None:
    stack = cdk.Stack(cdk.App())
    code = lambda_.Code.from_asset(str(REPO_ROOT), exclude=list(CODE_EXCLUDES), ignore_mode=cdk.IgnoreMode.GIT)
    code.bind(stack)
    (staging,) = [c for c in stack.node.find_all() if isinstance(c, cdk.AssetStaging)]
    root = Path(staging.absolute_staged_path)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert "runtime/__init__.py" in files and "runtime/web/contract.py" in files
    assert any(f.startswith("runtime/common/") for f in files)
    for name in files:
        assert name == "runtime/__init__.py" or name.startswith(("runtime/web/", "runtime/common/")), name
        assert not name.startswith(("runtime/web/static/", "runtime/web/local/")), name
        assert "__pycache__" not in name
    assert HANDLER.startswith("runtime.web.")


def test_self_sign_up_is_a_switch() -> None:
    def allows_only_admins(self_sign_up: bool) -> bool:
        stack = cdk.Stack(cdk.App())
        WebAuth(stack, "Auth", self_sign_up=self_sign_up, pool_name="p", removal_policy=cdk.RemovalPolicy.DESTROY)
        (pool,) = resources_of_type(Template.from_stack(stack).to_json(), "AWS::Cognito::UserPool").values()
        return pool["Properties"]["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"]  # type: ignore[no-any-return]

    assert allows_only_admins(False) is True
    assert allows_only_admins(True) is False


def test_generate_sizes_stay_within_the_side_limit() -> None:
    assert generate_sizes(512) == [[512, 512]]
    assert generate_sizes(768) == [list(size) for size in DIFFUSION_SIZES]


def test_studio_limits_match_the_diffusion_servers_defaults() -> None:
    from runtime.endpoint.settings import Settings

    fields = Settings.model_fields
    assert fields["max_side"].default == DIFFUSION_MAX_SIDE
    assert fields["max_steps"].default == DIFFUSION_MAX_STEPS
    assert fields["max_images"].default == DIFFUSION_MAX_IMAGES
    assert fields["sizes"].default == DIFFUSION_SIZES
