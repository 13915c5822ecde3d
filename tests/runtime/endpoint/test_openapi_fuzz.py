"""Schemathesis fuzz of the OpenAPI schema: bounded examples, no 5xx, responses conform to the schema."""

from __future__ import annotations

import os
from collections.abc import Iterator

import boto3
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from moto import mock_aws

from runtime.endpoint.app import create_app
from runtime.endpoint.output_store import OutputStore

from .conftest import make_settings, tiny_factory

# 64x64 only and at most 2 steps / 2 images keep every generated request fast.
app = create_app(
    settings=make_settings(GENART_MAX_SIDE="64", GENART_MAX_STEPS="2", GENART_MAX_IMAGES="2"),
    factory=tiny_factory,
    devices=["cpu"],
    # The boto3 client is made on first use, inside the moto mock the fixture starts.
    output_store=OutputStore(bucket="fuzz-outputs", prefix="diffusion/"),
    # Schemathesis runs the app's lifespan itself; make that startup return only once the model is warm.
    load_before_serving=True,
)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture(scope="module", autouse=True)
def _outputs_bucket() -> Iterator[None]:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="fuzz-outputs")
        yield


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_5xx_and_matches_schema(case: schemathesis.Case) -> None:
    case.call_and_validate()
