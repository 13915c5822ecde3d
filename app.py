#!/usr/bin/env python3
"""CDK entry point: the only place that reads context; `-c env=NAME` picks an "envs" entry."""

from __future__ import annotations

import sys

import aws_cdk as cdk

from infra.app_builder import build_app, synthesize
from infra.components.image_repository import MixedBootstrapError
from infra.config import ConfigError, load_config


def main() -> None:
    app = cdk.App()
    env_name = app.node.try_get_context("env") or "dev"
    try:
        config = load_config(app.node.try_get_context("envs"), str(env_name))
    except ConfigError as error:
        sys.exit(f"cdk.json: {error}")
    build_app(app, config)
    try:
        synthesize(app)
    except MixedBootstrapError as error:
        sys.exit(f"cdk synth: {error}")


if __name__ == "__main__":
    main()
