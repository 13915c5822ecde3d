"""Asynchronous inference plumbing: S3 locations in the outputs bucket and the success/error topics."""

from __future__ import annotations

from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from infra.stacks.diffusion_topics import encrypted_topic

ASYNC_INPUT_PREFIX = "async/in/"
ASYNC_OUTPUT_PREFIX = "async/out/"
ASYNC_FAILURE_PREFIX = "async/failed/"


class AsyncInference(Construct):
    """Where async requests come from and go to, and the topics SageMaker notifies when each one finishes."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        outputs_bucket: s3.IBucket,
        topic_key: kms.IKey,
        max_concurrent_invocations_per_instance: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.outputs_bucket = outputs_bucket
        self.topic_key = topic_key
        self.max_concurrent_invocations_per_instance = max_concurrent_invocations_per_instance
        self.success_topic = encrypted_topic(
            self, "SuccessTopic", key=topic_key, display_name="GenArt Diffusion async inference succeeded"
        )
        self.error_topic = encrypted_topic(
            self, "ErrorTopic", key=topic_key, display_name="GenArt Diffusion async inference failed"
        )

    def s3_uri(self, prefix: str) -> str:
        """s3:// URI of a prefix in the outputs bucket."""
        return f"s3://{self.outputs_bucket.bucket_name}/{prefix}"

    def endpoint_config(self) -> sagemaker.CfnEndpointConfig.AsyncInferenceConfigProperty:
        """The AsyncInferenceConfig of the endpoint configuration."""
        return sagemaker.CfnEndpointConfig.AsyncInferenceConfigProperty(
            output_config=sagemaker.CfnEndpointConfig.AsyncInferenceOutputConfigProperty(
                s3_output_path=self.s3_uri(ASYNC_OUTPUT_PREFIX),
                s3_failure_path=self.s3_uri(ASYNC_FAILURE_PREFIX),
                notification_config=sagemaker.CfnEndpointConfig.AsyncInferenceNotificationConfigProperty(
                    success_topic=self.success_topic.topic_arn,
                    error_topic=self.error_topic.topic_arn,
                ),
            ),
            client_config=sagemaker.CfnEndpointConfig.AsyncInferenceClientConfigProperty(
                max_concurrent_invocations_per_instance=self.max_concurrent_invocations_per_instance
            ),
        )
