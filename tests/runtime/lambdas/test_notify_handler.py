"""The pipeline's function against moto SNS/SQS/S3 (SageMaker stubbed): validate, publish, notify, failures."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from runtime.lambdas.notify import contract, messages
from runtime.lambdas.notify import handler as notify

REGION = "eu-west-1"
MODELS = "genart-models-test"
DATASETS = "genart-datasets-test"


EXECUTION_ARN = "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/genart-dev-stylegan2/execution/abc123"


def good_event(action: str = contract.ACTION_NOTIFY_PUBLISHED) -> dict[str, Any]:
    return {
        "action": action,
        "pipeline_name": "genart-dev-stylegan2",
        "execution_arn": EXECUTION_ARN,
        "execution_id": "abc123",
        "dataset_uri": f"s3://{MODELS}/stylegan/runs/abc123/dataset",
        "training_artifacts_uri": f"s3://{MODELS}/stylegan/runs/abc123/training/job/output/model.tar.gz",
        "samples_uri": f"s3://{MODELS}/stylegan/runs/abc123/samples",
        "model_uri": f"s3://{MODELS}/stylegan/latest.onnx",
        "version_id": "v2",
        "kimg": 1000,
        "fid": 23.456,
        "kid": 0.0123,
        "finite": 1,
        "max_fid": -1.0,
    }


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The handler configures root logging on its first call; give every test a fresh first call."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    monkeypatch.setattr(notify, "_logging_configured", False)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Moto account with the topic and a queue subscribed to it (to read what was published)."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LINK_EXPIRY_SECONDS", raising=False)
    with mock_aws():
        sns = boto3.client("sns", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        topic_arn = sns.create_topic(Name="genart-pipeline")["TopicArn"]
        queue_url = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(
            TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "false"}
        )
        ops_arn = sns.create_topic(Name="ops-alerts")["TopicArn"]
        ops_url = sqs.create_queue(QueueName="ops")["QueueUrl"]
        ops_queue = sqs.get_queue_attributes(QueueUrl=ops_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=ops_arn, Protocol="sqs", Endpoint=ops_queue)
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in (MODELS, DATASETS):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_bucket_versioning(Bucket=MODELS, VersioningConfiguration={"Status": "Enabled"})
        monkeypatch.setenv("TOPIC_ARN", topic_arn)
        monkeypatch.setenv("OPS_TOPIC_ARN", ops_arn)
        monkeypatch.setenv("MODELS_BUCKET", MODELS)
        monkeypatch.setenv("DATASETS_BUCKET", DATASETS)
        yield {"topic_arn": topic_arn, "queue_url": queue_url, "ops_url": ops_url}


def received(queue_url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", region_name=REGION)
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def assert_plain_text(body: str) -> None:
    """What an email client shows as-is: no JSON quoting, no escaped newlines, no template placeholders."""
    assert '"' not in body and "\\n" not in body and "<detail" not in body
    assert all(line == line.strip() for line in body.splitlines())


def test_published_run_reports_score_locations_and_a_presigned_grid_link(aws: dict[str, str]) -> None:
    result = notify.handler(good_event(), None)

    (envelope,) = received(aws["queue_url"])
    assert result == {"message_id": envelope["MessageId"]}
    assert envelope["Subject"] == "GenArt StyleGAN2 run abc123 published (FID 23.46, KID 0.01230)"
    body = envelope["Message"]
    assert_plain_text(body)
    lines = body.splitlines()
    assert lines[:3] == [
        "GenArt StyleGAN2 pipeline genart-dev-stylegan2",
        "Execution: abc123",
        "Status: Succeeded, generator published",
    ]
    assert "Quality: FID 23.46, KID 0.01230" in lines
    assert "Threshold: MaxFid -1 (negative: publish always)" in lines
    assert f"Published generator: s3://{MODELS}/stylegan/latest.onnx (version v2)" in lines
    assert f"Training artifacts: s3://{MODELS}/stylegan/runs/abc123/training/job/output/model.tar.gz" in lines
    assert "Training length: 1000 kimg" in lines
    url = next(word for word in body.split() if word.startswith("https://"))
    parsed = urlparse(url)
    assert parsed.path.endswith("/stylegan/runs/abc123/samples/grid.png")
    assert MODELS in parsed.netloc + parsed.path
    query = parse_qs(parsed.query)
    assert query["X-Amz-Expires"] == [str(notify.DEFAULT_LINK_EXPIRY_SECONDS)]
    assert "X-Amz-Signature" in query
    assert received(aws["ops_url"]) == []  # a good run is not an ops alert


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"fid": 80.5, "max_fid": 50}, "Why: FID 80.50 is not below MaxFid 50"),
        ({"finite": 0, "fid": 1e9}, "Why: the generated images are not finite (NaN or infinity): training diverged"),
    ],
)
def test_trained_but_not_published_says_why_with_score_and_grid(
    aws: dict[str, str], changes: dict[str, Any], why: str
) -> None:
    event = {**good_event(contract.ACTION_NOTIFY_NOT_PUBLISHED), **changes}
    del event["model_uri"], event["version_id"]
    notify.handler(event, None)
    (envelope,) = received(aws["queue_url"])
    assert envelope["Subject"] == "GenArt StyleGAN2 run abc123 trained but not published"
    body = envelope["Message"]
    assert_plain_text(body)
    assert "Status: Succeeded, trained but not published" in body and why in body
    assert "stylegan/latest.onnx is unchanged" in body
    assert ("Quality: FID 80.50" in body) != ("not measured" in body)
    assert "/stylegan/runs/abc123/samples/grid.png?" in body
    exported = f"aws s3 cp s3://{MODELS}/stylegan/runs/abc123/samples/generator.onnx"
    assert (exported in body) == (event["finite"] == 1)  # a diverged generator is not exported at all


def test_publish_copies_the_runs_generator_to_latest_with_its_score(aws: dict[str, str]) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=MODELS, Key="stylegan/latest.onnx", Body=b"old generator")
    s3.put_object(Bucket=MODELS, Key="stylegan/runs/abc123/samples/generator.onnx", Body=b"new generator")
    result = notify.handler(good_event(contract.ACTION_PUBLISH), None)
    latest = s3.get_object(Bucket=MODELS, Key="stylegan/latest.onnx")
    assert latest["Body"].read() == b"new generator"
    assert result == {"model_uri": f"s3://{MODELS}/stylegan/latest.onnx", "version_id": latest["VersionId"]}
    assert latest["Metadata"] == {
        "pipeline": "genart-dev-stylegan2",
        "execution-id": "abc123",
        "source": f"s3://{MODELS}/stylegan/runs/abc123/samples/generator.onnx",
        "fid": "23.456",
        "kid": "0.0123",
        "max-fid": "-1.0",
    }
    versions = s3.list_object_versions(Bucket=MODELS, Prefix="stylegan/latest.onnx")["Versions"]
    assert len(versions) == 2  # the previous generator stays restorable
    assert received(aws["queue_url"]) == []  # publishing and telling are separate steps


@pytest.mark.parametrize(
    "samples_uri", [f"s3://{DATASETS}/stylegan/runs/abc123/samples", f"s3://{MODELS}/diffusion/x/samples"]
)
def test_publish_copies_only_from_the_runs_prefix_of_the_models_bucket(aws: dict[str, str], samples_uri: str) -> None:
    with pytest.raises(notify.InputError, match="samples_uri must lie under s3://genart-models-test/stylegan/runs/"):
        notify.handler({**good_event(contract.ACTION_PUBLISH), "samples_uri": samples_uri}, None)


def test_link_expiry_comes_from_the_environment_and_is_clamped(
    aws: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LINK_EXPIRY_SECONDS", str(30 * 24 * 3600))
    notify.handler(good_event(), None)
    (envelope,) = received(aws["queue_url"])
    assert f"X-Amz-Expires={notify.MAX_LINK_EXPIRY_SECONDS}" in envelope["Message"]
    assert "link valid for 168 h 0 min" in envelope["Message"]


def test_missing_fields_give_a_clear_error_and_publish_nothing(aws: dict[str, str]) -> None:
    event = good_event()
    del event["model_uri"]
    event["samples_uri"] = ""
    with pytest.raises(notify.InputError, match=r"missing required field\(s\): samples_uri, model_uri"):
        notify.handler(event, None)
    assert received(aws["queue_url"]) == []


def test_non_object_event_and_unknown_actions_are_rejected() -> None:
    with pytest.raises(notify.InputError, match="expected a JSON object, got list"):
        notify.validate_event(["samples_uri"], ("samples_uri",))
    with pytest.raises(notify.InputError, match=r"action: expected one of validate, publish, .* got 'delete'"):
        notify.handler({**good_event(), "action": "delete"}, None)


def test_bad_s3_uri_names_the_field(aws: dict[str, str]) -> None:
    event = good_event()
    event["samples_uri"] = "/opt/ml/processing/output/samples"
    with pytest.raises(notify.InputError, match="samples_uri: expected an s3://bucket/key URI"):
        notify.handler(event, None)


def test_sns_failure_surfaces_as_an_exception(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPIC_ARN", aws["topic_arn"].replace("genart-pipeline", "deleted-topic"))
    with pytest.raises(ClientError) as error:
        notify.handler(good_event(), None)
    assert error.value.response["Error"]["Code"] == "NotFound"


def test_missing_topic_configuration_is_an_error(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOPIC_ARN")
    with pytest.raises(notify.ConfigError, match="TOPIC_ARN is not set"):
        notify.handler(good_event(), None)


def test_subject_stays_within_the_sns_limit_on_one_ascii_line() -> None:
    fields = notify.validate_event({**good_event(), "execution_id": "x\n\u00e9" * 100}, ())
    message = messages.published(fields, grid_url="https://example", expiry_seconds=3600)
    assert len(message.subject) == notify.SUBJECT_LIMIT
    assert message.subject.isascii() and "\n" not in message.subject


def test_asset_layout_imports_the_handler_without_pydantic(tmp_path: Path) -> None:
    """The function ships runtime/ cut down by CODE_ASSET_EXCLUDE; its handler imports from that layout alone."""
    root = Path(__file__).resolve().parents[3] / contract.CODE_ASSET_DIR
    for path in root.rglob("*.py"):
        relative = path.relative_to(root).as_posix()
        shipped = relative == "__init__.py" or relative.startswith(("lambdas/", "common/"))
        if shipped and relative != "common/settings.py":
            (tmp_path / "runtime" / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, tmp_path / "runtime" / relative)
    module, _, function = contract.HANDLER.rpartition(".")
    probe = (
        f"import sys, {module} as m\n"
        f"assert callable(m.{function})\n"
        "assert not [n for n in sys.modules if n.startswith('pydantic')], 'pydantic imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def parameters(**changes: Any) -> dict[str, Any]:
    """The ValidateParameters step's event with the pipeline's defaults (numbers arrive as numbers)."""
    values: dict[str, Any] = {
        "action": contract.ACTION_VALIDATE,
        "pipeline_name": "genart-dev-stylegan2",
        "execution_id": "abc123",
        "InputDataUri": f"s3://{DATASETS}/anime-faces/",
        "FeatureExtractorUri": f"s3://{MODELS}/stylegan/feature-extractor/extractor.pt",
        "ProcessingInstanceType": "ml.m5.xlarge",
        "TrainingInstanceType": "ml.g5.2xlarge",
        "TrainingInstanceCount": 1,
        "ExportInstanceType": "ml.m5.xlarge",
        "Resolution": 256,
        "ModelPreset": "paper256",
        "Kimg": 1000,
        "Batch": 32,
        "BatchGpu": 0,
        "Gamma": 1.0,
        "LearningRate": 0.0025,
        "Mirror": 1,
        "SnapshotKimg": 50,
        "MaxRunSeconds": 86400,
        "MaxWaitSeconds": 172800,
        "MaxFid": -1.0,
        "QualitySamples": 5000,
    }
    return {**values, **changes}


@pytest.fixture
def uploaded(aws: dict[str, str]) -> dict[str, str]:
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=DATASETS, Key="anime-faces/kaggle.zip", Body=b"zip")
    s3.put_object(Bucket=MODELS, Key="stylegan/feature-extractor/extractor.pt", Body=b"torchscript")
    return aws


def test_consistent_parameters_pass(uploaded: dict[str, str]) -> None:
    assert notify.handler(parameters(), None) == {"status": "valid"}
    without_spot = parameters()
    del without_spot["MaxWaitSeconds"]  # on-demand environments have no such parameter
    assert notify.handler(without_spot, None) == {"status": "valid"}
    assert notify.handler(parameters(Mirror="0", Kimg="0.5"), None) == {"status": "valid"}  # strings from a person
    # The pipeline's defaults: the preset's batch, gamma and lr (its batch is the trainer's to check per GPU).
    preset = parameters(Batch=0, Gamma=-1.0, LearningRate=0.0, TrainingInstanceCount=3)
    assert notify.handler(preset, None) == {"status": "valid"}
    # An explicit BatchGpu that divides the batch per instance; with the preset's batch the trainer checks it.
    assert notify.handler(parameters(Batch=32, BatchGpu=8, TrainingInstanceCount=2), None) == {"status": "valid"}
    assert notify.handler(parameters(Batch=0, BatchGpu=3), None) == {"status": "valid"}


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"MaxRunSeconds": 7200, "MaxWaitSeconds": 3600}, "MaxRunSeconds (7200) is more than MaxWaitSeconds (3600)"),
        ({"Mirror": 2}, "Mirror must be 0 or 1, got 2"),
        ({"Resolution": 300}, "Resolution must be a power of two from 4 to 1024, got 300"),
        ({"ModelPreset": "paper2048"}, "ModelPreset must be one of"),
        ({"Batch": 30, "TrainingInstanceCount": 4}, "Batch (30) must divide evenly over TrainingInstanceCount (4)"),
        ({"TrainingInstanceType": "g5.2xlarge"}, "TrainingInstanceType must be ml.<family>.<size>"),
        ({"LearningRate": 1}, "LearningRate must be between 0 and 1, or 0 (the preset's), got 1"),
        ({"Batch": -1}, "Batch must be an integer from 1 to 4096, or 0 (the preset's), got -1"),
        (
            {"BatchGpu": -1},
            "BatchGpu must be an integer from 1 to 4096 (images per GPU per round), or 0 (auto), got -1",
        ),
        ({"BatchGpu": 2.5}, "BatchGpu must be an integer"),
        (
            {"Batch": 32, "BatchGpu": 16, "TrainingInstanceCount": 4},
            "BatchGpu (16) must divide the batch per instance, Batch / TrainingInstanceCount (32 / 4 = 8)",
        ),
        ({"Gamma": "strong"}, "Gamma must be a number"),
        ({"QualitySamples": 1}, "QualitySamples must be an integer of at least 2"),
        ({"MaxFid": "high"}, "MaxFid must be a number"),
        (
            {"InputDataUri": "s3://somebody-elses-bucket/faces/"},
            "InputDataUri must lie under s3://genart-datasets-test/",
        ),
        ({"FeatureExtractorUri": f"s3://{MODELS}/latest.pt"}, "FeatureExtractorUri must lie under"),
    ],
)
def test_inconsistent_parameters_fail_fast_naming_the_parameter(
    uploaded: dict[str, str], changes: dict[str, Any], problem: str
) -> None:
    with pytest.raises(notify.InputError, match=r"^invalid pipeline parameters: ") as error:
        notify.handler(parameters(**changes), None)
    assert problem in str(error.value)


def test_every_problem_is_reported_at_once(uploaded: dict[str, str]) -> None:
    with pytest.raises(notify.InputError) as error:
        notify.handler(parameters(Mirror=2, MaxRunSeconds=10, MaxWaitSeconds=5), None)
    assert "Mirror must be 0 or 1" in str(error.value) and "MaxRunSeconds (10)" in str(error.value)


def test_an_empty_input_prefix_and_a_missing_extractor_are_named(aws: dict[str, str]) -> None:
    with pytest.raises(notify.InputError) as error:
        notify.handler(parameters(), None)
    message = str(error.value)
    assert f"InputDataUri s3://{DATASETS}/anime-faces/ holds no objects" in message
    assert "FeatureExtractorUri" in message and "runtime.pipeline.quality.upload_extractor" in message


def status_event(status: str = "Failed") -> dict[str, Any]:
    return {
        "source": contract.PIPELINE_EVENT_SOURCE,
        "detail-type": contract.PIPELINE_EVENT_TYPE,
        "region": REGION,
        "account": "123456789012",
        "detail": {
            "pipelineArn": "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/genart-dev-stylegan2",
            "pipelineExecutionArn": EXECUTION_ARN,
            "pipelineExecutionDisplayName": "first-run",
            "currentPipelineExecutionStatus": status,
            "executionStartTime": "2025-01-01T10:00:00Z",
            "executionEndTime": "2025-01-01T12:00:00Z",
        },
    }


def stub_steps(
    monkeypatch: pytest.MonkeyPatch, steps: list[dict[str, Any]] | None, error: str | None = None
) -> Stubber:
    client = boto3.client("sagemaker", region_name=REGION)
    stubber = Stubber(client)
    expected = {"PipelineExecutionArn": EXECUTION_ARN, "SortOrder": "Ascending"}
    if error is not None:
        stubber.add_client_error("list_pipeline_execution_steps", service_error_code=error, expected_params=expected)
    else:
        stubber.add_response("list_pipeline_execution_steps", {"PipelineExecutionSteps": steps}, expected)
    stubber.activate()
    real = notify.aws_client
    monkeypatch.setattr(notify, "aws_client", lambda service: client if service == "sagemaker" else real(service))
    return stubber


def test_failure_names_the_failed_step_its_reason_and_links_to_job_and_logs(
    aws: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    job = "arn:aws:sagemaker:eu-west-1:123456789012:training-job/pipelines-abc123-trainstylegan2-x1"
    stubber = stub_steps(
        monkeypatch,
        [
            {"StepName": "ValidateParameters", "StepStatus": "Succeeded", "Metadata": {}},
            {"StepName": "PrepareDataset", "StepStatus": "Succeeded", "Metadata": {}},
            {
                "StepName": "TrainStyleGAN2",
                "StepStatus": "Failed",
                "FailureReason": 'AlgorithmError: "CUDA out of memory"\nsee the job log',
                "Metadata": {"TrainingJob": {"Arn": job}},
            },
        ],
    )
    notify.handler(status_event(), None)
    stubber.assert_no_pending_responses()
    (envelope,) = received(aws["queue_url"])
    (ops,) = received(aws["ops_url"])  # failures are ops alerts too
    assert ops["Message"] == envelope["Message"] and ops["Subject"] == envelope["Subject"]
    assert envelope["Subject"] == "GenArt StyleGAN2 genart-dev-stylegan2: execution first-run failed at TrainStyleGAN2"
    lines = envelope["Message"].splitlines()
    assert lines[:6] == [
        "GenArt StyleGAN2 pipeline genart-dev-stylegan2",
        "Execution: first-run",
        "Status: Failed",
        "Started: 2025-01-01T10:00:00Z",
        "Ended: 2025-01-01T12:00:00Z",
        "Failed step: TrainStyleGAN2",
    ]
    assert lines[6] == 'Failure reason: AlgorithmError: "CUDA out of memory" see the job log'  # the job's own words
    console = "https://eu-west-1.console.aws.amazon.com"
    assert f"Job: {console}/sagemaker/home?region=eu-west-1#/jobs/pipelines-abc123-trainstylegan2-x1" in lines
    assert (
        f"Logs: {console}/cloudwatch/home?region=eu-west-1#logsV2:log-groups/log-group/"
        "$252Faws$252Fsagemaker$252FTrainingJobs$3FlogStreamNameFilter$3Dpipelines-abc123-trainstylegan2-x1"
    ) in lines
    assert "Steps: ValidateParameters Succeeded, PrepareDataset Succeeded, TrainStyleGAN2 Failed" in lines
    assert f"aws sagemaker list-pipeline-execution-steps --pipeline-execution-arn {EXECUTION_ARN}" in lines


def test_a_stopped_run_and_unlistable_steps_still_send_a_message(
    aws: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stub_steps(monkeypatch, None, error="AccessDeniedException")
    notify.handler(status_event("Stopped"), None)
    (envelope,) = received(aws["queue_url"])
    assert envelope["Subject"] == "GenArt StyleGAN2 genart-dev-stylegan2: execution first-run stopped"
    assert "Status: Stopped" in envelope["Message"]
    assert (
        "Failed step: unknown (the steps could not be listed: An error occurred (AccessDeniedException)"
        in (envelope["Message"])
    )
    assert_plain_text(envelope["Message"].replace('"', ""))
