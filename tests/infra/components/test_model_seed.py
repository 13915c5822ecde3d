"""ModelSeed and ModelPrefixCheck on a bare stack: ordering, least privilege, the async provider, the code asset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Template

from infra.components.model_seed import SEED_OBJECT_ACTIONS, ModelPrefixCheck, ModelSeed
from runtime.lambdas.model_seed import contract
from runtime.lambdas.model_seed.contract import ManifestError, SeedFile
from tests.infra.components.conftest import by_sid, new_app, only, resources, statements_of_role, suffix, text

PREFIX = "models/m1/"
FILES = (
    SeedFile("https://example.com/r/unet.bin", "unet/weights.bin", "a" * 64, 10_000_000),
    SeedFile("https://example.com/r/config.json", "unet/config.json", "b" * 64, 100),
    SeedFile("https://example.com/r/index.json", "model_index.json", "c" * 64, 50),
)


def _stack(*, kms_bucket: bool = False) -> tuple[cdk.App, cdk.Stack, s3.Bucket, sqs.Queue]:
    app = new_app()
    stack = cdk.Stack(app, "System")
    encryption = s3.BucketEncryption.KMS if kms_bucket else s3.BucketEncryption.S3_MANAGED
    bucket = s3.Bucket(stack, "Models", encryption=encryption)
    consumer = sqs.Queue(stack, "Consumer")  # stands in for the resource that loads the files
    return app, stack, bucket, consumer


@pytest.fixture(scope="module")
def seeded() -> tuple[ModelSeed, dict[str, Any]]:
    _, stack, bucket, consumer = _stack()
    seed = ModelSeed(
        stack,
        "Seed",
        bucket=bucket,
        prefix=PREFIX,
        files=FILES,
        marker="model_index.json",
        dependents=[consumer],
        description="test seed",
    )
    return seed, Template.from_stack(stack).to_json()


def _logical_id(template: dict[str, Any], cfn_type: str) -> str:
    (logical_id,) = resources(template, cfn_type)
    return logical_id


def test_dependents_wait_for_the_seed_resource(seeded: tuple[ModelSeed, dict[str, Any]]) -> None:
    _, template = seeded
    seed_id = _logical_id(template, contract.SEED_RESOURCE_TYPE)
    (queue,) = resources(template, "AWS::SQS::Queue").values()
    assert queue["DependsOn"] == [seed_id]


def test_the_resource_carries_bucket_prefix_files_in_order_and_marker(seeded: tuple[ModelSeed, dict[str, Any]]) -> None:
    _, template = seeded
    properties = only(template, contract.SEED_RESOURCE_TYPE)
    assert properties["Bucket"] == {"Ref": _logical_id(template, "AWS::S3::Bucket")}
    assert properties["Prefix"] == PREFIX
    assert properties["Files"] == [f.to_property() for f in FILES]
    assert properties["Marker"] == "model_index.json"
    # CloudFormation waits for the whole copy (one hour at most), not for one Lambda call.
    assert properties["ServiceTimeout"] == str(contract.TOTAL_TIMEOUT_S)
    (resource,) = resources(template, contract.SEED_RESOURCE_TYPE).values()
    assert resource["DeletionPolicy"] == "Delete"  # the handler's Delete keeps the objects (runtime tests)


def test_copying_runs_in_is_complete_calls_of_the_async_provider(seeded: tuple[ModelSeed, dict[str, Any]]) -> None:
    seed, template = seeded
    functions = resources(template, "AWS::Lambda::Function")
    ours = {v["Properties"]["Handler"]: v["Properties"] for v in functions.values()}
    on_event = ours[contract.HANDLER_ON_EVENT]
    is_complete = ours[contract.HANDLER_IS_COMPLETE]
    for props in (on_event, is_complete):
        assert (props["Runtime"], props["Architectures"]) == ("python3.11", ["arm64"])
    assert on_event["Timeout"] == 30
    assert (is_complete["Timeout"], is_complete["MemorySize"]) == (contract.FUNCTION_TIMEOUT_S, 2048)
    assert is_complete["Environment"]["Variables"] == {
        contract.ENV_PART_SIZE: str(64 * 1024 * 1024),
        contract.ENV_READ_TIMEOUT: "60",
        contract.ENV_ATTEMPTS: "3",
    }
    # The waiter calls is_complete every 30 s for up to an hour, so no single 15-minute call has to copy it all.
    machine = only(template, "AWS::StepFunctions::StateMachine")
    definition = text(machine["DefinitionString"])
    assert '\\"IntervalSeconds\\":30' in definition
    assert f'\\"MaxAttempts\\":{contract.TOTAL_TIMEOUT_S // contract.QUERY_INTERVAL_S}' in definition
    assert machine["LoggingConfiguration"]["Level"] == "ALL"
    assert machine["LoggingConfiguration"]["IncludeExecutionData"] is False  # the event holds the response URL
    assert seed.is_complete_function.timeout is not None


def test_the_role_touches_only_the_listed_objects(seeded: tuple[ModelSeed, dict[str, Any]]) -> None:
    seed, template = seeded
    role = seed.role.node.default_child
    statements = statements_of_role(template, cdk.Stack.of(seed).get_logical_id(role))  # type: ignore[arg-type]
    sids = by_sid(statements)
    assert set(sids) == {"SeedObjects", "FindSeedObjects", "FindUnfinishedUploads"}
    keys = [PREFIX + f.key for f in FILES]
    objects = sids["SeedObjects"]
    assert sorted(objects["Action"]) == sorted(SEED_OBJECT_ACTIONS)
    assert sorted(suffix(r) for r in objects["Resource"]) == sorted(f"/{key}" for key in keys)
    assert not any("*" in suffix(r) for r in objects["Resource"])
    listing = sids["FindSeedObjects"]
    assert listing["Action"] == "s3:ListBucket"
    assert listing["Condition"] == {"StringEquals": {"s3:prefix": keys}}
    assert sids["FindUnfinishedUploads"]["Action"] == "s3:ListBucketMultipartUploads"
    bucket_arn = {"Fn::GetAtt": [_logical_id(template, "AWS::S3::Bucket"), "Arn"]}
    assert listing["Resource"] == sids["FindUnfinishedUploads"]["Resource"] == bucket_arn
    unnamed = [s for s in statements if "Sid" not in s]
    assert [s["Action"] for s in unnamed] == [["logs:CreateLogStream", "logs:PutLogEvents"]]
    assert not any(a.startswith("kms:") for s in statements for a in _actions(s))


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def test_a_kms_encrypted_bucket_gets_its_key_granted() -> None:
    _, stack, bucket, _ = _stack(kms_bucket=True)
    seed = ModelSeed(stack, "Seed", bucket=bucket, prefix=PREFIX, files=FILES, description="test seed")
    template = Template.from_stack(stack).to_json()
    role = seed.role.node.default_child
    statements = statements_of_role(template, stack.get_logical_id(role))  # type: ignore[arg-type]
    kms_statements = [s for s in statements if any(a.startswith("kms:") for a in _actions(s))]
    assert kms_statements and all("ModelsKey" in text(s["Resource"]) for s in kms_statements)
    assert bucket.encryption_key is not None


def test_the_prefix_check_lists_only_the_required_keys_and_blocks_its_dependents() -> None:
    _, stack, bucket, consumer = _stack()
    check = ModelPrefixCheck(
        stack,
        "Check",
        bucket=bucket,
        prefix=PREFIX,
        required=["model_index.json"],
        how_to_fix="upload it",
        dependents=[consumer],
        description="test check",
    )
    template = Template.from_stack(stack).to_json()
    check_id = _logical_id(template, contract.CHECK_RESOURCE_TYPE)
    (queue,) = resources(template, "AWS::SQS::Queue").values()
    assert queue["DependsOn"] == [check_id]
    properties = only(template, contract.CHECK_RESOURCE_TYPE)
    assert (properties["Prefix"], properties["Required"], properties["HowToFix"]) == (
        PREFIX,
        ["model_index.json"],
        "upload it",
    )
    statements = statements_of_role(template, stack.get_logical_id(check.role.node.default_child))  # type: ignore[arg-type]
    (listing,) = [s for s in statements if s.get("Sid") == "FindRequiredObjects"]
    assert listing["Condition"] == {"StringEquals": {"s3:prefix": [PREFIX + "model_index.json"]}}
    assert {a for s in statements for a in _actions(s)} == {
        "s3:ListBucket",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }
    assert not resources(template, "AWS::StepFunctions::StateMachine")  # synchronous: one quick call
    (function,) = [
        v["Properties"]
        for v in resources(template, "AWS::Lambda::Function").values()
        if v["Properties"]["Handler"] == contract.HANDLER_CHECK
    ]
    assert function["Timeout"] == 30


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prefix": "no-slash"}, "prefix"),
        ({"marker": "absent.json"}, "Marker"),
        ({"files": (FILES[0], FILES[0])}, "listed more than once"),
        ({"files": ()}, "at least one file"),
    ],
)
def test_props_are_validated(kwargs: dict[str, Any], message: str) -> None:
    _, stack, bucket, _ = _stack()
    props: dict[str, Any] = {"prefix": PREFIX, "files": FILES, "marker": None, **kwargs}
    with pytest.raises(ManifestError, match=message):
        ModelSeed(stack, "Seed", bucket=bucket, description="test seed", **props)


def test_the_code_asset_is_the_seed_function_and_stdlib_shared_modules_only(tmp_path: Path) -> None:
    app, stack, bucket, _ = _stack()
    ModelSeed(stack, "Seed", bucket=bucket, prefix=PREFIX, files=FILES, description="test seed")
    assembly = app.synth()
    manifest = json.loads((Path(assembly.directory) / f"{stack.artifact_id}.assets.json").read_text())
    folders = {
        asset["source"]["path"]
        for asset in manifest["files"].values()
        if asset["source"].get("packaging") == "zip" and "asset." in asset["source"]["path"]
    }
    shipped = []
    for folder in folders:
        root = Path(assembly.directory) / folder
        names = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
        if "lambdas/model_seed/handler.py" in names:
            shipped.append((root, names))
    ((root, names),) = shipped
    assert {
        "__init__.py",
        "lambdas/__init__.py",
        "lambdas/model_seed/__init__.py",
        "lambdas/model_seed/contract.py",
        "lambdas/model_seed/seeder.py",
        "lambdas/model_seed/handler.py",
        "common/errors.py",
        "common/jsonlog.py",
    } <= names
    assert not [n for n in names if n.startswith(("bot/", "endpoint/", "pipeline/", "lambdas/notify"))]
    assert "common/settings.py" not in names and not [n for n in names if "__pycache__" in n]
    # The handlers import from that layout alone, without pydantic or boto3 at import time.
    (tmp_path / "runtime").symlink_to(root, target_is_directory=True)
    probe = (
        "import sys\n"
        "import runtime.lambdas.model_seed.handler as h\n"
        "assert callable(h.on_event) and callable(h.is_complete) and callable(h.check)\n"
        "assert not [n for n in sys.modules if n.startswith(('pydantic', 'boto3'))], 'heavy import'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
