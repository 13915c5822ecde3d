"""Pipeline stack: the SageMaker pipeline and its definition, topic + key, failure rule, the function, two roles.

Assertions say what must hold for a run to work and to be reported, and no more: the job role can do exactly what
the jobs need, the pipeline role only starts them, invokes the function and reads the gate's report, only the
function's publish step can write stylegan/latest.onnx, and every service grant is tied to this account and source.
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
from tests.infra.pipeline_expressions import Execution, all_steps
from tests.infra.synth import SynthesizedApp, SynthesizedStack, resources_of_type, synth_env

ENV_NAME = "dev"
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
        "pipeline/quality/measure.py",
        "pipeline/quality/extractor.py",
        "pipeline/archives.py",
        "common/jsonlog.py",
    } <= files
    assert "pipeline/local_run.py" not in files and not any("__pycache__" in f for f in files)
    assert "pipeline/quality/upload_extractor.py" not in files  # an operator tool (boto3), not a step
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
    assert ["pipeline/quality", "/opt/ml/code/runtime/pipeline/quality"] in copies
    assert ["pipeline/archives.py", "/opt/ml/code/runtime/pipeline/archives.py"] in copies
    assert ["common", "/opt/ml/code/runtime/common"] in copies
    assert "exec python -m runtime.pipeline.container.sagemaker_train" in dockerfile
    assert "PYTHONPATH=/opt/ml/code" in dockerfile
    assert (
        "pip install --no-cache-dir --require-hashes --no-deps --only-binary=:all: -r /tmp/requirements.txt"
        in dockerfile
    )
    assert not [args for keyword, *args in instructions if keyword in ("ENTRYPOINT", "CMD")]  # SageMaker passes `train`
    ignore = (PIPELINE_DIR / "Dockerfile.dockerignore").read_text().splitlines()
    assert [line for line in ignore if line and not line.startswith("#")] == list(pipeline_contract.IMAGE_EXCLUDES)


def named_role(template: dict[str, Any], name: str) -> str:
    """Logical id of one of the PipelineRoles construct's roles (JobRole or PipelineRole)."""
    (found,) = [
        logical_id
        for logical_id in resources_of_type(template, "AWS::IAM::Role")
        if logical_id.startswith(f"Roles{name}")
    ]
    return found


def test_pipeline_runs_as_the_pipeline_role_and_passes_the_job_role_to_its_jobs(
    stack: SynthesizedStack, app: SynthesizedApp
) -> None:
    template = stack.json
    pipeline_role, job_role = named_role(template, "PipelineRole"), named_role(template, "JobRole")
    assert pipeline_role != job_role
    for role in (pipeline_role, job_role):
        assert_role_trusts_only(template, role, "sagemaker.amazonaws.com")
    _, pipeline = only(template, "AWS::SageMaker::Pipeline")
    props = pipeline["Properties"]
    assert props["RoleArn"] == {"Fn::GetAtt": [pipeline_role, "Arn"]}
    # SageMaker validates the definition and runs the steps with these roles: their policies must exist first.
    assert {policy_id_of(template, pipeline_role), policy_id_of(template, job_role)} <= set(pipeline["DependsOn"])
    # SageMaker lower-cases pipeline names in ARNs; the failure rule matches on the ARN.
    assert props["PipelineName"] == props["PipelineName"].lower() == props["PipelineDisplayName"]
    definition = rendered_definition(stack, app)
    steps = all_steps(definition)
    job_roles = {step["Arguments"]["RoleArn"] for step in steps.values() if "RoleArn" in step.get("Arguments", {})}
    assert job_roles == {f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/${{{job_role}}}"}
    function_id, _ = only(template, "AWS::Lambda::Function")
    lambda_steps = [step for step in steps.values() if step["Type"] == "Lambda"]
    assert len(lambda_steps) == 4
    assert {step["FunctionArn"] for step in lambda_steps} == {f"${{{function_id}.Arn}}"}


def test_job_role_grants_exactly_what_the_jobs_need(stack: SynthesizedStack, app: SynthesizedApp) -> None:
    template = stack.json
    (image,) = step_images(rendered_definition(stack, app))
    models = models_arn(app)
    runs, checkpoints = pipeline_contract.RUNS_PREFIX, pipeline_contract.CHECKPOINTS_PREFIX
    extractor = pipeline_contract.FEATURE_EXTRACTOR_PREFIX
    expected = [
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"{datasets_arn(app)}/*"]},
        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [datasets_arn(app)]},
        {
            "Effect": "Allow",
            "Action": ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
            "Resource": [f"{models}/{runs}/*"],
        },
        {
            "Effect": "Allow",
            "Action": ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
            "Resource": [f"{models}/{checkpoints}/*"],
        },
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"{models}/{extractor}/*"]},
        {
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [models],
            "Condition": {"StringLike": {"s3:prefix": [f"{runs}/*", f"{checkpoints}/*", f"{extractor}/*"]}},
        },
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
    job_role = named_role(template, "JobRole")
    assert canonical_statements(statements(template, job_role), app) == canonical_statements(expected, app)


