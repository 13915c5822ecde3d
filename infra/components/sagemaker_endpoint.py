"""A SageMaker endpoint serving one image with a model from an S3 prefix: real-time or async, scaled, alarmed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import Aws, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from infra.components.encrypted_topic import PUBLISH_KMS_ACTIONS, EncryptedTopic
from infra.components.endpoint_alarms import EndpointAlarms, EndpointAlarmThresholds
from infra.components.endpoint_metrics import endpoint_metric
from infra.components.endpoint_scaling import EndpointCapacity, EndpointScaling
from infra.components.nag import wildcard_objects
from infra.components.published_image import PublishedImage

VARIANT_NAME = "AllTraffic"
# Namespace of the per-instance metrics (CPU, GPU, memory, disk) SageMaker publishes for an endpoint.
INSTANCE_METRICS_NAMESPACE = "/aws/sagemaker/Endpoints"
_ENDPOINT_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


@dataclass(frozen=True)
class AsyncInvocation:
    """Where asynchronous requests are read from and results written to (prefixes of one bucket)."""

    bucket: s3.IBucket
    input_prefix: str
    output_prefix: str
    failure_prefix: str
    max_concurrent_invocations_per_instance: int = 4

    def __post_init__(self) -> None:
        prefixes = (self.input_prefix, self.output_prefix, self.failure_prefix)
        for name, prefix in zip(("input_prefix", "output_prefix", "failure_prefix"), prefixes, strict=True):
            if not prefix.endswith("/") or prefix.startswith("/"):
                raise ValueError(f"AsyncInvocation.{name}: must be a key prefix ending in '/', got {prefix!r}")
        if len(set(prefixes)) != 3:
            raise ValueError(f"AsyncInvocation: input, output and failure prefixes must differ, got {prefixes}")

    def s3_uri(self, prefix: str) -> str:
        """s3:// URI of a prefix in the bucket."""
        return f"s3://{self.bucket.bucket_name}/{prefix}"


@dataclass(frozen=True)
class ModelData:
    """An uncompressed model folder under a prefix; SageMaker copies it to /opt/ml/model as is."""

    bucket: s3.IBucket
    prefix: str

    def __post_init__(self) -> None:
        if not self.prefix.endswith("/"):
            raise ValueError(f"ModelData.prefix: must end with '/', got {self.prefix!r}")


def instance_scoped_endpoint_name(base: str, instance_type: str) -> str:
    """Endpoint name ending in the instance type (ml.g5.xlarge -> <base>-g5-xlarge): changing the type replaces it."""
    # SageMaker cannot change the instance type of an autoscaled variant in place; with the type in the name a new
    # endpoint is created (and up) before the old one goes, so switching types is a plain deploy.
    return f"{base}-{instance_type.removeprefix('ml.').replace('.', '-')}"


def endpoint_log_group_name(endpoint_name: str) -> str:
    """The log group SageMaker writes an endpoint's container logs to."""
    return f"/aws/sagemaker/Endpoints/{endpoint_name}"


