"""The Cartoonizer's image function: a container-image Lambda that cartoonizes one image named by S3 keys, on CPU."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from infra.components.function_role import allow, function_logs_and_role
from infra.components.nag import wildcard_objects
from infra.components.published_image import PublishedImage
from infra.config import CartoonizerImageConfig
from runtime.cartoonizer import contract


class CartoonizerImageFunction(Construct):
    """Owns the function, its role (model prefix read, inputs read, results write) and its log group."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: CartoonizerImageConfig,
        image: PublishedImage,
        models_bucket: s3.IBucket,
        model_prefix: str,
        outputs_bucket: s3.IBucket,
        environment: Mapping[str, str],
        log_retention_days: int,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group, self.role = function_logs_and_role(
            self,
            description="GenArt Cartoonizer image function: read its model and inputs, write results and its logs",
            log_retention_days=log_retention_days,
            removal_policy=removal_policy,
        )
        inputs, results = contract.INPUTS_PREFIX, contract.RESULTS_PREFIX
        self._allow("ReadModel", ["s3:GetObject"], [models_bucket.arn_for_objects(f"{model_prefix}*")])
        self._allow("ReadInputs", ["s3:GetObject"], [outputs_bucket.arn_for_objects(f"{inputs}*")])
        # Listing the inputs prefix turns a missing upload into a 404 the handler can name, instead of a 403.
        self._allow(
            "ListInputs",
            ["s3:ListBucket"],
            [outputs_bucket.bucket_arn],
            StringLike={"s3:prefix": [inputs, f"{inputs}*"]},
        )
        self._allow(
            "WriteResults",
            ["s3:PutObject", "s3:AbortMultipartUpload"],
            [outputs_bucket.arn_for_objects(f"{results}*")],
        )

        # Callers invoke it synchronously (the error comes back) or, like the web studio, as an event whose job fails
        # visibly when no progress arrives (the studio turns retries off); nothing to park, so no dead-letter queue.
        self.function = lambda_.DockerImageFunction(
            self,
            "Function",
            description="GenArt Cartoonizer: cartoonizes one image from S3 into S3 (CPU)",
            code=image.lambda_code(cmd=[contract.LAMBDA_HANDLER]),
            architecture=lambda_.Architecture.X86_64,
            memory_size=config.memory_mb,
            timeout=Duration.seconds(config.timeout_seconds),
            reserved_concurrent_executions=config.reserved_concurrency,
            environment=dict(environment),
            role=self.role,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE if config.tracing else lambda_.Tracing.DISABLED,
        )
        # Lambda validates the role when the function is created.
        self.function.node.add_dependency(self.role)

        wildcards: list[str | RegexAppliesTo] = [
            wildcard_objects(f"{prefix}*") for prefix in (model_prefix, inputs, results)
        ]
        reason = (
            "Object wildcards stay inside the model prefix, the uploads prefix and the results prefix (keys are "
            "chosen per request)."
        )
        if config.tracing:
            wildcards.append("Resource::*")
            reason += " X-Ray's PutTraceSegments/PutTelemetryRecords have no resource-level permissions."
        NagSuppressions.add_resource_suppressions(
            self.role,
            [NagPackSuppression(id="AwsSolutions-IAM5", reason=reason, applies_to=wildcards)],
            apply_to_children=True,
        )

    def grant_invoke(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let grantee invoke the function (its unqualified ARN: no versions or aliases are published)."""
        return iam.Grant.add_to_principal(
            grantee=grantee, actions=["lambda:InvokeFunction"], resource_arns=[self.function.function_arn]
        )

    def _allow(self, sid: str, actions: list[str], resources: list[str], **conditions: object) -> None:
        allow(self.role, sid, actions, resources, **conditions)
