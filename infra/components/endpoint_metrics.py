"""AWS/SageMaker endpoint metrics with the exact dimension sets SageMaker publishes them under."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch

SAGEMAKER_NAMESPACE = "AWS/SageMaker"
# Async queue metrics are published per endpoint only; a VariantName dimension would match no data at all.
ENDPOINT_LEVEL_METRICS = frozenset(
    {
        "ApproximateBacklogSize",
        "ApproximateBacklogSizePerInstance",
        "ApproximateAgeOfOldestRequest",
        "HasBacklogWithoutCapacity",
    }
)


def endpoint_metric(
    metric_name: str,
    *,
    endpoint_name: str,
    variant_name: str,
    statistic: str = "Average",
    period: Duration | None = None,
) -> cloudwatch.Metric:
    """One AWS/SageMaker metric of an endpoint, with VariantName only where SageMaker publishes it."""
    dimensions = {"EndpointName": endpoint_name}
    if metric_name not in ENDPOINT_LEVEL_METRICS:
        dimensions["VariantName"] = variant_name
    return cloudwatch.Metric(
        namespace=SAGEMAKER_NAMESPACE,
        metric_name=metric_name,
        dimensions_map=dimensions,
        statistic=statistic,
        period=period or Duration.minutes(1),
    )
