"""Composes the five stacks of one environment from one EnvConfig; app.py and the tests both call it."""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.components.image_repository import assert_one_bootstrap
from infra.config import EnvConfig
from infra.stacks.bot import BotStack
from infra.stacks.cartoonizer import CartoonizerStack
from infra.stacks.diffusion import DiffusionStack
from infra.stacks.pipeline import PipelineStack
from infra.stacks.storage import BrowserAccess, ImageSystem, StorageStack
from infra.stacks.web_studio import PAGE_ACCESS_LOGS_PREFIX
from runtime.cartoonizer import contract as cartoonizer_contract
from runtime.pipeline.stylegan2 import contract as pipeline_contract

# Systems whose images `cdk deploy` builds and pushes into a repository of the Storage stack.
IMAGE_SYSTEMS = (
    ImageSystem("diffusion"),
    ImageSystem("pipeline"),
    # The image function's and the video endpoint's images; the function's is pulled by the Lambda service.
    ImageSystem("cartoonizer", images=2, lambda_images=True),
)


@dataclass(frozen=True)
class GenArtStacks:
    """The stacks of one environment, by role."""

    storage: StorageStack
    bot: BotStack
    pipeline: PipelineStack
    diffusion: DiffusionStack
    cartoonizer: CartoonizerStack

    def all(self) -> list[cdk.Stack]:
        """Every stack, in deployment order."""
        return [self.storage, self.bot, self.pipeline, self.diffusion, self.cartoonizer]


def build_app(app: cdk.App, config: EnvConfig) -> GenArtStacks:
    """Add all stacks for one environment to app and run cdk-nag AwsSolutions over them."""
    env = cdk.Environment(account=config.account, region=config.region)
    web = config.cartoonizer.web
    storage = StorageStack(
        app,
        f"{config.prefix}-Storage",
        config=config.storage,
        env_name=config.name,
        image_systems=IMAGE_SYSTEMS,
        early_expiry_days={cartoonizer_contract.INPUTS_PREFIX: config.cartoonizer.inputs_expiry_days},
        # Pruned or overwritten StyleGAN2 checkpoints (about 0.7 GB each at paper256) are gone within a day.
        short_lived_model_prefixes=(f"{pipeline_contract.CHECKPOINTS_PREFIX}/",),
        browser_access=BrowserAccess(web.cors_allowed_origins) if web.enabled else None,
        external_access_log_prefixes=(PAGE_ACCESS_LOGS_PREFIX,) if web.enabled else (),
        env=env,
        description="GenArt: buckets, the Discord bot token secret, image repositories, the ops-alerts topic",
    )
    bot = BotStack(
        app,
        f"{config.prefix}-Bot",
        config=config.bot,
        models_bucket=storage.models_bucket,
        bot_token_secret=storage.bot_token_secret,
        ops_alerts=storage.ops_alerts,
        env_name=config.name,
        retain_logs=config.storage.retain_data,
        env=env,
        description="GenArt: the Discord bot on one Spot instance (NAT-free VPC, Spot Fleet, logs)",
    )
    pipeline = PipelineStack(
        app,
        f"{config.prefix}-Pipeline",
        config=config.pipeline,
        pipeline_name=f"{config.prefix}-stylegan2",
        models_bucket=storage.models_bucket,
        datasets_bucket=storage.datasets_bucket,
        image_repository=storage.image_repositories["pipeline"],
        ops_alerts=storage.ops_alerts,
        retain_logs=config.storage.retain_data,
        env=env,
        description="GenArt: StyleGAN2 SageMaker pipeline, step image, notifications and failure alerts",
    )
    diffusion = DiffusionStack(
        app,
        f"{config.prefix}-Diffusion",
        config=config.diffusion,
        env_name=config.name,
        image_repository=storage.image_repositories["diffusion"],
        models_bucket=storage.models_bucket,
        outputs_bucket=storage.outputs_bucket,
        ops_alerts=storage.ops_alerts,
        env=env,
        description="GenArt: Stable Diffusion SageMaker endpoint, autoscaling and alarms",
    )
    cartoonizer = CartoonizerStack(
        app,
        f"{config.prefix}-Cartoonizer",
        config=config.cartoonizer,
        env_name=config.name,
        image_repository=storage.image_repositories["cartoonizer"],
        models_bucket=storage.models_bucket,
        outputs_bucket=storage.outputs_bucket,
        access_logs_bucket=storage.access_logs_bucket,
        ops_alerts=storage.ops_alerts,
        retain_logs=config.storage.retain_data,
        # The studio's Generate tab starts async jobs; a real-time endpoint leaves it off.
        diffusion_endpoint=diffusion.endpoint if config.diffusion.mode == "async" else None,
        env=env,
        description="GenArt: Cartoonizer image Lambda (CPU) and async GPU video endpoint, scaled to zero, alarms; "
        "the web studio (CloudFront page, Cognito sign-in, HTTP API, jobs table)",
    )

    stacks = GenArtStacks(storage=storage, bot=bot, pipeline=pipeline, diffusion=diffusion, cartoonizer=cartoonizer)
    for stack in stacks.all():
        cdk.Tags.of(stack).add("project", "genart")
        cdk.Tags.of(stack).add("environment", config.name)
    cdk.Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return stacks


def synthesize(app: cdk.App) -> cdk.cx_api.CloudAssembly:
    """Synthesize the app and refuse an assembly whose stacks would use different bootstrap roles or qualifiers."""
    assembly = app.synth()
    assert_one_bootstrap(assembly)
    return assembly
