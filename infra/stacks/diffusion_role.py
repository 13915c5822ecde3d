"""Least-privilege SageMaker execution role of the Diffusion endpoint."""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from infra.stacks.diffusion_async import ASYNC_FAILURE_PREFIX, ASYNC_INPUT_PREFIX, ASYNC_OUTPUT_PREFIX, AsyncInference
from infra.stacks.diffusion_topics import PUBLISH_KMS_ACTIONS
from infra.stacks.nag import wildcard_objects

# Namespace of the per-instance metrics (CPU, GPU, memory, disk) SageMaker publishes for an endpoint.
ENDPOINT_METRICS_NAMESPACE = "/aws/sagemaker/Endpoints"


class EndpointExecutionRole(Construct):
    """The role the endpoint's instances run as: pull our image, read one model prefix, write results, log."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        repository: ecr.IRepository,
        models_bucket: s3.IBucket,
        model_prefix: str,
        outputs_bucket: s3.IBucket,
        outputs_prefix: str,
        log_group_name: str,
        async_inference: AsyncInference | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="GenArt Diffusion endpoint: pull the image, read its model prefix, write outputs",
        )
        log_group_arn = f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:{log_group_name}"
        write_prefixes = [outputs_prefix]
        read_prefixes = [model_prefix]
        statements = [
            iam.PolicyStatement(
                sid="PullEndpointImage",
                actions=["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                resources=[repository.repository_arn],
            ),
            iam.PolicyStatement(sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"]),
            iam.PolicyStatement(
                sid="ReadModelPrefix",
                actions=["s3:GetObject"],
                resources=[models_bucket.arn_for_objects(f"{model_prefix}*")],
            ),
            iam.PolicyStatement(
                sid="ListModelPrefix",
                actions=["s3:ListBucket"],
                resources=[models_bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [model_prefix, f"{model_prefix}*"]}},
            ),
            iam.PolicyStatement(
                sid="EndpointLogs",
                actions=["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
                resources=[log_group_arn, f"{log_group_arn}:log-stream:*"],
            ),
            iam.PolicyStatement(
                sid="EndpointInstanceMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": ENDPOINT_METRICS_NAMESPACE}},
            ),
        ]
        if async_inference is not None:
            write_prefixes += [ASYNC_OUTPUT_PREFIX, ASYNC_FAILURE_PREFIX]
            read_prefixes.append(ASYNC_INPUT_PREFIX)
            topics = [async_inference.success_topic, async_inference.error_topic]
            statements += [
                iam.PolicyStatement(
                    sid="ReadAsyncRequests",
                    actions=["s3:GetObject"],
                    resources=[outputs_bucket.arn_for_objects(f"{ASYNC_INPUT_PREFIX}*")],
                ),
                iam.PolicyStatement(
                    sid="NotifyAsyncResults", actions=["sns:Publish"], resources=[t.topic_arn for t in topics]
                ),
                iam.PolicyStatement(
                    sid="EncryptedTopics",
                    actions=list(PUBLISH_KMS_ACTIONS),
                    resources=[async_inference.topic_key.key_arn],
                ),
            ]
        statements.append(
            iam.PolicyStatement(
                sid="WriteResults",
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[outputs_bucket.arn_for_objects(f"{prefix}*") for prefix in write_prefixes],
            )
        )
        self.policy = iam.Policy(self, "Policy", roles=[self.role], statements=statements)
        wildcard_prefixes = read_prefixes + write_prefixes
        NagSuppressions.add_resource_suppressions(
            self.policy,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no resource-level "
                    "permissions (PutMetricData is pinned to the endpoint metrics namespace by a condition); "
                    "object and log-stream wildcards stay inside the model prefix, the result prefixes and "
                    "this endpoint's log group.",
                    applies_to=[
                        "Resource::*",
                        RegexAppliesTo(regex="/^Resource::.*:log-group:.*:log-stream:\\*$/"),
                        *[wildcard_objects(f"{prefix}*") for prefix in wildcard_prefixes],
                    ],
                )
            ],
        )
