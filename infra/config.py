"""Typed, validated settings parsed from the "envs" block of cdk.json."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, Union

from runtime.bot import contract as bot_contract

T = TypeVar("T")

_ACCOUNT_RE = re.compile(r"^\d{12}$")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_S3_KEY_RE = re.compile(r"^[A-Za-z0-9!_.*'()/-]+$")


class ConfigError(ValueError):
    """A cdk.json setting is unknown, missing or has a bad value; the message names the key."""


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


@dataclass(frozen=True)
class StorageConfig:
    """Buckets and the bot token secret."""

    # False only for throwaway environments: data buckets are emptied and deleted with the stack.
    retain_data: bool = True
    outputs_expiry_days: int = 30
    access_logs_expiry_days: int = 365
    alerts_email: str | None = None

    def validate(self, key: str) -> None:
        _require(1 <= self.outputs_expiry_days <= 3650, f"{key}.outputs_expiry_days", "must be 1..3650")
        _require(1 <= self.access_logs_expiry_days <= 3650, f"{key}.access_logs_expiry_days", "must be 1..3650")


@dataclass(frozen=True)
class BotConfig:
    """The always-on Discord bot and the fleet that hosts it."""

    architecture: Literal["arm64", "x86_64"] = "arm64"
    instance_types: tuple[str, ...] = ("t4g.small", "t4g.medium", "c7g.medium", "m7g.medium", "c6g.large")
    target_capacity: int = 1
    allocation_strategy: Literal["priceCapacityOptimized", "capacityOptimized", "lowestPrice", "diversified"] = (
        "priceCapacityOptimized"
    )
    # "spot-fleet" (default) or "asg": an Auto Scaling group with a mixed-instances policy, for
    # accounts whose policies forbid Spot Fleet requests.
    fleet: Literal["spot-fleet", "asg"] = "spot-fleet"
    log_retention_days: int = 30
    model_key: str = bot_contract.DEFAULT_MODEL_KEY
    # Discord user ids (not secrets) allowed to run operator commands such as reload_model.
    operator_ids: tuple[str, ...] = ()

    def validate(self, key: str) -> None:
        _require(len(self.instance_types) >= 1, f"{key}.instance_types", "needs at least one instance type")
        for itype in self.instance_types:
            _require(
                re.fullmatch(r"[a-z][a-z0-9-]*\.[a-z0-9]+", itype) is not None,
                f"{key}.instance_types",
                f"{itype!r} is not an EC2 instance type",
            )
        _require(0 <= self.target_capacity <= 10, f"{key}.target_capacity", "must be 0..10")
        _require(
            self.log_retention_days in _LOG_RETENTION_DAYS,
            f"{key}.log_retention_days",
            f"must be one of {sorted(_LOG_RETENTION_DAYS)}",
        )
        _require(
            _S3_KEY_RE.fullmatch(self.model_key) is not None and self.model_key.endswith(".onnx"),
            f"{key}.model_key",
            "must be an S3 key ending in .onnx",
        )
        _require(
            not (self.fleet == "asg" and self.allocation_strategy == "diversified"),
            f"{key}.allocation_strategy",
            '"diversified" exists only for Spot Fleet; an Auto Scaling group needs another strategy',
        )
        for user_id in self.operator_ids:
            _require(
                re.fullmatch(r"\d{17,20}", user_id) is not None,
                f"{key}.operator_ids",
                f"{user_id!r} is not a Discord user id (17-20 digits)",
            )


@dataclass(frozen=True)
class DiffusionConfig:
    """The Stable Diffusion endpoint."""

    # "async" scales to zero and wakes on backlog; "realtime" keeps min_instances >= 1 warm.
    mode: Literal["async", "realtime"] = "async"
    instance_type: str = "ml.g5.xlarge"
    min_instances: int = 0
    max_instances: int = 1
    model_name: str = "sd15"
    max_concurrent_invocations_per_instance: int = 4
    target_invocations_per_instance: int = 8
    # Cold torch.compile warm-up runs before /ping turns healthy; a warm compile cache makes it much shorter.
    startup_timeout_seconds: int = 1800
    download_timeout_seconds: int = 1200
    # Async target tracking: queued requests per instance before another instance is added.
    target_backlog_per_instance: int = 2
    latency_alarm_p90_seconds: int = 30
    backlog_age_alarm_seconds: int = 1800

    def validate(self, key: str) -> None:
        _require(self.instance_type.startswith("ml."), f"{key}.instance_type", "must be a SageMaker ml.* type")
        _require(
            re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", self.model_name) is not None,
            f"{key}.model_name",
            "must be lowercase letters, digits and dashes",
        )
        low = 0 if self.mode == "async" else 1
        _require(
            low <= self.min_instances <= self.max_instances,
            f"{key}.min_instances",
            f"must be {low}..max_instances in {self.mode} mode",
        )
        _require(1 <= self.max_instances <= 20, f"{key}.max_instances", "must be 1..20")
        _require(
            1 <= self.max_concurrent_invocations_per_instance <= 64,
            f"{key}.max_concurrent_invocations_per_instance",
            "must be 1..64",
        )
        _require(
            1 <= self.target_invocations_per_instance <= 1000,
            f"{key}.target_invocations_per_instance",
            "must be 1..1000",
        )
        for name in ("startup_timeout_seconds", "download_timeout_seconds"):
            _require(60 <= getattr(self, name) <= 3600, f"{key}.{name}", "must be 60..3600 (SageMaker's limits)")
        _require(1 <= self.target_backlog_per_instance <= 100, f"{key}.target_backlog_per_instance", "must be 1..100")
        _require(1 <= self.latency_alarm_p90_seconds <= 3600, f"{key}.latency_alarm_p90_seconds", "must be 1..3600")
        _require(60 <= self.backlog_age_alarm_seconds <= 86400, f"{key}.backlog_age_alarm_seconds", "must be 60..86400")


@dataclass(frozen=True)
class PipelineConfig:
    """The StyleGAN2 training pipeline and its notifications."""

    notification_email: str | None = None
    processing_instance_type: str = "ml.m5.xlarge"
    training_instance_type: str = "ml.g5.2xlarge"
    training_instance_count: int = 1
    export_instance_type: str = "ml.m5.xlarge"
    use_spot: bool = True
    max_run_hours: int = 24
    max_wait_hours: int = 48
    resolution: int = 256
    kimg: int = 1000
    batch: int = 32
    gamma: float = 1.0

    def validate(self, key: str) -> None:
        if self.notification_email is not None:
            _require(
                _EMAIL_RE.fullmatch(self.notification_email) is not None,
                f"{key}.notification_email",
                "is not an email address",
            )
        for name in ("processing_instance_type", "training_instance_type", "export_instance_type"):
            _require(getattr(self, name).startswith("ml."), f"{key}.{name}", "must be a SageMaker ml.* type")
        _require(1 <= self.training_instance_count <= 8, f"{key}.training_instance_count", "must be 1..8")
        _require(1 <= self.max_run_hours <= 120, f"{key}.max_run_hours", "must be 1..120")
        _require(
            self.max_wait_hours >= self.max_run_hours,
            f"{key}.max_wait_hours",
            "must be at least max_run_hours (SageMaker rejects a shorter wait)",
        )
        _require(self.resolution in (64, 128, 256, 512, 1024), f"{key}.resolution", "must be 64, 128, 256, 512 or 1024")
        _require(1 <= self.kimg <= 100_000, f"{key}.kimg", "must be 1..100000")
        _require(1 <= self.batch <= 1024, f"{key}.batch", "must be 1..1024")
        _require(0 <= self.gamma <= 1000, f"{key}.gamma", "must be 0..1000")


@dataclass(frozen=True)
class EnvConfig:
    """One deployment environment (dev, prod, ...): where it goes and how each system is sized."""

    name: str
    account: str | None = None
    region: str | None = None
    storage: StorageConfig = field(default_factory=StorageConfig)
    bot: BotConfig = field(default_factory=BotConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)

    def validate(self, key: str) -> None:
        _require(
            re.fullmatch(r"[a-z][a-z0-9]{0,15}", self.name) is not None,
            key,
            "environment names are 1-16 lowercase letters/digits, starting with a letter",
        )
        if self.account is not None:
            _require(_ACCOUNT_RE.fullmatch(self.account) is not None, f"{key}.account", "must be 12 digits")
        if self.region is not None:
            _require(_REGION_RE.fullmatch(self.region) is not None, f"{key}.region", "is not an AWS region name")
        self.storage.validate(f"{key}.storage")
        self.bot.validate(f"{key}.bot")
        self.diffusion.validate(f"{key}.diffusion")
        self.pipeline.validate(f"{key}.pipeline")

    @property
    def prefix(self) -> str:
        """Prefix for stack names, so several environments share one account."""
        return f"GenArt-{self.name}"


_LOG_RETENTION_DAYS = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}
)


def load_config(envs: Any, env_name: str) -> EnvConfig:
    """Parse the "envs" context block and return the settings for env_name."""
    if not isinstance(envs, dict) or not envs:
        raise ConfigError('envs: cdk.json needs a non-empty "envs" object in "context"')
    for name in envs:
        if not isinstance(envs[name], dict):
            raise ConfigError(f"envs.{name}: must be an object")
    if env_name not in envs:
        raise ConfigError(f"env: unknown environment {env_name!r}; cdk.json defines {sorted(envs)}")
    key = f"envs.{env_name}"
    config = _build(EnvConfig, {"name": env_name, **envs[env_name]}, key)
    config.validate(key)
    return config


def _build(cls: type[T], raw: dict[str, Any], key: str) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}: unknown key; expected one of {sorted(fields)}")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        values[name] = _coerce(hints[name], value, f"{key}.{name}")
    missing = [
        n
        for n, f in fields.items()
        if n not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{key}.{missing[0]}: required key is missing")
    return cls(**values)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected an object, got {type(value).__name__}")
        return _build(hint, value, key)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}: expected a non-empty string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported setting type {hint!r}")  # pragma: no cover
