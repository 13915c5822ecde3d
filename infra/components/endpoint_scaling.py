"""Autoscaling of a SageMaker variant: invocation tracking (real-time); backlog tracking, wake-from-zero and
idle scale-in (async)."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws, Duration
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.components.endpoint_metrics import endpoint_metric
from infra.components.gpu_hosts import INFERENCE_AMI_DRIVERS, InferenceAmiVersion

# The service-linked role Application Auto Scaling creates on first use for SageMaker variants.
SCALING_ROLE_PATH = (
    "aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
)
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"


@dataclass(frozen=True)
class EndpointCapacity:
    """Instance type and scaling bounds of a variant; asynchronous variants may scale to zero."""

    instance_type: str
    min_instances: int
    max_instances: int
    # Real-time: invocations per instance per minute before another instance is added.
    target_invocations_per_instance: int = 8
    # Asynchronous: queued requests per instance before another instance is added.
    target_backlog_per_instance: int = 2
    # Asynchronous: minutes with nothing queued or in flight before the variant drops to min_instances;
    # None leaves scale-in to target tracking alone (about 15 minutes below target).
    idle_scale_in_minutes: int | None = None
    # The variant's InferenceAmiVersion, which fixes the host's NVIDIA driver (infra/components/gpu_hosts.py); every
    # GPU variant sets one so its image's CUDA build runs there (tests/test_gpu_pairing.py). None: SageMaker's default.
    inference_ami_version: InferenceAmiVersion | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.min_instances <= self.max_instances or self.max_instances < 1:
            raise ValueError(
                f"EndpointCapacity: need 0 <= min_instances <= max_instances and max_instances >= 1, "
                f"got min_instances={self.min_instances}, max_instances={self.max_instances}"
            )
        if self.idle_scale_in_minutes is not None and self.idle_scale_in_minutes < 1:
            raise ValueError(f"EndpointCapacity.idle_scale_in_minutes: at least 1, got {self.idle_scale_in_minutes}")
        if self.inference_ami_version is not None and self.inference_ami_version not in INFERENCE_AMI_DRIVERS:
            raise ValueError(
                f"EndpointCapacity.inference_ami_version: unknown GPU AMI version {self.inference_ami_version!r}; "
                f"known: {sorted(INFERENCE_AMI_DRIVERS)}"
            )


class EndpointScaling(Construct):
    """Registers DesiredInstanceCount between min and max and attaches the policies of the endpoint's mode."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        endpoint_name: str,
        variant_name: str,
        capacity: EndpointCapacity,
        asynchronous: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.target = appscaling.ScalableTarget(
            self,
            "Target",
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"endpoint/{endpoint_name}/variant/{variant_name}",
            scalable_dimension=SCALABLE_DIMENSION,
            min_capacity=capacity.min_instances,
            max_capacity=capacity.max_instances,
            role=iam.Role.from_role_arn(
                self, "ServiceLinkedRole", f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/{SCALING_ROLE_PATH}"
            ),
        )
        self.wake_alarm: cloudwatch.Alarm | None = None
        self.idle_alarm: cloudwatch.Alarm | None = None
        if not asynchronous:
            self.target.scale_to_track_metric(
                "InvocationsPerInstance",
                target_value=capacity.target_invocations_per_instance,
                predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
                scale_in_cooldown=Duration.minutes(10),
                scale_out_cooldown=Duration.minutes(5),
            )
            return
        # Track the queue per instance; below target for long enough the variant scales in to zero.
        self.target.scale_to_track_metric(
            "BacklogPerInstance",
            target_value=capacity.target_backlog_per_instance,
            custom_metric=endpoint_metric(
                "ApproximateBacklogSizePerInstance", endpoint_name=endpoint_name, variant_name=variant_name
            ),
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
            metric=endpoint_metric("HasBacklogWithoutCapacity", endpoint_name=endpoint_name, variant_name=variant_name),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=2,
            datapoints_to_alarm=2,
            treat_missing_data=cloudwatch.TreatMissingData.MISSING,
        )
        self.wake_alarm.add_alarm_action(cloudwatch_actions.ApplicationScalingAction(wake))
        if capacity.idle_scale_in_minutes is not None:
            self.idle_alarm = self._idle_scale_in(
                endpoint_name=endpoint_name,
                variant_name=variant_name,
                minutes=capacity.idle_scale_in_minutes,
                floor=capacity.min_instances,
            )

    def _idle_scale_in(self, *, endpoint_name: str, variant_name: str, minutes: int, floor: int) -> cloudwatch.Alarm:
        """Drop to `floor` instances once nothing was queued or in flight for `minutes` one-minute periods.

        Target tracking scales in only after its own alarm saw 15 one-minute datapoints below target, and every
        deploy of an async endpoint starts one instance; this policy ends that instance's idle time sooner.
        ApproximateBacklogSize counts requests "currently being processed or yet to be processed" (SageMaker's
        async metrics), so a request in flight keeps the alarm OK. CloudWatch repeats an Auto Scaling action
        every minute while its alarm stays in ALARM, so an endpoint that was idle before an in-place update is
        scaled in again within minutes of the update. The wake policy starts an instance as before when a
        request arrives (the first datapoint with a backlog turns this alarm OK).
        """
        idle = appscaling.StepScalingAction(
            self,
            "IdleScaleIn",
            scaling_target=self.target,
            adjustment_type=appscaling.AdjustmentType.EXACT_CAPACITY,
            metric_aggregation_type=appscaling.MetricAggregationType.MAXIMUM,
            cooldown=Duration.minutes(1),
        )
        idle.add_adjustment(adjustment=floor, upper_bound=0)
        alarm = cloudwatch.Alarm(
            self,
            "Idle",
            alarm_description=(
                f"Nothing queued or in flight for {minutes} minutes: scale {endpoint_name} in to {floor} instances."
            ),
            metric=endpoint_metric(
                "ApproximateBacklogSize", endpoint_name=endpoint_name, variant_name=variant_name, statistic="Maximum"
            ),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=minutes,
            datapoints_to_alarm=minutes,
            treat_missing_data=cloudwatch.TreatMissingData.MISSING,
        )
        alarm.add_alarm_action(cloudwatch_actions.ApplicationScalingAction(idle))
        return alarm
