"""The StyleGAN2 pipeline definition rendered by the SageMaker SDK: steps, data flow, parameters, Spot, the quality
gate and its Lambda steps; every job step's request checked against botocore's SageMaker shapes."""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from infra.config import PipelineConfig
from infra.stacks.pipeline_definition import (
    STEP_EXPORT,
    STEP_GATE,
    STEP_NAMES,
    STEP_NOT_PUBLISHED,
    STEP_NOTIFY,
    STEP_PREPARE,
    STEP_PUBLISH,
    STEP_TRAIN,
    STEP_VALIDATE,
    PipelineResources,
    render_pipeline_definition,
)
from runtime.lambdas.notify import contract as notify_contract
from runtime.lambdas.notify import handler as notify_handler
from runtime.pipeline import local_run
from runtime.pipeline.container.sagemaker_train import hyperparameter_args
from runtime.pipeline.quality.gate import decide
from runtime.pipeline.stylegan2 import contract as pipeline_contract
from runtime.pipeline.stylegan2.config import TrainingPreset, auto_batch_gpu, training_preset
from runtime.pipeline.stylegan2.metrics import METRIC_DEFINITIONS, format_metrics
from tests.infra.pipeline_expressions import Execution, all_steps, validate_job_request

if TYPE_CHECKING:
    from runtime.pipeline.stylegan2.training_loop import TrainOptions

# Shaped like the CDK tokens the stack passes, brackets included (the SDK must not try to parse them).
RESOURCES = PipelineResources(
    pipeline_name="genart-test-stylegan2",
    job_role_arn="arn:${Token[AWS.Partition.9]}:iam::${Token[AWS.AccountId.3]}:role/${Token[TOKEN.101]}",
    image_uri="${Token[TOKEN.102]}",
    notify_function_arn="${Token[TOKEN.103]}",
    models_bucket_name="${Token[TOKEN.104]}",
    datasets_bucket_name="${Token[TOKEN.105]}",
)
MODELS = "s3://${Token[TOKEN.104]}"
EXECUTION_ID = {"Get": "Execution.PipelineExecutionId"}
CONFIG = PipelineConfig(kimg=2000, batch=16, gamma=2.0, resolution=512, max_run_hours=10, max_wait_hours=30)
# What CloudFormation puts in place of the tokens at deploy.
DEPLOYED = {
    RESOURCES.job_role_arn: "arn:aws:iam::123456789012:role/genart-test-job",
    RESOURCES.image_uri: "123456789012.dkr.ecr.eu-west-1.amazonaws.com/genart-test/pipeline:0123abcd",
    RESOURCES.notify_function_arn: "arn:aws:lambda:eu-west-1:123456789012:function:genart-test-notify",
    RESOURCES.models_bucket_name: "genart-test-models",
    RESOURCES.datasets_bucket_name: "genart-test-datasets",
}


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
    """Every step by name, the quality gate's branches included."""
    return all_steps(definition)