def test_pipeline_role_starts_jobs_passes_only_the_job_role_and_invokes_only_the_function(
    stack: SynthesizedStack, app: SynthesizedApp
) -> None:
    template = stack.json
    function_id, _ = only(template, "AWS::Lambda::Function")
    expected = [
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
            "Resource": [f"${{{named_role(template, 'JobRole')}.Arn}}"],
            "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        },
        {"Effect": "Allow", "Action": ["lambda:InvokeFunction"], "Resource": [f"${{{function_id}.Arn}}"]},
        # The quality gate's JsonGet reads quality.json with the pipeline's role.
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [f"{models_arn(app)}/{pipeline_contract.QUALITY_KEY_PATTERN}"],
        },
    ]
    pipeline_role = named_role(template, "PipelineRole")
    assert canonical_statements(statements(template, pipeline_role), app) == canonical_statements(expected, app)
    definition = rendered_definition(stack, app)
    (export,) = [s for s in all_steps(definition).values() if s.get("PropertyFiles")]
    (quality,) = [o for o in export["Arguments"]["ProcessingOutputConfig"]["Outputs"] if o["OutputName"] == "quality"]
    uri = Execution(definition).resolve(quality["S3Output"]["S3Uri"])
    storage = app.stacks.storage
    prefix = uri.removeprefix(f"s3://{value_of(storage, storage.models_bucket.bucket_name, app)}/")
    key = f"{prefix}/{export['PropertyFiles'][0]['FilePath']}"
    assert fnmatch.fnmatchcase(key, pipeline_contract.QUALITY_KEY_PATTERN), key


