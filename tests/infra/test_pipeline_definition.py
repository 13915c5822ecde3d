"""The StyleGAN2 pipeline definition rendered by the SageMaker SDK: steps, data flow, parameters, Spot, Lambda."""

from __future__ import annotations

import json
import os
import re
import socket
from typing import Any

import pytest

from infra.config import PipelineConfig
from infra.stacks.pipeline_definition import (
    STEP_EXPORT,
    STEP_NAMES,
    STEP_NOTIFY,
    STEP_PREPARE,
    STEP_TRAIN,
    PipelineResources,
    render_pipeline_definition,
)
from runtime.pipeline.container.sagemaker_train import hyperparameter_args
from runtime.pipeline.stylegan2.metrics import METRIC_DEFINITIONS, format_metrics

# Shaped like the CDK tokens the stack passes, brackets included (the SDK must not try to parse them).
RESOURCES = PipelineResources(
    pipeline_name="genart-test-stylegan2",
    role_arn="arn:${Token[AWS.Partition.9]}:iam::${Token[AWS.AccountId.3]}:role/${Token[TOKEN.101]}",
    image_uri="${Token[TOKEN.102]}",
    notify_function_arn="${Token[TOKEN.103]}",
    models_bucket_name="${Token[TOKEN.104]}",
    datasets_bucket_name="${Token[TOKEN.105]}",
)
MODELS = "s3://${Token[TOKEN.104]}"
EXECUTION_ID = {"Get": "Execution.PipelineExecutionId"}
CONFIG = PipelineConfig(kimg=2000, batch=16, gamma=2.0, resolution=512, max_run_hours=10, max_wait_hours=30)


def render(config: PipelineConfig) -> dict[str, Any]:
    text = render_pipeline_definition(resources=RESOURCES, config=config, metric_definitions=METRIC_DEFINITIONS)
    return json.loads(text)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def offline(request: pytest.FixtureRequest) -> None:
    """No credentials and no sockets while rendering: any AWS call fails the test."""
    patch = pytest.MonkeyPatch()
    request.addfinalizer(patch.undo)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        patch.delenv(name, raising=False)
    patch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    patch.setenv("AWS_CONFIG_FILE", "/nonexistent")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access while rendering the pipeline: {args[1:]}")

    patch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="module")
def spot(offline: None) -> dict[str, Any]:
    return render(CONFIG)


@pytest.fixture(scope="module")
def on_demand(offline: None) -> dict[str, Any]:
    return render(PipelineConfig(use_spot=False))


def steps(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["Name"]: step for step in definition["Steps"]}


def step_refs(node: Any) -> set[str]:
    """Names of the steps whose properties a definition fragment reads."""
    text = json.dumps(node)
    return set(re.findall(r'"Get": "Steps\.([A-Za-z0-9]+)\.', text))


def join(*values: Any) -> dict[str, Any]:
    return {"Std:Join": {"On": "/", "Values": list(values)}}


def as_string(value: Any) -> dict[str, Any]:
    """How the SDK renders a numeric parameter's to_string()."""
    return {"Std:Join": {"On": "", "Values": [value]}}


def test_four_steps_in_order_with_their_types(spot: dict[str, Any]) -> None:
    assert [s["Name"] for s in spot["Steps"]] == list(STEP_NAMES)
    assert [s["Type"] for s in spot["Steps"]] == ["Processing", "Training", "Processing", "Lambda"]
    assert spot["PipelineExperimentConfig"] is None


def test_steps_depend_on_each_other_only_through_property_references(spot: dict[str, Any]) -> None:
    by_name = steps(spot)
    assert {name: step_refs(step) for name, step in by_name.items()} == {
        STEP_PREPARE: set(),
        STEP_TRAIN: {STEP_PREPARE},
        STEP_EXPORT: {STEP_TRAIN},
        STEP_NOTIFY: {STEP_PREPARE, STEP_TRAIN, STEP_EXPORT},
    }
    assert all("DependsOn" not in step for step in spot["Steps"])
    train = by_name[STEP_TRAIN]["Arguments"]
    (channel,) = train["InputDataConfig"]
    assert channel["ChannelName"] == "train"
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == {
        "Get": f"Steps.{STEP_PREPARE}.ProcessingOutputConfig.Outputs['dataset'].S3Output.S3Uri"
    }
    (model_input,) = by_name[STEP_EXPORT]["Arguments"]["ProcessingInputs"]
    assert model_input["S3Input"]["S3Uri"] == {"Get": f"Steps.{STEP_TRAIN}.ModelArtifacts.S3ModelArtifacts"}
    assert model_input["S3Input"]["LocalPath"] == "/opt/ml/processing/input/model"


