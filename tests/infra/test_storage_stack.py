"""The Storage stack's intent: private, encrypted, TLS-only, logged buckets and a placeholder-only token secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from aws_cdk.assertions import Match

from infra.config import load_config
from runtime.pipeline.stylegan2 import contract as pipeline_contract
from tests.infra.synth import CDK_JSON, REPO_ROOT, SynthesizedStack, resources_of_type, synth_config, synth_env


def _storage(env_name: str) -> SynthesizedStack:
    app = synth_env(env_name)
    return app.by_name[app.stacks.storage.stack_name]


def _buckets(stack: SynthesizedStack) -> dict[str, dict[str, Any]]:
    return resources_of_type(stack.json, "AWS::S3::Bucket")


def _bucket_by_logical_prefix(stack: SynthesizedStack, prefix: str) -> dict[str, Any]:
    (bucket,) = [b for k, b in _buckets(stack).items() if k.startswith(prefix)]
    return bucket


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_four_private_encrypted_buckets(env_name: str) -> None:
    stack = _storage(env_name)
    buckets = _buckets(stack)
    assert len(buckets) == 4
    for bucket in buckets.values():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_every_bucket_policy_denies_plain_http_and_old_tls(env_name: str) -> None:
    stack = _storage(env_name)
    policies = resources_of_type(stack.json, "AWS::S3::BucketPolicy")
    assert len(policies) == 4
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        denies = [s for s in statements if s["Effect"] == "Deny"]
        conditions = json.dumps([s.get("Condition") for s in denies])
        assert '"aws:SecureTransport": "false"' in conditions
        assert '"s3:TlsVersion": 1.2' in conditions


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_data_buckets_log_to_the_access_log_bucket(env_name: str) -> None:
    stack = _storage(env_name)
    buckets = _buckets(stack)
    (log_bucket_id,) = [k for k in buckets if k.startswith("AccessLogsBucket")]
    logged = {k: b["Properties"].get("LoggingConfiguration") for k, b in buckets.items() if k != log_bucket_id}
    assert len(logged) == 3
    for config in logged.values():
        assert config["DestinationBucketName"] == {"Ref": log_bucket_id}
        assert config["LogFilePrefix"].endswith("/")


def test_models_bucket_is_versioned_and_others_are_not() -> None:
    stack = _storage("prod")
    assert _bucket_by_logical_prefix(stack, "ModelsBucket")["Properties"]["VersioningConfiguration"] == {
        "Status": "Enabled"
    }
    assert "VersioningConfiguration" not in _bucket_by_logical_prefix(stack, "DatasetsBucket")["Properties"]


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_pipeline_checkpoints_lose_their_old_versions_within_a_day(env_name: str) -> None:
    rules = _bucket_by_logical_prefix(_storage(env_name), "ModelsBucket")["Properties"]["LifecycleConfiguration"]
    short = [rule for rule in rules["Rules"] if rule.get("Prefix") == f"{pipeline_contract.CHECKPOINTS_PREFIX}/"]
    assert short == [
        {
            "Id": "short-lived-0",
            "Prefix": "stylegan/checkpoints/",
            "Status": "Enabled",
            "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
            "ExpiredObjectDeleteMarker": True,
        }
    ]
    # The checkpoint sync writes and prunes only there; the published generator keeps 30 days of versions.
    assert f"{pipeline_contract.CHECKPOINTS_PREFIX}/*" == pipeline_contract.CHECKPOINT_KEY_PATTERN
    assert not pipeline_contract.PUBLISHED_MODEL_KEY.startswith(short[0]["Prefix"])
    assert {
        "Id": "expire-old-versions",
        "Status": "Enabled",
        "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
    } in (rules["Rules"])


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_outputs_expire_after_the_configured_days(env_name: str) -> None:
    stack = _storage(env_name)
    days = synth_env(env_name).config.storage.outputs_expiry_days
    assert days == CDK_JSON["context"]["envs"][env_name]["storage"]["outputs_expiry_days"]
    rules = _bucket_by_logical_prefix(stack, "OutputsBucket")["Properties"]["LifecycleConfiguration"]["Rules"]
    assert {"ExpirationInDays": days, "Id": "expire-outputs", "Status": "Enabled"} in rules


def test_prod_retains_data_and_dev_auto_deletes() -> None:
    prod, dev = _storage("prod"), _storage("dev")
    for bucket in _buckets(prod).values():
        assert bucket["DeletionPolicy"] == "Retain"
    assert not resources_of_type(prod.json, "Custom::S3AutoDeleteObjects")
    for bucket in _buckets(dev).values():
        assert bucket["DeletionPolicy"] == "Delete"
    assert len(resources_of_type(dev.json, "Custom::S3AutoDeleteObjects")) == 4
    (secret,) = resources_of_type(prod.json, "AWS::SecretsManager::Secret").values()
    assert secret["DeletionPolicy"] == "Retain"


_NAME_PROPERTIES = ("BucketName", "Name", "SecretName", "LogGroupName", "TopicName", "RepositoryName", "AliasName")


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_nothing_that_outlives_a_destroy_has_a_fixed_name(env_name: str) -> None:
    """A retained resource with a fixed name would make the next deploy after `cdk destroy` fail."""
    app = synth_env(env_name)
    retained = [
        (stack.name, logical_id, resource)
        for stack in app.by_name.values()
        for logical_id, resource in stack.json["Resources"].items()
        if resource.get("DeletionPolicy") in ("Retain", "RetainExceptOnCreate", "Snapshot")
    ]
    assert retained or env_name == "dev"
    for stack_name, logical_id, resource in retained:
        fixed = [p for p in _NAME_PROPERTIES if p in resource.get("Properties", {})]
        assert fixed == [], f"{stack_name}/{logical_id} is retained and named by {fixed}"


def test_token_secret_is_a_generated_placeholder() -> None:
    stack = _storage("prod")
    stack.template.has_resource_properties(
        "AWS::SecretsManager::Secret",
        {
            "Name": Match.absent(),
            "GenerateSecretString": Match.object_like(
                {"GenerateStringKey": "value", "SecretStringTemplate": Match.string_like_regexp("REPLACE-ME")}
            ),
            "SecretString": Match.absent(),
        },
    )


def test_outputs_name_every_bucket_and_the_secret() -> None:
    outputs = _storage("dev").json["Outputs"]
    for name in (
        "ModelsBucketName",
        "DatasetsBucketName",
        "OutputsBucketName",
        "AccessLogsBucketName",
        "BotTokenSecretArn",
    ):
        assert name in outputs
        assert outputs[name]["Description"]


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_one_scanned_repository_per_image_building_system(env_name: str) -> None:
    repositories = resources_of_type(_storage(env_name).json, "AWS::ECR::Repository").values()
    assert sorted(r["Properties"]["RepositoryName"] for r in repositories) == [
        f"genart-{env_name}/cartoonizer",
        f"genart-{env_name}/diffusion",
        f"genart-{env_name}/pipeline",
    ]
    for repository in repositories:
        assert repository["Properties"]["ImageScanningConfiguration"] == {"ScanOnPush": True}
        assert repository["Properties"]["ImageTagMutability"] == "IMMUTABLE"
        assert "LifecyclePolicy" in repository["Properties"]


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_ops_alerts_topic_is_encrypted_and_admits_alarms_and_rules(env_name: str) -> None:
    stack = _storage(env_name)
    (topic,) = [t for k, t in resources_of_type(stack.json, "AWS::SNS::Topic").items() if k.startswith("OpsAlerts")]
    assert "OpsAlerts" in json.dumps(topic["Properties"]["KmsMasterKeyId"])
    (policy,) = resources_of_type(stack.json, "AWS::SNS::TopicPolicy").values()
    principals = {
        s["Principal"]["Service"]
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Allow" and "Service" in s.get("Principal", {})
    }
    assert principals == {"cloudwatch.amazonaws.com", "events.amazonaws.com", "budgets.amazonaws.com"}
    assert "OpsAlertsTopicArn" in stack.json["Outputs"]
    assert {"DiffusionRepositoryUri", "PipelineRepositoryUri", "CartoonizerRepositoryUri"} <= set(stack.json["Outputs"])


def test_alerts_email_subscribes_to_the_ops_alerts_topic() -> None:
    config = load_config({"x": {"storage": {"alerts_email": "ops@example.com"}}}, "x")
    app = synth_config(config)
    stack = app.by_name[app.stacks.storage.stack_name]
    (subscription,) = resources_of_type(stack.json, "AWS::SNS::Subscription").values()
    assert subscription["Properties"]["Endpoint"] == "ops@example.com"
    assert not resources_of_type(_storage("dev").json, "AWS::SNS::Subscription")


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_the_app_has_exactly_its_system_stacks(env_name: str) -> None:
    app = synth_env(env_name)
    names = [stack.stack_name for stack in app.stacks.all()]
    assert names == [f"GenArt-{env_name}-{name}" for name in ("Storage", "Bot", "Pipeline", "Diffusion", "Cartoonizer")]
    assert sorted(app.by_name) == sorted(names)


def test_app_py_fails_synthesis_naming_an_unknown_key() -> None:
    context = {**CDK_JSON["context"], "envs": {"dev": {"storage": {"retain_dataa": False}}}}
    result = subprocess.run(
        [sys.executable, "app.py"],
        check=False,
        cwd=REPO_ROOT,
        env={**os.environ, "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": str(REPO_ROOT / "build" / "badcfg")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "envs.dev.storage.retain_dataa: unknown key" in result.stderr
