"""Composes every stack of the app from one EnvConfig; app.py and the tests both call it."""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.config import EnvConfig
from infra.stacks.storage import StorageStack


@dataclass(frozen=True)
class GenArtStacks:
    """The stacks of one environment, by role."""

    storage: StorageStack

    def all(self) -> list[cdk.Stack]:
        """Every stack, in deployment order."""
        return [self.storage]


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

    stacks = GenArtStacks(storage=storage)
    for stack in stacks.all():
        for key, value in tags.items():
            cdk.Tags.of(stack).add(key, value)
    cdk.Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return stacks
