"""Composes every stack of the app from one EnvConfig; app.py and the tests both call it."""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.config import EnvConfig
from infra.stacks.bot import BotStack
from infra.stacks.diffusion import DiffusionStack
from infra.stacks.diffusion_image_repo import DiffusionImageRepoStack, diffusion_repository_name
from infra.stacks.pipeline import PipelineStack
from infra.stacks.storage import StorageStack


@dataclass(frozen=True)
class GenArtStacks:
    """The stacks of one environment, by role."""

    storage: StorageStack
    bot: BotStack
    pipeline: PipelineStack
    diffusion_images: DiffusionImageRepoStack
    diffusion: DiffusionStack

    def all(self) -> list[cdk.Stack]:
        """Every stack, in deployment order."""
        return [self.storage, self.bot, self.pipeline, self.diffusion_images, self.diffusion]


def build_app(app: cdk.App, config: EnvConfig) -> GenArtStacks:
    """Add all stacks for one environment to app and run cdk-nag AwsSolutions over them."""
    env = cdk.Environment(account=config.account, region=config.region)
    tags = {"project": "genart", "environment": config.name}

    storage = StorageStack(
        app,
        f"{config.prefix}-Storage",
        config=config.storage,
        env_name=config.name,
        env=env,
        description="GenArt: buckets and the Discord bot token secret",
    )

    bot = BotStack(
        app,
        f"{config.prefix}-Bot",
        config=config.bot,
        models_bucket=storage.models_bucket,
        bot_token_secret=storage.bot_token_secret,
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
        retain_logs=config.storage.retain_data,
        env=env,
        description="GenArt: StyleGAN2 SageMaker pipeline, step image, notifications and failure alerts",
    )

    diffusion_images = DiffusionImageRepoStack(
        app,
        f"{config.prefix}-DiffusionImages",
        repository_name=diffusion_repository_name(config.prefix),
        env=env,
        description="GenArt: ECR repository of the Stable Diffusion endpoint image (filled by cdk deploy)",
    )
    diffusion = DiffusionStack(
        app,
        f"{config.prefix}-Diffusion",
        config=config.diffusion,
        env_name=config.name,
        image_repository_stack=diffusion_images,
        models_bucket=storage.models_bucket,
        outputs_bucket=storage.outputs_bucket,
        env=env,
        description="GenArt: Stable Diffusion SageMaker endpoint, autoscaling and alarms",
    )

    stacks = GenArtStacks(
        storage=storage, bot=bot, pipeline=pipeline, diffusion_images=diffusion_images, diffusion=diffusion
    )
    for stack in stacks.all():
        for key, value in tags.items():
            cdk.Tags.of(stack).add(key, value)
    cdk.Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return stacks