def test_dataset_step_reads_the_input_parameter_and_writes_under_the_execution(spot: dict[str, Any]) -> None:
    prepare = steps(spot)[STEP_PREPARE]["Arguments"]
    (images,) = prepare["ProcessingInputs"]
    assert images["S3Input"]["S3Uri"] == {"Get": "Parameters.InputDataUri"}
    assert images["S3Input"]["LocalPath"] == "/opt/ml/processing/input/data"
    (dataset,) = prepare["ProcessingOutputConfig"]["Outputs"]
    assert dataset["OutputName"] == "dataset"
    assert dataset["S3Output"]["S3Uri"] == join(f"{MODELS}/stylegan/runs", EXECUTION_ID, "dataset")
    app = prepare["AppSpecification"]
    assert app["ImageUri"] == RESOURCES.image_uri
    assert app["ContainerEntrypoint"] == ["python", "-m", "runtime.pipeline.stylegan2.dataset_tool"]
    args = app["ContainerArguments"]
    assert args[args.index("--resolution") + 1] == as_string({"Get": "Parameters.Resolution"})
    assert prepare["ProcessingResources"]["ClusterConfig"]["InstanceType"] == {
        "Get": "Parameters.ProcessingInstanceType"
    }
    assert prepare["RoleArn"] == RESOURCES.role_arn


def test_parameters_and_defaults_follow_the_config(spot: dict[str, Any]) -> None:
    params = {p["Name"]: (p["Type"], p["DefaultValue"]) for p in spot["Parameters"]}
    assert params == {
        "InputDataUri": ("String", "s3://${Token[TOKEN.105]}/anime-faces/"),
        "ProcessingInstanceType": ("String", "ml.m5.xlarge"),
        "TrainingInstanceType": ("String", "ml.g5.2xlarge"),
        "TrainingInstanceCount": ("Integer", 1),
        "ExportInstanceType": ("String", "ml.m5.xlarge"),
        "Resolution": ("Integer", 512),
        "ModelPreset": ("String", "paper512"),
        "Kimg": ("Integer", 2000),
        "Batch": ("Integer", 16),
        "Gamma": ("Float", 2.0),
        "LearningRate": ("Float", 0.0025),
        "Mirror": ("Integer", 1),
        "SnapshotKimg": ("Integer", 50),
        "MaxRunSeconds": ("Integer", 10 * 3600),
        "MaxWaitSeconds": ("Integer", 30 * 3600),
    }


