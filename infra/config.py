"""Typed, validated settings parsed from the "envs" block of cdk.json (frozen pydantic models)."""

from __future__ import annotations

import re
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal, NoReturn, Self

from pydantic import AfterValidator, BaseModel, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError

from infra.components.gpu_hosts import GPU_INFERENCE_AMI_VERSION, InferenceAmiVersion
from infra.model_sources import DEFAULT_SOURCE as DEFAULT_MODEL_SOURCE
from infra.model_sources import SOURCES as MODEL_SOURCES
from runtime.bot import contract as bot_contract
from runtime.cartoonizer import contract as cartoonizer_contract

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_S3_KEY_RE = re.compile(r"^[A-Za-z0-9!_.*'()/-]+$")
# The family is the part before the dot; Graviton families are a1 and every "<letters><generation>g..." one
# (t4g, c7g, m6gd, c6gn, x2gd, im4gn, g5g, r8g).
_GRAVITON_FAMILY_RE = re.compile(r"a1|[a-z]+\d+g.*")

ARM64_INSTANCE_TYPES = ("t4g.small", "t4g.medium", "c7g.medium", "m7g.medium", "c6g.large")
# Burstable first (the bot idles between requests), then two compute types as extra Spot pools.
X86_64_INSTANCE_TYPES = ("t3.small", "t3a.small", "t3.medium", "t3a.medium", "c5.large", "c6i.large")

_LOG_RETENTION_DAYS = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}
)
# Appended to a range error for these keys.
_RANGE_NOTES = {
    "startup_timeout_seconds": "SageMaker's limits",
    "download_timeout_seconds": "SageMaker's limits",
    "invocation_timeout_seconds": "SageMaker's asynchronous limits",
    "memory_mb": "Lambda's limits",
    "timeout_seconds": "Lambda's limits",
}


class ConfigError(ValueError):
    """A cdk.json setting is unknown, missing or has a bad value; the message names the key."""


def _fail(message: str, field: str = "") -> NoReturn:
    """Reject a value; field names the key below the model being validated ("" for the value's own key)."""
    raise PydanticCustomError("config", "{message}", {"message": message, "field": field})


def _check(test: Callable[[Any], bool], message: str) -> AfterValidator:
    """A validator that rejects values failing test; message may use {value!r}."""

    def validate(value: Any) -> Any:
        if not test(value):
            _fail(message.format(value=value))
        return value

    return AfterValidator(validate)


def _matches(pattern: str, message: str) -> AfterValidator:
    regex = re.compile(pattern)
    return _check(lambda value: regex.fullmatch(value) is not None, message)


def _no_duplicates(values: tuple[str, ...]) -> tuple[str, ...]:
    for value in values:
        if values.count(value) > 1:
            _fail(f"{value!r} is listed more than once")
    return values


def architecture_of(instance_type: str) -> Literal["arm64", "x86_64"]:
    """The CPU architecture of an EC2 instance type, from its family name."""
    family = instance_type.split(".", 1)[0]
    return "arm64" if _GRAVITON_FAMILY_RE.fullmatch(family) else "x86_64"


Email = Annotated[str, _matches(_EMAIL_RE.pattern, "is not an email address")]
SageMakerInstanceType = Annotated[
    str, _matches(r"ml\.[a-z0-9]+\.[a-z0-9]+", "must be a SageMaker ml.<family>.<size> type, got {value!r}")
]
InstanceType = Annotated[str, _matches(r"[a-z][a-z0-9-]*\.[a-z0-9]+", "{value!r} is not an EC2 instance type")]
DiscordUserId = Annotated[str, _matches(r"\d{17,20}", "{value!r} is not a Discord user id (17-20 digits)")]


