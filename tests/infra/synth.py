"""Synthesizes the app once per environment per test process (one jsii runtime for the suite)."""

from __future__ import annotations

import functools
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk.assertions import Annotations, Match, Template

from infra.app_builder import GenArtStacks, build_app, synthesize
from infra.config import EnvConfig, load_config

REPO_ROOT = Path(__file__).resolve().parents[2]
CDK_JSON = json.loads((REPO_ROOT / "cdk.json").read_text())
ENV_NAMES = tuple(CDK_JSON["context"]["envs"])

_ASSET_HASH = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class SynthesizedStack:
    """One synthesized stack with what the gates need."""

    env_name: str
    name: str
    stack: cdk.Stack
    template: Template

    @property
    def json(self) -> dict[str, Any]:
        return self.template.to_json()  # type: ignore[no-any-return]

    def nag_findings(self) -> list[str]:
        annotations = Annotations.from_stack(self.stack)
        found = []
        for finder in (annotations.find_error, annotations.find_warning):
            for message in finder("*", Match.string_like_regexp("AwsSolutions-.*")):
                found.append(f"{message.id}: {message.entry.data}")
        return found


@dataclass(frozen=True)
class SynthesizedApp:
    """All stacks of one environment."""

    config: EnvConfig
    stacks: GenArtStacks
    by_name: dict[str, SynthesizedStack]


def app_context(**overrides: Any) -> dict[str, Any]:
    """cdk.json's context (feature flags and envs) with asset bundling skipped: no Docker in tests."""
    return {**CDK_JSON["context"], "aws:cdk:bundling-stacks": [], **overrides}


@functools.cache
def synth_env(env_name: str) -> SynthesizedApp:
    """Build and synthesize the app for one cdk.json environment, exactly as app.py would."""
    context = app_context()
    config = load_config(context["envs"], env_name)
    return synth_config(config, context)


def synth_config(config: EnvConfig, context: dict[str, Any] | None = None) -> SynthesizedApp:
    """Build and synthesize the app for an explicit config (for variants cdk.json does not hold)."""
    app = cdk.App(context=context or app_context(), outdir=tempfile.mkdtemp(prefix="cdk-test-"))
    stacks = build_app(app, config)
    synthesize(app)
    by_name = {
        stack.stack_name: SynthesizedStack(config.name, stack.stack_name, stack, Template.from_stack(stack))
        for stack in stacks.all()
    }
    return SynthesizedApp(config=config, stacks=stacks, by_name=by_name)


@functools.cache
def opt_in_app() -> SynthesizedApp:
    """An env with the opt-ins no cdk.json env ships: a warm real-time endpoint whose weights an operator uploads
    (no model source: the deploy checks the prefix instead of seeding it) and the GitHub diff role."""
    envs = {
        "rt": {
            "diffusion": {
                "mode": "realtime",
                "min_instances": 1,
                "max_instances": 2,
                "target_invocations_per_instance": 11,
                "model_source": None,
            },
            "storage": {"github_diff": {"repository": "acme/genart"}},
        }
    }
    return synth_config(load_config(envs, "rt"))


def all_stacks() -> list[SynthesizedStack]:
    """Every stack of every environment in cdk.json; the gates are parametrized over these."""
    return [s for env in ENV_NAMES for s in synth_env(env).by_name.values()]


def normalized(template: dict[str, Any]) -> dict[str, Any]:
    """Template with asset hashes replaced, so a snapshot diff shows only real changes."""
    return json.loads(_ASSET_HASH.sub("<asset-hash>", json.dumps(template, sort_keys=True)))  # type: ignore[no-any-return]


def resources_of_type(template: dict[str, Any], cfn_type: str) -> dict[str, dict[str, Any]]:
    """Resources of one CloudFormation type, by logical id."""
    return {k: v for k, v in template.get("Resources", {}).items() if v["Type"] == cfn_type}


def text(value: Any) -> str:
    """A template value flattened to text, so a joined ARN can be matched on its literal parts."""
    return json.dumps(value, sort_keys=True)


def suffix(value: Any) -> str:
    """The literal tail of an ARN or URI built with Fn::Join (the key pattern after the bucket token)."""
    if isinstance(value, str):
        return value
    parts = value["Fn::Join"][1]
    assert isinstance(parts[-1], str), value
    return parts[-1]  # type: ignore[no-any-return]