def deployed(definition: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(definition)
    for token, value in DEPLOYED.items():
        text = text.replace(token, value)
    assert "${Token[" not in text
    return json.loads(text)  # type: ignore[no-any-return]


def step_refs(node: Any) -> set[str]:
    """Names of the steps whose properties a definition fragment reads."""
    text = json.dumps(node)
    return set(re.findall(r'"Get": "Steps\.([A-Za-z0-9]+)\.', text))


def join(*values: Any) -> dict[str, Any]:
    return {"Std:Join": {"On": "/", "Values": list(values)}}


def as_string(value: Any) -> dict[str, Any]:
    """How the SDK renders a numeric parameter's to_string()."""
    return {"Std:Join": {"On": "", "Values": [value]}}


def test_steps_in_order_with_their_types_and_the_gate_branches(spot: dict[str, Any]) -> None:
    assert [s["Name"] for s in spot["Steps"]] == list(STEP_NAMES)
    assert [s["Type"] for s in spot["Steps"]] == ["Lambda", "Processing", "Training", "Processing", "Condition"]
    gate = steps(spot)[STEP_GATE]["Arguments"]
    assert [s["Name"] for s in gate["IfSteps"]] == [STEP_PUBLISH, STEP_NOTIFY]
    assert [s["Name"] for s in gate["ElseSteps"]] == [STEP_NOT_PUBLISHED]
    assert {s["Type"] for s in [*gate["IfSteps"], *gate["ElseSteps"]]} == {"Lambda"}
    assert spot["PipelineExperimentConfig"] is None


def test_steps_depend_on_each_other_only_through_property_references(spot: dict[str, Any]) -> None:
    by_name = steps(spot)
    refs = {name: step_refs(step) for name, step in by_name.items() if name != STEP_GATE}
    assert refs == {
        STEP_VALIDATE: set(),
        STEP_PREPARE: set(),
        STEP_TRAIN: {STEP_PREPARE},
        STEP_EXPORT: {STEP_TRAIN, STEP_PREPARE},
        STEP_PUBLISH: {STEP_EXPORT},
        STEP_NOTIFY: {STEP_PREPARE, STEP_TRAIN, STEP_EXPORT, STEP_PUBLISH},
        STEP_NOT_PUBLISHED: {STEP_PREPARE, STEP_TRAIN, STEP_EXPORT},
    }
    # The one explicit dependency: nothing starts an instance before the parameters are checked.
    assert {name: step.get("DependsOn") for name, step in by_name.items() if "DependsOn" in step} == {
        STEP_PREPARE: [STEP_VALIDATE]
    }
    train = by_name[STEP_TRAIN]["Arguments"]
    (channel,) = train["InputDataConfig"]
    assert channel["ChannelName"] == "train"
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == {
        "Get": f"Steps.{STEP_PREPARE}.ProcessingOutputConfig.Outputs['dataset'].S3Output.S3Uri"
    }
    inputs = {i["InputName"]: i["S3Input"] for i in by_name[STEP_EXPORT]["Arguments"]["ProcessingInputs"]}
    assert inputs["model"]["S3Uri"] == {"Get": f"Steps.{STEP_TRAIN}.ModelArtifacts.S3ModelArtifacts"}
    assert inputs["model"]["LocalPath"] == "/opt/ml/processing/input/model"
    assert inputs["reference"]["S3Uri"] == channel["DataSource"]["S3DataSource"]["S3Uri"]  # the training set
    assert inputs["reference"]["LocalPath"] == pipeline_contract.PROCESSING_REFERENCE
    assert inputs["extractor"]["S3Uri"] == {"Get": "Parameters.FeatureExtractorUri"}
    assert inputs["extractor"]["LocalPath"] == pipeline_contract.PROCESSING_EXTRACTOR


def test_validation_step_gets_every_parameter(spot: dict[str, Any], on_demand: dict[str, Any]) -> None:
    for definition in (spot, on_demand):
        validate = steps(definition)[STEP_VALIDATE]
        assert validate["FunctionArn"] == RESOURCES.notify_function_arn
        arguments = validate["Arguments"]
        assert arguments[notify_contract.ACTION] == notify_contract.ACTION_VALIDATE
        names = {p["Name"] for p in definition["Parameters"]}
        assert {name: arguments[name] for name in names} == {name: {"Get": f"Parameters.{name}"} for name in names}


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
    assert args == pipeline_contract.prepare_arguments(resolution=as_string({"Get": "Parameters.Resolution"}))
    assert prepare["ProcessingResources"]["ClusterConfig"]["InstanceType"] == {
        "Get": "Parameters.ProcessingInstanceType"
    }
    assert prepare["RoleArn"] == RESOURCES.job_role_arn


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
        "BatchGpu": ("Integer", 0),  # auto
        "Gamma": ("Float", 2.0),
        "LearningRate": ("Float", 0.0),  # the preset's
        "Mirror": ("Integer", 1),
        "SnapshotKimg": ("Integer", 50),
        "MaxRunSeconds": ("Integer", 10 * 3600),
        "MaxWaitSeconds": ("Integer", 30 * 3600),
        # The gate publishes whatever the score until an operator sets a threshold (docs/pipeline.md).
        "MaxFid": ("Float", -1.0),
        "QualitySamples": ("Integer", 5000),
        "FeatureExtractorUri": ("String", f"{MODELS}/stylegan/feature-extractor/extractor.pt"),
    }


