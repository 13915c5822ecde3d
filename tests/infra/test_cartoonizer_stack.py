"""The Cartoonizer stack's intent: an image Lambda run from Storage's cartoonizer repository with least privilege, a
video endpoint that idles at zero instances and wakes on backlog, alarms to the ops-alerts topic, uploads that
expire sooner than results, and one grant for the web API that invokes it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Template
from cdk_nag import NagPackSuppression, NagSuppressions

from infra.app_builder import build_app
from infra.config import load_config
from infra.stacks.cartoonizer import image_function_environment, video_endpoint_environment, video_endpoint_name
from runtime.cartoonizer import contract
from tests.infra.intrinsics import as_list, render, value_of
from tests.infra.synth import (
    CDK_JSON,
    SynthesizedApp,
    SynthesizedStack,
    app_context,
    resources_of_type,
    synth_config,
    synth_env,
)

ENVS = ["dev", "prod"]
MODEL = "whitebox"


# Logical-id prefixes of the web studio's resources (tests/infra/test_web_studio.py checks them).
STUDIO_PREFIXES = ("Studio", "CustomS3AutoDeleteObjects", "CustomCDKBucketDeployment")


def _cartoonizer(env_name: str) -> SynthesizedStack:
    """The Cartoonizer stack without the web studio's resources: the image function and the video endpoint."""
    app = synth_env(env_name)
    return _without_studio(app.by_name[app.stacks.cartoonizer.stack_name])


def _without_studio(stack: SynthesizedStack) -> SynthesizedStack:
    template = stack.json
    resources = {k: v for k, v in template["Resources"].items() if not k.startswith(STUDIO_PREFIXES)}
    return SynthesizedStack(
        stack.env_name, stack.name, stack.stack, Template.from_json({**template, "Resources": resources})
    )


def _storage(env_name: str) -> SynthesizedStack:
    app = synth_env(env_name)
    return app.by_name[app.stacks.storage.stack_name]


def _one(stack: SynthesizedStack, cfn_type: str) -> tuple[str, dict[str, Any]]:
    ((logical_id, resource),) = resources_of_type(stack.json, cfn_type).items()
    return logical_id, resource["Properties"]


def _role_id(stack: SynthesizedStack, service: str) -> str:
    (role_id,) = [
        k
        for k, v in resources_of_type(stack.json, "AWS::IAM::Role").items()
        if v["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": service}
    ]
    return role_id


