"""Storage stack: what every system shares: buckets, the bot token secret, image repositories, the ops-alerts topic."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import Aws, CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from cdk_nag import NagSuppressions
from constructs import Construct

from infra.components.cost_budget import CostBudget
from infra.components.image_repository import ImageRepository, bootstrap_qualifier
from infra.components.ops_alerts import OpsAlertsTopic
from infra.config import StorageConfig
from infra.stacks.github_diff_role import GithubDiffRole

# The token is created as a random placeholder; operators replace it with put-secret-value.
TOKEN_PLACEHOLDER_MARKER = "REPLACE-ME"  # noqa: S105 - a marker, not a credential
# Noncurrent versions under a short-lived prefix of the models bucket expire after this many days.
SHORT_LIVED_DAYS = 1
# Browsers may cache a CORS preflight answer of the outputs bucket this long.
CORS_MAX_AGE_SECONDS = 3000


@dataclass(frozen=True)
class BrowserAccess:
    """Browsers on these origins POST presigned uploads to and GET presigned results from the outputs bucket."""

    allowed_origins: tuple[str, ...]


@dataclass(frozen=True)
class ImageSystem:
    """A system whose images `cdk deploy` publishes into a repository of this stack."""

    name: str
    images: int = 1
    # One of its images runs as a container-image Lambda function: the repository admits the Lambda service.
    lambda_images: bool = False


def expiry_rule_id(prefix: str) -> str:
    """Lifecycle rule id of an early expiry for one key prefix of the outputs bucket."""
    return "expire-" + "-".join(part for part in prefix.split("/") if part)


class StorageStack(Stack):
    """Owns the buckets, the Discord token secret, one ECR repository per image-building system and the alerts topic."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StorageConfig,
        env_name: str,
        image_systems: Sequence[ImageSystem],
        early_expiry_days: Mapping[str, int] | None = None,
        short_lived_model_prefixes: Sequence[str] = (),
        browser_access: BrowserAccess | None = None,
        external_access_log_prefixes: Sequence[str] = (),
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        data_removal = RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY

        self.access_logs_bucket = s3.Bucket(
            self,
            "AccessLogsBucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            # S3 server access logging only delivers to SSE-S3 buckets.
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-logs", expiration=Duration.days(config.access_logs_expiry_days))
            ],
            removal_policy=data_removal,
            auto_delete_objects=not config.retain_data,
        )
        self.models_bucket = self._data_bucket(
            "ModelsBucket",
            log_prefix="models/",
            removal=data_removal,
            retain=config.retain_data,
            versioned=True,
            # Scratch under a versioned bucket (training checkpoints): replaced or deleted objects go within a day.
            lifecycle_rules=[
                s3.LifecycleRule(
                    id=f"short-lived-{index}",
                    prefix=prefix,
                    noncurrent_version_expiration=Duration.days(SHORT_LIVED_DAYS),
                    abort_incomplete_multipart_upload_after=Duration.days(SHORT_LIVED_DAYS),
                    expired_object_delete_marker=True,
                )
                for index, prefix in enumerate(short_lived_model_prefixes)
            ],
        )
        self.datasets_bucket = self._data_bucket(
            "DatasetsBucket", log_prefix="datasets/", removal=data_removal, retain=config.retain_data
        )
        # Buckets of later stacks log here under these prefixes; their stacks cannot edit this policy (a cycle).
        for prefix in external_access_log_prefixes:
            self.access_logs_bucket.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="S3ServerAccessLogs"
                    + "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", prefix)),
                    principals=[iam.ServicePrincipal("logging.s3.amazonaws.com")],
                    actions=["s3:PutObject"],
                    resources=[self.access_logs_bucket.arn_for_objects(f"{prefix}*")],
                    conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
                )
            )
        self.outputs_bucket = self._data_bucket(
            "OutputsBucket",
            log_prefix="outputs/",
            removal=data_removal,
            retain=config.retain_data,
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-outputs", expiration=Duration.days(config.outputs_expiry_days)),
                # Prefixes (uploads, say) that go sooner than the rest; S3 applies the earliest expiry that matches.
                *(
                    s3.LifecycleRule(id=expiry_rule_id(prefix), prefix=prefix, expiration=Duration.days(days))
                    for prefix, days in sorted((early_expiry_days or {}).items())
                ),
            ],
            cors=_browser_cors(browser_access),
        )

        self.bot_token_secret = secretsmanager.Secret(
            self,
            "DiscordBotToken",
            # No fixed name: a retained secret from an earlier deployment must not block the next one.
            description="Discord bot token for the GenArt bot. Replace the placeholder with put-secret-value.",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=f'{{"placeholder": "{TOKEN_PLACEHOLDER_MARKER}"}}',
                generate_string_key="value",
                exclude_punctuation=True,
            ),
            removal_policy=data_removal,
        )
        NagSuppressions.add_resource_suppressions(
            self.bot_token_secret,
            [
                {
                    "id": "AwsSolutions-SMG4",
                    "reason": "Discord bot tokens are issued by the Discord developer portal and cannot be "
                    "rotated by a Lambda; docs/operations.md describes manual rotation.",
                }
            ],
        )

        # Deployed before every system stack, so `cdk deploy --all` can push their images into these.
        self.image_repositories = {
            system.name: ImageRepository(
                self,
                f"{system.name.capitalize()}Images",
                repository_name=f"genart-{env_name}/{system.name}",
                images=system.images,
                description=f"ECR repository of the {system.name} images (filled by cdk deploy)",
            )
            for system in image_systems
        }
        for system in image_systems:
            if system.lambda_images:
                self.image_repositories[system.name].grant_lambda_pull()
        self.ops_alerts = OpsAlertsTopic(
            self,
            "OpsAlerts",
            display_name=f"GenArt {env_name} ops alerts",
            email=config.alerts_email,
        )

        self.budget: CostBudget | None = None
        if config.budget.enabled:
            self.budget = CostBudget(
                self,
                "Budget",
                budget_name=f"genart-{env_name}-monthly",
                monthly_usd=config.budget.monthly_usd,
                alerts=self.ops_alerts,
                environment_tag=env_name if config.budget.environment_tag_only else None,
            )

        self.github_diff: GithubDiffRole | None = None
        if config.github_diff is not None:
            self.github_diff = GithubDiffRole(
                self,
                "GithubDiff",
                repository=config.github_diff.repository,
                create_oidc_provider=config.github_diff.create_oidc_provider,
                stack_name_prefix=f"GenArt-{env_name}",
                bootstrap_qualifier=bootstrap_qualifier(self),
            )
            CfnOutput(
                self,
                "GithubDiffRoleArn",
                value=self.github_diff.role.role_arn,
                description="Set as the repository variable AWS_DIFF_ROLE_ARN (.github/workflows/cdk-diff.yml)",
            )

        for output_id, value, description in (
            ("ModelsBucketName", self.models_bucket.bucket_name, "Models bucket (ONNX generator, diffusers weights)"),
            ("DatasetsBucketName", self.datasets_bucket.bucket_name, "Datasets bucket (training images)"),
            ("OutputsBucketName", self.outputs_bucket.bucket_name, "Outputs bucket (generated images, expiring)"),
            ("AccessLogsBucketName", self.access_logs_bucket.bucket_name, "S3 server access logs"),
            ("BotTokenSecretArn", self.bot_token_secret.secret_arn, "Secret holding the Discord bot token"),
            ("OpsAlertsTopicArn", self.ops_alerts.topic_arn, "Every system's alarms and failure alerts"),
            *(
                (f"{system.capitalize()}RepositoryUri", repository.repository.repository_uri, repository.description)
                for system, repository in self.image_repositories.items()
            ),
        ):
            CfnOutput(self, output_id, value=value, description=description)

    def _data_bucket(
        self,
        construct_id: str,
        *,
        log_prefix: str,
        removal: RemovalPolicy,
        retain: bool,
        versioned: bool = False,
        lifecycle_rules: list[s3.LifecycleRule] | None = None,
        cors: list[s3.CorsRule] | None = None,
    ) -> s3.Bucket:
        rules = list(lifecycle_rules or [])
        rules.append(
            s3.LifecycleRule(id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(7))
        )
        if versioned:
            rules.append(s3.LifecycleRule(id="expire-old-versions", noncurrent_version_expiration=Duration.days(30)))
        return s3.Bucket(
            self,
            construct_id,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=versioned,
            server_access_logs_bucket=self.access_logs_bucket,
            server_access_logs_prefix=log_prefix,
            lifecycle_rules=rules,
            cors=cors,
            removal_policy=removal,
            auto_delete_objects=not retain,
        )


def _browser_cors(access: BrowserAccess | None) -> list[s3.CorsRule] | None:
    """The outputs bucket's CORS rule for presigned uploads (POST) and downloads (GET, HEAD) from a page."""
    if access is None:
        return None
    return [
        s3.CorsRule(
            id="browser-presigned",
            allowed_methods=[s3.HttpMethods.POST, s3.HttpMethods.GET, s3.HttpMethods.HEAD],
            allowed_origins=list(access.allowed_origins),
            allowed_headers=["*"],
            exposed_headers=["ETag"],
            max_age=CORS_MAX_AGE_SECONDS,
        )
    ]
