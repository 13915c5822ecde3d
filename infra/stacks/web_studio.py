"""The web studio: page on CloudFront, Cognito sign-in and an HTTP API that starts cartoonize and generate jobs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import DIFFUSION_SIZES, CartoonizerConfig
from infra.stacks.web_api import WebApi
from infra.stacks.web_auth import WebAuth
from infra.stacks.web_site import WebSite, content_security_policy
from runtime.web import contract

LOG_LEVEL = "INFO"
# Prefix of the page bucket's server access logs in Storage's access-logs bucket (Storage admits it).
PAGE_ACCESS_LOGS_PREFIX = "web-page/"


@dataclass(frozen=True)
class StudioTargets:
    """What the studio's jobs run on: the image function, the video endpoint, the Diffusion endpoint if async."""

    image_function_name: str
    video_endpoint_name: str
    video_invocation_timeout_seconds: int
    # "" turns Generate off (the Diffusion endpoint is not asynchronous).
    diffusion_endpoint_name: str


def cognito_endpoint(region: str) -> str:
    """Cognito's user-pool JSON API, which the page's login form calls."""
    return f"https://cognito-idp.{region}.amazonaws.com/"


def generate_sizes(max_side: int) -> list[list[int]]:
    """The Diffusion endpoint's sizes the studio offers (both sides at most max_side)."""
    return [[w, h] for w, h in DIFFUSION_SIZES if max(w, h) <= max_side]


def api_environment(*, config: CartoonizerConfig, outputs_bucket_name: str, targets: StudioTargets) -> dict[str, str]:
    """What the API function reads (runtime/web/contract.py), but its table, which the API construct adds."""
    web = config.web
    return {
        contract.ENV_OUTPUTS_BUCKET: outputs_bucket_name,
        contract.ENV_IMAGE_FUNCTION: targets.image_function_name,
        contract.ENV_VIDEO_ENDPOINT: targets.video_endpoint_name,
        contract.ENV_VIDEO_INVOCATION_TIMEOUT_S: str(targets.video_invocation_timeout_seconds),
        contract.ENV_DIFFUSION_ENDPOINT: targets.diffusion_endpoint_name,
        contract.ENV_MAX_IMAGE_BYTES: str(config.web_max_image_bytes),
        contract.ENV_MAX_VIDEO_BYTES: str(web.max_video_bytes),
        contract.ENV_UPLOADS_PER_HOUR: str(web.uploads_per_hour),
        contract.ENV_JOBS_PER_HOUR: str(web.jobs_per_hour),
        contract.ENV_IMAGES_PER_HOUR: str(web.images_per_hour),
        contract.ENV_MAX_GENERATE_SIDE: str(web.max_generate_side),
        # The same list config.json offers, so the page never offers a size the API refuses.
        contract.ENV_GENERATE_SIZES: ",".join(f"{w}x{h}" for w, h in generate_sizes(web.max_generate_side)),
        contract.ENV_MAX_GENERATE_STEPS: str(web.max_generate_steps),
        contract.ENV_MAX_GENERATE_IMAGES: str(web.max_generate_images),
        contract.ENV_LINK_EXPIRY_S: str(web.link_expiry_seconds),
        contract.ENV_JOB_TTL_DAYS: str(web.job_ttl_days),
        contract.ENV_STALE_AFTER_S: str(web.stale_after_seconds),
        contract.ENV_LICENCE: web.licence,
        contract.ENV_LOG_LEVEL: LOG_LEVEL,
    }


def page_config(*, config: CartoonizerConfig, region: str, client_id: str, generate_enabled: bool) -> dict[str, Any]:
    """The page's config.json (docs/web-studio.md): where to sign in, the API, limits to show, whether to generate."""
    web = config.web
    return {
        "api_base": contract.API_PATH_PREFIX,
        "auth": {"endpoint": cognito_endpoint(region), "client_id": client_id, "local": False},
        "limits": {
            "max_image_bytes": config.web_max_image_bytes,
            "max_video_bytes": web.max_video_bytes,
            "max_generate_side": web.max_generate_side,
            "max_generate_steps": web.max_generate_steps,
            "max_generate_images": web.max_generate_images,
            "generate_sizes": generate_sizes(web.max_generate_side),
        },
        "generate_enabled": generate_enabled,
        "licence": web.licence,
    }


class WebStudio(Construct):
    """Owns the studio's sign-in (WebAuth), API and jobs table (WebApi) and page with its distribution (WebSite)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: CartoonizerConfig,
        env_name: str,
        repo_root: Path,
        outputs_bucket: s3.IBucket,
        access_logs_bucket: s3.IBucket,
        targets: StudioTargets,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        web = config.web
        region = Stack.of(self).region
        self.auth = WebAuth(
            self,
            "Auth",
            self_sign_up=web.self_sign_up,
            pool_name=f"genart-{env_name}-studio",
            removal_policy=removal_policy,
        )
        self.api = WebApi(
            self,
            "Api",
            repo_root=repo_root,
            issuer=self.auth.issuer,
            audience=self.auth.client.user_pool_client_id,
            environment=api_environment(config=config, outputs_bucket_name=outputs_bucket.bucket_name, targets=targets),
            reserved_concurrency=web.api_reserved_concurrency,
            throttle_rate_per_second=web.api_throttle_rate_per_second,
            throttle_burst=web.api_throttle_burst,
            log_retention_days=config.log_retention_days,
            removal_policy=removal_policy,
        )
        self.site = WebSite(
            self,
            "Site",
            static_dir=repo_root / contract.STATIC_DIR,
            page_config=page_config(
                config=config,
                region=region,
                client_id=self.auth.client.user_pool_client_id,
                generate_enabled=bool(targets.diffusion_endpoint_name),
            ),
            api_domain_name=self.api.domain_name,
            # Presigned URLs name the bucket's regional host, or its global one (boto3 in us-east-1).
            content_security_policy=content_security_policy(
                region=region,
                bucket_hosts=(outputs_bucket.bucket_regional_domain_name, outputs_bucket.bucket_domain_name),
            ),
            access_logs_bucket=access_logs_bucket,
            access_logs_prefix=PAGE_ACCESS_LOGS_PREFIX,
            price_class=web.price_class,
            log_retention_days=config.log_retention_days,
        )

    @property
    def invite_command(self) -> str:
        """The command an operator runs to invite a user (Cognito emails a temporary password)."""
        return (
            f"aws cognito-idp admin-create-user --user-pool-id {self.auth.user_pool.user_pool_id} "
            "--username <name> --user-attributes Name=email,Value=<email> Name=email_verified,Value=true "
            "--desired-delivery-mediums EMAIL"
        )
