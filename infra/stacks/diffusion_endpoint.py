"""SageMaker model, endpoint configuration and endpoint serving the Stable Diffusion container."""

from __future__ import annotations

import re

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from infra.config import DiffusionConfig
from infra.stacks.diffusion_async import AsyncInference
from runtime.endpoint import contract as endpoint_contract

VARIANT_NAME = "AllTraffic"
OUTPUTS_PREFIX = endpoint_contract.OUTPUTS_PREFIX


def endpoint_name(*, env_name: str, config: DiffusionConfig) -> str:
    """Physical endpoint name; it carries the mode and instance type, so changing either replaces the endpoint."""
    # SageMaker cannot change the instance type of an autoscaled variant in place; a replacement (the new
    # endpoint is up before the old one goes) also makes switching between async and realtime a plain deploy.
    instance = config.instance_type.removeprefix("ml.").replace(".", "-")
    name = f"genart-{env_name}-sd-{config.mode}-{instance}"
    if not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", name):
        raise ValueError(f"endpoint name {name!r} is not a valid SageMaker endpoint name")
    return name


def endpoint_log_group_name(endpoint_name: str) -> str:
    """The log group SageMaker writes an endpoint's container logs to."""
    return f"/aws/sagemaker/Endpoints/{endpoint_name}"


def container_environment(*, outputs_bucket_name: str) -> dict[str, str]:
    """Server settings (runtime/endpoint/settings.py) the container gets; limits keep the server's defaults."""
    return {
        endpoint_contract.ENV_OUTPUTS_BUCKET: outputs_bucket_name,
        endpoint_contract.ENV_OUTPUTS_PREFIX: endpoint_contract.OUTPUTS_PREFIX,
        endpoint_contract.ENV_COMPILE: "1",
        endpoint_contract.ENV_DTYPE: "fp16",
        endpoint_contract.ENV_COMPILE_CACHE_DIR: endpoint_contract.COMPILE_CACHE_DIR,
        endpoint_contract.ENV_HF_HUB_OFFLINE: "1",
    }


class DiffusionEndpoint(Construct):
    """Model (our image + the weights under diffusion/<model_name>/), GPU endpoint config and the endpoint."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DiffusionConfig,
        endpoint_name: str,
        image_uri: str,
        role: iam.IRole,
        models_bucket: s3.IBucket,
        model_prefix: str,
        outputs_bucket: s3.IBucket,
        async_inference: AsyncInference | None,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self.endpoint_name = endpoint_name
        # Created here (not by SageMaker on first write) so it has a retention and goes away with the stack.
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=endpoint_log_group_name(endpoint_name),
            retention=log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=role.role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=image_uri,
                mode="SingleModel",
                # Uncompressed prefix: SageMaker copies diffusion/<model_name>/ to /opt/ml/model as is.
                model_data_source=sagemaker.CfnModel.ModelDataSourceProperty(
                    s3_data_source=sagemaker.CfnModel.S3DataSourceProperty(
                        s3_uri=f"s3://{models_bucket.bucket_name}/{model_prefix}",
                        s3_data_type="S3Prefix",
                        compression_type="None",
                    )
                ),
                environment=container_environment(outputs_bucket_name=outputs_bucket.bucket_name),
            ),
        )
        self.endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "Config",
            production_variants=[
                sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                    variant_name=VARIANT_NAME,
                    model_name=self.model.attr_model_name,
                    instance_type=config.instance_type,
                    # SageMaker creates a variant with at least one instance; async scales it in to zero later.
                    initial_instance_count=max(1, config.min_instances),
                    initial_variant_weight=1,
                    container_startup_health_check_timeout_in_seconds=config.startup_timeout_seconds,
                    model_data_download_timeout_in_seconds=config.download_timeout_seconds,
                )
            ],
            async_inference_config=async_inference.endpoint_config() if async_inference is not None else None,
        )
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=endpoint_name,
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
        )
        self.endpoint.node.add_dependency(self.log_group)
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
