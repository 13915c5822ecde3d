"""Pipeline stack: the SageMaker pipeline and its definition, topic + key, failure rule, notify Lambda, roles."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Template

from infra.stacks.pipeline import PIPELINE_DIR
from infra.stacks.pipeline_definition import STEP_NAMES
from infra.stacks.pipeline_notifications import PipelineNotifications
from tests.infra.synth import SynthesizedStack, resources_of_type, synth_env


@pytest.fixture(scope="module")
def stack() -> SynthesizedStack:
    return synth_env("dev").by_name["GenArt-dev-Pipeline"]


def only(template: dict[str, Any], cfn_type: str) -> tuple[str, dict[str, Any]]:
    (item,) = resources_of_type(template, cfn_type).items()
    return item


def flatten(value: Any) -> str:
    """A CloudFormation string value with every intrinsic replaced by <intrinsic>."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(flatten(part) for part in parts)
    return f"<{next(iter(value))}>" if isinstance(value, dict) else f"<{type(value).__name__}>"


def statements(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    found = []
    for policy in resources_of_type(template, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def by_sid(template: dict[str, Any], role_id: str) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in statements(template, role_id) if "Sid" in s}


def role_id(template: dict[str, Any], service: str) -> str:
    for logical_id, role in resources_of_type(template, "AWS::IAM::Role").items():
        principal = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
        if principal.get("Service") == service:
            return logical_id
    raise AssertionError(f"no role for {service}")


def test_pipeline_definition_body_is_the_rendered_json_with_resolving_references(stack: SynthesizedStack) -> None:
    _, pipeline = only(stack.json, "AWS::SageMaker::Pipeline")
    props = pipeline["Properties"]
    assert props["PipelineName"] == "genart-dev-stylegan2"
    assert props["RoleArn"] == {"Fn::GetAtt": [role_id(stack.json, "sagemaker.amazonaws.com"), "Arn"]}
    body = props["PipelineDefinition"]["PipelineDefinitionBody"]
    text = flatten(body)
    assert "${Token[" not in text  # every token resolved to an intrinsic
    definition = json.loads(text)
    assert [step["Name"] for step in definition["Steps"]] == list(STEP_NAMES)
    intrinsics = json.dumps(body)
    function_id = next(iter(resources_of_type(stack.json, "AWS::Lambda::Function")))
    assert f'{{"Fn::GetAtt": ["{function_id}", "Arn"]}}' in intrinsics
    assert "PublishOutputRefModelsBucket" in intrinsics and "PublishOutputRefDatasetsBucket" in intrinsics
    assert '{"Ref": "ExecutionRole' in intrinsics and "AWS::Partition" in intrinsics
    assert "container-assets" in intrinsics and ".dkr.ecr." in intrinsics  # the image asset's URI
    notify = definition["Steps"][3]
    assert notify["FunctionArn"].startswith("<")


def test_step_image_is_a_docker_asset_of_the_step_code_built_at_deploy(stack: SynthesizedStack) -> None:
    outdir = Path(cdk.Stage.of(stack.stack).outdir)  # type: ignore[union-attr]
    manifest = json.loads((outdir / f"{stack.name}.assets.json").read_text())
    (image,) = manifest["dockerImages"].values()
    source = image["source"]
    assert (source["dockerFile"], source["platform"]) == ("Dockerfile", "linux/amd64")
    context = outdir / source["directory"]
    files = {str(p.relative_to(context)) for p in context.rglob("*") if p.is_file()}
    assert {"Dockerfile", "requirements.txt", "container/sagemaker_train.py", "stylegan2/train.py"} <= files
    assert "stylegan2/metrics.py" in files and "stylegan2/generate.py" in files
    assert "local_run.py" not in files and not any("__pycache__" in f for f in files)


def test_dockerfile_follows_the_sagemaker_container_contract() -> None:
    dockerfile = (PIPELINE_DIR / "Dockerfile").read_text()
    instructions = [line.split(None, 1) for line in dockerfile.splitlines() if line and not line.startswith("#")]
    (base,) = [args for keyword, *args in instructions if keyword == "FROM"]
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+", base[0].strip())
    requirements = (PIPELINE_DIR / "requirements.txt").read_text().split()
    assert any(re.fullmatch(r"torch==\d+\.\d+\.\d+", line) for line in requirements)
    copies = [args[0].split() for keyword, *args in instructions if keyword == "COPY"]
    context = PIPELINE_DIR.parent  # the build context is runtime/ (IMAGE_BUILD_CONTEXT), so common/ ships too
    for source, _ in copies:
        assert (context / source).exists(), f"COPY source {source} is not in the build context"
    assert ["pipeline/stylegan2", "/opt/ml/code/runtime/pipeline/stylegan2"] in copies
    assert ["common", "/opt/ml/code/runtime/common"] in copies
    assert "exec python -m runtime.pipeline.container.sagemaker_train" in dockerfile
    assert "PYTHONPATH=/opt/ml/code" in dockerfile
    assert "pip install --no-cache-dir -r /tmp/requirements.txt" in dockerfile
    assert not [args for keyword, *args in instructions if keyword in ("ENTRYPOINT", "CMD")]  # SageMaker passes `train`


def test_topic_is_kms_encrypted_and_tls_only(stack: SynthesizedStack) -> None:
    key_id, key = only(stack.json, "AWS::KMS::Key")
    assert key["Properties"]["EnableKeyRotation"] is True
    topic_id, topic = only(stack.json, "AWS::SNS::Topic")
    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert "Subscription" not in topic["Properties"]
    assert resources_of_type(stack.json, "AWS::SNS::Subscription") == {}  # dev sets no notification_email
    _, policy = only(stack.json, "AWS::SNS::TopicPolicy")
    (deny,) = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert (deny["Action"], deny["Principal"], deny["Resource"]) == ("sns:Publish", "*", {"Ref": topic_id})
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    events_use_key = [
        s for s in key["Properties"]["KeyPolicy"]["Statement"] if s["Principal"] == {"Service": "events.amazonaws.com"}
    ]
    assert events_use_key and set(events_use_key[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}


def test_failure_rule_matches_this_pipeline_and_sends_a_readable_message(stack: SynthesizedStack) -> None:
    _, rule = only(stack.json, "AWS::Events::Rule")
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.sagemaker"]
    assert pattern["detail-type"] == ["SageMaker Model Building Pipeline Execution Status Change"]
    assert pattern["detail"]["currentPipelineExecutionStatus"] == ["Failed", "Stopped"]
    (arn,) = pattern["detail"]["pipelineArn"]
    assert flatten(arn).endswith(":pipeline/genart-dev-stylegan2")
    (target,) = rule["Properties"]["Targets"]
    topic_id, _ = only(stack.json, "AWS::SNS::Topic")
    assert target["Arn"] == {"Ref": topic_id}
    transformer = target["InputTransformer"]
    assert transformer["InputPathsMap"]["detail-currentPipelineExecutionStatus"] == (
        "$.detail.currentPipelineExecutionStatus"
    )
    template = transformer["InputTemplate"]
    placeholders = set(re.findall(r"<([^>]+)>", template))
    assert placeholders == set(transformer["InputPathsMap"])
    assert "genart-dev-stylegan2" in template and "ended <detail-currentPipelineExecutionStatus>" in template


def test_notify_function_runtime_logs_and_environment(stack: SynthesizedStack) -> None:
    _, function = only(stack.json, "AWS::Lambda::Function")
    props = function["Properties"]
    assert props["Runtime"] in ("python3.12", "python3.13")
    assert props["Handler"] == "runtime.lambdas.notify.handler.handler"
    topic_id, _ = only(stack.json, "AWS::SNS::Topic")
    assert props["Environment"]["Variables"]["TOPIC_ARN"] == {"Ref": topic_id}
    log_group_id, _ = only(stack.json, "AWS::Logs::LogGroup")
    assert props["LoggingConfig"]["LogGroup"] == {"Ref": log_group_id}
    assert props["Role"] == {"Fn::GetAtt": [role_id(stack.json, "lambda.amazonaws.com"), "Arn"]}


def test_notify_role_publishes_presigns_grids_and_logs_only(stack: SynthesizedStack) -> None:
    template = stack.json
    topic_id, _ = only(template, "AWS::SNS::Topic")
    actions = {}
    for statement in statements(template, role_id(template, "lambda.amazonaws.com")):
        for action in [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]:
            actions[action] = flatten(statement["Resource"])
    assert set(actions) == {
        "sns:Publish",
        "kms:Decrypt",
        "kms:GenerateDataKey*",
        "s3:GetObject",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }
    assert actions["sns:Publish"] == flatten({"Ref": topic_id})
    assert actions["s3:GetObject"].endswith("/stylegan/runs/*/samples/grid.png")
    (grid_statement,) = [s for s in statements(template, role_id(template, "lambda.amazonaws.com")) if s.get("Sid")]
    assert grid_statement["Action"] == "s3:GetObject" and "ModelsBucket" in json.dumps(grid_statement["Resource"])
    log_group_id, _ = only(template, "AWS::Logs::LogGroup")
    assert actions["logs:PutLogEvents"] == flatten({"Fn::GetAtt": [log_group_id, "Arn"]})


def test_execution_role_is_scoped_to_its_buckets_prefixes_jobs_and_function(stack: SynthesizedStack) -> None:
    template = stack.json
    role = role_id(template, "sagemaker.amazonaws.com")
    sids = by_sid(template, role)
    assert sids["ReadDatasets"]["Action"] == "s3:GetObject"
    assert "DatasetsBucket" in json.dumps(sids["ReadDatasets"]["Resource"])
    assert set(sids["WriteStyleGanArtifacts"]["Action"]) == {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"}
    assert flatten(sids["WriteStyleGanArtifacts"]["Resource"]).endswith("/stylegan/*")
    assert "ModelsBucket" in json.dumps(sids["WriteStyleGanArtifacts"]["Resource"])
    assert flatten(sids["PruneCheckpoints"]["Resource"]).endswith("/stylegan/runs/*/checkpoints/*")
    assert sids["ListStyleGanArtifacts"]["Condition"] == {"StringLike": {"s3:prefix": ["stylegan", "stylegan/*"]}}
    jobs = sids["RunPipelineJobs"]
    assert set(jobs["Action"]) == {
        f"sagemaker:{verb}{kind}Job" for verb in ("Create", "Describe", "Stop") for kind in ("Processing", "Training")
    } | {"sagemaker:AddTags"}
    assert sorted(flatten(r).rsplit(":", 1)[1] for r in jobs["Resource"]) == ["processing-job/*", "training-job/*"]
    assert sids["PassThisRoleToItsJobs"]["Resource"] == {"Fn::GetAtt": [role, "Arn"]}
    assert sids["PassThisRoleToItsJobs"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }
    function_id = next(iter(resources_of_type(template, "AWS::Lambda::Function")))
    assert sids["InvokeNotify"]["Resource"] == {"Fn::GetAtt": [function_id, "Arn"]}
    ecr_pull = [s for s in statements(template, role) if "ecr:BatchGetImage" in s["Action"]]
    assert len(ecr_pull) == 1 and "container-assets" in json.dumps(ecr_pull[0]["Resource"])
    # Nothing writes to the datasets bucket and no statement grants a whole service.
    for statement in statements(template, role):
        actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        assert all(not a.endswith(":*") for a in actions)
        if "DatasetsBucket" in json.dumps(statement["Resource"]):
            assert set(actions) <= {"s3:GetObject", "s3:ListBucket"}


def test_email_subscription_is_added_when_configured() -> None:
    stack = cdk.Stack(cdk.App(), "NotificationsOnly")
    bucket = s3.Bucket(stack, "Models")
    PipelineNotifications(
        stack,
        "Notifications",
        notification_email="ops@example.com",
        models_bucket=bucket,
        grid_key_pattern="stylegan/runs/*/samples/grid.png",
        removal_policy=cdk.RemovalPolicy.DESTROY,
        log_retention=cdk.aws_logs.RetentionDays.ONE_WEEK,
    )
    Template.from_stack(stack).has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"}
    )
