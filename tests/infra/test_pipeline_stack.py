"""Pipeline stack: the SageMaker pipeline and its definition, topic + key, failure rule, notify Lambda, roles.

Assertions say what must hold for a run to work and to be reported: the role the pipeline passes to its jobs can do
exactly what the steps need, a failure reaches the topic, and a success reaches the notify function and the topic.
"""

from __future__ import annotations

import fnmatch
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
from runtime.bot import contract as bot_contract
from runtime.lambdas.notify import contract as notify_contract
from runtime.lambdas.notify import handler as notify_handler
from runtime.pipeline.stylegan2 import contract as pipeline_contract
from tests.infra.intrinsics import as_list, canonical_statements, render, value_of
from tests.infra.synth import SynthesizedApp, SynthesizedStack, resources_of_type, synth_env

ENV_NAME = "dev"
PIPELINE_EVENT_SOURCE = "aws.sagemaker"
PIPELINE_EVENT_TYPE = "SageMaker Model Building Pipeline Execution Status Change"
SAGEMAKER_JOB_LOG_GROUPS = ("/aws/sagemaker/ProcessingJobs", "/aws/sagemaker/TrainingJobs")
ECR_PULL_ACTIONS = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
# account.dkr.ecr.region.suffix/repository:tag (or @digest); a ${...} placeholder may hold colons.
_ECR_IMAGE_URI = re.compile(
    r"(?P<account>[^.]+)\.dkr\.ecr\.(?P<region>[^.]+)\.[^/]+/(?P<repository>(\$\{[^}]*\}|[^:@$])+)[:@][^/]+"
)


@pytest.fixture(scope="module")
def app() -> SynthesizedApp:
    return synth_env(ENV_NAME)


@pytest.fixture(scope="module")
def stack(app: SynthesizedApp) -> SynthesizedStack:
    return app.by_name[f"{app.config.prefix}-Pipeline"]


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


def policy_id_of(template: dict[str, Any], role_id: str) -> str:
    (policy_id,) = [
        pid
        for pid, policy in resources_of_type(template, "AWS::IAM::Policy").items()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
    ]
    return policy_id


def role_id(template: dict[str, Any], service: str) -> str:
    found = [
        logical_id
        for logical_id, role in resources_of_type(template, "AWS::IAM::Role").items()
        if any(
            s["Principal"].get("Service") == service
            for s in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        )
    ]
    assert len(found) == 1, f"expected one role for {service}, found {found}"
    return found[0]


