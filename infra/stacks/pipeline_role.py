"""The StyleGAN2 pipeline's two roles: the pipeline's own (starts jobs, invokes its function) and its jobs'."""

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
from runtime.pipeline.stylegan2.contract import (
    CHECKPOINTS_PREFIX,
    FEATURE_EXTRACTOR_PREFIX,
    QUALITY_KEY_PATTERN,
    RUNS_PREFIX,
)

SAGEMAKER_LOG_GROUPS = ("/aws/sagemaker/ProcessingJobs", "/aws/sagemaker/TrainingJobs")
SAGEMAKER = "sagemaker.amazonaws.com"


def _allow(role: iam.Role, sid: str, actions: list[str], resources: list[str], **conditions: dict[str, object]) -> None:
    role.add_to_principal_policy(
        iam.PolicyStatement(sid=sid, actions=actions, resources=resources, conditions=conditions or None)
    )


class PipelineRoles(Construct):
    """Least privilege split: code inside a job can neither start jobs, pass roles, invoke the function nor
    write stylegan/latest.onnx (only the function's publish step can); the pipeline itself touches no data."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        models_bucket: s3.IBucket,
        datasets_bucket: s3.IBucket,
        image: PublishedImage,
        notify_function: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.job_role = iam.Role(
            self,
            "JobRole",
            assumed_by=iam.ServicePrincipal(SAGEMAKER),
            description="GenArt StyleGAN2 processing and training jobs: their data, image, logs and metrics",
        )
        self.pipeline_role = iam.Role(
            self,
            "PipelineRole",
            assumed_by=iam.ServicePrincipal(SAGEMAKER),
            description="GenArt StyleGAN2 pipeline: starts its jobs as the job role, invokes its function",
        )
        job = self.job_role
        run_objects = models_bucket.arn_for_objects(f"{RUNS_PREFIX}/*")
        checkpoint_objects = models_bucket.arn_for_objects(f"{CHECKPOINTS_PREFIX}/*")
        extractor_objects = models_bucket.arn_for_objects(f"{FEATURE_EXTRACTOR_PREFIX}/*")
        _allow(job, "ReadDatasets", ["s3:GetObject"], [datasets_bucket.arn_for_objects("*")])
        _allow(job, "ListDatasets", ["s3:ListBucket"], [datasets_bucket.bucket_arn])
        _allow(job, "WriteRunArtifacts", ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"], [run_objects])
        # SageMaker's checkpoint sync mirrors local deletions (the trainer keeps only its newest checkpoints).
        _allow(
            job,
            "SyncCheckpoints",
            ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"],
            [checkpoint_objects],
        )
        _allow(job, "ReadFeatureExtractor", ["s3:GetObject"], [extractor_objects])
        _allow(
            job,
            "ListRunArtifacts",
            ["s3:ListBucket"],
            [models_bucket.bucket_arn],
            StringLike={
                "s3:prefix": [f"{prefix}/*" for prefix in (RUNS_PREFIX, CHECKPOINTS_PREFIX, FEATURE_EXTRACTOR_PREFIX)]
            },
        )
        image.grant_pull(job)
        _allow(
            job,
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
        _allow(
            job,
            "JobMetrics",
            ["cloudwatch:PutMetricData"],
            ["*"],
            StringLike={"cloudwatch:namespace": "/aws/sagemaker/*"},
        )

        pipeline = self.pipeline_role
        _allow(
            pipeline,
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
        _allow(
            pipeline,
            "PassOnlyTheJobRole",
            ["iam:PassRole"],
            [job.role_arn],
            StringEquals={"iam:PassedToService": SAGEMAKER},
        )
        _allow(pipeline, "InvokeOnlyTheFunction", ["lambda:InvokeFunction"], [notify_function.function_arn])
        # The quality gate's JsonGet reads the export step's quality.json with the pipeline's role.
        _allow(pipeline, "ReadQualityReports", ["s3:GetObject"], [models_bucket.arn_for_objects(QUALITY_KEY_PATTERN)])

        log_groups = "|".join(re.escape(group).replace("/", "\\/") for group in SAGEMAKER_LOG_GROUPS)
        NagSuppressions.add_resource_suppressions(
            job,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Wildcards are limited to: objects of the datasets bucket (the input prefix is a run "
                    "parameter); the per-execution runs/ and checkpoints/ prefixes and the feature-extractor/ "
                    "prefix of stylegan/ in the models bucket; the SageMaker job log groups' streams; "
                    "ecr:GetAuthorizationToken and cloudwatch:PutMetricData, which support no resource ARN (the "
                    "latter is namespace-conditioned).",
                    applies_to=[
                        "Resource::*",
                        # Every object of the datasets bucket, however the Storage stack's ARN reference is rendered.
                        RegexAppliesTo(regex=r"/^Resource::.*DatasetsBucket.*\/\*$/"),
                        wildcard_objects(f"{RUNS_PREFIX}/*"),
                        wildcard_objects(f"{CHECKPOINTS_PREFIX}/*"),
                        wildcard_objects(f"{FEATURE_EXTRACTOR_PREFIX}/*"),
                        RegexAppliesTo(regex=f"/^Resource::arn:.*:log-group:({log_groups}):\\*$/"),
                    ],
                )
            ],
            apply_to_children=True,
        )
        NagSuppressions.add_resource_suppressions(
            pipeline,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="SageMaker processing/training job ARNs: Pipelines names jobs at run time and offers no "
                    "pipeline condition key; quality.json under one key per execution id, known only at run time.",
                    applies_to=[
                        RegexAppliesTo(regex=r"/^Resource::arn:.*:sagemaker:.*:(processing|training)-job\/\*$/"),
                        wildcard_objects(QUALITY_KEY_PATTERN),
                    ],
                )
            ],
            apply_to_children=True,
        )

    @property
    def job_role_arn_from_tokens(self) -> str:
        """The job role's ARN from partition, account and name tokens: ARN-shaped at synth, so the SDK needs no IAM."""
        return f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/{self.job_role.role_name}"