def _statements(stack: SynthesizedStack, role_id: str) -> list[dict[str, Any]]:
    return [
        s
        for policy in resources_of_type(stack.json, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _bucket_arn(app: SynthesizedApp, name: str) -> str:
    storage = app.stacks.storage
    bucket = storage.models_bucket if name == "models" else storage.outputs_bucket
    return value_of(storage, bucket.bucket_arn, app)


def _s3_access(stack: SynthesizedStack, role_id: str, app: SynthesizedApp) -> set[tuple[str, str]]:
    """(action, rendered resource) for every S3 action the role is allowed."""
    return {
        (action, resource)
        for s in _statements(stack, role_id)
        for action in as_list(s["Action"])
        if action.startswith("s3:")
        for resource in (render(r, app) for r in as_list(s["Resource"]))
    }


def _image_assets(env_name: str) -> dict[str, dict[str, Any]]:
    """The stack's Docker image assets by Dockerfile."""
    stack = synth_env(env_name).stacks.cartoonizer
    manifest = Path(stack.node.root.outdir) / f"{stack.artifact_id}.assets.json"
    return {a["source"]["dockerFile"]: a for a in json.loads(manifest.read_text())["dockerImages"].values()}


@pytest.mark.parametrize("env_name", ENVS)
def test_both_images_are_published_into_storages_cartoonizer_repository_and_run_from_there(env_name: str) -> None:
    assets = _image_assets(env_name)
    assert set(assets) == {contract.LAMBDA_DOCKERFILE, contract.ENDPOINT_DOCKERFILE}
    repository = f"genart-{env_name}/cartoonizer"
    tags = {}
    for dockerfile, asset in assets.items():
        assert asset["source"]["platform"] == "linux/amd64"
        (destination,) = asset["destinations"].values()
        assert destination["repositoryName"] == repository
        tags[dockerfile] = destination["imageTag"]
    stack = _cartoonizer(env_name)
    _, function = _one(stack, "AWS::Lambda::Function")
    assert function["PackageType"] == "Image"
    assert render(function["Code"]["ImageUri"], synth_env(env_name)).endswith(
        f"/{repository}:{tags[contract.LAMBDA_DOCKERFILE]}"
    )
    assert function["ImageConfig"] == {"Command": [contract.LAMBDA_HANDLER]}
    _, model = _one(stack, "AWS::SageMaker::Model")
    assert render(model["PrimaryContainer"]["Image"], synth_env(env_name)).endswith(
        f"/{repository}:{tags[contract.ENDPOINT_DOCKERFILE]}"
    )
    app = synth_env(env_name)
    assert app.stacks.storage in app.stacks.cartoonizer.dependencies
    # Sized for two images, so rebuilding one can never expire the live version of the other.
    assert app.stacks.storage.image_repositories["cartoonizer"].images == 2


@pytest.mark.parametrize("env_name", ENVS)
def test_only_the_cartoonizer_repository_admits_lambda_and_only_for_this_accounts_functions(env_name: str) -> None:
    repositories = {
        r["Properties"]["RepositoryName"]: r["Properties"]
        for r in resources_of_type(_storage(env_name).json, "AWS::ECR::Repository").values()
    }
    lambda_statements = {
        name: [s for s in repo["RepositoryPolicyText"]["Statement"] if "lambda.amazonaws.com" in json.dumps(s)]
        for name, repo in repositories.items()
    }
    (statement,) = lambda_statements.pop(f"genart-{env_name}/cartoonizer")
    assert all(found == [] for found in lambda_statements.values()), lambda_statements
    assert statement["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert sorted(statement["Action"]) == ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    (condition,) = statement["Condition"].values()
    assert list(statement["Condition"]) == ["StringLike"]
    source = render(condition["aws:sourceArn"], synth_env(env_name))
    assert source == "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:*"


@pytest.mark.parametrize("env_name", ENVS)
def test_image_function_size_and_reserved_concurrency_come_from_cdk_json(env_name: str) -> None:
    config = synth_env(env_name).config.cartoonizer.image
    written = CDK_JSON["context"]["envs"][env_name]["cartoonizer"].get("image", {})
    assert config.reserved_concurrency == written.get("reserved_concurrency")
    _, function = _one(_cartoonizer(env_name), "AWS::Lambda::Function")
    assert function["MemorySize"] == config.memory_mb
    assert function["Timeout"] == config.timeout_seconds
    assert function["Architectures"] == ["x86_64"]
    assert function.get("ReservedConcurrentExecutions") == config.reserved_concurrency
    assert function.get("TracingConfig", {"Mode": "PassThrough"})["Mode"] != "Active"


def test_prod_caps_the_image_function_and_dev_leaves_a_fresh_accounts_pool_alone() -> None:
    _, prod = _one(_cartoonizer("prod"), "AWS::Lambda::Function")
    _, dev = _one(_cartoonizer("dev"), "AWS::Lambda::Function")
    assert prod["ReservedConcurrentExecutions"] == 20
    # A fresh account (concurrency quota 10) cannot reserve any: the deploy would fail.
    assert "ReservedConcurrentExecutions" not in dev


def test_tracing_and_sizes_are_configurable() -> None:
    image = {"memory_mb": 4096, "timeout_seconds": 300, "reserved_concurrency": 3, "tracing": True}
    stack = _variant({"cartoonizer": {"image": image}})
    _, function = _one(stack, "AWS::Lambda::Function")
    assert (function["MemorySize"], function["Timeout"], function["ReservedConcurrentExecutions"]) == (4096, 300, 3)
    assert function["TracingConfig"] == {"Mode": "Active"}


@pytest.mark.parametrize("env_name", ENVS)
def test_image_function_gets_its_model_key_buckets_and_limits_from_the_contract(env_name: str) -> None:
    app = synth_env(env_name)
    config = app.config.cartoonizer
    _, function = _one(_cartoonizer(env_name), "AWS::Lambda::Function")
    environment = {k: render(v, app) for k, v in function["Environment"]["Variables"].items()}
    storage = app.stacks.storage
    assert environment == {
        contract.ENV_MODELS_BUCKET: value_of(storage, storage.models_bucket.bucket_name, app),
        contract.ENV_MODEL_KEY: f"cartoonizer/{MODEL}/model.onnx",
        contract.ENV_OUTPUTS_BUCKET: value_of(storage, storage.outputs_bucket.bucket_name, app),
        contract.ENV_DEVICE: "cpu",
        contract.ENV_MAX_IMAGE_SIDE: str(config.image.max_side),
        contract.ENV_MAX_IMAGE_BYTES: str(config.image.max_bytes),
        contract.ENV_LOG_LEVEL: "INFO",
    }
    assert set(image_function_environment(config=config, models_bucket_name="m", outputs_bucket_name="o")) == set(
        environment
    )


@pytest.mark.parametrize("env_name", ENVS)
def test_image_function_reads_its_model_and_uploads_and_writes_results_only(env_name: str) -> None:
    app = synth_env(env_name)
    stack = _cartoonizer(env_name)
    role = _role_id(stack, "lambda.amazonaws.com")
    models, outputs = _bucket_arn(app, "models"), _bucket_arn(app, "outputs")
    assert _s3_access(stack, role, app) == {
        ("s3:GetObject", f"{models}/cartoonizer/{MODEL}/*"),
        ("s3:GetObject", f"{outputs}/cartoonizer/inputs/*"),
        ("s3:ListBucket", outputs),
        ("s3:PutObject", f"{outputs}/cartoonizer/results/*"),
        ("s3:AbortMultipartUpload", f"{outputs}/cartoonizer/results/*"),
    }
    (listing,) = [s for s in _statements(stack, role) if s["Action"] == "s3:ListBucket"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["cartoonizer/inputs/", "cartoonizer/inputs/*"]}}
    others = {a for s in _statements(stack, role) for a in as_list(s["Action"]) if not a.startswith("s3:")}
    assert others == {"logs:CreateLogStream", "logs:PutLogEvents"}
    _, function = _one(stack, "AWS::Lambda::Function")
    assert function["Role"] == {"Fn::GetAtt": [role, "Arn"]}
    assert not resources_of_type(stack.json, "AWS::IAM::ManagedPolicy")
    assert "ManagedPolicyArns" not in stack.json["Resources"][role]["Properties"]


@pytest.mark.parametrize("env_name", ENVS)
def test_image_function_logs_to_its_own_group_with_the_configured_retention(env_name: str) -> None:
    stack = _cartoonizer(env_name)
    days = synth_env(env_name).config.cartoonizer.log_retention_days
    _, function = _one(stack, "AWS::Lambda::Function")
    group = function["LoggingConfig"]["LogGroup"]["Ref"]
    assert stack.json["Resources"][group]["Properties"]["RetentionInDays"] == days
    role = _role_id(stack, "lambda.amazonaws.com")
    (logs,) = [s for s in _statements(stack, role) if "logs:PutLogEvents" in as_list(s["Action"])]
    assert logs["Resource"] == {"Fn::GetAtt": [group, "Arn"]}
    groups = resources_of_type(stack.json, "AWS::Logs::LogGroup").values()
    assert {g["Properties"]["RetentionInDays"] for g in groups} == {days}
    assert days == (90 if env_name == "prod" else 30)


@pytest.mark.parametrize("env_name", ENVS)
def test_video_endpoint_is_asynchronous_idles_at_zero_and_wakes_on_backlog(env_name: str) -> None:
    stack = _cartoonizer(env_name)
    video = synth_env(env_name).config.cartoonizer.video
    _, endpoint_config = _one(stack, "AWS::SageMaker::EndpointConfig")
    (variant,) = endpoint_config["ProductionVariants"]
    assert variant["InstanceType"] == video.instance_type == "ml.g4dn.xlarge"
    asynchronous = endpoint_config["AsyncInferenceConfig"]
    output = asynchronous["OutputConfig"]
    assert render(output["S3OutputPath"], synth_env(env_name)).endswith("/" + contract.ASYNC_OUTPUT_PREFIX)
    assert render(output["S3FailurePath"], synth_env(env_name)).endswith("/" + contract.ASYNC_FAILURE_PREFIX)
    assert set(output["NotificationConfig"]) == {"SuccessTopic", "ErrorTopic"}
    assert asynchronous["ClientConfig"] == {
        "MaxConcurrentInvocationsPerInstance": video.max_concurrent_invocations_per_instance
    }
    target_id, target = _one(stack, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert (target["MinCapacity"], target["MaxCapacity"]) == (0, video.max_instances)
    assert video.max_instances == CDK_JSON["context"]["envs"][env_name]["cartoonizer"]["video"]["max_instances"]
    name = video_endpoint_name(env_name=env_name, config=synth_env(env_name).config.cartoonizer)
    assert target["ResourceId"] == f"endpoint/{name}/variant/AllTraffic"
    policies = {
        k: p["Properties"]
        for k, p in resources_of_type(stack.json, "AWS::ApplicationAutoScaling::ScalingPolicy").items()
    }
    (step_id,) = [k for k, p in policies.items() if p["PolicyType"] == "StepScaling"]
    step = policies[step_id]["StepScalingPolicyConfiguration"]
    assert step["AdjustmentType"] == "ChangeInCapacity"
    assert step["StepAdjustments"] == [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]
    (tracking,) = [p for p in policies.values() if p["PolicyType"] == "TargetTrackingScaling"]
    tracked = tracking["TargetTrackingScalingPolicyConfiguration"]
    assert tracked["CustomizedMetricSpecification"]["MetricName"] == "ApproximateBacklogSizePerInstance"
    assert tracked["TargetValue"] == video.target_backlog_per_instance
    assert all(p["ScalingTargetId"] == {"Ref": target_id} for p in policies.values())
    (wake,) = [
        a["Properties"]
        for a in resources_of_type(stack.json, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("AlarmActions") == [{"Ref": step_id}]
    ]
    assert (wake["MetricName"], wake["Threshold"]) == ("HasBacklogWithoutCapacity", 1)


@pytest.mark.parametrize("env_name", ENVS)
def test_video_model_is_the_model_prefix_and_the_container_gets_the_contract_settings(env_name: str) -> None:
    app = synth_env(env_name)
    config = app.config.cartoonizer
    _, model = _one(_cartoonizer(env_name), "AWS::SageMaker::Model")
    container = model["PrimaryContainer"]
    source = container["ModelDataSource"]["S3DataSource"]
    assert (
        render(source["S3Uri"], app)
        == "s3://"
        + value_of(app.stacks.storage, app.stacks.storage.models_bucket.bucket_name, app)
        + f"/cartoonizer/{MODEL}/"
    )
    assert (source["S3DataType"], source["CompressionType"]) == ("S3Prefix", "None")
    environment = {k: render(v, app) for k, v in container["Environment"].items()}
    assert environment == {
        contract.ENV_MODEL_DIR: "/opt/ml/model",
        contract.ENV_OUTPUTS_BUCKET: value_of(app.stacks.storage, app.stacks.storage.outputs_bucket.bucket_name, app),
        contract.ENV_DEVICE: "cuda",
        contract.ENV_MAX_IMAGE_SIDE: str(config.image.max_side),
        contract.ENV_MAX_IMAGE_BYTES: str(config.image.max_bytes),
        contract.ENV_MAX_VIDEO_SIDE: str(config.video.max_side),
        contract.ENV_MAX_VIDEO_SECONDS: str(config.video.max_seconds),
        contract.ENV_PROGRESS_INTERVAL_S: str(config.video.progress_interval_seconds),
        contract.ENV_LOG_LEVEL: "INFO",
    }
    assert set(video_endpoint_environment(config=config, outputs_bucket_name="o")) == set(environment)


@pytest.mark.parametrize("env_name", ENVS)
def test_video_container_reads_model_jobs_and_uploads_and_writes_results_and_async_responses_only(
    env_name: str,
) -> None:
    app = synth_env(env_name)
    stack = _cartoonizer(env_name)
    role = _role_id(stack, "sagemaker.amazonaws.com")
    models, outputs = _bucket_arn(app, "models"), _bucket_arn(app, "outputs")
    writes = {f"{outputs}/{p}*" for p in (contract.RESULTS_PREFIX, contract.ASYNC_OUTPUT_PREFIX)}
    writes.add(f"{outputs}/{contract.ASYNC_FAILURE_PREFIX}*")
    reads = {f"{models}/cartoonizer/{MODEL}/*", f"{outputs}/{contract.ASYNC_INPUT_PREFIX}*"}
    reads.add(f"{outputs}/{contract.INPUTS_PREFIX}*")
    assert _s3_access(stack, role, app) == {
        *(("s3:GetObject", r) for r in reads),
        ("s3:ListBucket", models),
        *(("s3:PutObject", w) for w in writes),
        *(("s3:AbortMultipartUpload", w) for w in writes),
    }


@pytest.mark.parametrize("env_name", ENVS)
def test_every_health_alarm_notifies_the_ops_alerts_topic_and_the_wake_alarm_only_scales(env_name: str) -> None:
    app = synth_env(env_name)
    stack = _cartoonizer(env_name)
    topic = value_of(app.stacks.storage, app.stacks.storage.ops_alerts.topic_arn, app)
    alarms = {k: a["Properties"] for k, a in resources_of_type(stack.json, "AWS::CloudWatch::Alarm").items()}
    health = {k: a for k, a in alarms.items() if "Scaling" not in k}
    assert {a["MetricName"] for a in health.values()} == {
        "Invocation5XXErrors",
        "ModelLatency",
        "ApproximateAgeOfOldestRequest",
        "HasBacklogWithoutCapacity",
    }
    for alarm in health.values():
        assert [render(a, app) for a in alarm["AlarmActions"]] == [topic]
        assert [render(a, app) for a in alarm["OKActions"]] == [topic]
    video = app.config.cartoonizer.video
    (latency,) = [a for a in health.values() if a["MetricName"] == "ModelLatency"]
    assert latency["Threshold"] == video.latency_alarm_p90_seconds * 1_000_000
    (age,) = [a for a in health.values() if a["MetricName"] == "ApproximateAgeOfOldestRequest"]
    assert age["Threshold"] == video.backlog_age_alarm_seconds
    (wake,) = [a for k, a in alarms.items() if "Scaling" in k]
    assert topic not in json.dumps(wake)


@pytest.mark.parametrize("env_name", ENVS)
def test_async_notification_topics_are_encrypted_and_named_in_the_outputs(env_name: str) -> None:
    stack = _cartoonizer(env_name)
    key_id, key = _one(stack, "AWS::KMS::Key")
    assert key["EnableKeyRotation"] is True
    topics = resources_of_type(stack.json, "AWS::SNS::Topic")
    assert len(topics) == 2
    for topic in topics.values():
        assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    outputs = stack.json["Outputs"]
    assert {"SuccessTopicArn", "ErrorTopicArn", "ImageFunctionName", "VideoEndpointName"} <= set(outputs)
    assert outputs["InvocationTimeoutSeconds"]["Value"] == str(
        synth_env(env_name).config.cartoonizer.video.invocation_timeout_seconds
    )


# Resource types that cost nothing while no image or video is being processed (or cents: logs, alarms, one KMS key).
IDLE_FREE = {
    "AWS::IAM::Role",
    "AWS::IAM::Policy",
    "AWS::Lambda::Function",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::Logs::LogGroup",
    "AWS::CloudWatch::Alarm",
    "AWS::KMS::Key",
    "AWS::SNS::Topic",
    "AWS::SNS::TopicPolicy",
    "AWS::SageMaker::Model",
    "AWS::SageMaker::EndpointConfig",
    "AWS::SageMaker::Endpoint",
    "AWS::ApplicationAutoScaling::ScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy",
}


@pytest.mark.parametrize("env_name", ENVS)
def test_nothing_runs_while_idle(env_name: str) -> None:
    """Idle cost near zero: no warm instance, no provisioned concurrency, nothing always on but logs and alarms."""
    stack = _cartoonizer(env_name)
    types = {r["Type"] for r in stack.json["Resources"].values()}
    assert types <= IDLE_FREE, types - IDLE_FREE
    _, target = _one(stack, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert target["MinCapacity"] == 0
    _, function = _one(stack, "AWS::Lambda::Function")
    assert "ProvisionedConcurrencyConfig" not in json.dumps(stack.json)
    assert "VpcConfig" not in function
    assert len(resources_of_type(stack.json, "AWS::KMS::Key")) == 1
    assert len(resources_of_type(stack.json, "AWS::CloudWatch::Alarm")) == 5


@pytest.mark.parametrize("env_name", ENVS)
def test_uploads_expire_sooner_than_results_and_results_still_expire(env_name: str) -> None:
    app = synth_env(env_name)
    (bucket,) = [
        b["Properties"]
        for k, b in resources_of_type(_storage(env_name).json, "AWS::S3::Bucket").items()
        if k.startswith("OutputsBucket")
    ]
    rules = {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-cartoonizer-inputs"] == {
        "Id": "expire-cartoonizer-inputs",
        "Prefix": contract.INPUTS_PREFIX,
        "ExpirationInDays": app.config.cartoonizer.inputs_expiry_days,
        "Status": "Enabled",
    }
    # The whole-bucket rule (no prefix) covers results, progress and async responses.
    everything = rules["expire-outputs"]
    assert "Prefix" not in everything and "Filter" not in everything
    assert everything["ExpirationInDays"] == app.config.storage.outputs_expiry_days
    assert app.config.cartoonizer.inputs_expiry_days < everything["ExpirationInDays"]


def test_grant_invoke_lets_a_caller_upload_invoke_and_read_results_and_nothing_more() -> None:
    app = cdk.App(context=app_context())
    config = load_config(app_context()["envs"], "dev")
    stacks = build_app(app, config)
    caller = cdk.Stack(app, "Caller")
    role = iam.Role(caller, "Api", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    stacks.cartoonizer.grant_invoke(role)
    NagSuppressions.add_stack_suppressions(caller, [NagPackSuppression(id="AwsSolutions-IAM5", reason="test caller")])
    template = Template.from_stack(caller).to_json()
    (policy,) = resources_of_type(template, "AWS::IAM::Policy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    granted: dict[str, set[str]] = {}
    for s in statements:
        for action in as_list(s["Action"]):
            granted.setdefault(action, set()).update(json.dumps(r) for r in as_list(s["Resource"]))
    assert set(granted) == {
        "lambda:InvokeFunction",
        "sagemaker:InvokeEndpointAsync",
        "s3:PutObject",
        "s3:AbortMultipartUpload",
        "s3:GetObject",
        # The endpoint's grant (the SageMakerEndpoint component) reads async responses with CDK's grant_read.
        "s3:GetObject*",
        "s3:GetBucket*",
        "s3:List*",
        "s3:PutObjectLegalHold",
        "s3:PutObjectRetention",
        "s3:PutObjectTagging",
        "s3:PutObjectVersionTagging",
        "s3:Abort*",
    }
    puts = "".join(granted["s3:PutObject"])
    assert contract.INPUTS_PREFIX in puts and contract.ASYNC_INPUT_PREFIX in puts
    assert contract.RESULTS_PREFIX not in puts
    reads = "".join(granted["s3:GetObject"] | granted["s3:GetObject*"])
    for prefix in (contract.RESULTS_PREFIX, contract.ASYNC_OUTPUT_PREFIX, contract.ASYNC_FAILURE_PREFIX):
        assert prefix in reads
    assert contract.INPUTS_PREFIX not in reads
    assert video_endpoint_name(env_name="dev", config=config.cartoonizer) in "".join(
        granted["sagemaker:InvokeEndpointAsync"]
    )
    (function,) = granted["lambda:InvokeFunction"]
    assert "ImagesFunction" in function and ":*" not in function
    assert "sagemaker:InvokeEndpoint" not in granted


def test_video_endpoint_name_carries_the_instance_type_so_a_type_change_replaces_it() -> None:
    config = load_config({"x": {"cartoonizer": {"video": {"instance_type": "ml.g5.2xlarge"}}}}, "x").cartoonizer
    assert video_endpoint_name(env_name="dev", config=config) == "genart-dev-cartoon-g5-2xlarge"
    assert video_endpoint_name(env_name="dev", config=load_config({"x": {}}, "x").cartoonizer) == (
        "genart-dev-cartoon-g4dn-xlarge"
    )


def _variant(envs_entry: dict[str, Any]) -> SynthesizedStack:
    app = synth_config(load_config({"var": envs_entry}, "var"))
    return _without_studio(app.by_name[app.stacks.cartoonizer.stack_name])
