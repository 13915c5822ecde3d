"""Gates every stack of every environment passes: snapshot, cdk-nag, cfn-lint, no secrets."""

from __future__ import annotations

import json
import re

import pytest
from cfnlint.api import ManualArgs, lint
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

from tests.infra.synth import SynthesizedStack, all_stacks, normalized, opt_in_app, resources_of_type

STACKS = all_stacks()
IDS = [s.name for s in STACKS]
# Opt-ins no cdk.json env ships still pass the gates (not snapshotted): real-time endpoint, GitHub diff role.
_OPT_INS = opt_in_app()
GATED = [*STACKS, *(_OPT_INS.by_name[s.stack_name] for s in (_OPT_INS.stacks.diffusion, _OPT_INS.stacks.storage))]
GATED_IDS = [*IDS, "opt-in-Diffusion", "opt-in-Storage"]


@pytest.fixture
def snapshot_json(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(JSONSnapshotExtension)


def test_every_stack_is_covered() -> None:
    assert len({s.name for s in STACKS}) == len(STACKS)
    assert any(name.endswith("-Storage") for name in IDS)


@pytest.mark.parametrize("stack", STACKS, ids=IDS)
def test_snapshot(stack: SynthesizedStack, snapshot_json: SnapshotAssertion) -> None:
    assert normalized(stack.json) == snapshot_json


@pytest.mark.parametrize("stack", GATED, ids=GATED_IDS)
def test_cdk_nag_aws_solutions_clean(stack: SynthesizedStack) -> None:
    findings = stack.nag_findings()
    assert findings == [], "\n".join(findings)


@pytest.mark.parametrize("stack", GATED, ids=GATED_IDS)
def test_cfn_lint_clean(stack: SynthesizedStack) -> None:
    matches = lint(json.dumps(stack.json), config=ManualArgs(regions=["us-east-1", "eu-west-1"]))
    errors = [f"{m.rule.id} {m.message} ({'/'.join(map(str, m.path))})" for m in matches if m.rule.id.startswith("E")]
    assert errors == [], "\n".join(errors)


@pytest.mark.parametrize("stack", GATED, ids=GATED_IDS)
def test_no_full_access_managed_policies_or_wildcard_s3(stack: SynthesizedStack) -> None:
    text = json.dumps(stack.json)
    assert "FullAccess" not in text
    for policy in resources_of_type(stack.json, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert "s3:*" not in actions and "*" not in actions, statement


@pytest.mark.parametrize("stack", GATED, ids=GATED_IDS)
def test_no_secret_values_in_template(stack: SynthesizedStack) -> None:
    text = json.dumps(stack.json)
    for secret in resources_of_type(stack.json, "AWS::SecretsManager::Secret").values():
        assert "SecretString" not in secret["Properties"]
    # Discord bot tokens look like three dot-separated base64 segments.
    assert not re.search(r"[MN][A-Za-z\d_-]{23,25}\.[A-Za-z\d_-]{6}\.[A-Za-z\d_-]{27,}", text)
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)
