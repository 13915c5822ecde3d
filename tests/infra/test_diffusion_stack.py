"""The Diffusion stacks' intent: our own scanned ECR repo, a model on its S3 prefix, the two endpoint modes,
their autoscaling, a least-privilege execution role and alarms (dev = async, prod = realtime)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.config import ConfigError, DiffusionConfig, load_config
from infra.stacks.diffusion_endpoint import endpoint_name
from tests.infra.synth import SynthesizedStack, resources_of_type, synth_env

MODES = {"dev": "async", "prod": "realtime"}
ENDPOINTS = {"dev": "genart-dev-sd-async-g5-xlarge", "prod": "genart-prod-sd-realtime-g5-xlarge"}


def _diffusion(env_name: str) -> SynthesizedStack:
    app = synth_env(env_name)
    return app.by_name[app.stacks.diffusion.stack_name]


def _images(env_name: str) -> SynthesizedStack:
    app = synth_env(env_name)
    return app.by_name[app.stacks.diffusion_images.stack_name]


def _one(stack: SynthesizedStack, cfn_type: str) -> dict[str, Any]:
    (resource,) = resources_of_type(stack.json, cfn_type).values()
    return resource["Properties"]  # type: ignore[no-any-return]


def _logical_id(stack: SynthesizedStack, cfn_type: str, prefix: str) -> str:
    (logical_id,) = [k for k in resources_of_type(stack.json, cfn_type) if k.startswith(prefix)]
    return logical_id


def _joined(value: Any) -> str:
    """A template value flattened to text, so an ARN built with Fn::Join can be matched on its literal parts."""
    return json.dumps(value, sort_keys=True)


def _suffix(value: Any) -> str:
    """The literal tail of an ARN or URI built with Fn::Join (the key prefix after the bucket token)."""
    if isinstance(value, str):
        return value
    parts = value["Fn::Join"][1]
    assert isinstance(parts[-1], str), value
    return parts[-1]  # type: ignore[no-any-return]


def _statements(stack: SynthesizedStack) -> list[dict[str, Any]]:
    (policy,) = resources_of_type(stack.json, "AWS::IAM::Policy").values()
    return policy["Properties"]["PolicyDocument"]["Statement"]  # type: ignore[no-any-return]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_own_repository_scans_on_push_and_expires_old_images(env_name: str) -> None:
    repo = _one(_images(env_name), "AWS::ECR::Repository")
    assert repo["RepositoryName"] == f"genart-{env_name}/diffusion-endpoint"
    assert repo["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert repo["ImageTagMutability"] == "IMMUTABLE"
    rules = json.loads(repo["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
    selections = {rule["selection"]["tagStatus"]: rule["selection"] for rule in rules}
    assert selections["untagged"]["countType"] == "sinceImagePushed"
    assert selections["any"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 5}
    (grant,) = repo["RepositoryPolicyText"]["Statement"]
    assert "image-publishing-role" in _joined(grant["Principal"])
    assert "ecr:PutImage" in grant["Action"] and "*" not in grant["Action"]


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_image_asset_is_published_into_that_repository_before_the_stack_deploys(env_name: str) -> None:
    app = synth_env(env_name)
    stack = _diffusion(env_name)
    image = _one(stack, "AWS::SageMaker::Model")["PrimaryContainer"]["Image"]
    assert f".amazonaws.com/genart-{env_name}/diffusion-endpoint:" in _joined(image).replace(
        "${AWS::URLSuffix}", "amazonaws.com"
    )
    manifest = Path(app.stacks.diffusion.node.root.outdir) / f"{app.stacks.diffusion.artifact_id}.assets.json"
    (asset,) = json.loads(manifest.read_text())["dockerImages"].values()
    assert asset["source"]["platform"] == "linux/amd64"
    (destination,) = asset["destinations"].values()
    assert destination["repositoryName"] == f"genart-{env_name}/diffusion-endpoint"
    assert "image-publishing-role" in destination["assumeRoleArn"]
    # The CLI publishes a stack's assets after the stacks it depends on, so the repository exists by then.
    assert app.stacks.diffusion_images in app.stacks.diffusion.dependencies
    assert app.stacks.diffusion_images.stack_name.endswith("-DiffusionImages")
    assert app.stacks.diffusion.stack_name == f"GenArt-{env_name}-Diffusion"


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_model_reads_its_uncompressed_prefix_and_gets_server_settings(env_name: str) -> None:
    container = _one(_diffusion(env_name), "AWS::SageMaker::Model")["PrimaryContainer"]
    source = container["ModelDataSource"]["S3DataSource"]
    assert source["S3DataType"] == "S3Prefix"
    assert source["CompressionType"] == "None"
    assert _suffix(source["S3Uri"]) == "/diffusion/sd15/"
    assert "ModelsBucket" in _joined(source["S3Uri"])
    environment = container["Environment"]
    assert "OutputsBucket" in _joined(environment["GENART_OUTPUTS_BUCKET"])
    assert environment["GENART_OUTPUTS_PREFIX"] == "diffusion/"
    assert environment["GENART_COMPILE"] == "1"
    assert environment["GENART_DTYPE"] == "fp16"
    assert environment["GENART_COMPILE_CACHE_DIR"].startswith("/tmp/")


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_endpoint_config_uses_the_configured_gpu_and_timeouts(env_name: str) -> None:
    config = synth_env(env_name).config.diffusion
    assert config.mode == MODES[env_name]
    stack = _diffusion(env_name)
    (variant,) = _one(stack, "AWS::SageMaker::EndpointConfig")["ProductionVariants"]
    assert variant["InstanceType"] == config.instance_type
    assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] == config.startup_timeout_seconds
    assert variant["ModelDataDownloadTimeoutInSeconds"] == config.download_timeout_seconds
    assert variant["InitialInstanceCount"] == max(1, config.min_instances)
    endpoint = _one(stack, "AWS::SageMaker::Endpoint")
    assert endpoint["EndpointName"] == ENDPOINTS[env_name]


def test_async_endpoint_writes_results_to_outputs_prefixes_and_notifies_encrypted_topics() -> None:
    stack = _diffusion("dev")
    async_config = _one(stack, "AWS::SageMaker::EndpointConfig")["AsyncInferenceConfig"]
    output = async_config["OutputConfig"]
    assert _suffix(output["S3OutputPath"]) == "/async/out/"
    assert _suffix(output["S3FailurePath"]) == "/async/failed/"
    assert "OutputsBucket" in _joined(output["S3OutputPath"])
    notify = output["NotificationConfig"]
    assert notify["SuccessTopic"] == {"Ref": _logical_id(stack, "AWS::SNS::Topic", "AsyncSuccessTopic")}
    assert notify["ErrorTopic"] == {"Ref": _logical_id(stack, "AWS::SNS::Topic", "AsyncErrorTopic")}
    assert async_config["ClientConfig"]["MaxConcurrentInvocationsPerInstance"] == (
        synth_env("dev").config.diffusion.max_concurrent_invocations_per_instance
    )
    topics = resources_of_type(stack.json, "AWS::SNS::Topic")
    assert len(topics) == 3  # success, error, alarms
    assert all("KmsMasterKeyId" in t["Properties"] for t in topics.values())
    topic_policies = resources_of_type(stack.json, "AWS::SNS::TopicPolicy")
    covered = [ref["Ref"] for p in topic_policies.values() for ref in p["Properties"]["Topics"]]
    assert sorted(covered) == sorted(topics)  # the TLS check below is not vacuous: every topic has a policy
    for policy in topic_policies.values():
        denies = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
        assert any(s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}} for s in denies)


def test_realtime_endpoint_has_no_async_config_or_async_topics() -> None:
    stack = _diffusion("prod")
    assert "AsyncInferenceConfig" not in _one(stack, "AWS::SageMaker::EndpointConfig")
    assert len(resources_of_type(stack.json, "AWS::SNS::Topic")) == 1  # alarms only


def _policies(stack: SynthesizedStack) -> dict[str, dict[str, Any]]:
    return {
        p["Properties"]["PolicyType"]: p["Properties"]
        for p in resources_of_type(stack.json, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    }


def test_async_scales_to_zero_and_wakes_on_backlog() -> None:
    stack = _diffusion("dev")
    target = _one(stack, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert target["MinCapacity"] == 0
    assert target["MaxCapacity"] == synth_env("dev").config.diffusion.max_instances
    assert target["ResourceId"] == f"endpoint/{ENDPOINTS['dev']}/variant/AllTraffic"
    assert target["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    policies = _policies(stack)
    assert set(policies) == {"TargetTrackingScaling", "StepScaling"}
    tracking = policies["TargetTrackingScaling"]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["CustomizedMetricSpecification"]["MetricName"] == "ApproximateBacklogSizePerInstance"
    assert tracking["CustomizedMetricSpecification"]["Namespace"] == "AWS/SageMaker"
    assert tracking["TargetValue"] == synth_env("dev").config.diffusion.target_backlog_per_instance
    step = policies["StepScaling"]["StepScalingPolicyConfiguration"]
    assert step["AdjustmentType"] == "ChangeInCapacity"
    assert step["StepAdjustments"] == [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]
    step_id = _logical_id(stack, "AWS::ApplicationAutoScaling::ScalingPolicy", "ScalingWakeFromZero")
    (wake,) = [
        a["Properties"]
        for a in resources_of_type(stack.json, "AWS::CloudWatch::Alarm").values()
        if {"Ref": step_id} in a["Properties"].get("AlarmActions", [])
    ]
    assert wake["MetricName"] == "HasBacklogWithoutCapacity"
    assert wake["Threshold"] == 1
    assert wake["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_realtime_tracks_invocations_per_instance_between_min_and_max() -> None:
    stack = _diffusion("prod")
    config = synth_env("prod").config.diffusion
    target = _one(stack, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert (target["MinCapacity"], target["MaxCapacity"]) == (config.min_instances, config.max_instances)
    assert target["MinCapacity"] >= 1
    policies = _policies(stack)
    assert set(policies) == {"TargetTrackingScaling"}
    tracking = policies["TargetTrackingScaling"]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
    }
    assert tracking["TargetValue"] == config.target_invocations_per_instance


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_execution_role_is_scoped_to_our_repo_model_prefix_and_result_prefixes(env_name: str) -> None:
    statements = _statements(_diffusion(env_name))
    by_action: dict[str, list[dict[str, Any]]] = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        for action in _as_list(statement["Action"]):
            by_action.setdefault(action, []).append(statement)
    star_actions = {a for a, ss in by_action.items() if any("*" in _as_list(s["Resource"]) for s in ss)}
    assert star_actions == {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}
    (metrics,) = by_action["cloudwatch:PutMetricData"]
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/Endpoints"}}
    for action in ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"):
        (pull,) = by_action[action]
        assert f":repository/genart-{env_name}/diffusion-endpoint" in _joined(pull["Resource"])
    reads = [r for s in by_action["s3:GetObject"] for r in _as_list(s["Resource"])]
    model_reads = [_suffix(r) for r in reads if "ModelsBucket" in _joined(r)]
    assert model_reads == ["/diffusion/sd15/*"]
    (listing,) = by_action["s3:ListBucket"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["diffusion/sd15/", "diffusion/sd15/*"]}}
    (put,) = by_action["s3:PutObject"]
    writes = sorted(_suffix(r) for r in _as_list(put["Resource"]))
    assert all("OutputsBucket" in _joined(r) for r in _as_list(put["Resource"]))
    expected = ["/diffusion/*"] + (["/async/failed/*", "/async/out/*"] if MODES[env_name] == "async" else [])
    assert writes == sorted(expected)
    s3_actions = {a for a in by_action if a.startswith("s3:")}
    assert s3_actions == {"s3:GetObject", "s3:ListBucket", "s3:PutObject", "s3:AbortMultipartUpload"}


def test_async_role_may_publish_to_its_two_topics_only() -> None:
    stack = _diffusion("dev")
    (publish,) = [s for s in _statements(stack) if s["Action"] == "sns:Publish"]
    assert sorted(_joined(r) for r in publish["Resource"]) == sorted(
        _joined({"Ref": _logical_id(stack, "AWS::SNS::Topic", p)}) for p in ("AsyncSuccessTopic", "AsyncErrorTopic")
    )
    assert not [s for s in _statements(_diffusion("prod")) if s["Action"] == "sns:Publish"]


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_alarms_on_errors_latency_and_async_backlog_notify_the_alarm_topic(env_name: str) -> None:
    stack = _diffusion(env_name)
    alarm_topic = {"Ref": _logical_id(stack, "AWS::SNS::Topic", "AlarmsTopic")}
    notifying = {
        a["Properties"]["MetricName"]: a["Properties"]
        for a in resources_of_type(stack.json, "AWS::CloudWatch::Alarm").values()
        if alarm_topic in a["Properties"].get("AlarmActions", [])
    }
    expected = {"Invocation5XXErrors", "ModelLatency"}
    if MODES[env_name] == "async":
        expected |= {"ApproximateAgeOfOldestRequest", "HasBacklogWithoutCapacity"}
    assert set(notifying) == expected
    assert notifying["ModelLatency"]["ExtendedStatistic"] == "p90"
    config = synth_env(env_name).config.diffusion
    assert notifying["ModelLatency"]["Threshold"] == config.latency_alarm_p90_seconds * 1_000_000
    for alarm in notifying.values():
        assert {"Name": "EndpointName", "Value": ENDPOINTS[env_name]} in alarm["Dimensions"]


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_outputs_name_the_endpoint_repo_and_async_locations(env_name: str) -> None:
    outputs = set(_diffusion(env_name).json["Outputs"])
    assert {"EndpointName", "RepositoryUri", "ImageUri", "AlarmTopicArn"} <= outputs
    async_outputs = {"AsyncInputLocation", "AsyncOutputLocation", "AsyncFailureLocation", "SuccessTopicArn"}
    assert (async_outputs <= outputs) == (MODES[env_name] == "async")
    assert "RepositoryUri" in _images(env_name).json["Outputs"]


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"target_backlog_per_instance": 0}, "target_backlog_per_instance"),
        ({"latency_alarm_p90_seconds": 0}, "latency_alarm_p90_seconds"),
        ({"backlog_age_alarm_seconds": 30}, "backlog_age_alarm_seconds"),
        ({"alarm_email": "not-an-address"}, "alarm_email"),
        ({"mode": "realtime", "min_instances": 0}, "min_instances"),
    ],
)
def test_diffusion_settings_are_validated(changes: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_config({"x": {"diffusion": changes}}, "x")


def test_endpoint_name_changes_with_mode_and_instance_type_so_either_change_replaces_the_endpoint() -> None:
    names = {
        endpoint_name(env_name="dev", config=DiffusionConfig(mode=mode, instance_type=itype, min_instances=1))
        for mode in ("async", "realtime")
        for itype in ("ml.g5.xlarge", "ml.g6.2xlarge")
    }
    assert len(names) == 4
    assert "genart-dev-sd-realtime-g6-2xlarge" in names
