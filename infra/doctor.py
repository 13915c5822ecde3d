"""`make doctor ENV=...`: read-only checks that a deploy and a first run will work, each miss with its fix."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from infra.config import ConfigError, EnvConfig, load_config
from runtime.cartoonizer import contract as cartoonizer_contract
from runtime.endpoint import contract as endpoint_contract

# The synthesized templates' CheckBootstrapVersion rule rejects versions 1-5.
MIN_BOOTSTRAP_VERSION = 6
DEFAULT_QUALIFIER = "hnb659fds"
TOKEN_PLACEHOLDER_KEY = "placeholder"  # noqa: S105 - the JSON key of the generated placeholder, not a credential
SERVICE_LINKED_ROLES = {
    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint": "sagemaker.application-autoscaling.amazonaws.com",
    "AWSServiceRoleForEC2Spot": "spot.amazonaws.com",
}
SPOT_FLEET_ROLE = ("AWSServiceRoleForEC2SpotFleet", "spotfleet.amazonaws.com")

ClientFactory = Callable[[str], Any]


@dataclass(frozen=True)
class Check:
    """One line of the checklist: what was checked, whether it holds, and how to fix it when not."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        """The checklist line (the fix on its own line when the check failed)."""
        mark = "ok  " if self.ok else "MISS"
        text = f"[{mark}] {self.name}: {self.detail}"
        return text if self.ok else f"{text}\n       fix: {self.fix}"


def _error(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "ClientError"))
    return type(error).__name__


def check_bootstrap(client: ClientFactory, *, qualifier: str, region: str) -> Check:
    """The CDK bootstrap stack of this qualifier exists and is recent enough for the templates."""
    name = f"CDK bootstrap ({qualifier})"
    fix = f"npx cdk bootstrap aws://<account>/{region}" + (
        f" --qualifier {qualifier}" if qualifier != DEFAULT_QUALIFIER else ""
    )
    try:
        value = client("ssm").get_parameter(Name=f"/cdk-bootstrap/{qualifier}/version")["Parameter"]["Value"]
    except (ClientError, BotoCoreError) as error:
        return Check(name, False, f"not found ({_error(error)})", fix)
    if int(value) < MIN_BOOTSTRAP_VERSION:
        return Check(name, False, f"version {value} is older than {MIN_BOOTSTRAP_VERSION}", fix)
    return Check(name, True, f"version {value}")


def _sagemaker_quotas(client: ClientFactory) -> dict[str, float]:
    quotas: dict[str, float] = {}
    paginator = client("service-quotas").get_paginator("list_service_quotas")
    for page in paginator.paginate(ServiceCode="sagemaker"):
        for quota in page["Quotas"]:
            quotas[quota["QuotaName"]] = float(quota["Value"])
    return quotas


def required_quotas(config: EnvConfig) -> dict[str, int]:
    """SageMaker quota names this environment needs, with the instance count each must allow."""
    pipeline, diffusion, video = config.pipeline, config.diffusion, config.cartoonizer.video
    training = "spot training job usage" if pipeline.use_spot else "training job usage"
    needed = {
        f"{pipeline.training_instance_type} for {training}": pipeline.training_instance_count,
        f"{pipeline.processing_instance_type} for processing job usage": 1,
        f"{pipeline.export_instance_type} for processing job usage": 1,
    }
    # Both endpoints can run at once: on one instance type their maximums add up.
    for instance_type, count in (
        (diffusion.instance_type, diffusion.max_instances),
        (video.instance_type, video.max_instances),
    ):
        name = f"{instance_type} for endpoint usage"
        needed[name] = needed.get(name, 0) + count
    return needed


def check_quotas(client: ClientFactory, config: EnvConfig) -> Iterator[Check]:
    """Each SageMaker instance quota the endpoint and the pipeline use allows what the config asks for."""
    try:
        quotas = _sagemaker_quotas(client)
    except (ClientError, BotoCoreError) as error:
        yield Check(
            "SageMaker quotas", False, f"cannot read ({_error(error)})", "allow servicequotas:ListServiceQuotas"
        )
        return
    for name, count in required_quotas(config).items():
        value = quotas.get(name)
        if value is None:
            yield Check(f"quota '{name}'", False, "not listed in this region", "pick an instance type offered here")
        elif value < count:
            yield Check(
                f"quota '{name}'",
                False,
                f"{value:g} allowed, {count} needed",
                f"Service Quotas -> Amazon SageMaker -> '{name}' -> request {count}",
            )
        else:
            yield Check(f"quota '{name}'", True, f"{value:g} allowed, {count} needed")


def check_service_linked_roles(client: ClientFactory, config: EnvConfig) -> Iterator[Check]:
    """The service-linked roles the templates rely on exist (they are referenced, not created)."""
    roles = dict(SERVICE_LINKED_ROLES)
    if config.bot.fleet == "spot-fleet":
        roles[SPOT_FLEET_ROLE[0]] = SPOT_FLEET_ROLE[1]
    for role, service in roles.items():
        try:
            client("iam").get_role(RoleName=role)
            yield Check(f"service-linked role {role}", True, "present")
        except (ClientError, BotoCoreError) as error:
            yield Check(
                f"service-linked role {role}",
                False,
                f"missing ({_error(error)})",
                f"aws iam create-service-linked-role --aws-service-name {service}",
            )


def _outputs(client: ClientFactory, stack_name: str) -> dict[str, str] | None:
    try:
        (stack,) = client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except (ClientError, BotoCoreError):
        return None
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def check_token(client: ClientFactory, secret_arn: str) -> Check:
    """The bot token secret holds a real token, not the generated placeholder (the value is never shown)."""
    name = "Discord bot token"
    fix = "put the token: docs/operations.md 'Set or rotate the Discord token'"
    try:
        value = client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
    except (ClientError, BotoCoreError) as error:
        return Check(name, False, f"cannot read the secret ({_error(error)})", fix)
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and TOKEN_PLACEHOLDER_KEY in parsed:
        return Check(name, False, "still the generated placeholder", fix)
    return Check(name, True, "replaced (value not shown)")


def _object_exists(client: ClientFactory, bucket: str, key: str) -> bool:
    try:
        client("s3").head_object(Bucket=bucket, Key=key)
    except ClientError:
        return False
    return True


def _presence(client: ClientFactory, *, name: str, bucket: str, key: str, missing: str, fix: str) -> Check:
    """Whether one object is in the bucket, as a checklist line."""
    if _object_exists(client, bucket, key):
        return Check(name, True, "present")
    return Check(name, False, missing, fix)


def check_models(client: ClientFactory, config: EnvConfig, bucket: str) -> Iterator[Check]:
    """The generator the bot serves, the diffusers weights and the cartoonizer model are in the models bucket."""
    key = config.bot.model_key
    yield _presence(
        client,
        name=f"bot generator s3://{bucket}/{key}",
        bucket=bucket,
        key=key,
        missing="not published yet (the bot waits for it)",
        fix="run the pipeline (docs/pipeline.md) or aws s3 cp generator.onnx to that key",
    )
    prefix = endpoint_contract.model_prefix(config.diffusion.model_name)
    name = f"diffusion weights s3://{bucket}/{prefix}"
    source = config.diffusion.model_source
    if source is not None and not _object_exists(client, bucket, f"{prefix}model_index.json"):
        # Not a miss: the Diffusion deploy copies them before it creates the endpoint.
        yield Check(name, True, f"not there yet: the Diffusion deploy seeds them from model source {source!r}")
        return
    yield _presence(
        client,
        name=name,
        bucket=bucket,
        key=f"{prefix}model_index.json",
        missing="no model_index.json, and diffusion.model_source is null: the Diffusion deploy stops before the "
        "endpoint until the weights are uploaded",
        fix=f"python -m runtime.endpoint.upload_model --source <diffusers folder> --bucket {bucket} "
        f"--name {config.diffusion.model_name}",
    )
    cartoonizer = cartoonizer_contract.model_prefix(config.cartoonizer.model_name)
    yield _presence(
        client,
        name=f"cartoonizer model s3://{bucket}/{cartoonizer}",
        bucket=bucket,
        key=f"{cartoonizer}{cartoonizer_contract.MODEL_FILE}",
        missing=f"no {cartoonizer_contract.MODEL_FILE} (images and videos fail until the converted model is there)",
        fix=f"convert the checkpoint (docs/cartoonizer.md), then aws s3 cp --recursive <folder>/ s3://{bucket}/{cartoonizer}",
    )


def check_alert_subscription(client: ClientFactory, topic_arn: str, email: str | None) -> Check:
    """The alerts email is subscribed and confirmed, so alarms reach a person."""
    name = "ops-alerts subscription"
    if email is None:
        return Check(name, False, "no storage.alerts_email: alarms reach nobody", "set storage.alerts_email and deploy")
    try:
        pages = client("sns").get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn)
        subscriptions = [s for page in pages for s in page["Subscriptions"] if s.get("Endpoint") == email]
    except (ClientError, BotoCoreError) as error:
        return Check(name, False, f"cannot list ({_error(error)})", "allow sns:ListSubscriptionsByTopic")
    if not subscriptions:
        return Check(name, False, f"{email} is not subscribed", "deploy Storage with storage.alerts_email set")
    if all(s["SubscriptionArn"] == "PendingConfirmation" for s in subscriptions):
        return Check(name, False, f"{email} has not confirmed", "open the AWS Notification mail and confirm")
    return Check(name, True, f"{email} confirmed")


def run_checks(config: EnvConfig, client: ClientFactory, *, qualifier: str, region: str) -> list[Check]:
    """Every check, in the order a first deploy meets them; calls only read-only APIs."""
    checks = [check_bootstrap(client, qualifier=qualifier, region=region)]
    checks += check_quotas(client, config)
    checks += check_service_linked_roles(client, config)
    storage = _outputs(client, f"{config.prefix}-Storage")
    if storage is None:
        checks.append(
            Check(
                f"{config.prefix}-Storage",
                False,
                "not deployed: token, models and alerts not checked",
                f"make deploy ENV={config.name}",
            )
        )
        return checks
    checks.append(check_token(client, storage["BotTokenSecretArn"]))
    checks += check_models(client, config, storage["ModelsBucketName"])
    checks.append(check_alert_subscription(client, storage["OpsAlertsTopicArn"], config.storage.alerts_email))
    return checks


def main(argv: list[str] | None = None) -> int:
    """Print the checklist for one cdk.json environment; exit 1 when anything is missing."""
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("--env", default="dev", help="environment in cdk.json (default dev)")
    parser.add_argument("--cdk-json", default="cdk.json")
    args = parser.parse_args(argv)
    with open(args.cdk_json) as handle:
        context = json.load(handle)["context"]
    try:
        config = load_config(context.get("envs"), args.env)
    except ConfigError as error:
        print(f"cdk.json: {error}", file=sys.stderr)
        return 2
    import boto3  # noqa: PLC0415 - imported only when talking to AWS

    session = boto3.Session(region_name=config.region) if config.region else boto3.Session()
    if session.region_name is None:
        print("no AWS region: set AWS_REGION or the env's region in cdk.json", file=sys.stderr)
        return 2
    qualifier = str(context.get("@aws-cdk/core:bootstrapQualifier") or DEFAULT_QUALIFIER)
    try:
        identity = session.client("sts").get_caller_identity()
    except (ClientError, BotoCoreError) as error:
        print(f"no usable AWS credentials ({_error(error)})", file=sys.stderr)
        return 2
    if config.account and identity["Account"] != config.account:
        print(f"credentials are for {identity['Account']}, cdk.json pins {config.account}", file=sys.stderr)
        return 2
    print(f"GenArt doctor: env {config.name}, account {identity['Account']}, region {session.region_name}")
    checks = run_checks(config, session.client, qualifier=qualifier, region=session.region_name)
    for check in checks:
        print(check.line())
    missing = sum(not c.ok for c in checks)
    print(f"{len(checks) - missing} ok, {missing} to fix")
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