def test_managed_spot_training_with_per_execution_checkpoints_outside_the_runs(spot: dict[str, Any]) -> None:
    train = steps(spot)[STEP_TRAIN]["Arguments"]
    assert train["EnableManagedSpotTraining"] is True
    # Under the prefix whose noncurrent versions the Storage stack expires within a day.
    assert train["CheckpointConfig"] == {
        "S3Uri": join(f"{MODELS}/{pipeline_contract.CHECKPOINTS_PREFIX}", EXECUTION_ID),
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
    assert train["RoleArn"] == RESOURCES.job_role_arn
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
    parameter_of = dict(pipeline_contract.TRAINING_HYPERPARAMETERS)
    assert parameter_of.pop("cfg") == "ModelPreset"
    assert hyperparameters == {
        **{name: as_string({"Get": f"Parameters.{param}"}) for name, param in parameter_of.items()},
        "cfg": {"Get": "Parameters.ModelPreset"},
    }
    defaults = {p["Name"]: str(p["DefaultValue"]) for p in spot["Parameters"]}
    values = {name: defaults[param] for name, param in pipeline_contract.TRAINING_HYPERPARAMETERS.items()}
    args = parse_args(["--data", "d", "--outdir", "o", "--checkpoint-dir", "c", *hyperparameter_args(values)])
    assert (args.kimg, args.batch, args.gamma, args.resolution, args.cfg) == (2000.0, 16, 2.0, 512, "paper512")
    assert (args.lr, args.mirror, args.snapshot_kimg) == (None, True, 50.0)  # LearningRate 0: the preset's


def resolved_options(definition: dict[str, Any], **given: str) -> TrainOptions:
    """The TrainOptions a run of this definition starts with: its default parameters overridden by `given`
    (what start-pipeline-execution passes), through the image's entry point and the train CLI."""
    from runtime.pipeline.stylegan2.train import parse_args, train_options

    values = {p["Name"]: str(p["DefaultValue"]) for p in definition["Parameters"]} | given
    hyperparameters = {name: values[param] for name, param in pipeline_contract.TRAINING_HYPERPARAMETERS.items()}
    args = parse_args(["--data", "d", "--outdir", "o", "--checkpoint-dir", "c", *hyperparameter_args(hyperparameters)])
    return train_options(args, on_gpu=False)


def resolved_training(definition: dict[str, Any], **given: str) -> tuple[str, TrainingPreset]:
    """The cfg and training values a run of this definition trains with (see resolved_options)."""
    from runtime.pipeline.stylegan2.training_loop import resolved_training_values

    options = resolved_options(definition, **given)
    return options.cfg, resolved_training_values(options, gpus=1)


@pytest.mark.parametrize("resolution", [256, 512, 1024])
def test_a_default_run_trains_the_preset_exactly(offline: None, resolution: int) -> None:
    definition = render(PipelineConfig(resolution=resolution))
    defaults = {p["Name"]: p["DefaultValue"] for p in definition["Parameters"]}
    assert (defaults["Batch"], defaults["Gamma"], defaults["LearningRate"]) == (0, -1.0, 0.0)
    cfg, values = resolved_training(definition)
    assert cfg == f"paper{resolution}"
    assert values == training_preset(cfg, resolution=resolution)
    assert (values.batch, values.gamma, values.lr) == {
        256: (64, 1.0, 0.0025),
        512: (64, 0.5, 0.0025),
        1024: (32, 2.0, 0.002),
    }[resolution]


@pytest.mark.parametrize("resolution", [256, 512, 1024])
def test_a_default_run_splits_the_batch_by_the_auto_cap(offline: None, resolution: int) -> None:
    definition = render(PipelineConfig(resolution=resolution))
    assert {p["Name"]: p["DefaultValue"] for p in definition["Parameters"]}["BatchGpu"] == 0
    options = resolved_options(definition)
    assert options.batch_gpu == 0  # auto: the trainer picks it per GPU
    batch = training_preset(options.cfg, resolution=resolution).batch
    # One GPU (ml.g5.2xlarge): the preset's batch in rounds of the resolution's cap (config.BATCH_GPU_CAPS).
    assert auto_batch_gpu(resolution=resolution, batch_per_gpu=batch) == {256: 8, 512: 8, 1024: 4}[resolution]


def test_batch_gpu_from_cdk_json_or_the_execution_reaches_the_trainer(offline: None) -> None:
    definition = render(PipelineConfig(batch=32, batch_gpu=16))
    assert {p["Name"]: p["DefaultValue"] for p in definition["Parameters"]}["BatchGpu"] == 16
    assert resolved_options(definition).batch_gpu == 16
    assert resolved_options(definition, BatchGpu="4").batch_gpu == 4


def test_explicit_batch_gamma_and_lr_override_the_preset(spot: dict[str, Any], on_demand: dict[str, Any]) -> None:
    # cdk.json's pipeline.batch / gamma become the parameters' defaults (CONFIG: 16 and 2.0)...
    assert (resolved_training(spot)[1].batch, resolved_training(spot)[1].gamma) == (16, 2.0)
    # ...and a value given at start-pipeline-execution wins over the preset's.
    cfg, values = resolved_training(on_demand, Batch="8", Gamma="0.0", LearningRate="0.001")
    assert (cfg, values.batch, values.gamma, values.lr) == ("paper256", 8, 0.0, 0.001)
    assert (values.ema_kimg, values.pl_weight) == (20.0, 2.0)  # the rest stays the preset's


def test_export_step_scores_and_exports_per_execution_and_publishes_nothing_itself(spot: dict[str, Any]) -> None:
    export = steps(spot)[STEP_EXPORT]
    arguments = export["Arguments"]
    outputs = {o["OutputName"]: o["S3Output"] for o in arguments["ProcessingOutputConfig"]["Outputs"]}
    assert outputs == {
        "samples": {
            "S3Uri": join(f"{MODELS}/stylegan/runs", EXECUTION_ID, "samples"),
            "LocalPath": "/opt/ml/processing/output/samples",
            "S3UploadMode": "EndOfJob",
        },
        "quality": {
            "S3Uri": join(f"{MODELS}/stylegan/runs", EXECUTION_ID, "quality"),
            "LocalPath": pipeline_contract.PROCESSING_QUALITY,
            "S3UploadMode": "EndOfJob",
        },
    }
    app = arguments["AppSpecification"]
    assert app["ContainerEntrypoint"] == ["python", "-m", "runtime.pipeline.stylegan2.generate"]
    expected = pipeline_contract.export_arguments(quality_samples=as_string({"Get": "Parameters.QualitySamples"}))
    assert app["ContainerArguments"] == expected
    args = app["ContainerArguments"]
    assert args[args.index("--publish-dir") + 1] == ""  # the publish step is the only writer of latest.onnx
    assert args[args.index("--quality-dir") + 1] == outputs["quality"]["LocalPath"]
    # The gate reads the quality.json generate.py writes into that output.
    assert export["PropertyFiles"] == [
        {"PropertyFileName": "Quality", "OutputName": "quality", "FilePath": "quality.json"}
    ]
    assert arguments["ProcessingResources"]["ClusterConfig"]["InstanceType"] == {"Get": "Parameters.ExportInstanceType"}


QUALITY_CASES = [
    ({"finite": 1, "fid": 12.5, "kid": 0.01}, -1.0),
    ({"finite": 1, "fid": 12.5, "kid": 0.01}, 20.0),
    ({"finite": 1, "fid": 12.5, "kid": 0.01}, 12.5),
    ({"finite": 1, "fid": 12.5, "kid": 0.01}, 5.0),
    ({"finite": 1, "fid": 0.0, "kid": 0.0}, 0.0),
    ({"finite": 0, "fid": pipeline_contract.UNMEASURED_SCORE, "kid": pipeline_contract.UNMEASURED_SCORE}, -1.0),
    ({"finite": 0, "fid": pipeline_contract.UNMEASURED_SCORE, "kid": pipeline_contract.UNMEASURED_SCORE}, 2e9),
]


@pytest.mark.parametrize(("quality", "max_fid"), QUALITY_CASES)
def test_quality_gate_decides_as_the_runtime_gate(
    spot: dict[str, Any], quality: dict[str, Any], max_fid: float
) -> None:
    """The rendered ConditionStep, evaluated on a quality.json, picks the branch runtime.pipeline.quality.gate picks."""
    execution = Execution(deployed(spot), overrides={"MaxFid": max_fid})
    execution.property_files[f"{STEP_EXPORT}.Quality"] = quality
    expected = [STEP_PUBLISH, STEP_NOTIFY] if decide(quality, max_fid=max_fid).publish else [STEP_NOT_PUBLISHED]
    assert execution.branch(STEP_GATE) == expected


def test_lambda_steps_carry_what_the_function_requires(spot: dict[str, Any]) -> None:
    execution = Execution(deployed(spot))
    execution.property_files[f"{STEP_EXPORT}.Quality"] = {"finite": 1, "fid": 9.5, "kid": 0.002}
    execution.lambda_outputs[STEP_PUBLISH] = {
        "model_uri": "s3://genart-test-models/stylegan/latest.onnx",
        "version_id": "v1",
    }
    actions = {
        STEP_VALIDATE: notify_contract.ACTION_VALIDATE,
        STEP_PUBLISH: notify_contract.ACTION_PUBLISH,
        STEP_NOTIFY: notify_contract.ACTION_NOTIFY_PUBLISHED,
        STEP_NOT_PUBLISHED: notify_contract.ACTION_NOTIFY_NOT_PUBLISHED,
    }
    for name, action in actions.items():
        step = steps(spot)[name]
        assert step["FunctionArn"] == RESOURCES.notify_function_arn
        event = execution.resolve(step["Arguments"])
        json.dumps(event, allow_nan=False)
        assert event[notify_contract.ACTION] == action
        assert notify_handler.validate_event(event, notify_handler.REQUIRED_FIELDS[action])
    published = execution.resolve(steps(spot)[STEP_NOTIFY]["Arguments"])
    assert published["model_uri"] == "s3://genart-test-models/stylegan/latest.onnx"
    assert published["samples_uri"] == "s3://genart-test-models/stylegan/runs/exec0001/samples"
    assert [o["OutputName"] for o in steps(spot)[STEP_PUBLISH]["OutputParameters"]] == ["model_uri", "version_id"]


@pytest.mark.parametrize("which", ["spot", "on_demand"])
def test_every_job_request_fits_the_sagemaker_api(which: str, request: pytest.FixtureRequest) -> None:
    """botocore's own validator against CreateProcessingJob/CreateTrainingJob, with every expression resolved."""
    definition = deployed(request.getfixturevalue(which))
    execution = Execution(definition)
    jobs = {name: step for name, step in steps(definition).items() if step["Type"] in ("Processing", "Training")}
    assert set(jobs) == {STEP_PREPARE, STEP_TRAIN, STEP_EXPORT}
    for name, step in jobs.items():
        job = execution.job_request(name)
        validate_job_request(step["Type"], job)
        assert job["RoleArn"] == DEPLOYED[RESOURCES.job_role_arn]
    train = execution.job_request(STEP_TRAIN)
    assert all(isinstance(value, str) for value in train["HyperParameters"].values())
    stopping = train["StoppingCondition"]
    assert stopping.get("MaxWaitTimeInSeconds", stopping["MaxRuntimeInSeconds"]) >= stopping["MaxRuntimeInSeconds"]


def test_a_bad_request_is_caught_by_the_validator(spot: dict[str, Any]) -> None:
    """The validator does reject what the service would (so the test above can fail)."""
    from botocore.exceptions import ParamValidationError

    job = Execution(deployed(spot)).job_request(STEP_EXPORT)
    job["ProcessingResources"]["ClusterConfig"]["InstanceCount"] = "one"
    with pytest.raises(ParamValidationError, match="InstanceCount"):
        validate_job_request("Processing", job)


def test_rendering_restores_the_environment_and_ignores_the_region(
    spot: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-southeast-2")
    monkeypatch.delenv("SAGEMAKER_VALIDATE_ROLE", raising=False)
    before = dict(os.environ)
    assert render(CONFIG) == spot
    assert dict(os.environ) == before


def test_the_local_run_sends_the_lambda_steps_events(spot: dict[str, Any], tmp_path: Path) -> None:
    """runtime/pipeline/local_run.py builds each Lambda step's event with exactly the rendered step's fields."""
    layout = local_run.LocalLayout(tmp_path)
    parameters = local_run.run_parameters(layout, local_run.parse_args(["--workdir", str(tmp_path)]))
    assert set(parameters) == {p["Name"] for p in spot["Parameters"]}
    events = local_run.step_events(layout, parameters, {"finite": 1, "fid": 1.0, "kid": 0.0}, {})
    lambda_steps = {name for name, step in steps(spot).items() if step["Type"] == "Lambda"}
    assert set(events) == lambda_steps
    for name, event in events.items():
        assert set(event) == set(steps(spot)[name]["Arguments"]), name