def assert_role_trusts_only(template: dict[str, Any], logical_id: str, service: str) -> None:
    role = template["Resources"][logical_id]["Properties"]
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement == {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": service}}
    assert "ManagedPolicyArns" not in role and "Policies" not in role


def account_arn(service: str, resource: str) -> str:
    """An ARN in this stack's partition, region and account (rendered form)."""
    return f"arn:${{AWS::Partition}}:{service}:${{AWS::Region}}:${{AWS::AccountId}}:{resource}"


def pipeline_arn(name: str) -> str:
    return account_arn("sagemaker", f"pipeline/{name}")


def rendered_definition(stack: SynthesizedStack, app: SynthesizedApp) -> dict[str, Any]:
    _, pipeline = only(stack.json, "AWS::SageMaker::Pipeline")
    return json.loads(render(pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"], app))  # type: ignore[no-any-return]


def step_images(definition: dict[str, Any]) -> set[str]:
    images = set()
    for step in definition["Steps"]:
        arguments = step.get("Arguments", {})
        if "AppSpecification" in arguments:
            images.add(arguments["AppSpecification"]["ImageUri"])
        if "AlgorithmSpecification" in arguments:
            images.add(arguments["AlgorithmSpecification"]["TrainingImage"])
    return images


def repository_arn_of(image_uri: str, app: SynthesizedApp) -> str:
    """The ARN (rendered form) of the Storage stack's repository an image URI pulls from."""
    matched = _ECR_IMAGE_URI.fullmatch(image_uri)
    assert matched, f"not an ECR image URI: {image_uri}"
    storage = app.stacks.storage
    (repository,) = [r for r in storage.image_repositories.values() if r.repository_name == matched["repository"]]
    return value_of(storage, repository.repository.repository_arn, app)


def models_arn(app: SynthesizedApp) -> str:
    storage = app.stacks.storage
    return value_of(storage, storage.models_bucket.bucket_arn, app)


def datasets_arn(app: SynthesizedApp) -> str:
    storage = app.stacks.storage
    return value_of(storage, storage.datasets_bucket.bucket_arn, app)


def test_pipeline_definition_body_is_the_rendered_json_with_resolving_references(stack: SynthesizedStack) -> None:
    _, pipeline = only(stack.json, "AWS::SageMaker::Pipeline")
    props = pipeline["Properties"]
    assert props["PipelineName"] == "genart-dev-stylegan2"
    body = props["PipelineDefinition"]["PipelineDefinitionBody"]
    text = flatten(body)
    assert "${Token[" not in text  # every token resolved to an intrinsic
    definition = json.loads(text)
    assert [step["Name"] for step in definition["Steps"]] == list(STEP_NAMES)
    intrinsics = json.dumps(body)
    assert "PublishOutputRefModelsBucket" in intrinsics and "PublishOutputRefDatasetsBucket" in intrinsics
    assert "/genart-dev/pipeline:" in intrinsics and ".dkr.ecr." in intrinsics  # the image in Storage's repository


def test_step_image_is_a_docker_asset_of_the_step_code_built_at_deploy(stack: SynthesizedStack) -> None:
    outdir = Path(cdk.Stage.of(stack.stack).outdir)  # type: ignore[union-attr]
    manifest = json.loads((outdir / f"{stack.name}.assets.json").read_text())
    (image,) = manifest["dockerImages"].values()
    source = image["source"]
    assert (source["dockerFile"], source["platform"]) == (pipeline_contract.IMAGE_DOCKERFILE, "linux/amd64")
    context = outdir / source["directory"]
    files = {str(p.relative_to(context)) for p in context.rglob("*") if p.is_file()}
    assert {
        "pipeline/Dockerfile",
        "pipeline/requirements.txt",
        "pipeline/container/sagemaker_train.py",
        "pipeline/stylegan2/train.py",
        "pipeline/stylegan2/metrics.py",
        "pipeline/stylegan2/generate.py",
        "common/jsonlog.py",
    } <= files
    assert "pipeline/local_run.py" not in files and not any("__pycache__" in f for f in files)
    assert not any(f.startswith(("bot/", "endpoint/", "lambdas/")) for f in files)


def test_dockerfile_follows_the_sagemaker_container_contract() -> None:
    dockerfile = (PIPELINE_DIR / "Dockerfile").read_text()
    instructions = [line.split(None, 1) for line in dockerfile.splitlines() if line and not line.startswith("#")]
    (base,) = [args for keyword, *args in instructions if keyword == "FROM"]
    # Python 3.11 without a CUDA toolkit: torch's nvidia-* wheels carry CUDA (docs/decisions.md).
    assert re.fullmatch(r"python:3\.11-slim-\w+", base[0].strip())
    # SageMaker expects containers to run as root (AWS "Custom Inference Code with Hosting Services", cited there).
    assert not [args for keyword, *args in instructions if keyword == "USER"]
    assert "expects all containers to run with root users" in dockerfile
    copies = [args[0].split() for keyword, *args in instructions if keyword == "COPY"]
    context = PIPELINE_DIR.parent  # the build context is runtime/ (IMAGE_BUILD_CONTEXT), so common/ ships too
    for source, _ in copies:
        assert (context / source).exists(), f"COPY source {source} is not in the build context"
    assert ["pipeline/stylegan2", "/opt/ml/code/runtime/pipeline/stylegan2"] in copies
    assert ["common", "/opt/ml/code/runtime/common"] in copies
    assert "exec python -m runtime.pipeline.container.sagemaker_train" in dockerfile
    assert "PYTHONPATH=/opt/ml/code" in dockerfile
    assert (
        "pip install --no-cache-dir --require-hashes --no-deps --only-binary=:all: -r /tmp/requirements.txt"
        in dockerfile
    )
    assert not [args for keyword, *args in instructions if keyword in ("ENTRYPOINT", "CMD")]  # SageMaker passes `train`


def test_pipeline_runs_as_the_execution_role_after_its_policy_exists(
    stack: SynthesizedStack, app: SynthesizedApp
) -> None:
    template = stack.json
    execution_role = role_id(template, "sagemaker.amazonaws.com")
    _, pipeline = only(template, "AWS::SageMaker::Pipeline")
    props = pipeline["Properties"]
    assert props["RoleArn"] == {"Fn::GetAtt": [execution_role, "Arn"]}
    # SageMaker validates the definition and runs the steps with this role: its policy must exist first.
    assert policy_id_of(template, execution_role) in pipeline["DependsOn"]
    # SageMaker lower-cases pipeline names in ARNs; the failure rule matches on the ARN.
    assert props["PipelineName"] == props["PipelineName"].lower() == props["PipelineDisplayName"]
    definition = rendered_definition(stack, app)
    job_roles = {step["Arguments"]["RoleArn"] for step in definition["Steps"] if "RoleArn" in step.get("Arguments", {})}
    assert job_roles == {f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/${{{execution_role}}}"}
    (lambda_step,) = [step for step in definition["Steps"] if step["Type"] == "Lambda"]
    function_id, _ = only(template, "AWS::Lambda::Function")
    assert lambda_step["FunctionArn"] == f"${{{function_id}.Arn}}"


def test_execution_role_grants_exactly_what_the_steps_need(stack: SynthesizedStack, app: SynthesizedApp) -> None:
    template = stack.json
    execution_role = role_id(template, "sagemaker.amazonaws.com")
    assert_role_trusts_only(template, execution_role, "sagemaker.amazonaws.com")
    function_id, _ = only(template, "AWS::Lambda::Function")
    (image,) = step_images(rendered_definition(stack, app))
    prefix = pipeline_contract.MODELS_PREFIX
    expected = [
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"{datasets_arn(app)}/*"]},
        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [datasets_arn(app)]},
        {
            "Effect": "Allow",
            "Action": ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
            "Resource": [f"{models_arn(app)}/{prefix}/*"],
        },
        {
            "Effect": "Allow",
            "Action": ["s3:DeleteObject"],
            "Resource": [f"{models_arn(app)}/{pipeline_contract.CHECKPOINT_KEY_PATTERN}"],
        },
        {
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [models_arn(app)],
            "Condition": {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}},
        },
        {
            "Effect": "Allow",
            "Action": [
                "sagemaker:AddTags",
                "sagemaker:CreateProcessingJob",
                "sagemaker:CreateTrainingJob",
                "sagemaker:DescribeProcessingJob",
                "sagemaker:DescribeTrainingJob",
                "sagemaker:StopProcessingJob",
                "sagemaker:StopTrainingJob",
            ],
            "Resource": [account_arn("sagemaker", f"{kind}-job/*") for kind in ("processing", "training")],
        },
        {
            "Effect": "Allow",
            "Action": ["iam:PassRole"],
            "Resource": [f"${{{execution_role}.Arn}}"],
            "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        },
        {"Effect": "Allow", "Action": ["lambda:InvokeFunction"], "Resource": [f"${{{function_id}.Arn}}"]},
        {"Effect": "Allow", "Action": ECR_PULL_ACTIONS, "Resource": [repository_arn_of(image, app)]},
        {"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": ["*"]},
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
            "Resource": [account_arn("logs", f"log-group:{group}:*") for group in SAGEMAKER_JOB_LOG_GROUPS],
        },
        {
            "Effect": "Allow",
            "Action": ["cloudwatch:PutMetricData"],
            "Resource": ["*"],
            "Condition": {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
        },
    ]
    assert canonical_statements(statements(template, execution_role), app) == canonical_statements(expected, app)


def test_execution_role_can_publish_the_model_the_bot_reads(stack: SynthesizedStack, app: SynthesizedApp) -> None:
    template = stack.json
    writable = [
        resource
        for statement in statements(template, role_id(template, "sagemaker.amazonaws.com"))
        if "s3:PutObject" in as_list(statement["Action"])
        for resource in (render(r, app) for r in as_list(statement["Resource"]))
    ]
    published = f"{models_arn(app)}/{bot_contract.DEFAULT_MODEL_KEY}"
    assert bot_contract.DEFAULT_MODEL_KEY == pipeline_contract.PUBLISHED_MODEL_KEY
    assert any(fnmatch.fnmatchcase(published, pattern) for pattern in writable), writable
    # ...and nothing outside the StyleGAN prefix of the models bucket.
    assert all(pattern.startswith(f"{models_arn(app)}/{pipeline_contract.MODELS_PREFIX}/") for pattern in writable)


def test_every_step_runs_the_image_the_role_can_pull(stack: SynthesizedStack, app: SynthesizedApp) -> None:
    images = step_images(rendered_definition(stack, app))
    assert len(images) == 1, images
    (image,) = images
    pull = [
        s
        for s in statements(stack.json, role_id(stack.json, "sagemaker.amazonaws.com"))
        if "ecr:BatchGetImage" in as_list(s["Action"])
    ]
    assert len(pull) == 1
    assert render(pull[0]["Resource"], app) == repository_arn_of(image, app)


def test_topic_is_encrypted_with_the_stacks_rotating_key(stack: SynthesizedStack) -> None:
    key_id, key = only(stack.json, "AWS::KMS::Key")
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["Properties"].get("Enabled", True) is True
    assert key["Properties"].get("KeySpec", "SYMMETRIC_DEFAULT") == "SYMMETRIC_DEFAULT"
    _, topic = only(stack.json, "AWS::SNS::Topic")
    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert "Subscription" not in topic["Properties"]
    assert resources_of_type(stack.json, "AWS::SNS::Subscription") == {}  # dev sets no notification_email


def test_key_policy_lets_the_account_administer_and_eventbridge_encrypt_for_the_topic(
    stack: SynthesizedStack, app: SynthesizedApp
) -> None:
    _, key = only(stack.json, "AWS::KMS::Key")
    rendered = [
        {**s, "Principal": {kind: render(who, app) for kind, who in s["Principal"].items()}}
        for s in key["Properties"]["KeyPolicy"]["Statement"]
    ]
    account_root = {"AWS": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
    assert canonical_statements(rendered, app) == canonical_statements(
        [
            # IAM policies of this account decide (the notify role's kms grant relies on it).
            {"Effect": "Allow", "Principal": account_root, "Action": ["kms:*"], "Resource": ["*"]},
            # The failure rule's SNS target: EventBridge encrypts what it publishes to the topic.
            {
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": ["*"],
            },
        ],
        app,
    )


def test_topic_policy_denies_plaintext_publishing_and_lets_eventbridge_publish(
    stack: SynthesizedStack, app: SynthesizedApp
) -> None:
    topic_id, _ = only(stack.json, "AWS::SNS::Topic")
    _, policy = only(stack.json, "AWS::SNS::TopicPolicy")
    assert policy["Properties"]["Topics"] == [{"Ref": topic_id}]
    topic = f"${{{topic_id}}}"
    assert canonical_statements(policy["Properties"]["PolicyDocument"]["Statement"], app) == canonical_statements(
        [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": ["sns:Publish"],
                "Resource": [topic],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            {
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": ["sns:Publish"],
                "Resource": [topic],
            },
        ],
        app,
    )


def test_failure_rule_matches_failed_or_stopped_runs_of_this_pipeline_and_targets_the_topic(
    stack: SynthesizedStack, app: SynthesizedApp
) -> None:
    _, rule = only(stack.json, "AWS::Events::Rule")
    props = rule["Properties"]
    assert props["State"] == "ENABLED"
    assert "EventBusName" not in props  # the default bus, where SageMaker sends its events
    _, pipeline = only(stack.json, "AWS::SageMaker::Pipeline")
    pattern = json.loads(json.dumps(props["EventPattern"]))
    pattern["detail"]["pipelineArn"] = [render(arn, app) for arn in pattern["detail"]["pipelineArn"]]
    assert pattern == {
        "source": [PIPELINE_EVENT_SOURCE],
        "detail-type": [PIPELINE_EVENT_TYPE],
        "detail": {
            "pipelineArn": [pipeline_arn(pipeline["Properties"]["PipelineName"])],
            "currentPipelineExecutionStatus": ["Failed", "Stopped"],
        },
    }
    target, ops = props["Targets"]
    topic_id, _ = only(stack.json, "AWS::SNS::Topic")
    assert target["Arn"] == {"Ref": topic_id}
    # The same message also reaches the one ops-alerts topic of the Storage stack.
    storage = app.stacks.storage
    assert render(ops["Arn"], app) == value_of(storage, storage.ops_alerts.topic_arn, app)
    assert ops["InputTransformer"] == target["InputTransformer"]
    assert "RoleArn" not in target and "RoleArn" not in ops  # SNS targets use the topic policy, not a role


def test_failure_message_names_the_pipeline_execution_and_its_status(stack: SynthesizedStack) -> None:
    _, rule = only(stack.json, "AWS::Events::Rule")
    target, _ = rule["Properties"]["Targets"]
    transformer = target["InputTransformer"]
    assert transformer["InputPathsMap"] == {
        "detail-pipelineExecutionDisplayName": "$.detail.pipelineExecutionDisplayName",
        "detail-currentPipelineExecutionStatus": "$.detail.currentPipelineExecutionStatus",
        "detail-pipelineExecutionArn": "$.detail.pipelineExecutionArn",
        "detail-executionStartTime": "$.detail.executionStartTime",
        "detail-executionEndTime": "$.detail.executionEndTime",
    }
    template = transformer["InputTemplate"]
    placeholders = set(re.findall(r"<([^>]+)>", template))
    assert placeholders == set(transformer["InputPathsMap"])
    assert "genart-dev-stylegan2" in template and "ended <detail-currentPipelineExecutionStatus>" in template


def test_notify_function_runtime_handler_environment_role_and_logs(stack: SynthesizedStack) -> None:
    template = stack.json
    function_id, function = only(template, "AWS::Lambda::Function")
    props = function["Properties"]
    assert props["Runtime"] == "python3.11"  # the one Python the tests, images and bot host run (docs/decisions.md)
    assert props["Architectures"] == ["arm64"]
    assert props["Handler"] == "runtime.lambdas.notify.handler.handler"
    assert callable(notify_handler.handler)
    assert 10 <= props["Timeout"] <= 300 and props["MemorySize"] >= 128
    topic_id, _ = only(template, "AWS::SNS::Topic")
    assert props["Environment"]["Variables"] == {
        notify_contract.ENV_TOPIC_ARN: {"Ref": topic_id},
        notify_contract.ENV_LINK_EXPIRY_SECONDS: str(notify_contract.DEFAULT_LINK_EXPIRY_SECONDS),
    }
    notify_role = role_id(template, "lambda.amazonaws.com")
    assert props["Role"] == {"Fn::GetAtt": [notify_role, "Arn"]}
    assert policy_id_of(template, notify_role) in function["DependsOn"]
    log_group_id, log_group = only(template, "AWS::Logs::LogGroup")
    assert props["LoggingConfig"] == {"LogGroup": {"Ref": log_group_id}}
    assert log_group["Properties"]["RetentionInDays"] == 30
    assert function_id in json.dumps(template["Outputs"]["NotifyFunctionName"])


def test_notify_function_code_is_its_package_with_the_shared_log_module(stack: SynthesizedStack) -> None:
    _, function = only(stack.json, "AWS::Lambda::Function")
    key = function["Properties"]["Code"]["S3Key"]
    outdir = Path(cdk.Stage.of(stack.stack).outdir)  # type: ignore[union-attr]
    manifest = json.loads((outdir / f"{stack.name}.assets.json").read_text())
    (source,) = [
        asset["source"]
        for asset in manifest["files"].values()
        if any(d["objectKey"] == key for d in asset["destinations"].values())
    ]
    root = outdir / source["path"]
    files = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert {
        "__init__.py",
        "lambdas/__init__.py",
        "lambdas/notify/__init__.py",
        "lambdas/notify/handler.py",
        "lambdas/notify/contract.py",
        "common/jsonlog.py",
    } <= files
    assert not any(f.startswith(("bot/", "endpoint/", "pipeline/")) for f in files)
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)


def test_notify_role_publishes_presigns_grids_and_logs_only(stack: SynthesizedStack, app: SynthesizedApp) -> None:
    template = stack.json
    notify_role = role_id(template, "lambda.amazonaws.com")
    assert_role_trusts_only(template, notify_role, "lambda.amazonaws.com")
    topic_id, _ = only(template, "AWS::SNS::Topic")
    key_id, _ = only(template, "AWS::KMS::Key")
    log_group_id, _ = only(template, "AWS::Logs::LogGroup")
    assert pipeline_contract.SAMPLE_GRID_KEY_PATTERN.endswith(f"/{notify_contract.SAMPLE_GRID_FILE}")
    expected = [
        {"Effect": "Allow", "Action": ["sns:Publish"], "Resource": [f"${{{topic_id}}}"]},
        {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": [f"${{{key_id}.Arn}}"]},
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [f"{models_arn(app)}/{pipeline_contract.SAMPLE_GRID_KEY_PATTERN}"],
        },
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [f"${{{log_group_id}.Arn}}"],
        },
    ]
    assert canonical_statements(statements(template, notify_role), app) == canonical_statements(expected, app)


def test_outputs_name_the_pipeline_topic_function_and_image(stack: SynthesizedStack, app: SynthesizedApp) -> None:
    template = stack.json
    _, pipeline = only(template, "AWS::SageMaker::Pipeline")
    name = pipeline["Properties"]["PipelineName"]
    topic_id, _ = only(template, "AWS::SNS::Topic")
    function_id, _ = only(template, "AWS::Lambda::Function")
    values = {key: output["Value"] for key, output in template["Outputs"].items()}
    assert values["PipelineName"] == name
    assert render(values["PipelineArn"], app) == pipeline_arn(name)
    assert values["TopicArn"] == {"Ref": topic_id}
    assert values["NotifyFunctionName"] == {"Ref": function_id}
    assert {render(values["StepImageUri"], app)} == step_images(rendered_definition(stack, app))


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
