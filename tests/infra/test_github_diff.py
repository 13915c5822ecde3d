"""Pull-request review: the CI and cdk-diff workflows, and the optional read-only role GitHub assumes via OIDC."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.config import ConfigError, load_config
from tests.infra.synth import REPO_ROOT, SynthesizedStack, opt_in_app, resources_of_type, synth_config, synth_env

WORKFLOWS = REPO_ROOT / ".github" / "workflows"


def _workflow(name: str) -> dict[Any, Any]:
    return yaml.safe_load((WORKFLOWS / name).read_text())  # type: ignore[no-any-return]


def _storage(github_diff: dict[str, Any]) -> SynthesizedStack:
    app = synth_config(load_config({"gh": {"storage": {"github_diff": github_diff}}}, "gh"))
    return app.by_name[app.stacks.storage.stack_name]


@pytest.fixture(scope="module")
def storage() -> SynthesizedStack:
    app = opt_in_app()  # the opt-in env of the gates sets storage.github_diff to acme/genart
    return app.by_name[app.stacks.storage.stack_name]


def _role(stack: SynthesizedStack) -> tuple[str, dict[str, Any]]:
    (role_id,) = [k for k in resources_of_type(stack.json, "AWS::IAM::Role") if k.startswith("GithubDiff")]
    return role_id, stack.json["Resources"][role_id]["Properties"]


def test_ci_workflow_runs_the_readme_test_command() -> None:
    workflow = _workflow("ci.yml")
    (job,) = workflow["jobs"].values()
    runs = [step.get("run") for step in job["steps"]]
    assert "bash .ci/run" in runs
    assert workflow["permissions"] == {"contents": "read"}
    python = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/setup-python")]
    assert python[0]["with"]["python-version"] == "3.11"


def test_diff_workflow_assumes_the_role_by_oidc_runs_a_template_diff_and_comments() -> None:
    workflow = _workflow("cdk-diff.yml")
    assert workflow[True] == {"pull_request": None}  # YAML reads the key `on` as True
    assert workflow["permissions"] == {"contents": "read", "id-token": "write", "pull-requests": "write"}
    (job,) = workflow["jobs"].values()
    assert job["if"] == "${{ vars.AWS_DIFF_ROLE_ARN != '' }}"
    steps = job["steps"]
    credentials = [s for s in steps if str(s.get("uses", "")).startswith("aws-actions/configure-aws-credentials")]
    assert credentials[0]["with"]["role-to-assume"] == "${{ vars.AWS_DIFF_ROLE_ARN }}"
    diff = [s for s in steps if "make diff-readonly" in str(s.get("run", ""))]
    assert diff and steps.index(credentials[0]) < steps.index(diff[0])
    assert any(str(s.get("uses", "")).startswith("actions/github-script") for s in steps[steps.index(diff[0]) :])
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "$(CDK) diff --all --method=template $(CDK_FLAGS)" in makefile


def test_role_trusts_only_pull_requests_of_the_configured_repository(storage: SynthesizedStack) -> None:
    _, role = _role(storage)
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    (provider_id,) = resources_of_type(storage.json, "AWS::IAM::OIDCProvider")
    assert statement["Principal"] == {"Federated": {"Fn::GetAtt": [provider_id, "Arn"]}}
    assert statement["Condition"] == {
        "StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"},
        "StringLike": {"token.actions.githubusercontent.com:sub": "repo:acme/genart:pull_request"},
    }
    provider = storage.json["Resources"][provider_id]["Properties"]
    assert provider["Url"] == "https://token.actions.githubusercontent.com"
    assert provider["ClientIdList"] == ["sts.amazonaws.com"]


def test_role_can_only_read_this_environments_templates(storage: SynthesizedStack) -> None:
    role_id, _ = _role(storage)
    statements = [
        s
        for policy in resources_of_type(storage.json, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    by_sid = {s["Sid"]: s for s in statements}
    assert set(by_sid) == {"AssumeCdkLookupRole", "ReadThisEnvironmentsTemplates", "ReadBootstrapVersion"}
    assert by_sid["AssumeCdkLookupRole"]["Action"] == "sts:AssumeRole"
    assert ":role/cdk-hnb659fds-lookup-role-" in json.dumps(by_sid["AssumeCdkLookupRole"]["Resource"])
    assert by_sid["ReadThisEnvironmentsTemplates"]["Action"] == [
        "cloudformation:DescribeStacks",
        "cloudformation:GetTemplate",
    ]
    assert ":stack/GenArt-rt-*/*" in json.dumps(by_sid["ReadThisEnvironmentsTemplates"]["Resource"])
    assert by_sid["ReadBootstrapVersion"]["Action"] == "ssm:GetParameter"
    assert "GithubDiffRoleArn" in storage.json["Outputs"]


def test_existing_oidc_provider_is_referenced_not_created() -> None:
    stack = _storage({"repository": "acme/genart", "create_oidc_provider": False})
    assert not resources_of_type(stack.json, "AWS::IAM::OIDCProvider")
    _, role = _role(stack)
    federated = json.dumps(role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Federated"])
    assert ":oidc-provider/token.actions.githubusercontent.com" in federated


def test_no_role_unless_configured_and_repository_is_validated() -> None:
    dev = synth_env("dev")
    assert not resources_of_type(dev.by_name[dev.stacks.storage.stack_name].json, "AWS::IAM::OIDCProvider")
    with pytest.raises(ConfigError, match=r"envs\.x\.storage\.github_diff\.repository: must be 'owner/name'"):
        load_config({"x": {"storage": {"github_diff": {"repository": "just-a-name"}}}}, "x")


def test_workflow_files_are_the_only_ones(tmp_path: Path) -> None:
    assert sorted(p.name for p in WORKFLOWS.iterdir()) == ["cdk-diff.yml", "ci.yml"]
