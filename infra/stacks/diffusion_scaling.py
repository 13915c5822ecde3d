"""Autoscaling of the endpoint variant: invocation target tracking (realtime) or scale-to-zero on backlog (async)."""

from __future__ import annotations

from aws_cdk import Aws, Duration
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.config import DiffusionConfig

SAGEMAKER_NAMESPACE = "AWS/SageMaker"
# The service-linked role Application Auto Scaling creates on first use for SageMaker variants.
SCALING_ROLE_PATH = (
    "aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
)


def endpoint_metric(
    metric_name: str, *, endpoint_name: str, variant_name: str | None = None, statistic: str = "Average"
) -> cloudwatch.Metric:
    """An AWS/SageMaker endpoint metric at one-minute resolution (async backlog metrics have no variant)."""
    dimensions = {"EndpointName": endpoint_name}
    if variant_name is not None:
        dimensions["VariantName"] = variant_name
    return cloudwatch.Metric(
        namespace=SAGEMAKER_NAMESPACE,
        metric_name=metric_name,
        dimensions_map=dimensions,
        statistic=statistic,
        period=Duration.minutes(1),
    )


class EndpointScaling(Construct):
    """Registers the variant's DesiredInstanceCount between min and max and attaches the policies of its mode."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: DiffusionConfig, endpoint_name: str, variant_name: str
    ) -> None:
        super().__init__(scope, construct_id)
        self.target = appscaling.ScalableTarget(
            self,
            "Target",
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"endpoint/{endpoint_name}/variant/{variant_name}",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            min_capacity=config.min_instances,
            max_capacity=config.max_instances,
            role=iam.Role.from_role_arn(
                self, "ServiceLinkedRole", f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/{SCALING_ROLE_PATH}"
            ),
        )
        self.wake_alarm: cloudwatch.Alarm | None = None
        if config.mode == "realtime":
            self.target.scale_to_track_metric(
                "InvocationsPerInstance",
                target_value=config.target_invocations_per_instance,
                predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
                scale_in_cooldown=Duration.minutes(10),
                scale_out_cooldown=Duration.minutes(5),
            )
            return
        # Async: track the queue per instance; below target for long enough the variant scales in to zero.
        self.target.scale_to_track_metric(
            "BacklogPerInstance",
            target_value=config.target_backlog_per_instance,
            custom_metric=endpoint_metric("ApproximateBacklogSizePerInstance", endpoint_name=endpoint_name),
            scale_in_cooldown=Duration.minutes(10),
            scale_out_cooldown=Duration.minutes(5),
        )
        # At zero instances target tracking only scales out once the backlog exceeds its target; AWS's documented
        # extra step policy on HasBacklogWithoutCapacity starts the first instance as soon as one request waits.
        wake = appscaling.StepScalingAction(
            self,
            "WakeFromZero",
            scaling_target=self.target,
            adjustment_type=appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
            metric_aggregation_type=appscaling.MetricAggregationType.AVERAGE,
            cooldown=Duration.minutes(5),
        )
        wake.add_adjustment(adjustment=1, lower_bound=0)
        self.wake_alarm = cloudwatch.Alarm(
            self,
            "BacklogWithoutCapacity",
            alarm_description="Requests are queued and no instance is running: scale the variant from 0 to 1.",
            metric=endpoint_metric("HasBacklogWithoutCapacity", endpoint_name=endpoint_name),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=2,
            datapoints_to_alarm=2,
            treat_missing_data=cloudwatch.TreatMissingData.MISSING,
        )
        self.wake_alarm.add_alarm_action(cloudwatch_actions.ApplicationScalingAction(wake))