def writers_of(template: dict[str, Any], app: SynthesizedApp, key: str) -> set[str]:
    """Logical ids of the roles whose policies allow s3:PutObject on the models bucket's `key`."""
    target = f"{models_arn(app)}/{key}"
    found = set()
    for policy in resources_of_type(template, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = as_list(statement["Action"])
            if statement["Effect"] != "Allow" or not any(fnmatch.fnmatchcase("s3:PutObject", a) for a in actions):
                continue
            if any(fnmatch.fnmatchcase(target, render(r, app)) for r in as_list(statement["Resource"])):
                found |= {role["Ref"] for role in policy["Properties"]["Roles"]}
    return found


def test_only_the_publish_step_can_write_the_model_the_bot_reads(stack: SynthesizedStack, app: SynthesizedApp) -> None:
    template = stack.json
    assert bot_contract.DEFAULT_MODEL_KEY == pipeline_contract.PUBLISHED_MODEL_KEY
    function_role = role_id(template, "lambda.amazonaws.com")
    assert writers_of(template, app, pipeline_contract.PUBLISHED_MODEL_KEY) == {function_role}
    # ...while the jobs write their own run's artifacts and checkpoints.
    job_role = named_role(template, "JobRole")
    assert writers_of(template, app, "stylegan/runs/exec1/samples/generator.onnx") == {job_role}
    assert writers_of(template, app, "stylegan/checkpoints/exec1/checkpoint-000000004000.pt") == {job_role}
    assert writers_of(template, app, "stylegan/feature-extractor/extractor.pt") == set()  # the operator uploads it
    # The function copies from exactly the file the export step writes.
    function_reads = [
        render(r, app)
        for s in statements(template, function_role)
        if "s3:GetObject" in as_list(s["Action"])
        for r in as_list(s["Resource"])
    ]
    exported = f"{models_arn(app)}/stylegan/runs/exec1/samples/{pipeline_contract.EXPORTED_MODEL_FILE}"
    assert any(fnmatch.fnmatchcase(exported, pattern) for pattern in function_reads)


def test_every_step_runs_the_image_the_job_role_can_pull(stack: SynthesizedStack, app: SynthesizedApp) -> None:
    images = step_images(rendered_definition(stack, app))
    assert len(images) == 1, images
    (image,) = images
    for role, count in ((named_role(stack.json, "JobRole"), 1), (named_role(stack.json, "PipelineRole"), 0)):
        pull = [s for s in statements(stack.json, role) if "ecr:BatchGetImage" in as_list(s["Action"])]
        assert len(pull) == count
    (pull,) = [
        s
        for s in statements(stack.json, named_role(stack.json, "JobRole"))
        if "ecr:BatchGetImage" in as_list(s["Action"])
    ]
    assert render(pull["Resource"], app) == repository_arn_of(image, app)


def test_topic_is_encrypted_with_the_stacks_rotating_key(stack: SynthesizedStack) -> None:
    key_id, key = only(stack.json, "AWS::KMS::Key")
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["Properties"].get("Enabled", True) is True
    assert key["Properties"].get("KeySpec", "SYMMETRIC_DEFAULT") == "SYMMETRIC_DEFAULT"
    _, topic = only(stack.json, "AWS::SNS::Topic")
    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert "Subscription" not in topic["Properties"]
    assert resources_of_type(stack.json, "AWS::SNS::Subscription") == {}  # dev sets no notification_email


def service_grants(template: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(resource id, service, conditions) of every grant to an AWS service principal except role trust policies."""
    grants = []
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Lambda::Permission" and str(props.get("Principal", "")).endswith(".amazonaws.com"):
            conditions = {"ArnLike": {"aws:SourceArn": props.get("SourceArn")}} if "SourceArn" in props else {}
            if "SourceAccount" in props:
                conditions["StringEquals"] = {"aws:SourceAccount": props["SourceAccount"]}
            grants.append((logical_id, props["Principal"], conditions))
        document = props.get("PolicyDocument") or props.get("KeyPolicy")
        if resource["Type"] == "AWS::IAM::Role" or not document:
            continue
        for statement in document["Statement"]:
            principal = statement.get("Principal")
            services = as_list(principal.get("Service", [])) if isinstance(principal, dict) else []
            grants += [(logical_id, service, statement.get("Condition", {})) for service in services]
    return grants


def test_every_service_principal_grant_is_tied_to_this_account_and_source(stack: SynthesizedStack) -> None:
    """No confused deputy: EventBridge (and any other service) acts here only for this stack's own resources."""
    grants = service_grants(stack.json)
    assert {service for _, service, _ in grants} == {"events.amazonaws.com"}  # the failure rule invoking the function
    for logical_id, service, conditions in grants:
        keys = {key for operator_conditions in conditions.values() for key in operator_conditions}
        assert {"aws:SourceArn", "aws:SourceAccount"} <= keys, (logical_id, service, conditions)
        assert conditions["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    ((_, _, conditions),) = grants
    rule_id, _ = only(stack.json, "AWS::Events::Rule")
    assert conditions["ArnLike"]["aws:SourceArn"] == {"Fn::GetAtt": [rule_id, "Arn"]}


def test_topic_and_key_admit_no_service_principal(stack: SynthesizedStack, app: SynthesizedApp) -> None:
    _, key = only(stack.json, "AWS::KMS::Key")
    principals = [s["Principal"] for s in key["Properties"]["KeyPolicy"]["Statement"]]
    # IAM policies of this account decide (the function role's kms grant relies on it); no service is named.
    assert [{kind: render(who, app) for kind, who in p.items()} for p in principals] == [
        {"AWS": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
    ]
    topic_id, _ = only(stack.json, "AWS::SNS::Topic")
    _, policy = only(stack.json, "AWS::SNS::TopicPolicy")
    assert policy["Properties"]["Topics"] == [{"Ref": topic_id}]
    assert canonical_statements(policy["Properties"]["PolicyDocument"]["Statement"], app) == canonical_statements(
        [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": ["sns:Publish"],
                "Resource": [f"${{{topic_id}}}"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
        app,
    )


def test_failure_rule_sends_failed_or_stopped_runs_of_this_pipeline_to_the_function(
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
        "source": [notify_contract.PIPELINE_EVENT_SOURCE],
        "detail-type": [notify_contract.PIPELINE_EVENT_TYPE],
        "detail": {
            "pipelineArn": [pipeline_arn(pipeline["Properties"]["PipelineName"])],
            "currentPipelineExecutionStatus": ["Failed", "Stopped"],
        },
    }
    (target,) = props["Targets"]
    function_id, _ = only(stack.json, "AWS::Lambda::Function")
    assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    # The whole event, untouched: the function formats it (no EventBridge input template, no quoting artefacts).
    assert not {"Input", "InputPath", "InputTransformer"} & set(target)
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 4
    _, permission = only(stack.json, "AWS::Lambda::Permission")
    assert permission["Properties"]["FunctionName"] == {"Fn::GetAtt": [function_id, "Arn"]}
    assert permission["Properties"]["Principal"] == "events.amazonaws.com"


def test_notify_function_runtime_handler_environment_role_and_logs(
    stack: SynthesizedStack, app: SynthesizedApp
) -> None:
    template = stack.json
    function_id, function = only(template, "AWS::Lambda::Function")
    props = function["Properties"]
    assert props["Runtime"] == "python3.11"  # the one Python the tests, images and bot host run (docs/decisions.md)
    assert props["Architectures"] == ["arm64"]
    assert props["Handler"] == "runtime.lambdas.notify.handler.handler"
    assert callable(notify_handler.handler)
    assert 60 <= props["Timeout"] <= 300 and props["MemorySize"] >= 128
    topic_id, _ = only(template, "AWS::SNS::Topic")
    variables = props["Environment"]["Variables"]
    storage = app.stacks.storage
    assert {name: render(value, app) for name, value in variables.items()} == {
        notify_contract.ENV_TOPIC_ARN: f"${{{topic_id}}}",
        notify_contract.ENV_OPS_TOPIC_ARN: value_of(storage, storage.ops_alerts.topic_arn, app),
        notify_contract.ENV_MODELS_BUCKET: value_of(storage, storage.models_bucket.bucket_name, app),
        notify_contract.ENV_DATASETS_BUCKET: value_of(storage, storage.datasets_bucket.bucket_name, app),
        notify_contract.ENV_LINK_EXPIRY_SECONDS: str(notify_contract.DEFAULT_LINK_EXPIRY_SECONDS),
    }
    notify_role = role_id(template, "lambda.amazonaws.com")
    assert props["Role"] == {"Fn::GetAtt": [notify_role, "Arn"]}
    log_group_id, log_group = only(template, "AWS::Logs::LogGroup")
    assert props["LoggingConfig"]["LogGroup"] == {"Ref": log_group_id}
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


def test_function_role_publishes_copies_the_generator_checks_inputs_and_lists_steps_only(
    stack: SynthesizedStack, app: SynthesizedApp
) -> None:
    template = stack.json
    notify_role = role_id(template, "lambda.amazonaws.com")
    assert_role_trusts_only(template, notify_role, "lambda.amazonaws.com")
    topic_id, _ = only(template, "AWS::SNS::Topic")
    key_id, _ = only(template, "AWS::KMS::Key")
    log_group_id, _ = only(template, "AWS::Logs::LogGroup")
    _, pipeline = only(template, "AWS::SageMaker::Pipeline")
    storage = app.stacks.storage
    models = models_arn(app)
    assert pipeline_contract.SAMPLE_GRID_KEY_PATTERN.endswith(f"/{notify_contract.SAMPLE_GRID_FILE}")
    expected = [
        # Its topic and, for failures, the ops-alerts topic of the Storage stack (with their keys).
        {
            "Effect": "Allow",
            "Action": ["sns:Publish"],
            "Resource": [f"${{{topic_id}}}", value_of(storage, storage.ops_alerts.topic_arn, app)],
        },
        {
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
            "Resource": [f"${{{key_id}.Arn}}", value_of(storage, storage.ops_alerts.encrypted.key.key_arn, app)],
        },
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [f"{models}/{pipeline_contract.SAMPLE_GRID_KEY_PATTERN}"],
        },
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [f"{models}/{pipeline_contract.EXPORTED_MODEL_KEY_PATTERN}"],
        },
        {
            "Effect": "Allow",
            "Action": ["s3:PutObject"],
            "Resource": [f"{models}/{pipeline_contract.PUBLISHED_MODEL_KEY}"],
        },
        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [datasets_arn(app)]},
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [f"{models}/{pipeline_contract.FEATURE_EXTRACTOR_PREFIX}/*"],
        },
        {
            "Effect": "Allow",
            "Action": ["sagemaker:ListPipelineExecutionSteps"],
            "Resource": [account_arn("sagemaker", f"pipeline/{pipeline['Properties']['PipelineName']}/execution/*")],
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
    PipelineNotifications(
        stack,
        "Notifications",
        notification_email="ops@example.com",
        models_bucket=s3.Bucket(stack, "Models"),
        datasets_bucket=s3.Bucket(stack, "Datasets"),
        pipeline_execution_arns="arn:aws:sagemaker:eu-west-1:123456789012:pipeline/p/execution/*",
        ops_alerts=None,
        removal_policy=cdk.RemovalPolicy.DESTROY,
        log_retention=cdk.aws_logs.RetentionDays.ONE_WEEK,
    )
    template = Template.from_stack(stack)
    template.has_resource_properties("AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"})
    # Without an ops-alerts topic, failures go to the pipeline topic only.
    (function,) = template.find_resources("AWS::Lambda::Function").values()
    assert notify_contract.ENV_OPS_TOPIC_ARN not in function["Properties"]["Environment"]["Variables"]
