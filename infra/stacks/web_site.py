"""The web studio's page: a private bucket behind CloudFront (origin access control), /api/* sent to the HTTP API."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aws_cdk import Annotations, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from infra.components.log_retention import set_retention_days
from runtime.web import contract

INDEX = "index.html"
HSTS_MAX_AGE = Duration.days(730)


def content_security_policy(*, region: str, bucket_hosts: Sequence[str]) -> str:
    """The page's CSP: its own scripts only; it talks to itself, Cognito and the outputs bucket (presigned URLs)."""
    buckets = " ".join(f"https://{host}" for host in bucket_hosts)
    cognito = f"https://cognito-idp.{region}.amazonaws.com"
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src 'self' blob: data: {buckets}",
            f"media-src 'self' blob: data: {buckets}",
            f"connect-src 'self' {cognito} {buckets}",
            "font-src 'self'",
            "manifest-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "object-src 'none'",
            "frame-ancestors 'none'",
        )
    )


class WebSite(Construct):
    """Owns the page bucket, the distribution (page + /api/*), its security headers and the page deployment."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        static_dir: Path,
        page_config: Mapping[str, Any],
        api_domain_name: str,
        content_security_policy: str,
        access_logs_bucket: s3.IBucket,
        access_logs_prefix: str,
        price_class: str,
        log_retention_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        if not (static_dir / INDEX).is_file():
            raise ValueError(f"static_dir: {static_dir} has no {INDEX} (the page the studio serves)")
        # The page is rebuilt from the repository on every deploy: nothing to retain.
        self.bucket = s3.Bucket(
            self,
            "Page",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=access_logs_bucket,
            server_access_logs_prefix=access_logs_prefix,
            removal_policy=RemovalPolicy.DESTROY,
            auto_delete_objects=True,
        )
        # The logs bucket is Storage's, referenced by name: Storage's policy admits this prefix itself.
        Annotations.of(self.bucket).acknowledge_warning(
            "@aws-cdk/aws-s3:accessLogsPolicyNotAdded", "Storage admits server access logs under this prefix"
        )
        self.headers = cloudfront.ResponseHeadersPolicy(
            self,
            "Headers",
            comment="GenArt web studio: strict CSP, HSTS, no framing",
            security_headers_behavior=cloudfront.ResponseSecurityHeadersBehavior(
                content_security_policy=cloudfront.ResponseHeadersContentSecurityPolicy(
                    content_security_policy=content_security_policy, override=True
                ),
                strict_transport_security=cloudfront.ResponseHeadersStrictTransportSecurity(
                    access_control_max_age=HSTS_MAX_AGE, include_subdomains=True, override=True
                ),
                content_type_options=cloudfront.ResponseHeadersContentTypeOptions(override=True),
                frame_options=cloudfront.ResponseHeadersFrameOptions(
                    frame_option=cloudfront.HeadersFrameOption.DENY, override=True
                ),
                referrer_policy=cloudfront.ResponseHeadersReferrerPolicy(
                    referrer_policy=cloudfront.HeadersReferrerPolicy.NO_REFERRER, override=True
                ),
            ),
        )
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment="GenArt web studio",
            default_root_object=INDEX,
            price_class=cloudfront.PriceClass[price_class.upper().replace("PRICECLASS_", "PRICE_CLASS_")],
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(self.bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                response_headers_policy=self.headers,
                compress=True,
            ),
            additional_behaviors={
                f"{contract.API_PATH_PREFIX}/*": cloudfront.BehaviorOptions(
                    origin=origins.HttpOrigin(
                        api_domain_name, protocol_policy=cloudfront.OriginProtocolPolicy.HTTPS_ONLY
                    ),
                    # A redirect would turn the page's POSTs into GETs: the API answers HTTPS only.
                    viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
                    allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
                    cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                    # Every viewer header (Authorization included) and the query string; not Host, which API
                    # Gateway needs to be its own.
                    origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
                    response_headers_policy=self.headers,
                )
            },
        )
        # Its own group, so CDK does not create a retained, named one for the deployment handler.
        self.deployment_logs = logs.LogGroup(self, "DeployLogs", removal_policy=RemovalPolicy.DESTROY)
        set_retention_days(self.deployment_logs, log_retention_days)
        self.deployment = s3deploy.BucketDeployment(
            self,
            "Deploy",
            sources=[
                s3deploy.Source.asset(str(static_dir), exclude=[contract.PAGE_CONFIG_FILE]),
                s3deploy.Source.json_data(contract.PAGE_CONFIG_FILE, dict(page_config)),
            ],
            destination_bucket=self.bucket,
            distribution=self.distribution,
            distribution_paths=["/*"],
            memory_limit=256,
            log_group=self.deployment_logs,
        )

        NagSuppressions.add_resource_suppressions(
            self.distribution,
            [
                NagPackSuppression(
                    id="AwsSolutions-CFR1", reason="The studio is for invited users anywhere; no geo restriction."
                ),
                NagPackSuppression(
                    id="AwsSolutions-CFR2",
                    reason="No WAF web ACL: it costs a monthly fee while idle; every /api route needs a Cognito "
                    "token, the API stage is throttled and each user is rate limited.",
                ),
                NagPackSuppression(
                    id="AwsSolutions-CFR3",
                    reason="No CloudFront standard logs: they need an ACL-enabled bucket (this app enforces bucket "
                    "owner); the API stage's access log records every /api call with its user, and the page is "
                    "static files.",
                ),
                NagPackSuppression(
                    id="AwsSolutions-CFR4",
                    reason="The distribution uses the default *.cloudfront.net certificate (no custom domain), "
                    "whose viewer TLS policy CloudFront fixes; the origin connections are TLS 1.2.",
                ),
            ],
        )

        handler = next(
            child for child in Stack.of(self).node.children if child.node.id.startswith("Custom::CDKBucketDeployment")
        )
        NagSuppressions.add_resource_suppressions(
            handler,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM4",
                    reason="CDK's BucketDeployment handler logs with AWSLambdaBasicExecutionRole (only log writes).",
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="CDK's BucketDeployment handler: s3 read wildcards on the CDK assets bucket and s3 "
                    "write wildcards on the page bucket only; CloudFront invalidation actions have no "
                    "resource-level permissions.",
                ),
                NagPackSuppression(
                    id="AwsSolutions-L1",
                    reason="CDK's BucketDeployment handler: its runtime is chosen by the aws-cdk-lib release.",
                ),
            ],
            apply_to_children=True,
        )

    @property
    def url(self) -> str:
        """The studio's https URL."""
        return f"https://{self.distribution.distribution_domain_name}"
