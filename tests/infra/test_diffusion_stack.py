"""The Diffusion stack's composition: cdk.json settings reach the endpoint construct, the image lands in Storage's
repository, results go to the outputs bucket and every alarm to the ops-alerts topic (dev and prod are async; a
realtime variant is synthesized from an explicit config)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.config import ConfigError, load_config
from infra.model_sources import DEFAULT_SOURCE, SD15_REVISION, model_source
from infra.stacks.diffusion import container_environment, endpoint_name
from runtime.endpoint import contract
from runtime.lambdas.model_seed.contract import CHECK_RESOURCE_TYPE as CHECK_TYPE
from runtime.lambdas.model_seed.contract import SEED_RESOURCE_TYPE as SEED_TYPE
from tests.infra.synth import (
    SynthesizedApp,
    SynthesizedStack,
    opt_in_app,
    resources_of_type,
    suffix,
    synth_config,
    synth_env,
    text,
)

VARIANTS = ["dev", "prod", "realtime"]
MODES = {"dev": "async", "prod": "async", "realtime": "realtime"}
ENDPOINTS = {
    "dev": "genart-dev-sd-async-g5-xlarge",
    "prod": "genart-prod-sd-async-g5-xlarge",
    "realtime": "genart-rt-sd-realtime-g5-xlarge",
}


def _app(variant: str) -> SynthesizedApp:
    """A cdk.json environment, or "realtime": an env that opts into a warm real-time endpoint."""
    return opt_in_app() if variant == "realtime" else synth_env(variant)


def _diffusion(variant: str) -> SynthesizedStack:
    app = _app(variant)
    return app.by_name[app.stacks.diffusion.stack_name]


def _one(stack: SynthesizedStack, cfn_type: str) -> dict[str, Any]:
    (resource,) = resources_of_type(stack.json, cfn_type).values()
    return resource["Properties"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("env_name", VARIANTS)
def test_image_is_published_into_storages_diffusion_repository(env_name: str) -> None:
    app = _app(env_name)
    name = app.config.name
    image = _one(_diffusion(env_name), "AWS::SageMaker::Model")["PrimaryContainer"]["Image"]
    assert f"/genart-{name}/diffusion:" in text(image)
    manifest = Path(app.stacks.diffusion.node.root.outdir) / f"{app.stacks.diffusion.artifact_id}.assets.json"
    (asset,) = json.loads(manifest.read_text())["dockerImages"].values()
    assert (asset["source"]["dockerFile"], asset["source"]["platform"]) == (contract.IMAGE_DOCKERFILE, "linux/amd64")
    context = Path(app.stacks.diffusion.node.root.outdir) / asset["source"]["directory"]
    files = {p.relative_to(context).as_posix() for p in context.rglob("*") if p.is_file()}
    assert {"endpoint/Dockerfile", "endpoint/requirements.txt", "endpoint/serve.py", "common/jsonlog.py"} <= files
    assert not any(f.startswith(("bot/", "pipeline/", "lambdas/")) or "__pycache__" in f for f in files)
    (destination,) = asset["destinations"].values()
    assert destination["repositoryName"] == f"genart-{name}/diffusion"
    assert app.stacks.storage in app.stacks.diffusion.dependencies
    storage = app.by_name[app.stacks.storage.stack_name].json
    names = {r["Properties"]["RepositoryName"] for r in resources_of_type(storage, "AWS::ECR::Repository").values()}
    assert f"genart-{name}/diffusion" in names


@pytest.mark.parametrize("env_name", VARIANTS)
def test_model_reads_the_configured_weights_prefix_with_the_contract_settings(env_name: str) -> None:
    container = _one(_diffusion(env_name), "AWS::SageMaker::Model")["PrimaryContainer"]
    source = container["ModelDataSource"]["S3DataSource"]
    assert suffix(source["S3Uri"]) == "/" + contract.model_prefix("sd15")
    assert "ModelsBucket" in text(source["S3Uri"])
    environment = dict(container["Environment"])
    assert "OutputsBucket" in text(environment.pop(contract.ENV_OUTPUTS_BUCKET))
    cache_uri = environment.pop(contract.ENV_COMPILE_CACHE_S3_URI)
    assert suffix(cache_uri) == "/diffusion-compile-cache/sd15/"
    assert cache_uri["Fn::Join"][1][0] == "s3://"
    assert "ModelsBucket" in text(cache_uri["Fn::Join"][1][1])
    # Compiled fp16 on the GPU, the compile cache on the instance disk and shared through S3, never a model hub;
    # an async response is an S3 object, so it may carry more inline images than a real-time one.
    expected = {
        contract.ENV_OUTPUTS_PREFIX: "diffusion/",
        contract.ENV_COMPILE: "1",
        contract.ENV_DTYPE: "fp16",
        contract.ENV_COMPILE_CACHE_DIR: contract.COMPILE_CACHE_DIR,
        contract.ENV_HF_HUB_OFFLINE: "1",
    }
    if MODES[env_name] == "async":
        expected[contract.ENV_MAX_INLINE_BYTES] = "500000000"
    assert environment == expected
    names = container_environment(outputs_bucket_name="b", compile_cache_s3_uri="s3://m/p/", asynchronous=True)
    buckets = {contract.ENV_OUTPUTS_BUCKET, contract.ENV_COMPILE_CACHE_S3_URI}
    assert set(names) == {*expected, contract.ENV_MAX_INLINE_BYTES, *buckets}


@pytest.mark.parametrize("env_name", VARIANTS)
def test_endpoint_size_timeouts_and_scaling_bounds_come_from_cdk_json(env_name: str) -> None:
    config = _app(env_name).config.diffusion
    assert config.mode == MODES[env_name]
    stack = _diffusion(env_name)
    assert _one(stack, "AWS::SageMaker::Endpoint")["EndpointName"] == ENDPOINTS[env_name]
    (variant,) = _one(stack, "AWS::SageMaker::EndpointConfig")["ProductionVariants"]
    assert variant["InstanceType"] == config.instance_type
    assert variant["InitialInstanceCount"] == max(1, config.min_instances)
    assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] == config.startup_timeout_seconds
    assert variant["ModelDataDownloadTimeoutInSeconds"] == config.download_timeout_seconds
    target = _one(stack, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert (target["MinCapacity"], target["MaxCapacity"]) == (config.min_instances, config.max_instances)
    assert target["ResourceId"] == f"endpoint/{ENDPOINTS[env_name]}/variant/AllTraffic"


def test_async_uses_the_contract_prefixes_and_realtime_has_no_async_config() -> None:
    dev = _one(_diffusion("dev"), "AWS::SageMaker::EndpointConfig")["AsyncInferenceConfig"]
    assert suffix(dev["OutputConfig"]["S3OutputPath"]) == "/" + contract.ASYNC_OUTPUT_PREFIX
    assert suffix(dev["OutputConfig"]["S3FailurePath"]) == "/" + contract.ASYNC_FAILURE_PREFIX
    config = synth_env("dev").config.diffusion
    assert dev["ClientConfig"]["MaxConcurrentInvocationsPerInstance"] == config.max_concurrent_invocations_per_instance
    assert "OutputsBucket" in text(dev["OutputConfig"]["S3OutputPath"])
    assert "AsyncInferenceConfig" not in _one(_diffusion("realtime"), "AWS::SageMaker::EndpointConfig")


def test_shipped_environments_idle_without_a_gpu() -> None:
    for env_name in ("dev", "prod"):
        config = synth_env(env_name).config.diffusion
        assert (config.mode, config.min_instances) == ("async", 0), env_name


@pytest.mark.parametrize("env_name", VARIANTS)
def test_container_writes_images_only_under_its_outputs_prefixes(env_name: str) -> None:
    stack = _diffusion(env_name)
    writes = [
        s
        for policy in resources_of_type(stack.json, "AWS::IAM::Policy").values()
        if "EndpointExecutionRole" in text(policy["Properties"]["Roles"])
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if "s3:PutObject" in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    ]
    expected = {"/" + contract.OUTPUTS_PREFIX + "*"}
    if MODES[env_name] == "async":
        expected |= {"/" + contract.ASYNC_OUTPUT_PREFIX + "*", "/" + contract.ASYNC_FAILURE_PREFIX + "*"}
    cache = "/diffusion-compile-cache/sd15/*"
    assert {suffix(s["Resource"]) for s in writes} == expected | {cache}
    assert all(
        ("ModelsBucket" if suffix(s["Resource"]) == cache else "OutputsBucket") in text(s["Resource"]) for s in writes
    )


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_container_reads_and_writes_the_shared_compile_cache_prefix_of_the_models_bucket_only(env_name: str) -> None:
    statements = [
        s
        for policy in resources_of_type(_diffusion(env_name).json, "AWS::IAM::Policy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s.get("Sid", "").startswith(("ContainerReads", "ContainerWrites")) and "ModelsBucket" in text(s["Resource"])
    ]
    by_sid = {s["Sid"]: s for s in statements}
    assert set(by_sid) == {"ContainerReadsDiffusionCompileCacheSd15", "ContainerWritesDiffusionCompileCacheSd15"}
    assert by_sid["ContainerReadsDiffusionCompileCacheSd15"]["Action"] == "s3:GetObject"
    assert sorted(by_sid["ContainerWritesDiffusionCompileCacheSd15"]["Action"]) == [
        "s3:AbortMultipartUpload",
        "s3:PutObject",
    ]
    assert {suffix(s["Resource"]) for s in statements} == {"/" + contract.compile_cache_prefix("sd15") + "*"}


@pytest.mark.parametrize("env_name", VARIANTS)
def test_every_alarm_but_the_scaling_trigger_notifies_the_ops_alerts_topic(env_name: str) -> None:
    stack = _diffusion(env_name)
    alarms = resources_of_type(stack.json, "AWS::CloudWatch::Alarm")
    health = {k: v["Properties"] for k, v in alarms.items() if "Scaling" not in k}
    assert len(health) == (4 if MODES[env_name] == "async" else 2)
    for alarm in health.values():
        (action,) = alarm["AlarmActions"]
        assert alarm["OKActions"] == [action]
        assert "OpsAlerts" in text(action), action
    assert not resources_of_type(stack.json, "AWS::SNS::Subscription")


@pytest.mark.parametrize("env_name", VARIANTS)
def test_outputs_name_the_endpoint_image_weights_and_async_locations(env_name: str) -> None:
    outputs = set(_diffusion(env_name).json["Outputs"])
    assert {"EndpointName", "ImageUri", "ModelDataUri"} <= outputs
    assert "ModelSource" in outputs
    async_outputs = {"AsyncInputLocation", "AsyncOutputLocation", "AsyncFailureLocation", "SuccessTopicArn"}
    assert (async_outputs <= outputs) == (MODES[env_name] == "async")


@pytest.mark.parametrize("env_name", VARIANTS)
def test_resources_identified_by_name_keep_their_logical_ids_across_the_refactor(env_name: str) -> None:
    """Renaming these would replace them; for the scalable target a replacement silently deregisters scaling."""
    resources = _diffusion(env_name).json["Resources"]
    assert resources["ScalingTarget6760FBAF"]["Type"] == "AWS::ApplicationAutoScaling::ScalableTarget"
    assert resources["Endpoint8024A810"]["Type"] == "AWS::SageMaker::Endpoint"
    assert resources["EndpointLogs88A66289"]["Type"] == "AWS::Logs::LogGroup"


def test_scaling_targets_and_concurrency_come_from_cdk_json() -> None:
    settings = {"target_backlog_per_instance": 3, "max_concurrent_invocations_per_instance": 5, "max_instances": 3}
    app = synth_config(load_config({"sc": {"diffusion": settings}}, "sc"))
    stack = app.by_name[app.stacks.diffusion.stack_name]
    tracking = [
        p["Properties"]["TargetTrackingScalingPolicyConfiguration"]
        for p in resources_of_type(stack.json, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
        if p["Properties"]["PolicyType"] == "TargetTrackingScaling"
    ]
    assert [t["TargetValue"] for t in tracking] == [3]
    config = _one(stack, "AWS::SageMaker::EndpointConfig")["AsyncInferenceConfig"]["ClientConfig"]
    assert config == {"MaxConcurrentInvocationsPerInstance": 5}
    assert _one(stack, "AWS::ApplicationAutoScaling::ScalableTarget")["MaxCapacity"] == 3
    realtime = _diffusion("realtime")
    (policy,) = resources_of_type(realtime.json, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    target = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]["TargetValue"]
    assert target == opt_in_app().config.diffusion.target_invocations_per_instance == 11


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"target_backlog_per_instance": 0}, "target_backlog_per_instance"),
        ({"latency_alarm_p90_seconds": 0}, "latency_alarm_p90_seconds"),
        ({"backlog_age_alarm_seconds": 30}, "backlog_age_alarm_seconds"),
        ({"mode": "realtime", "min_instances": 0}, "min_instances"),
    ],
)
def test_diffusion_settings_are_validated(changes: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_config({"x": {"diffusion": changes}}, "x")


def test_endpoint_name_changes_with_mode_and_instance_type_so_either_change_replaces_the_endpoint() -> None:
    names = {
        endpoint_name(
            env_name="dev",
            config=load_config(
                {"x": {"diffusion": {"mode": mode, "instance_type": itype, "min_instances": 1}}}, "x"
            ).diffusion,
        )
        for mode in ("async", "realtime")
        for itype in ("ml.g5.xlarge", "ml.g6.2xlarge")
    }
    assert len(names) == 4
    assert "genart-dev-sd-realtime-g6-2xlarge" in names


# --------------------------------------------------------------------------------------------- weights at deploy


def _only_id(stack: SynthesizedStack, cfn_type: str) -> str:
    (logical_id,) = resources_of_type(stack.json, cfn_type)
    return logical_id


def _depends_on(resource: dict[str, Any]) -> list[str]:
    depends = resource.get("DependsOn", [])
    return [depends] if isinstance(depends, str) else list(depends)


def _refs(value: Any) -> set[str]:
    """Logical ids a template value references (Ref and Fn::GetAtt)."""
    found: set[str] = set()
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            found.add(value["Ref"])
        if "Fn::GetAtt" in value:
            found.add(value["Fn::GetAtt"][0])
        for item in value.values():
            found |= _refs(item)
    elif isinstance(value, list):
        for item in value:
            found |= _refs(item)
    return found


@pytest.mark.parametrize(
    ("env_name", "weights_type"), [("dev", SEED_TYPE), ("prod", SEED_TYPE), ("realtime", CHECK_TYPE)]
)
def test_the_endpoint_is_created_only_after_its_weights_are_seeded_or_checked(env_name: str, weights_type: str) -> None:
    stack = _diffusion(env_name)
    template = stack.json["Resources"]
    weights = _only_id(stack, weights_type)
    model = _only_id(stack, "AWS::SageMaker::Model")
    config = _only_id(stack, "AWS::SageMaker::EndpointConfig")
    endpoint = _only_id(stack, "AWS::SageMaker::Endpoint")
    # Seed (or check) -> model -> endpoint config -> endpoint: no GPU starts before the weights are in S3.
    assert weights in _depends_on(template[model])
    assert model in _refs(template[config]["Properties"])
    assert config in _refs(template[endpoint]["Properties"])
    assert not resources_of_type(stack.json, SEED_TYPE if weights_type == CHECK_TYPE else CHECK_TYPE)


def test_the_default_source_seeds_the_model_prefix_with_pinned_verified_files() -> None:
    stack = _diffusion("dev")
    properties = _one(stack, SEED_TYPE)
    assert synth_env("dev").config.diffusion.model_source == DEFAULT_SOURCE
    source = model_source(DEFAULT_SOURCE)
    assert properties["Prefix"] == contract.model_prefix("sd15")
    assert "ModelsBucket" in text(properties["Bucket"])
    assert properties["Files"] == [f.to_property() for f in source.files]
    assert properties["Marker"] == "model_index.json" == properties["Files"][-1]["Key"]
    assert all(f"/resolve/{SD15_REVISION}/" in f["Url"] for f in properties["Files"])
    assert stack.json["Outputs"]["ModelSource"]["Value"].startswith(f"{DEFAULT_SOURCE}: {source.repository}@")


def test_the_seed_role_may_touch_only_the_files_of_the_model_prefix() -> None:
    stack = _diffusion("dev")
    statements = [
        s
        for policy in resources_of_type(stack.json, "AWS::IAM::Policy").values()
        if "ModelSeedRole" in text(policy["Properties"]["Roles"])
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    keys = [contract.model_prefix("sd15") + f.key for f in model_source(DEFAULT_SOURCE).files]
    by_sid = {s.get("Sid", "logs"): s for s in statements}
    assert set(by_sid) == {"SeedObjects", "FindSeedObjects", "FindUnfinishedUploads", "logs"}
    assert sorted(suffix(r) for r in by_sid["SeedObjects"]["Resource"]) == sorted(f"/{key}" for key in keys)
    assert all("ModelsBucket" in text(r) for r in by_sid["SeedObjects"]["Resource"])
    assert by_sid["FindSeedObjects"]["Condition"] == {"StringEquals": {"s3:prefix": keys}}
    assert "OutputsBucket" not in text(statements)


def test_without_a_model_source_the_deploy_checks_the_prefix_and_says_how_to_upload() -> None:
    stack = _diffusion("realtime")
    assert opt_in_app().config.diffusion.model_source is None
    properties = _one(stack, CHECK_TYPE)
    assert (properties["Prefix"], properties["Required"]) == (contract.model_prefix("sd15"), ["model_index.json"])
    how = text(properties["HowToFix"])
    assert "python -m runtime.endpoint.upload_model --source <folder> --bucket " in how
    assert "--name sd15" in how and "ModelsBucket" in how
    # Nothing in the stack downloads anything: no seed, and the endpoint stays offline.
    assert not resources_of_type(stack.json, "AWS::StepFunctions::StateMachine")
    container = _one(stack, "AWS::SageMaker::Model")["PrimaryContainer"]
    assert container["Environment"][contract.ENV_HF_HUB_OFFLINE] == "1"


def test_an_unknown_model_source_fails_synthesis_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"envs\.x\.diffusion\.model_source: 'sd99' is not a known model source"):
        load_config({"x": {"diffusion": {"model_source": "sd99"}}}, "x")


# --------------------------------------------------------------------------------------------- idle GPU after deploy


@pytest.mark.parametrize(("env_name", "minutes"), [("dev", 5), ("prod", 10)])
def test_an_idle_async_endpoint_drops_to_min_instances_after_the_configured_minutes(
    env_name: str, minutes: int
) -> None:
    stack = _diffusion(env_name)
    config = synth_env(env_name).config.diffusion
    assert config.idle_scale_in_minutes == minutes
    alarms = resources_of_type(stack.json, "AWS::CloudWatch::Alarm")
    (idle,) = [v["Properties"] for k, v in alarms.items() if "ScalingIdle" in k]
    assert (idle["MetricName"], idle["Statistic"], idle["ComparisonOperator"], idle["Threshold"]) == (
        "ApproximateBacklogSize",
        "Maximum",
        "LessThanThreshold",
        1,
    )
    assert (idle["EvaluationPeriods"], idle["DatapointsToAlarm"], idle["Period"]) == (minutes, minutes, 60)
    (action,) = idle["AlarmActions"]
    policy = stack.json["Resources"][action["Ref"]]["Properties"]["StepScalingPolicyConfiguration"]
    assert policy["AdjustmentType"] == "ExactCapacity"
    assert policy["StepAdjustments"] == [{"MetricIntervalUpperBound": 0, "ScalingAdjustment": config.min_instances}]


def test_a_realtime_endpoint_has_no_idle_scale_in() -> None:
    alarms = resources_of_type(_diffusion("realtime").json, "AWS::CloudWatch::Alarm")
    assert not [k for k in alarms if "ScalingIdle" in k]
    with pytest.raises(ConfigError, match="idle_scale_in_minutes: applies to async mode only"):
        load_config({"x": {"diffusion": {"mode": "realtime", "min_instances": 1, "idle_scale_in_minutes": 5}}}, "x")
