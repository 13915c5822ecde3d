"""SageMakerEndpoint on a bare stack: the exact properties that make a real-time or async endpoint work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aws_cdk import aws_iam as iam

from infra.components.endpoint_alarms import EndpointAlarmThresholds
from infra.components.endpoint_scaling import SCALABLE_DIMENSION, EndpointCapacity
from infra.components.ops_alerts import OpsAlertsTopic
from infra.components.sagemaker_endpoint import AsyncInvocation, ModelData, SageMakerEndpoint
from tests.infra.components.conftest import (
    SystemFixture,
    as_list,
    by_sid,
    only,
    resources,
    statements_of_role,
    suffix,
    text,
)

NAME = "genart-test-endpoint"
ENVIRONMENT = {"A_SETTING": "1", "ANOTHER": "two"}


def _endpoint(
    docker_context: Path,
    *,
    asynchronous: bool,
    min_instances: int = 0,
    with_alarm_topic: bool = True,
    idle_minutes: int | None = None,
) -> tuple[SystemFixture, SageMakerEndpoint]:
    system = SystemFixture(docker_context)
    alerts = OpsAlertsTopic(system.shared, "Alerts", display_name="alerts") if with_alarm_topic else None
    endpoint = SageMakerEndpoint(
        system.stack,
        "Endpoint",
        endpoint_name=NAME,
        image=system.image,
        model_data=ModelData(bucket=system.models, prefix="models/m1/"),
        capacity=EndpointCapacity(
            instance_type="ml.g5.xlarge",
            min_instances=min_instances,
            max_instances=3,
            target_invocations_per_instance=9,
            target_backlog_per_instance=4,
            idle_scale_in_minutes=idle_minutes,
            inference_ami_version="al2023-ami-sagemaker-inference-gpu-4-1",
        ),
        environment=ENVIRONMENT,
        async_invocation=AsyncInvocation(
            bucket=system.outputs,
            input_prefix="async/x/in/",
            output_prefix="async/x/out/",
            failure_prefix="async/x/failed/",
            max_concurrent_invocations_per_instance=2,
        )
        if asynchronous
        else None,
        startup_timeout_seconds=1800,
        download_timeout_seconds=1200,
        alarm_thresholds=EndpointAlarmThresholds(latency_p90_seconds=20, backlog_age_seconds=900),
        alarm_action=alerts.alarm_action() if alerts else None,
        description="test endpoint",
    )
    endpoint.grant_container_write(system.outputs, "results/")
    return system, endpoint


@pytest.fixture(scope="module")
def async_template(docker_context: Path) -> dict[str, Any]:
    return _endpoint(docker_context, asynchronous=True)[0].template()


@pytest.fixture(scope="module")
def realtime_template(docker_context: Path) -> dict[str, Any]:
    return _endpoint(docker_context, asynchronous=False, min_instances=1)[0].template()


def _role_id(template: dict[str, Any]) -> str:
    (role_id,) = [k for k, v in resources(template, "AWS::IAM::Role").items() if "ExecutionRole" in k]
    return role_id


def _dimensions(metric: dict[str, Any]) -> set[str]:
    return {d["Name"] for d in metric["Dimensions"]}


def test_model_serves_the_published_image_with_the_uncompressed_model_prefix(async_template: dict[str, Any]) -> None:
    model = only(async_template, "AWS::SageMaker::Model")
    container = model["PrimaryContainer"]
    assert "/genart-test/system:" in text(container["Image"])
    assert container["Mode"] == "SingleModel"
    source = container["ModelDataSource"]["S3DataSource"]
    assert (source["S3DataType"], source["CompressionType"]) == ("S3Prefix", "None")
    assert source["S3Uri"]["Fn::Join"][1][-1] == "/models/m1/"
    assert container["Environment"] == ENVIRONMENT
    assert model["ExecutionRoleArn"] == {"Fn::GetAtt": [_role_id(async_template), "Arn"]}


def test_model_waits_for_every_policy_of_its_role(async_template: dict[str, Any]) -> None:
    (model,) = resources(async_template, "AWS::SageMaker::Model").values()
    policies = set(resources(async_template, "AWS::IAM::Policy"))
    assert policies and policies <= set(model["DependsOn"])


def test_variant_uses_the_instance_type_timeouts_and_at_least_one_initial_instance(
    async_template: dict[str, Any],
) -> None:
    (variant,) = only(async_template, "AWS::SageMaker::EndpointConfig")["ProductionVariants"]
    assert variant["VariantName"] == "AllTraffic"
    assert variant["InstanceType"] == "ml.g5.xlarge"
    assert variant["InitialInstanceCount"] == 1
    assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] == 1800
    assert variant["ModelDataDownloadTimeoutInSeconds"] == 1200


def test_async_config_writes_results_and_failures_and_notifies_both_topics(async_template: dict[str, Any]) -> None:
    config = only(async_template, "AWS::SageMaker::EndpointConfig")["AsyncInferenceConfig"]
    output = config["OutputConfig"]
    assert output["S3OutputPath"]["Fn::Join"][1][-1] == "/async/x/out/"
    assert output["S3FailurePath"]["Fn::Join"][1][-1] == "/async/x/failed/"
    topics = resources(async_template, "AWS::SNS::Topic")
    success = [k for k in topics if "AsyncSuccess" in k]
    error = [k for k in topics if "AsyncError" in k]
    assert output["NotificationConfig"] == {"SuccessTopic": {"Ref": success[0]}, "ErrorTopic": {"Ref": error[0]}}
    assert config["ClientConfig"] == {"MaxConcurrentInvocationsPerInstance": 2}


def test_async_topics_are_encrypted_with_a_rotating_key_and_refuse_plain_http(async_template: dict[str, Any]) -> None:
    (key_id,) = resources(async_template, "AWS::KMS::Key")
    assert async_template["Resources"][key_id]["Properties"]["EnableKeyRotation"] is True
    for topic in resources(async_template, "AWS::SNS::Topic").values():
        assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    for policy in resources(async_template, "AWS::SNS::TopicPolicy").values():
        (deny,) = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert len(resources(async_template, "AWS::SNS::TopicPolicy")) == 2


def test_endpoint_has_its_name_config_and_log_group(async_template: dict[str, Any]) -> None:
    (endpoint,) = resources(async_template, "AWS::SageMaker::Endpoint").values()
    (config_id,) = resources(async_template, "AWS::SageMaker::EndpointConfig")
    assert endpoint["Properties"]["EndpointName"] == NAME
    assert endpoint["Properties"]["EndpointConfigName"] == {"Fn::GetAtt": [config_id, "EndpointConfigName"]}
    (log_id,) = resources(async_template, "AWS::Logs::LogGroup")
    assert log_id in endpoint["DependsOn"]
    assert async_template["Resources"][log_id]["Properties"]["LogGroupName"] == f"/aws/sagemaker/Endpoints/{NAME}"


def test_execution_role_is_trusted_by_sagemaker_and_scoped_to_its_prefixes(async_template: dict[str, Any]) -> None:
    role_id = _role_id(async_template)
    trust = async_template["Resources"][role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "sagemaker.amazonaws.com"}]
    statements = statements_of_role(async_template, role_id)
    sids = by_sid(statements)
    assert sids["ReadModelPrefix"]["Action"] == "s3:GetObject"
    assert suffix(sids["ReadModelPrefix"]["Resource"]) == "/models/m1/*"
    assert sids["ListModelPrefix"]["Condition"] == {"StringLike": {"s3:prefix": ["models/m1/", "models/m1/*"]}}
    assert sids["EndpointLogs"]["Action"] == ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"]
    assert all(f"log-group:/aws/sagemaker/Endpoints/{NAME}" in text(r) for r in sids["EndpointLogs"]["Resource"])
    assert sids["EndpointInstanceMetrics"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/Endpoints"}
    }
    assert sids["ReadAsyncRequests"]["Action"] == "s3:GetObject"
    assert suffix(sids["ReadAsyncRequests"]["Resource"]) == "/async/x/in/*"
    writes = {k: v for k, v in sids.items() if k.startswith("ContainerWrites")}
    assert {suffix(v["Resource"]) for v in writes.values()} == {"/async/x/out/*", "/async/x/failed/*", "/results/*"}
    for write in writes.values():
        assert sorted(write["Action"]) == ["s3:AbortMultipartUpload", "s3:PutObject"]
    assert sorted(as_list(sids["NotifyAsyncResults"]["Resource"]), key=text) == sorted(
        [{"Ref": k} for k in resources(async_template, "AWS::SNS::Topic")], key=text
    )
    assert sids["EncryptedAsyncTopics"]["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]


def test_grant_container_read_allows_get_object_under_the_prefix_only(docker_context: Path) -> None:
    system, endpoint = _endpoint(docker_context, asynchronous=False, min_instances=1)
    endpoint.grant_container_read(system.models, "cache/m1/")
    template = system.template()
    sids = by_sid(statements_of_role(template, _role_id(template)))
    read = sids["ContainerReadsCacheM1"]
    assert read["Action"] == "s3:GetObject"
    assert suffix(read["Resource"]) == "/cache/m1/*"
    assert "models" in text(read["Resource"]).lower()
    assert "Condition" not in read


def test_execution_role_pulls_only_the_system_repository(async_template: dict[str, Any]) -> None:
    statements = statements_of_role(async_template, _role_id(async_template))
    pulls = [s for s in statements if "ecr:BatchGetImage" in as_list(s["Action"])]
    (pull,) = pulls
    assert sorted(pull["Action"]) == [
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
    ]
    assert "ImagesRepository" in text(pull["Resource"])
    (login,) = [s for s in statements if s["Action"] == "ecr:GetAuthorizationToken"]
    assert login["Resource"] == "*"
    assert not [
        s
        for s in statements
        if s["Resource"] == "*" and s["Action"] not in ("ecr:GetAuthorizationToken", "cloudwatch:PutMetricData")
    ]


def test_async_scaling_goes_from_zero_to_max_on_backlog_per_endpoint(async_template: dict[str, Any]) -> None:
    target = only(async_template, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert (target["MinCapacity"], target["MaxCapacity"]) == (0, 3)
    assert target["ResourceId"] == f"endpoint/{NAME}/variant/AllTraffic"
    assert target["ScalableDimension"] == SCALABLE_DIMENSION
    assert target["ServiceNamespace"] == "sagemaker"
    assert "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint" in text(target["RoleARN"])
    policies = {
        p["Properties"]["PolicyType"]: p["Properties"]
        for p in resources(async_template, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    }
    tracking = policies["TargetTrackingScaling"]["TargetTrackingScalingPolicyConfiguration"]
    metric = tracking["CustomizedMetricSpecification"]
    assert metric["MetricName"] == "ApproximateBacklogSizePerInstance"
    assert metric["Namespace"] == "AWS/SageMaker"
    assert metric["Dimensions"] == [{"Name": "EndpointName", "Value": NAME}]
    assert metric["Statistic"] == "Average"
    assert tracking["TargetValue"] == 4
    assert (tracking["ScaleInCooldown"], tracking["ScaleOutCooldown"]) == (600, 300)
    # One +1 step per 5 minutes while the first instance boots, never more.
    assert policies["StepScaling"]["StepScalingPolicyConfiguration"] == {
        "AdjustmentType": "ChangeInCapacity",
        "Cooldown": 300,
        "MetricAggregationType": "Average",
        "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
    }


def test_scaling_is_registered_only_once_the_endpoint_exists(async_template: dict[str, Any]) -> None:
    (endpoint_id,) = resources(async_template, "AWS::SageMaker::Endpoint")
    for logical_id, resource in resources(async_template, "AWS::ApplicationAutoScaling::ScalableTarget").items():
        assert endpoint_id in resource["DependsOn"], logical_id


def test_wake_alarm_fires_on_backlog_without_capacity_and_triggers_the_step_policy(
    async_template: dict[str, Any],
) -> None:
    alarms = resources(async_template, "AWS::CloudWatch::Alarm")
    (wake_id,) = [k for k in alarms if "BacklogWithoutCapacity" in k and "Scaling" in k]
    wake = alarms[wake_id]["Properties"]
    assert wake["MetricName"] == "HasBacklogWithoutCapacity"
    assert wake["Namespace"] == "AWS/SageMaker"
    assert wake["Dimensions"] == [{"Name": "EndpointName", "Value": NAME}]
    assert (wake["Threshold"], wake["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert (wake["EvaluationPeriods"], wake["DatapointsToAlarm"], wake["Period"]) == (2, 2, 60)
    assert wake["Statistic"] == "Average"
    # No data means no queue: a missing datapoint must never wake (or keep awake) an idle endpoint.
    assert wake["TreatMissingData"] == "missing"
    (step_id,) = [
        k
        for k, v in resources(async_template, "AWS::ApplicationAutoScaling::ScalingPolicy").items()
        if v["Properties"]["PolicyType"] == "StepScaling"
    ]
    assert wake["AlarmActions"] == [{"Ref": step_id}]


@pytest.mark.parametrize("floor", [0, 1])
def test_idle_scale_in_drops_to_min_instances_after_the_configured_idle_minutes(
    docker_context: Path, floor: int
) -> None:
    template = _endpoint(docker_context, asynchronous=True, idle_minutes=7, min_instances=floor)[0].template()
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    (idle_id,) = [k for k in alarms if "ScalingIdle" in k]
    idle = alarms[idle_id]["Properties"]
    # Requests "currently being processed or yet to be processed" (SageMaker): 0 means nothing in flight either.
    assert idle["MetricName"] == "ApproximateBacklogSize"
    assert idle["Dimensions"] == [{"Name": "EndpointName", "Value": NAME}]
    assert (idle["Statistic"], idle["Period"]) == ("Maximum", 60)
    assert (idle["Threshold"], idle["ComparisonOperator"]) == (1, "LessThanThreshold")
    assert (idle["EvaluationPeriods"], idle["DatapointsToAlarm"]) == (7, 7)
    assert idle["TreatMissingData"] == "missing"
    steps = {
        k: v["Properties"]["StepScalingPolicyConfiguration"]
        for k, v in resources(template, "AWS::ApplicationAutoScaling::ScalingPolicy").items()
        if v["Properties"]["PolicyType"] == "StepScaling"
    }
    (scale_in_id,) = [k for k, v in steps.items() if v["AdjustmentType"] == "ExactCapacity"]
    assert idle["AlarmActions"] == [{"Ref": scale_in_id}]
    assert steps[scale_in_id]["StepAdjustments"] == [{"MetricIntervalUpperBound": 0, "ScalingAdjustment": floor}]
    assert "OKActions" not in idle  # a scaling trigger, not a notification


def test_idle_scale_in_is_off_unless_asked_for(async_template: dict[str, Any]) -> None:
    assert not [k for k in resources(async_template, "AWS::CloudWatch::Alarm") if "ScalingIdle" in k]
    with pytest.raises(ValueError, match="idle_scale_in_minutes"):
        EndpointCapacity(instance_type="ml.g5.xlarge", min_instances=0, max_instances=1, idle_scale_in_minutes=0)


def _health_alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in resources(template, "AWS::CloudWatch::Alarm").items() if "Alarms" in k}


def test_async_alarms_watch_errors_latency_queue_age_and_stuck_scale_out(async_template: dict[str, Any]) -> None:
    alarms = {p["MetricName"]: p for p in _health_alarms(async_template).values()}
    assert set(alarms) == {
        "Invocation5XXErrors",
        "ModelLatency",
        "ApproximateAgeOfOldestRequest",
        "HasBacklogWithoutCapacity",
    }
    expected = {
        "Invocation5XXErrors": ({"EndpointName", "VariantName"}, "Sum", 1, 1),
        "ModelLatency": ({"EndpointName", "VariantName"}, None, 20_000_000, 3),
        "ApproximateAgeOfOldestRequest": ({"EndpointName"}, "Maximum", 900, 1),
        "HasBacklogWithoutCapacity": ({"EndpointName"}, "Minimum", 1, 6),
    }
    for name, (dimensions, statistic, threshold, periods) in expected.items():
        alarm = alarms[name]
        assert _dimensions(alarm) == dimensions, name
        assert alarm.get("Statistic") == statistic, name
        assert (alarm["Threshold"], alarm["EvaluationPeriods"], alarm["Period"]) == (threshold, periods, 300), name
        assert alarm["Namespace"] == "AWS/SageMaker"
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert alarm["TreatMissingData"] == "notBreaching"
        assert {d["Value"] for d in alarm["Dimensions"]} <= {NAME, "AllTraffic"}
    assert alarms["ModelLatency"]["ExtendedStatistic"] == "p90"


def test_every_health_alarm_notifies_the_alarm_action_on_alarm_and_ok(async_template: dict[str, Any]) -> None:
    for alarm in _health_alarms(async_template).values():
        (action,) = alarm["AlarmActions"]
        assert alarm["OKActions"] == [action]
        assert "AlertsTopic" in text(action)


def test_realtime_tracks_invocations_and_has_no_async_parts(realtime_template: dict[str, Any]) -> None:
    config = only(realtime_template, "AWS::SageMaker::EndpointConfig")
    assert "AsyncInferenceConfig" not in config
    assert not resources(realtime_template, "AWS::SNS::Topic")
    target = only(realtime_template, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 3)
    (policy,) = resources(realtime_template, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    tracking = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
    }
    assert tracking["TargetValue"] == 9
    assert (tracking["ScaleInCooldown"], tracking["ScaleOutCooldown"]) == (600, 300)
    metrics = {p["MetricName"] for p in _health_alarms(realtime_template).values()}
    assert metrics == {"Invocation5XXErrors", "ModelLatency"}


def _grant_statements(docker_context: Path, *, asynchronous: bool) -> list[dict[str, Any]]:
    system, endpoint = _endpoint(docker_context, asynchronous=asynchronous, min_instances=1, with_alarm_topic=False)
    caller = iam.Role(system.stack, "Caller", assumed_by=iam.AccountRootPrincipal())
    endpoint.grant_invoke(caller)
    template = system.template()
    (caller_id,) = [k for k in resources(template, "AWS::IAM::Role") if k.startswith("Caller")]
    return statements_of_role(template, caller_id)


def test_grant_invoke_realtime_allows_invoke_endpoint_on_this_endpoint_only(docker_context: Path) -> None:
    (statement,) = _grant_statements(docker_context, asynchronous=False)
    assert statement["Action"] == "sagemaker:InvokeEndpoint"
    assert suffix(statement["Resource"]) == f":endpoint/{NAME}"


def test_grant_invoke_async_allows_upload_invoke_and_reading_results(docker_context: Path) -> None:
    statements = _grant_statements(docker_context, asynchronous=True)
    invoke = [s for s in statements if s["Action"] == "sagemaker:InvokeEndpointAsync"]
    assert len(invoke) == 1 and suffix(invoke[0]["Resource"]) == f":endpoint/{NAME}"
    writes = [s for s in statements if "s3:PutObject" in as_list(s["Action"])]
    assert [suffix(s["Resource"]) for s in writes] == ["/async/x/in/*"]
    reads = [s for s in statements if "s3:GetObject*" in as_list(s["Action"])]
    read_resources = text([s["Resource"] for s in reads])
    assert "/async/x/out/*" in read_resources and "/async/x/failed/*" in read_resources
    assert "/async/x/in/*" not in read_resources


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ModelData(bucket=None, prefix="models/m1"), "ModelData.prefix"),  # type: ignore[arg-type]
        (lambda: EndpointCapacity(instance_type="ml.g5.xlarge", min_instances=2, max_instances=1), "min_instances"),
        (
            lambda: EndpointCapacity(
                instance_type="ml.g5.xlarge",
                min_instances=0,
                max_instances=1,
                inference_ami_version="al2-ami-sagemaker-inference-gpu-9",  # type: ignore[arg-type]
            ),
            "inference_ami_version: unknown GPU AMI version",
        ),
        (
            lambda: AsyncInvocation(bucket=None, input_prefix="a/", output_prefix="a/", failure_prefix="b/"),  # type: ignore[arg-type]
            "must differ",
        ),
    ],
)
def test_props_are_validated_with_the_field_named(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_realtime_endpoint_refuses_zero_instances_and_bad_names(docker_context: Path) -> None:
    with pytest.raises(ValueError, match="real-time endpoint needs at least 1 instance"):
        _endpoint(docker_context, asynchronous=False, min_instances=0)
    system = SystemFixture(docker_context)
    with pytest.raises(ValueError, match="not a valid SageMaker endpoint name"):
        SageMakerEndpoint(
            system.stack,
            "Endpoint",
            endpoint_name="bad_name",
            image=system.image,
            model_data=ModelData(bucket=system.models, prefix="m/"),
            capacity=EndpointCapacity(instance_type="ml.g5.xlarge", min_instances=0, max_instances=1),
            async_invocation=AsyncInvocation(
                bucket=system.outputs, input_prefix="i/", output_prefix="o/", failure_prefix="f/"
            ),
            description="x",
        )


def test_variant_runs_on_the_inference_ami_its_capacity_names(async_template: dict[str, Any]) -> None:
    (variant,) = only(async_template, "AWS::SageMaker::EndpointConfig")["ProductionVariants"]
    assert variant["InferenceAmiVersion"] == "al2023-ami-sagemaker-inference-gpu-4-1"
