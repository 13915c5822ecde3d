"""Execution role of the StyleGAN2 pipeline and of the SageMaker jobs it starts, scoped to what they touch."""

from __future__ import annotations

import re

from aws_cdk import ArnFormat, Aws, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from infra.components.nag import wildcard_objects
from infra.components.published_image import PublishedImage

SAGEMAKER_LOG_GROUPS = ("/aws/sagemaker/ProcessingJobs", "/aws/sagemaker/TrainingJobs")


class PipelineExecutionRole(Construct):
    """One role for the pipeline and its jobs: datasets read, stylegan/* in the models bucket, its image, its jobs."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        models_bucket: s3.IBucket,
        datasets_bucket: s3.IBucket,
        models_prefix: str,
        checkpoint_key_pattern: str,
        image: PublishedImage,
        notify_function: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="GenArt StyleGAN2 pipeline and its processing/training jobs",
        )

        def allow(sid: str, actions: list[str], resources: list[str], **conditions: dict[str, object]) -> None:
            self.role.add_to_principal_policy(
                iam.PolicyStatement(sid=sid, actions=actions, resources=resources, conditions=conditions or None)
            )

        allow("ReadDatasets", ["s3:GetObject"], [datasets_bucket.arn_for_objects("*")])
        allow("ListDatasets", ["s3:ListBucket"], [datasets_bucket.bucket_arn])
        allow(
            "WriteStyleGanArtifacts",
            ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
            [models_bucket.arn_for_objects(f"{models_prefix}/*")],
        )
        # SageMaker's checkpoint sync mirrors local deletions (the trainer keeps only its newest checkpoints).
        allow("PruneCheckpoints", ["s3:DeleteObject"], [models_bucket.arn_for_objects(checkpoint_key_pattern)])
        allow(
            "ListStyleGanArtifacts",
            ["s3:ListBucket"],
            [models_bucket.bucket_arn],
            StringLike={"s3:prefix": [models_prefix, f"{models_prefix}/*"]},
        )
        allow(
            "RunPipelineJobs",
            [
                "sagemaker:CreateProcessingJob",
                "sagemaker:DescribeProcessingJob",
                "sagemaker:StopProcessingJob",
                "sagemaker:CreateTrainingJob",
                "sagemaker:DescribeTrainingJob",
                "sagemaker:StopTrainingJob",
                "sagemaker:AddTags",
            ],
            [
                stack.format_arn(service="sagemaker", resource="processing-job", resource_name="*"),
                stack.format_arn(service="sagemaker", resource="training-job", resource_name="*"),
            ],
        )
        allow(
            "PassThisRoleToItsJobs",
            ["iam:PassRole"],
            [self.role.role_arn],
            StringEquals={"iam:PassedToService": "sagemaker.amazonaws.com"},
        )
        allow("InvokeNotify", ["lambda:InvokeFunction"], [notify_function.function_arn])
        image.grant_pull(self.role)
        allow(
            "JobLogs",
            ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            [
                stack.format_arn(
                    service="logs",
                    resource="log-group",
                    resource_name=f"{group}:*",
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
                for group in SAGEMAKER_LOG_GROUPS
            ],
        )
        allow(
            "JobMetrics",
            ["cloudwatch:PutMetricData"],
            ["*"],
            StringLike={"cloudwatch:namespace": "/aws/sagemaker/*"},
        )

        log_groups = "|".join(re.escape(group).replace("/", "\\/") for group in SAGEMAKER_LOG_GROUPS)
        NagSuppressions.add_resource_suppressions(
            self.role,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Wildcards are limited to: objects of the datasets bucket (the input prefix is a run "
                    "parameter); the models bucket's stylegan/ prefix and per-execution checkpoint keys; SageMaker "
                    "processing/training job ARNs (Pipelines names jobs at run time and offers no pipeline "
                    "condition key); the SageMaker job log groups' streams; ecr:GetAuthorizationToken and "
                    "cloudwatch:PutMetricData, which support no resource ARN (the latter is namespace-conditioned).",
                    applies_to=[
                        "Resource::*",
                        # Every object of the datasets bucket, however the Storage stack's ARN reference is rendered.
                        RegexAppliesTo(regex=r"/^Resource::.*DatasetsBucket.*\/\*$/"),
                        wildcard_objects(f"{models_prefix}/*"),
                        wildcard_objects(checkpoint_key_pattern),
                        RegexAppliesTo(regex=r"/^Resource::arn:.*:sagemaker:.*:(processing|training)-job\/\*$/"),
                        RegexAppliesTo(regex=f"/^Resource::arn:.*:log-group:({log_groups}):\\*$/"),
                    ],
                )
            ],
            apply_to_children=True,
        )

    @property
    def arn_from_tokens(self) -> str:
        """The role ARN built from partition, account and name tokens: ARN-shaped at synth, so the SDK needs no IAM."""
        return f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/{self.role.role_name}"