def test_managed_spot_training_with_per_execution_checkpoints(spot: dict[str, Any]) -> None:
    train = steps(spot)[STEP_TRAIN]["Arguments"]
    assert train["EnableManagedSpotTraining"] is True
    assert train["CheckpointConfig"] == {
        "S3Uri": join(f"{MODELS}/stylegan/runs", EXECUTION_ID, "checkpoints"),
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert train["StoppingCondition"] == {
        "MaxRuntimeInSeconds": {"Get": "Parameters.MaxRunSeconds"},
        "MaxWaitTimeInSeconds": {"Get": "Parameters.MaxWaitSeconds"},
    }
    assert train["OutputDataConfig"]["S3OutputPath"] == join(f"{MODELS}/stylegan/runs", EXECUTION_ID, "training")
    assert train["ResourceConfig"]["InstanceType"] == {"Get": "Parameters.TrainingInstanceType"}
    assert train["ResourceConfig"]["InstanceCount"] == {"Get": "Parameters.TrainingInstanceCount"}
    assert train["AlgorithmSpecification"]["TrainingImage"] == RESOURCES.image_uri
    assert "ContainerEntrypoint" not in train["AlgorithmSpecification"]  # the image's own `train` runs
    assert "InputDataConfig" in train and all(c["ChannelName"] != "code" for c in train["InputDataConfig"])
    (retry,) = steps(spot)[STEP_TRAIN]["RetryPolicies"]
    assert retry["ExceptionType"] == ["SageMaker.CAPACITY_ERROR"]


def test_on_demand_environments_send_no_max_wait(on_demand: dict[str, Any]) -> None:
    train = steps(on_demand)[STEP_TRAIN]["Arguments"]
    assert train["EnableManagedSpotTraining"] is False
    assert train["StoppingCondition"] == {"MaxRuntimeInSeconds": {"Get": "Parameters.MaxRunSeconds"}}
    assert "MaxWaitSeconds" not in {p["Name"] for p in on_demand["Parameters"]}
    assert {p["Name"]: p["DefaultValue"] for p in on_demand["Parameters"]}["ModelPreset"] == "paper256"


def test_metric_definitions_come_from_the_training_code_and_parse_its_lines(spot: dict[str, Any]) -> None:
    rendered = steps(spot)[STEP_TRAIN]["Arguments"]["AlgorithmSpecification"]["MetricDefinitions"]
    assert rendered == METRIC_DEFINITIONS
    line = format_metrics(kimg=12.5, loss_g=1.25, loss_d=0.5, r1=0.03, sec_per_kimg=4.0)
    found = {m["Name"]: float(re.search(m["Regex"], line).group(1)) for m in rendered}  # type: ignore[union-attr]
    assert found == {
        "kimg": 12.5,
        "loss_G": 1.25,
        "loss_D": 0.5,
        "r1": 0.03,
        "sec_per_kimg": 4.0,
        "pl": 0.0,
        "augment_p": 0.0,
    }


def test_hyperparameters_are_string_parameters_the_train_cli_accepts(spot: dict[str, Any]) -> None:
    from runtime.pipeline.stylegan2.train import parse_args

    hyperparameters = steps(spot)[STEP_TRAIN]["Arguments"]["HyperParameters"]
    # CreateTrainingJob takes a map of strings: numbers go through to_string(), the preset already is one.
    parameter_of = {
        "kimg": "Kimg",
        "batch": "Batch",
        "gamma": "Gamma",
        "lr": "LearningRate",
        "resolution": "Resolution",
        "mirror": "Mirror",
        "snapshot-kimg": "SnapshotKimg",
    }
    assert hyperparameters == {
        **{name: as_string({"Get": f"Parameters.{param}"}) for name, param in parameter_of.items()},
        "cfg": {"Get": "Parameters.ModelPreset"},
    }
    defaults = {p["Name"]: str(p["DefaultValue"]) for p in spot["Parameters"]}
    values = {name: defaults[param] for name, param in {**parameter_of, "cfg": "ModelPreset"}.items()}
    args = parse_args(["--data", "d", "--outdir", "o", "--checkpoint-dir", "c", *hyperparameter_args(values)])
    assert (args.kimg, args.batch, args.gamma, args.resolution, args.cfg) == (2000.0, 16, 2.0, 512, "paper512")
    assert (args.lr, args.mirror, args.snapshot_kimg) == (0.0025, True, 50.0)


def test_export_step_publishes_latest_onnx_and_keeps_samples_per_execution(spot: dict[str, Any]) -> None:
    export = steps(spot)[STEP_EXPORT]["Arguments"]
    outputs = {o["OutputName"]: o["S3Output"] for o in export["ProcessingOutputConfig"]["Outputs"]}
    assert outputs["samples"]["S3Uri"] == join(f"{MODELS}/stylegan/runs", EXECUTION_ID, "samples")
    assert outputs["samples"]["LocalPath"] == "/opt/ml/processing/output/samples"
    # generate.py writes publish-dir/latest.onnx only after verification, so this yields stylegan/latest.onnx.
    assert outputs["publish"]["S3Uri"] == join(MODELS, "stylegan")
    assert outputs["publish"]["LocalPath"] == "/opt/ml/processing/output/publish"
    app = export["AppSpecification"]
    assert app["ContainerEntrypoint"] == ["python", "-m", "runtime.pipeline.stylegan2.generate"]
    args = app["ContainerArguments"]
    assert args[args.index("--publish-dir") + 1] == "/opt/ml/processing/output/publish"
    assert export["ProcessingResources"]["ClusterConfig"]["InstanceType"] == {"Get": "Parameters.ExportInstanceType"}


def test_lambda_step_invokes_the_stack_function_with_the_run_locations(spot: dict[str, Any]) -> None:
    notify = steps(spot)[STEP_NOTIFY]
    assert notify["FunctionArn"] == RESOURCES.notify_function_arn
    assert notify["OutputParameters"] == [{"OutputName": "message_id", "OutputType": "String"}]
    exports = f"Steps.{STEP_EXPORT}.ProcessingOutputConfig.Outputs"
    assert notify["Arguments"] == {
        "pipeline_name": "genart-test-stylegan2",
        "execution_arn": {"Get": "Execution.PipelineExecutionArn"},
        "execution_id": EXECUTION_ID,
        "dataset_uri": {"Get": f"Steps.{STEP_PREPARE}.ProcessingOutputConfig.Outputs['dataset'].S3Output.S3Uri"},
        "training_artifacts_uri": {"Get": f"Steps.{STEP_TRAIN}.ModelArtifacts.S3ModelArtifacts"},
        "samples_uri": {"Get": f"{exports}['samples'].S3Output.S3Uri"},
        "model_uri": join({"Get": f"{exports}['publish'].S3Output.S3Uri"}, "latest.onnx"),
        "kimg": {"Get": "Parameters.Kimg"},
    }


def test_rendering_restores_the_environment_and_ignores_the_region(
    spot: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-southeast-2")
    monkeypatch.delenv("SAGEMAKER_VALIDATE_ROLE", raising=False)
    before = dict(os.environ)
    assert render(CONFIG) == spot
    assert dict(os.environ) == before
