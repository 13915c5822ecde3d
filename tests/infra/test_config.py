"""cdk.json parsing: valid environments load; unknown keys and bad values fail naming the key."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from infra.config import ConfigError, EnvConfig, load_config
from tests.infra.synth import CDK_JSON, ENV_NAMES, REPO_ROOT

ENVS: dict[str, Any] = CDK_JSON["context"]["envs"]


def _envs_with(path: str, value: Any) -> dict[str, Any]:
    envs = copy.deepcopy(ENVS)
    *parents, leaf = path.split(".")
    node = envs
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return envs


@pytest.mark.parametrize("env_name", ENV_NAMES)
def test_every_env_in_cdk_json_parses(env_name: str) -> None:
    config = load_config(ENVS, env_name)
    assert isinstance(config, EnvConfig)
    assert config.name == env_name
    assert config.prefix == f"GenArt-{env_name}"


def test_dev_is_disposable_and_prod_keeps_data() -> None:
    assert load_config(ENVS, "dev").storage.retain_data is False
    assert load_config(ENVS, "prod").storage.retain_data is True


def test_defaults_fill_a_sparse_env() -> None:
    config = load_config({"qa": {}}, "qa")
    assert config.account is None and config.region is None
    assert config.storage.retain_data is True
    assert config.diffusion.mode == "async" and config.diffusion.min_instances == 0
    assert config.bot.allocation_strategy == "priceCapacityOptimized"


def test_list_becomes_tuple_and_account_region_are_kept() -> None:
    envs = {"x": {"account": "123456789012", "region": "eu-west-1", "bot": {"instance_types": ["t4g.small"]}}}
    config = load_config(envs, "x")
    assert config.bot.instance_types == ("t4g.small",)
    assert (config.account, config.region) == ("123456789012", "eu-west-1")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("dev.storage.outputs_expiry_dayz", 3, r"envs\.dev\.storage\.outputs_expiry_dayz: unknown key"),
        ("dev.sotrage", {}, r"envs\.dev\.sotrage: unknown key"),
        ("dev.storage.outputs_expiry_days", "7", r"envs\.dev\.storage\.outputs_expiry_days: expected an integer"),
        ("dev.storage.outputs_expiry_days", True, r"envs\.dev\.storage\.outputs_expiry_days: expected an integer"),
        ("dev.storage.outputs_expiry_days", 0, r"envs\.dev\.storage\.outputs_expiry_days: must be 1\.\.3650"),
        ("dev.storage.retain_data", "yes", r"envs\.dev\.storage\.retain_data: expected true or false"),
        ("dev.diffusion.mode", "serverless", r"envs\.dev\.diffusion\.mode: 'serverless' is not one of"),
        ("dev.bot.instance_types", "t4g.small", r"envs\.dev\.bot\.instance_types: expected a list"),
        (
            "dev.bot.instance_types",
            ["t4g small"],
            r"envs\.dev\.bot\.instance_types\[0\]: 't4g small' is not an EC2 instance type",
        ),
        ("dev.bot.log_retention_days", 8, r"envs\.dev\.bot\.log_retention_days: must be one of"),
        ("dev.account", "12345", r"envs\.dev\.account: must be 12 digits"),
        ("dev.region", "mars-1", r"envs\.dev\.region: is not an AWS region"),
        ("dev.pipeline.notification_email", "nobody", r"envs\.dev\.pipeline\.notification_email: is not an email"),
        ("dev.pipeline.max_wait_hours", 1, r"envs\.dev\.pipeline\.max_wait_hours: must be at least max_run_hours"),
        ("dev.storage", [], r"envs\.dev\.storage: expected an object"),
        ("dev.cartoonizer.imag", {}, r"envs\.dev\.cartoonizer\.imag: unknown key; expected one of \['image', "),
        ("dev.cartoonizer.model_name", "White Box", r"envs\.dev\.cartoonizer\.model_name: must be lowercase"),
        ("dev.cartoonizer.image.memory_mb", 64, r"envs\.dev\.cartoonizer\.image\.memory_mb: must be 128\.\.10240"),
        ("dev.cartoonizer.image.timeout_seconds", 901, r"envs\.dev\.cartoonizer\.image\.timeout_seconds: must be"),
        (
            "dev.cartoonizer.image.reserved_concurrency",
            0,
            r"envs\.dev\.cartoonizer\.image\.reserved_concurrency: must be 1\.\.1000",
        ),
        (
            "dev.cartoonizer.image.reserved_concurrency",
            "5",
            r"envs\.dev\.cartoonizer\.image\.reserved_concurrency: expected an integer",
        ),
        ("dev.cartoonizer.video.instance_type", "g4dn.xlarge", r"envs\.dev\.cartoonizer\.video\.instance_type: must"),
        ("dev.cartoonizer.video.min_instances", 2, r"envs\.dev\.cartoonizer\.video\.min_instances: must be 0\.\."),
        (
            "dev.cartoonizer.video.invocation_timeout_seconds",
            4000,
            r"envs\.dev\.cartoonizer\.video\.invocation_timeout_seconds: must be 60\.\.3600 \(SageMaker",
        ),
        ("dev.cartoonizer.log_retention_days", 31, r"envs\.dev\.cartoonizer\.log_retention_days: must be one of"),
        (
            "dev.cartoonizer.inputs_expiry_days",
            8,
            r"envs\.dev\.cartoonizer\.inputs_expiry_days: must be at most storage\.outputs_expiry_days \(7\)",
        ),
    ],
)
def test_bad_settings_fail_with_the_key_named(path: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_envs_with(path, value), "dev")


def test_realtime_mode_needs_a_warm_instance() -> None:
    envs = _envs_with("dev.diffusion", {"mode": "realtime", "min_instances": 0})
    with pytest.raises(ConfigError, match=r"envs\.dev\.diffusion\.min_instances: must be 1\.\.max_instances"):
        load_config(envs, "dev")


def test_cartoonizer_latency_alarm_must_be_able_to_fire_within_the_invocation_timeout() -> None:
    video = {"invocation_timeout_seconds": 900, "latency_alarm_p90_seconds": 1800}
    with pytest.raises(
        ConfigError, match=r"envs\.dev\.cartoonizer\.video\.latency_alarm_p90_seconds: must be at most invocation"
    ):
        load_config(_envs_with("dev.cartoonizer.video", video), "dev")


def test_cartoonizer_defaults_idle_at_zero_and_share_the_accounts_lambda_pool() -> None:
    config = load_config({"qa": {}}, "qa").cartoonizer
    assert (config.video.min_instances, config.image.reserved_concurrency) == (0, None)
    assert config.image.memory_mb == 3008 and config.inputs_expiry_days == 1


def test_unknown_environment_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown environment 'staging'; cdk\.json defines \['dev', 'prod'\]"):
        load_config(ENVS, "staging")


@pytest.mark.parametrize("envs", [None, {}, [], {"dev": 3}])
def test_missing_or_malformed_envs_block(envs: Any) -> None:
    with pytest.raises(ConfigError, match=r"^envs"):
        load_config(envs, "dev")


def test_bad_environment_name() -> None:
    with pytest.raises(ConfigError, match="environment names"):
        load_config({"Dev_1": {}}, "Dev_1")


def test_config_is_frozen() -> None:
    config = load_config(ENVS, "dev")
    with pytest.raises(AttributeError):
        config.name = "prod"  # type: ignore[misc]


def test_configuration_doc_names_every_setting() -> None:
    from infra.config import (
        BotConfig,
        BudgetConfig,
        CartoonizerConfig,
        CartoonizerImageConfig,
        CartoonizerVideoConfig,
        DiffusionConfig,
        PipelineConfig,
        StorageConfig,
        WebConfig,
    )

    doc = (REPO_ROOT / "docs" / "configuration.md").read_text()
    sections = ("name", "storage", "bot", "diffusion", "pipeline", "cartoonizer", "image", "video", "web", "budget")
    models = (EnvConfig, StorageConfig, BotConfig, DiffusionConfig, PipelineConfig, CartoonizerConfig)
    for cls in (*models, CartoonizerImageConfig, CartoonizerVideoConfig, WebConfig, BudgetConfig):
        for name in cls.model_fields:
            if name in sections:
                continue
            assert f"`{name}`" in doc, f"docs/configuration.md does not document {cls.__name__}.{name}"
    for section in ("storage.budget", "cartoonizer.image", "cartoonizer.video", "cartoonizer.web"):
        assert f"## `{section}`" in doc


def _error(envs: dict[str, Any], env_name: str = "dev") -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(envs, env_name)
    return str(caught.value)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            "dev.storage.retain_dataa",
            False,
            "envs.dev.storage.retain_dataa: unknown key; expected one of "
            "['access_logs_expiry_days', 'alerts_email', 'budget', 'github_diff', 'outputs_expiry_days', "
            "'retain_data']",
        ),
        ("dev.storage.outputs_expiry_days", "7", "envs.dev.storage.outputs_expiry_days: expected an integer, got '7'"),
        ("dev.storage.outputs_expiry_days", 7.0, "envs.dev.storage.outputs_expiry_days: expected an integer, got 7.0"),
        ("dev.storage.outputs_expiry_days", 3651, "envs.dev.storage.outputs_expiry_days: must be 1..3650"),
        ("dev.storage.alerts_email", "ops", "envs.dev.storage.alerts_email: is not an email address"),
        ("dev.storage", [], "envs.dev.storage: expected an object, got list"),
        (
            "dev.diffusion.mode",
            "serverless",
            "envs.dev.diffusion.mode: 'serverless' is not one of ['async', 'realtime']",
        ),
        ("dev.diffusion.model_name", "", "envs.dev.diffusion.model_name: expected a non-empty string, got ''"),
        (
            "dev.diffusion.startup_timeout_seconds",
            30,
            "envs.dev.diffusion.startup_timeout_seconds: must be 60..3600 (SageMaker's limits)",
        ),
        ("dev.pipeline.gamma", True, "envs.dev.pipeline.gamma: expected a number, got True"),
        ("dev.pipeline.gamma", "1.0", "envs.dev.pipeline.gamma: expected a number, got '1.0'"),
        ("dev.pipeline.max_wait_hours", 0, "envs.dev.pipeline.max_wait_hours: must be at least 1"),
        ("dev.pipeline.batch_gpu", 0, "envs.dev.pipeline.batch_gpu: must be 1..1024"),
        (
            "dev.pipeline",
            {"batch": 64, "batch_gpu": 24},
            "envs.dev.pipeline.batch_gpu: must divide the batch per training instance "
            "(batch 64 / training_instance_count 1)",
        ),
        ("dev.bot.instance_types", [], "envs.dev.bot.instance_types: needs at least one instance type"),
        (
            "dev.bot.instance_types",
            ["t4g.small", 3],
            "envs.dev.bot.instance_types[1]: expected a non-empty string, got 3",
        ),
        (
            "dev.bot.instance_types",
            ["t4g.small", "c7g.medium", "t4g.small"],
            "envs.dev.bot.instance_types: 't4g.small' is listed more than once",
        ),
        (
            "dev.bot.operator_ids",
            ["123456789012345678", "alice"],
            "envs.dev.bot.operator_ids[1]: 'alice' is not a Discord user id (17-20 digits)",
        ),
        ("dev.account", 123456789012, "envs.dev.account: expected a non-empty string, got 123456789012"),
        ("dev.storage.budget.monthly_usd", 0, "envs.dev.storage.budget.monthly_usd: must be 1..1000000"),
        ("dev.storage.budget.enabled", "no", "envs.dev.storage.budget.enabled: expected true or false, got 'no'"),
        ("dev.cartoonizer.web.self_sign_up", 1, "envs.dev.cartoonizer.web.self_sign_up: expected true or false, got 1"),
        (
            "dev.cartoonizer.web.max_image_bytes",
            30_000_000,
            "envs.dev.cartoonizer.web.max_image_bytes: must be at most cartoonizer.image.max_bytes (25000000): the "
            "image function refuses larger images",
        ),
        (
            "dev.cartoonizer.web.max_video_bytes",
            6_000_000_000,
            "envs.dev.cartoonizer.web.max_video_bytes: must be 1000000..5000000000",
        ),
        (
            "dev.cartoonizer.web.stale_after_seconds",
            120,
            "envs.dev.cartoonizer.web.stale_after_seconds: must be more than cartoonizer.image.timeout_seconds (120): "
            "a running image job would be reported failed",
        ),
        (
            "dev.cartoonizer.web.job_ttl_days",
            8,
            "envs.dev.cartoonizer.web.job_ttl_days: must be at most storage.outputs_expiry_days (7): the job's results "
            "are gone then",
        ),
        ("dev.cartoonizer.web.max_generate_side", 1024, "envs.dev.cartoonizer.web.max_generate_side: must be 512..768"),
        (
            "dev.cartoonizer.web.cors_allowed_origins",
            ["https://studio.example.com", "studio.example.com"],
            "envs.dev.cartoonizer.web.cors_allowed_origins[1]: must be '*' or an origin like https://x.y",
        ),
        (
            "dev.cartoonizer.web.price_class",
            "PriceClass_50",
            "envs.dev.cartoonizer.web.price_class: 'PriceClass_50' is not one of "
            "['PriceClass_100', 'PriceClass_200', 'PriceClass_All']",
        ),
        (
            "dev.cartoonizer.web.api_reserved_concurrency",
            0,
            "envs.dev.cartoonizer.web.api_reserved_concurrency: must be 1..1000",
        ),
        ("dev.cartoonizer.web.linkexpiry", 60, None),
    ],
)
def test_messages_name_the_key_path_and_the_value(path: str, value: Any, message: str | None) -> None:
    if message is None:
        assert _error(_envs_with(path, value)).startswith(f"envs.{path}: unknown key; expected one of ")
        return
    assert _error(_envs_with(path, value)) == message


def test_an_item_error_names_its_index_in_prod() -> None:
    envs = _envs_with("prod.bot.instance_types", ["t4g.small", "t4g small"])
    assert _error(envs, "prod") == "envs.prod.bot.instance_types[1]: 't4g small' is not an EC2 instance type"


def test_an_unknown_key_is_reported_before_a_bad_value() -> None:
    envs = _envs_with("dev.storage", {"outputs_expiry_days": 0, "retain_dataa": True})
    assert _error(envs).startswith("envs.dev.storage.retain_dataa: unknown key")


def test_a_name_key_in_an_env_is_unknown_not_a_rename() -> None:
    message = _error(_envs_with("dev.name", "prod"))
    assert message == (
        "envs.dev.name: unknown key; expected one of "
        "['account', 'bot', 'cartoonizer', 'diffusion', 'pipeline', 'region', 'storage']"
    )


def test_whole_numbers_are_accepted_as_decimals_and_stay_floats() -> None:
    gamma = load_config(_envs_with("dev.pipeline.gamma", 2), "dev").pipeline.gamma
    assert gamma == 2.0 and isinstance(gamma, float)


def test_alerts_email_is_a_storage_setting() -> None:
    config = load_config(_envs_with("dev.storage.alerts_email", "ops@example.com"), "dev")
    assert config.storage.alerts_email == "ops@example.com"
    assert load_config(ENVS, "dev").storage.alerts_email is None


def test_diffusion_alarm_email_says_where_it_moved() -> None:
    assert _error(_envs_with("dev.diffusion.alarm_email", "ops@example.com")) == (
        "envs.dev.diffusion.alarm_email: moved to storage.alerts_email "
        "(every system's alarms go to the one ops-alerts topic)"
    )


@pytest.mark.parametrize(
    ("instance_type", "architecture"),
    [
        ("a1.large", "arm64"),
        ("t4g.small", "arm64"),
        ("c7g.medium", "arm64"),
        ("m6gd.large", "arm64"),
        ("c6gn.xlarge", "arm64"),
        ("x2gd.large", "arm64"),
        ("im4gn.large", "arm64"),
        ("g5g.xlarge", "arm64"),
        ("r8g.large", "arm64"),
        ("t3.small", "x86_64"),
        ("m7i-flex.large", "x86_64"),
        ("g4dn.xlarge", "x86_64"),
        ("c5n.large", "x86_64"),
        ("m5d.large", "x86_64"),
        ("a2.large", "x86_64"),
    ],
)
def test_architecture_of_instance_families(instance_type: str, architecture: str) -> None:
    from infra.config import architecture_of

    assert architecture_of(instance_type) == architecture


def test_graviton_types_need_arm64() -> None:
    envs = _envs_with("dev.bot", {"architecture": "x86_64", "instance_types": ["t3.small", "t4g.small"]})
    assert _error(envs) == (
        "envs.dev.bot.instance_types[1]: 't4g.small' is a Graviton (arm64) type but bot.architecture is 'x86_64'; "
        "list only x86_64 types (or leave instance_types out for the x86_64 defaults)"
    )


def test_x86_types_need_x86_64() -> None:
    envs = _envs_with("dev.bot.instance_types", ["t4g.small", "t3.small"])
    assert _error(envs).startswith(
        "envs.dev.bot.instance_types[1]: 't3.small' is an x86_64 type but bot.architecture is 'arm64'"
    )


def test_default_instance_types_follow_the_architecture() -> None:
    from infra.config import architecture_of

    for architecture in ("arm64", "x86_64"):
        bot = load_config(_envs_with("dev.bot", {"architecture": architecture}), "dev").bot
        assert bot.instance_types and {architecture_of(t) for t in bot.instance_types} == {architecture}
    assert load_config({"qa": {}}, "qa").bot.instance_types[0] == "t4g.small"


def test_target_capacity_zero_stops_the_bot_and_is_allowed() -> None:
    assert load_config(_envs_with("dev.bot.target_capacity", 0), "dev").bot.target_capacity == 0


def test_min_instances_above_max_instances_is_rejected() -> None:
    envs = _envs_with("dev.diffusion", {"min_instances": 3, "max_instances": 2})
    assert _error(envs) == "envs.dev.diffusion.min_instances: must be 0..max_instances in async mode"


def test_max_wait_hours_only_matters_with_spot() -> None:
    settings = {"max_run_hours": 24, "max_wait_hours": 12}
    assert _error(_envs_with("dev.pipeline", {**settings, "use_spot": True})) == (
        "envs.dev.pipeline.max_wait_hours: must be at least max_run_hours when use_spot is true "
        "(SageMaker rejects a shorter wait)"
    )
    assert load_config(_envs_with("dev.pipeline", {**settings, "use_spot": False}), "dev").pipeline.max_wait_hours == 12


def test_configuration_doc_documents_no_removed_setting() -> None:
    import re

    from infra.config import (
        BotConfig,
        BudgetConfig,
        CartoonizerConfig,
        CartoonizerImageConfig,
        CartoonizerVideoConfig,
        DiffusionConfig,
        PipelineConfig,
        StorageConfig,
        WebConfig,
    )

    doc = (REPO_ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `(\w+)` \|", doc, flags=re.MULTILINE))
    models = (EnvConfig, StorageConfig, BotConfig, DiffusionConfig, PipelineConfig, CartoonizerConfig)
    nested = (CartoonizerImageConfig, CartoonizerVideoConfig, WebConfig, BudgetConfig)
    settings = {name for cls in (*models, *nested) for name in cls.model_fields}
    assert documented and documented <= settings, f"documented but not settings: {sorted(documented - settings)}"


@pytest.mark.parametrize("value", ["ml.", "ml.g5", "g5.xlarge", "ml.g5.xlarge "])
def test_sagemaker_instance_types_need_family_and_size(value: str) -> None:
    with pytest.raises(
        ConfigError, match=r"envs\.x\.diffusion\.instance_type: must be a SageMaker ml\.<family>\.<size>"
    ):
        load_config({"x": {"diffusion": {"instance_type": value}}}, "x")