class _Settings(BaseModel, frozen=True, extra="forbid", strict=True, str_min_length=1):
    """Base of every settings model: immutable, no unknown keys, no type coercion (lists become tuples).

    Config is given as class keywords, and each model repeats frozen=True, so that mypy (no pydantic plugin)
    sees the models as frozen and rejects assignments, as it did for the frozen dataclasses.
    """

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        # Like a frozen dataclass: assignment is an AttributeError (pydantic's own frozen check raises a ValueError).
        raise AttributeError(f"{type(self).__name__} is frozen; cannot set {name!r}")


class GithubDiffConfig(_Settings, frozen=True):
    """A read-only role that GitHub Actions assumes through OIDC to post `cdk diff` on pull requests."""

    repository: Annotated[str, _matches(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", "must be 'owner/name', got {value!r}")]
    # An account holds GitHub's OIDC provider once: false when another stack or person already created it.
    create_oidc_provider: bool = True


class BudgetConfig(_Settings, frozen=True):
    """A monthly AWS Budgets cost budget that notifies the ops-alerts topic (80% actual, 100% forecast)."""

    enabled: bool = True
    monthly_usd: Annotated[int, Field(ge=1, le=1_000_000)] = 50
    # False: the whole account's cost (works at once). True: only costs tagged environment=<env name>, which needs
    # the "environment" cost allocation tag activated in the Billing console first (else the budget sees nothing).
    environment_tag_only: bool = False


class StorageConfig(_Settings, frozen=True):
    """Buckets, the bot token secret, the ops-alerts topic and the cost budget that notifies it."""

    # False only for throwaway environments: data buckets are emptied and deleted with the stack.
    retain_data: bool = True
    outputs_expiry_days: Annotated[int, Field(ge=1, le=3650)] = 30
    access_logs_expiry_days: Annotated[int, Field(ge=1, le=3650)] = 365
    # Subscribed to the one ops-alerts SNS topic every system's alarms notify.
    alerts_email: Email | None = None
    budget: BudgetConfig = BudgetConfig()
    # Optional: the role .github/workflows/cdk-diff.yml assumes (docs/operations.md "Pull requests").
    github_diff: GithubDiffConfig | None = None


class BotConfig(_Settings, frozen=True):
    """The always-on Discord bot and the fleet that hosts it."""

    architecture: Literal["arm64", "x86_64"] = "arm64"
    # Without instance_types, an x86_64 bot gets X86_64_INSTANCE_TYPES instead of these.
    instance_types: Annotated[
        tuple[InstanceType, ...],
        Field(strict=False),
        _check(lambda types: len(types) >= 1, "needs at least one instance type"),
        AfterValidator(_no_duplicates),
    ] = ARM64_INSTANCE_TYPES
    target_capacity: Annotated[int, Field(ge=0, le=10)] = 1
    allocation_strategy: Literal["priceCapacityOptimized", "capacityOptimized", "lowestPrice", "diversified"] = (
        "priceCapacityOptimized"
    )
    # "spot-fleet" (default) or "asg": an Auto Scaling group with a mixed-instances policy, for
    # accounts whose policies forbid Spot Fleet requests.
    fleet: Literal["spot-fleet", "asg"] = "spot-fleet"
    log_retention_days: Annotated[
        int, _check(lambda days: days in _LOG_RETENTION_DAYS, f"must be one of {sorted(_LOG_RETENTION_DAYS)}")
    ] = 30
    model_key: Annotated[
        str,
        _check(
            lambda key: _S3_KEY_RE.fullmatch(key) is not None and key.endswith(".onnx"),
            "must be an S3 key ending in .onnx",
        ),
    ] = bot_contract.DEFAULT_MODEL_KEY
    # Seconds between the bot's checks for a newly published model (one HeadObject each; GENART_MODEL_POLL_S).
    model_poll_s: Annotated[int, Field(ge=10, le=3600)] = bot_contract.MODEL_POLL_S
    # Discord user ids (not secrets) allowed to run operator commands such as reload_model.
    operator_ids: Annotated[tuple[DiscordUserId, ...], Field(strict=False)] = ()

    @model_validator(mode="before")
    @classmethod
    def _instance_types_follow_architecture(cls, data: Any) -> Any:
        if isinstance(data, dict) and "instance_types" not in data and data.get("architecture") == "x86_64":
            return {**data, "instance_types": X86_64_INSTANCE_TYPES}
        return data

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        for index, itype in enumerate(self.instance_types):
            arch = architecture_of(itype)
            if arch != self.architecture:
                kind = "a Graviton (arm64)" if arch == "arm64" else "an x86_64"
                _fail(
                    f"{itype!r} is {kind} type but bot.architecture is {self.architecture!r}; list only "
                    f"{self.architecture} types (or leave instance_types out for the {self.architecture} defaults)",
                    f"instance_types[{index}]",
                )
        if self.fleet == "asg" and self.allocation_strategy == "diversified":
            _fail(
                '"diversified" exists only for Spot Fleet; an Auto Scaling group needs another strategy',
                "allocation_strategy",
            )
        return self


class DiffusionConfig(_Settings, frozen=True):
    """The Stable Diffusion endpoint."""

    # "async" scales to zero and wakes on backlog; "realtime" keeps min_instances >= 1 warm.
    mode: Literal["async", "realtime"] = "async"
    instance_type: SageMakerInstanceType = "ml.g5.xlarge"
    # The host AMI, which fixes the NVIDIA driver; the image's torch is a CUDA 13.0 build (driver >= 580).
    inference_ami_version: InferenceAmiVersion = GPU_INFERENCE_AMI_VERSION
    min_instances: int = 0
    max_instances: Annotated[int, Field(ge=1, le=20)] = 1
    model_name: Annotated[str, _matches(r"[a-z0-9][a-z0-9-]{0,62}", "must be lowercase letters, digits and dashes")] = (
        "sd15"
    )
    # Where the deploy seeds diffusion/<model_name>/ from (infra/model_sources.py); null: the deploy stops before
    # the endpoint until someone uploads the weights (accounts without internet egress).
    model_source: (
        Annotated[
            str,
            _check(
                lambda name: name in MODEL_SOURCES,
                f"{{value!r}} is not a known model source; known: {sorted(MODEL_SOURCES)}, or null to upload the "
                "weights yourself",
            ),
        ]
        | None
    ) = DEFAULT_MODEL_SOURCE
    max_concurrent_invocations_per_instance: Annotated[int, Field(ge=1, le=64)] = 4
    target_invocations_per_instance: Annotated[int, Field(ge=1, le=1000)] = 8
    # Cold torch.compile warm-up runs before /ping turns healthy; a warm compile cache makes it much shorter.
    startup_timeout_seconds: Annotated[int, Field(ge=60, le=3600)] = 1800
    download_timeout_seconds: Annotated[int, Field(ge=60, le=3600)] = 1200
    # Async target tracking: queued requests per instance before another instance is added.
    target_backlog_per_instance: Annotated[int, Field(ge=1, le=100)] = 2
    # Async: minutes with nothing queued or running before the variant drops to min_instances (also right after
    # a deploy, which always starts one instance).
    idle_scale_in_minutes: Annotated[int, Field(ge=1, le=60)] = 10
    latency_alarm_p90_seconds: Annotated[int, Field(ge=1, le=3600)] = 30
    backlog_age_alarm_seconds: Annotated[int, Field(ge=60, le=86400)] = 1800

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "alarm_email" in data:
            _fail("moved to storage.alerts_email (every system's alarms go to the one ops-alerts topic)", "alarm_email")
        return data

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        low = 0 if self.mode == "async" else 1
        if not low <= self.min_instances <= self.max_instances:
            _fail(f"must be {low}..max_instances in {self.mode} mode", "min_instances")
        if self.mode == "realtime" and "idle_scale_in_minutes" in self.model_fields_set:
            _fail("applies to async mode only (realtime scales on invocations per instance)", "idle_scale_in_minutes")
        return self


class PipelineConfig(_Settings, frozen=True):
    """The StyleGAN2 training pipeline and its notifications."""

    # Pipeline run results (not alerts: those go to storage.alerts_email).
    notification_email: Email | None = None
    processing_instance_type: SageMakerInstanceType = "ml.m5.xlarge"
    training_instance_type: SageMakerInstanceType = "ml.g5.2xlarge"
    training_instance_count: Annotated[int, Field(ge=1, le=8)] = 1
    export_instance_type: SageMakerInstanceType = "ml.m5.xlarge"
    use_spot: bool = True
    max_run_hours: Annotated[int, Field(ge=1, le=120)] = 24
    # Only used with use_spot (SageMaker's MaxWaitTimeInSeconds covers the run plus waiting for Spot capacity).
    max_wait_hours: Annotated[int, Field(ge=1)] = 48
    resolution: Annotated[
        int, _check(lambda value: value in (64, 128, 256, 512, 1024), "must be 64, 128, 256, 512 or 1024")
    ] = 256
    kimg: Annotated[int, Field(ge=1, le=100_000)] = 1000
    # None: the ModelPreset's own value (paper256: batch 64, gamma 1; paper512: 64, 0.5), so a default run trains
    # the preset exactly; a number becomes the default of the Batch / Gamma parameter and overrides the preset.
    batch: Annotated[int | None, Field(ge=1, le=1024)] = None
    gamma: Annotated[float | None, Field(ge=0, le=1000)] = None
    # None: the BatchGpu parameter defaults to 0, auto (the per-GPU batch, capped by resolution: docs/stylegan2.md);
    # a number of images per GPU per forward/backward round becomes its default.
    batch_gpu: Annotated[int | None, Field(ge=1, le=1024)] = None

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        if self.use_spot and self.max_wait_hours < self.max_run_hours:
            _fail(
                "must be at least max_run_hours when use_spot is true (SageMaker rejects a shorter wait)",
                "max_wait_hours",
            )
        if self.batch is not None and self.batch_gpu is not None:
            per_instance = self.batch // self.training_instance_count
            if self.batch % self.training_instance_count or per_instance % self.batch_gpu:
                _fail(
                    f"must divide the batch per training instance (batch {self.batch} / training_instance_count "
                    f"{self.training_instance_count})",
                    "batch_gpu",
                )
        return self


class CartoonizerImageConfig(_Settings, frozen=True):
    """The container-image Lambda that cartoonizes one image per invocation on CPU."""

    # Lambda gives CPU in proportion to memory (1769 MB is one vCPU): a starting point, to be tuned by measurement.
    memory_mb: Annotated[int, Field(ge=128, le=10240)] = 3008
    timeout_seconds: Annotated[int, Field(ge=10, le=900)] = 120
    # None shares the account's pool: Lambda keeps 10 (or 100) unreserved, so a fresh account cannot reserve any.
    reserved_concurrency: Annotated[int | None, Field(ge=1, le=1000)] = None
    max_side: Annotated[int, Field(ge=64, le=8192)] = cartoonizer_contract.DEFAULT_MAX_IMAGE_SIDE
    max_bytes: Annotated[int, Field(ge=100_000, le=200_000_000)] = 25_000_000
    tracing: bool = False


class CartoonizerVideoConfig(_Settings, frozen=True):
    """The asynchronous GPU endpoint that cartoonizes videos (and images sent to it); scales to zero by default."""

    instance_type: SageMakerInstanceType = "ml.g4dn.xlarge"
    # The host's NVIDIA driver (infra/components/gpu_hosts.py); it must run the image's CUDA build (test_gpu_pairing).
    inference_ami_version: InferenceAmiVersion = GPU_INFERENCE_AMI_VERSION
    min_instances: Annotated[int, Field(ge=0)] = 0
    max_instances: Annotated[int, Field(ge=1, le=20)] = 1
    # The server overlaps decode, inference and encode within a job; more jobs per GPU only queue on it.
    max_concurrent_invocations_per_instance: Annotated[int, Field(ge=1, le=16)] = 1
    target_backlog_per_instance: Annotated[int, Field(ge=1, le=100)] = 2
    # Callers pass it as InvokeEndpointAsync's InvocationTimeoutSeconds (SageMaker's default is 900).
    invocation_timeout_seconds: Annotated[int, Field(ge=60, le=3600)] = 3600
    max_side: Annotated[int, Field(ge=64, le=8192)] = cartoonizer_contract.DEFAULT_MAX_VIDEO_SIDE
    max_seconds: Annotated[int, Field(ge=1, le=36_000)] = 600
    progress_interval_seconds: Annotated[float, Field(ge=0.5, le=60)] = cartoonizer_contract.DEFAULT_PROGRESS_INTERVAL_S
    startup_timeout_seconds: Annotated[int, Field(ge=60, le=3600)] = 600
    download_timeout_seconds: Annotated[int, Field(ge=60, le=3600)] = 600
    latency_alarm_p90_seconds: Annotated[int, Field(ge=1, le=3600)] = 1800
    backlog_age_alarm_seconds: Annotated[int, Field(ge=60, le=86400)] = 1800

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        if self.min_instances > self.max_instances:
            _fail("must be 0..max_instances", "min_instances")
        if self.latency_alarm_p90_seconds > self.invocation_timeout_seconds:
            _fail(
                "must be at most invocation_timeout_seconds (no job runs longer, so the alarm could never fire)",
                "latency_alarm_p90_seconds",
            )
        return self


# The Diffusion server's default limits (runtime/endpoint/settings.py; a test keeps these equal): the studio offers no
# more than the endpoint accepts.
DIFFUSION_MAX_SIDE = 768
DIFFUSION_MAX_STEPS = 100
DIFFUSION_MAX_IMAGES = 4
DIFFUSION_SIZES = ((512, 512), (768, 768), (512, 768), (768, 512))
DIFFUSION_MIN_SIDE = min(min(size) for size in DIFFUSION_SIZES)  # so the studio offers at least one size
# A presigned POST can upload one object of at most 5 GB.
PRESIGNED_POST_MAX_BYTES = 5_000_000_000
DEFAULT_LICENCE = "Cartoonizer model: White-box Cartoonization, CC BY-NC-SA 4.0 (non-commercial)"


class WebConfig(_Settings, frozen=True):
    """The web studio: page on CloudFront, Cognito sign-in, HTTP API with per-user limits, jobs table."""

    enabled: bool = True
    # Off: only operators add users (admin-create-user, docs/operations.md); on: anyone who finds the page can.
    self_sign_up: bool = False
    # None: cartoonizer.image.max_bytes (the image function refuses larger images anyway).
    max_image_bytes: Annotated[int | None, Field(ge=1000)] = None
    max_video_bytes: Annotated[int, Field(ge=1_000_000, le=PRESIGNED_POST_MAX_BYTES)] = 500_000_000
    uploads_per_hour: Annotated[int, Field(ge=1, le=10_000)] = 30
    jobs_per_hour: Annotated[int, Field(ge=1, le=10_000)] = 20
    # Generated images (a generate job of 4 images counts 4).
    images_per_hour: Annotated[int, Field(ge=1, le=10_000)] = 20
    max_generate_side: Annotated[int, Field(ge=DIFFUSION_MIN_SIDE, le=DIFFUSION_MAX_SIDE)] = DIFFUSION_MAX_SIDE
    max_generate_steps: Annotated[int, Field(ge=1, le=DIFFUSION_MAX_STEPS)] = 50
    max_generate_images: Annotated[int, Field(ge=1, le=DIFFUSION_MAX_IMAGES)] = DIFFUSION_MAX_IMAGES
    # Presigned upload and download links; the API signs them with its role's session, which lasts up to 12 hours.
    link_expiry_seconds: Annotated[int, Field(ge=60, le=43_200)] = 3600
    # Job records expire (DynamoDB TTL); at most storage.outputs_expiry_days, after which their results are gone.
    job_ttl_days: Annotated[int, Field(ge=1, le=3650)] = 7
    # An image job with no progress after this long is reported failed; more than cartoonizer.image.timeout_seconds.
    stale_after_seconds: Annotated[int, Field(ge=60, le=86_400)] = 600
    # None shares the account's pool (Lambda keeps 10 or 100 units unreserved, so a fresh account cannot reserve any);
    # the stage throttle below bounds the request rate either way.
    api_reserved_concurrency: Annotated[int | None, Field(ge=1, le=1000)] = None
    api_throttle_rate_per_second: Annotated[int, Field(ge=1, le=10_000)] = 10
    api_throttle_burst: Annotated[int, Field(ge=1, le=5_000)] = 20
    # Origins allowed to POST presigned uploads to and GET results from the outputs bucket. "*" by default: the
    # bucket cannot name the distribution (Storage deploys first) and presigned URLs are bearer tokens; S3 sends no
    # cookies, so an origin gains nothing it does not already hold in the URL.
    cors_allowed_origins: Annotated[
        tuple[
            Annotated[str, _matches(r"\*|https?://[A-Za-z0-9.:-]+", "must be '*' or an origin like https://x.y")], ...
        ],
        Field(strict=False),
        _check(lambda origins: len(origins) >= 1, "needs at least one origin"),
        AfterValidator(_no_duplicates),
    ] = ("*",)
    price_class: Literal["PriceClass_100", "PriceClass_200", "PriceClass_All"] = "PriceClass_100"
    licence: str = DEFAULT_LICENCE


class CartoonizerConfig(_Settings, frozen=True):
    """The Cartoonizer: images on a container-image Lambda, videos on an asynchronous GPU endpoint."""

    model_name: Annotated[str, _matches(r"[a-z0-9][a-z0-9-]{0,62}", "must be lowercase letters, digits and dashes")] = (
        "whitebox"
    )
    # Uploads (people's photos and videos) under cartoonizer/inputs/ go sooner than results (outputs_expiry_days).
    inputs_expiry_days: Annotated[int, Field(ge=1, le=3650)] = 1
    log_retention_days: Annotated[
        int, _check(lambda days: days in _LOG_RETENTION_DAYS, f"must be one of {sorted(_LOG_RETENTION_DAYS)}")
    ] = 30
    image: CartoonizerImageConfig = CartoonizerImageConfig()
    video: CartoonizerVideoConfig = CartoonizerVideoConfig()
    web: WebConfig = WebConfig()

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        web = self.web
        if web.max_image_bytes is not None and web.max_image_bytes > self.image.max_bytes:
            _fail(
                f"must be at most cartoonizer.image.max_bytes ({self.image.max_bytes}): the image function refuses "
                "larger images",
                "web.max_image_bytes",
            )
        if web.stale_after_seconds <= self.image.timeout_seconds:
            _fail(
                f"must be more than cartoonizer.image.timeout_seconds ({self.image.timeout_seconds}): a running "
                "image job would be reported failed",
                "web.stale_after_seconds",
            )
        return self

    @property
    def web_max_image_bytes(self) -> int:
        """The largest image the studio accepts: web.max_image_bytes, else the image function's limit."""
        return self.web.max_image_bytes or self.image.max_bytes


class EnvConfig(_Settings, frozen=True):
    """One deployment environment (dev, prod, ...): where it goes and how each system is sized."""

    # The key of the environment in "envs", not a setting.
    name: Annotated[
        str,
        _matches(r"[a-z][a-z0-9]{0,15}", "environment names are 1-16 lowercase letters/digits, starting with a letter"),
    ]
    account: Annotated[str, _matches(r"\d{12}", "must be 12 digits")] | None = None
    region: Annotated[str, _matches(r"[a-z]{2}(-[a-z]+)+-\d", "is not an AWS region name")] | None = None
    storage: StorageConfig = StorageConfig()
    bot: BotConfig = BotConfig()
    diffusion: DiffusionConfig = DiffusionConfig()
    pipeline: PipelineConfig = PipelineConfig()
    cartoonizer: CartoonizerConfig = CartoonizerConfig()

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        if self.cartoonizer.inputs_expiry_days > self.storage.outputs_expiry_days:
            _fail(
                f"must be at most storage.outputs_expiry_days ({self.storage.outputs_expiry_days}): the whole "
                "outputs bucket already expires then",
                "cartoonizer.inputs_expiry_days",
            )
        if self.cartoonizer.web.job_ttl_days > self.storage.outputs_expiry_days:
            _fail(
                f"must be at most storage.outputs_expiry_days ({self.storage.outputs_expiry_days}): the job's "
                "results are gone then",
                "cartoonizer.web.job_ttl_days",
            )
        return self

    @property
    def prefix(self) -> str:
        """Prefix for stack names, so several environments share one account."""
        return f"GenArt-{self.name}"


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
    raw = envs[env_name]
    if "name" in raw:
        raise ConfigError(f"{key}.name: unknown key; expected one of {_setting_names(EnvConfig)}")
    try:
        return EnvConfig.model_validate({**raw, "name": env_name})
    except ValidationError as error:
        raise ConfigError(_message(error, key)) from None


def _setting_names(model: type[BaseModel]) -> list[str]:
    return sorted(set(model.model_fields) - {"name"} if model is EnvConfig else model.model_fields)


def _message(error: ValidationError, key: str) -> str:
    """One error of a failed validation as "<key path>: <what is wrong>"; an unknown key is reported first."""
    details = sorted(error.errors(), key=lambda detail: detail["type"] != "extra_forbidden")[0]
    loc = tuple(details["loc"])
    ctx = details.get("ctx") or {}
    if details["type"] == "config" and ctx["field"]:
        loc = (*loc, ctx["field"])
    path = key
    for part in loc if loc != ("name",) else ():
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return f"{path}: {_describe(details, loc)}"


def _describe(details: ErrorDetails, loc: tuple[int | str, ...]) -> str:
    kind, value, ctx = details["type"], details["input"], details.get("ctx") or {}
    parent, info = _field_at(loc)
    if kind == "config":
        return str(ctx["message"])
    if kind == "extra_forbidden" and parent is not None:
        return f"unknown key; expected one of {_setting_names(parent)}"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error" and info is not None:
        return f"{value!r} is not one of {list(typing.get_args(info.annotation))}"
    if kind in ("greater_than_equal", "less_than_equal") and info is not None:
        low = next((m.ge for m in info.metadata if hasattr(m, "ge")), None)
        high = next((m.le for m in info.metadata if hasattr(m, "le")), None)
        text = f"must be {low}..{high}" if high is not None else f"must be at least {low}"
        note = _RANGE_NOTES.get(str(loc[-1]))
        return f"{text} ({note})" if note else text
    simple = {
        "bool_type": f"expected true or false, got {value!r}",
        "int_type": f"expected an integer, got {value!r}",
        "float_type": f"expected a number, got {value!r}",
        "string_type": f"expected a non-empty string, got {value!r}",
        "string_too_short": f"expected a non-empty string, got {value!r}",
        "tuple_type": f"expected a list, got {type(value).__name__}",
        "model_type": f"expected an object, got {type(value).__name__}",
    }
    return simple.get(kind, details["msg"])


def _field_at(loc: tuple[int | str, ...]) -> tuple[type[BaseModel] | None, FieldInfo | None]:
    """The model that holds the key at loc (for an unknown key: the model it was given to) and the key's field."""
    model: type[BaseModel] | None = EnvConfig
    parent: type[BaseModel] | None = None
    info: FieldInfo | None = None
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None:
            return None, None
        parent, info = model, model.model_fields.get(part)
        if info is None:
            return parent, None
        annotation = info.annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return parent, info