class SageMakerEndpoint(Construct):
    """Owns the model, endpoint config, endpoint, execution role, log group, scaling, alarms and async topics."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        endpoint_name: str,
        image: PublishedImage,
        model_data: ModelData,
        capacity: EndpointCapacity,
        environment: Mapping[str, str] | None = None,
        async_invocation: AsyncInvocation | None = None,
        startup_timeout_seconds: int = 600,
        download_timeout_seconds: int = 600,
        alarm_thresholds: EndpointAlarmThresholds | None = None,
        alarm_action: cloudwatch.IAlarmAction | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        description: str,
    ) -> None:
        super().__init__(scope, construct_id)
        if not _ENDPOINT_NAME.fullmatch(endpoint_name):
            raise ValueError(f"endpoint_name: {endpoint_name!r} is not a valid SageMaker endpoint name")
        if async_invocation is None and capacity.min_instances < 1:
            raise ValueError("capacity.min_instances: a real-time endpoint needs at least 1 instance")
        self.endpoint_name = endpoint_name
        self.async_invocation = async_invocation
        self.endpoint_arn = Stack.of(self).format_arn(
            service="sagemaker", resource="endpoint", resource_name=endpoint_name.lower()
        )
        # Created here (not by SageMaker on first write) so it has a retention and goes away with the stack.
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=endpoint_log_group_name(endpoint_name),
            retention=log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.role = iam.Role(
            self, "ExecutionRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"), description=description
        )
        self._grant_execution(image=image, model_data=model_data)

        self.success_topic: EncryptedTopic | None = None
        self.error_topic: EncryptedTopic | None = None
        async_config = None
        if async_invocation is not None:
            async_config = self._async_config(async_invocation)

        self.model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=self.role.role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=image.image_uri,
                mode="SingleModel",
                model_data_source=sagemaker.CfnModel.ModelDataSourceProperty(
                    s3_data_source=sagemaker.CfnModel.S3DataSourceProperty(
                        s3_uri=f"s3://{model_data.bucket.bucket_name}/{model_data.prefix}",
                        s3_data_type="S3Prefix",
                        compression_type="None",
                    )
                ),
                environment=dict(environment or {}),
            ),
        )
        # SageMaker checks the role's access to the image and the model data when it creates the model.
        self.model.node.add_dependency(self.role)
        self.endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "Config",
            production_variants=[
                sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                    variant_name=VARIANT_NAME,
                    model_name=self.model.attr_model_name,
                    instance_type=capacity.instance_type,
                    # SageMaker creates a variant with at least one instance; async scales it in to zero later.
                    initial_instance_count=max(1, capacity.min_instances),
                    initial_variant_weight=1,
                    container_startup_health_check_timeout_in_seconds=startup_timeout_seconds,
                    model_data_download_timeout_in_seconds=download_timeout_seconds,
                    inference_ami_version=capacity.inference_ami_version,
                )
            ],
            async_inference_config=async_config,
        )
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=endpoint_name,
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
        )
        self.endpoint.node.add_dependency(self.log_group)

        asynchronous = async_invocation is not None
        self.scaling = EndpointScaling(
            self,
            "Scaling",
            endpoint_name=endpoint_name,
            variant_name=VARIANT_NAME,
            capacity=capacity,
            asynchronous=asynchronous,
        )
        self.scaling.node.add_dependency(self.endpoint)
        self.alarms = EndpointAlarms(
            self,
            "Alarms",
            endpoint_name=endpoint_name,
            variant_name=VARIANT_NAME,
            asynchronous=asynchronous,
            thresholds=alarm_thresholds or EndpointAlarmThresholds(),
            action=alarm_action,
        )
        NagSuppressions.add_resource_suppressions(
            self.model,
            [
                NagPackSuppression(
                    id="AwsSolutions-SM1",
                    reason="No VPC by design (the app runs without NAT gateways to stay cheap at idle); the "
                    "container only reaches S3 through its scoped execution role.",
                )
            ],
        )
        NagSuppressions.add_resource_suppressions(
            self.endpoint_config,
            [
                NagPackSuppression(
                    id="AwsSolutions-SM2",
                    reason="GPU instance types with local NVMe storage (ml.g5, ml.g6, ...) reject a KmsKeyId; "
                    "SageMaker encrypts their instance storage with a hardware key.",
                )
            ],
        )

    def metric(self, metric_name: str, *, statistic: str = "Average") -> cloudwatch.Metric:
        """An AWS/SageMaker metric of this endpoint with the dimensions SageMaker publishes it under."""
        return endpoint_metric(
            metric_name, endpoint_name=self.endpoint_name, variant_name=VARIANT_NAME, statistic=statistic
        )

    def grant_invoke(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let grantee invoke the endpoint; for async also upload requests and read results and failures."""
        if self.async_invocation is None:
            return iam.Grant.add_to_principal(
                grantee=grantee, actions=["sagemaker:InvokeEndpoint"], resource_arns=[self.endpoint_arn]
            )
        invocation = self.async_invocation
        invocation.bucket.grant_put(grantee, f"{invocation.input_prefix}*")
        for prefix in (invocation.output_prefix, invocation.failure_prefix):
            invocation.bucket.grant_read(grantee, f"{prefix}*")
        return iam.Grant.add_to_principal(
            grantee=grantee, actions=["sagemaker:InvokeEndpointAsync"], resource_arns=[self.endpoint_arn]
        )

    def grant_container_write(self, bucket: s3.IBucket, prefix: str) -> None:
        """Let the container write objects under prefix (its results)."""
        self._allow(
            "ContainerWrites" + _sid(prefix),
            ["s3:PutObject", "s3:AbortMultipartUpload"],
            [bucket.arn_for_objects(f"{prefix}*")],
        )
        self._suppress_objects(prefix, "the container writes results under this prefix only")

    def grant_container_read(self, bucket: s3.IBucket, prefix: str) -> None:
        """Let the container read objects under prefix (a cache it shares with other instances)."""
        self._allow("ContainerReads" + _sid(prefix), ["s3:GetObject"], [bucket.arn_for_objects(f"{prefix}*")])
        self._suppress_objects(prefix, "the container reads objects under this prefix only")

    def _grant_execution(self, *, image: PublishedImage, model_data: ModelData) -> None:
        image.grant_pull(self.role)
        log_group = endpoint_log_group_name(self.endpoint_name)
        log_group_arn = f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:{log_group}"
        prefix = model_data.prefix
        self._allow("ReadModelPrefix", ["s3:GetObject"], [model_data.bucket.arn_for_objects(f"{prefix}*")])
        self._allow(
            "ListModelPrefix",
            ["s3:ListBucket"],
            [model_data.bucket.bucket_arn],
            StringLike={"s3:prefix": [prefix, f"{prefix}*"]},
        )
        self._allow(
            "EndpointLogs",
            ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
            [log_group_arn, f"{log_group_arn}:log-stream:*"],
        )
        self._allow(
            "EndpointInstanceMetrics",
            ["cloudwatch:PutMetricData"],
            ["*"],
            StringEquals={"cloudwatch:namespace": INSTANCE_METRICS_NAMESPACE},
        )
        NagSuppressions.add_resource_suppressions(
            self.role,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no resource-level "
                    "permissions (PutMetricData is pinned to the endpoint metrics namespace by a condition); "
                    "log-stream wildcards stay inside this endpoint's log group; model objects stay inside "
                    "the model prefix.",
                    applies_to=[
                        "Resource::*",
                        RegexAppliesTo(regex="/^Resource::.*:log-group:.*:log-stream:\\*$/"),
                        wildcard_objects(f"{prefix}*"),
                    ],
                )
            ],
            apply_to_children=True,
        )

    def _async_config(self, invocation: AsyncInvocation) -> sagemaker.CfnEndpointConfig.AsyncInferenceConfigProperty:
        self.success_topic = EncryptedTopic(self, "AsyncSuccess", display_name=f"{self.endpoint_name} async succeeded")
        self.error_topic = EncryptedTopic(
            self, "AsyncError", display_name=f"{self.endpoint_name} async failed", key=self.success_topic.key
        )
        self._allow(
            "ReadAsyncRequests", ["s3:GetObject"], [invocation.bucket.arn_for_objects(f"{invocation.input_prefix}*")]
        )
        self._suppress_objects(invocation.input_prefix, "async requests are read from this prefix only")
        for prefix in (invocation.output_prefix, invocation.failure_prefix):
            self.grant_container_write(invocation.bucket, prefix)
        self._allow("NotifyAsyncResults", ["sns:Publish"], [self.success_topic.topic_arn, self.error_topic.topic_arn])
        self._allow("EncryptedAsyncTopics", list(PUBLISH_KMS_ACTIONS), [self.success_topic.key.key_arn])
        NagSuppressions.add_resource_suppressions(
            self.role,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="kms:GenerateDataKey* is what a publisher to an SSE-KMS topic needs, on that one key.",
                    applies_to=["Action::kms:GenerateDataKey*"],
                )
            ],
            apply_to_children=True,
        )
        return sagemaker.CfnEndpointConfig.AsyncInferenceConfigProperty(
            output_config=sagemaker.CfnEndpointConfig.AsyncInferenceOutputConfigProperty(
                s3_output_path=invocation.s3_uri(invocation.output_prefix),
                s3_failure_path=invocation.s3_uri(invocation.failure_prefix),
                notification_config=sagemaker.CfnEndpointConfig.AsyncInferenceNotificationConfigProperty(
                    success_topic=self.success_topic.topic_arn,
                    error_topic=self.error_topic.topic_arn,
                ),
            ),
            client_config=sagemaker.CfnEndpointConfig.AsyncInferenceClientConfigProperty(
                max_concurrent_invocations_per_instance=invocation.max_concurrent_invocations_per_instance
            ),
        )

    def _allow(self, sid: str, actions: list[str], resources: list[str], **conditions: object) -> None:
        self.role.add_to_principal_policy(
            iam.PolicyStatement(sid=sid, actions=actions, resources=resources, conditions=conditions or None)
        )

    def _suppress_objects(self, prefix: str, reason: str) -> None:
        NagSuppressions.add_resource_suppressions(
            self.role,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason=f"Object wildcard: {reason}.",
                    applies_to=[wildcard_objects(f"{prefix}*")],
                )
            ],
            apply_to_children=True,
        )


def _sid(prefix: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", prefix) if part)
