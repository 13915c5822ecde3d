"""`make doctor`: each check finds what a first deploy needs (moto for the data plane, Stubber for the rest)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from infra.config import load_config
from infra.doctor import (
    MIN_BOOTSTRAP_VERSION,
    SERVICE_LINKED_ROLES,
    SPOT_FLEET_ROLE,
    Check,
    check_alert_subscription,
    main,
    required_quotas,
    run_checks,
)
from tests.infra.synth import REPO_ROOT

REGION = "us-east-1"
CONFIG = load_config({"t": {"storage": {"alerts_email": "ops@example.com"}}}, "t")


class Account:
    """A moto account plus stubbed CloudFormation and Service Quotas clients, handed out like boto3's."""

    def __init__(self) -> None:
        self.clients: dict[str, Any] = {}
        self.stubs: dict[str, Stubber] = {}
        for service in ("cloudformation", "service-quotas"):
            client = boto3.client(service, region_name=REGION)
            self.clients[service] = client
            self.stubs[service] = Stubber(client)
            self.stubs[service].activate()

    def client(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = boto3.client(service, region_name=REGION)
        return self.clients[service]

    def quotas(self, values: dict[str, float]) -> None:
        quotas = [
            {"QuotaName": name, "Value": value, "ServiceCode": "sagemaker", "QuotaCode": f"L-{i:08d}"}
            for i, (name, value) in enumerate(values.items())
        ]
        self.stubs["service-quotas"].add_response(
            "list_service_quotas", {"Quotas": quotas}, {"ServiceCode": "sagemaker"}
        )

    def storage_outputs(self, outputs: dict[str, str] | None) -> None:
        if outputs is None:
            self.stubs["cloudformation"].add_client_error("describe_stacks", "ValidationError", "does not exist")
            return
        stack = {
            "StackName": "GenArt-t-Storage",
            "CreationTime": "2026-12-01T00:00:00Z",
            "StackStatus": "CREATE_COMPLETE",
            "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()],
        }
        self.stubs["cloudformation"].add_response(
            "describe_stacks", {"Stacks": [stack]}, {"StackName": "GenArt-t-Storage"}
        )


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch) -> Iterator[Account]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        yield Account()


def _ready(account: Account, *, token: str = '{"value": "a-real-token"}', confirm: bool = True) -> None:
    """An account where everything a first run needs is in place."""
    account.client("ssm").put_parameter(Name="/cdk-bootstrap/hnb659fds/version", Value="27", Type="String")
    account.quotas({name: count for name, count in required_quotas(CONFIG).items()})
    iam = account.client("iam")
    for role, service in [*SERVICE_LINKED_ROLES.items(), SPOT_FLEET_ROLE]:
        trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}
        iam.create_role(RoleName=role, Path=f"/aws-service-role/{service}/", AssumeRolePolicyDocument=json.dumps(trust))
    secret = account.client("secretsmanager").create_secret(Name="token", SecretString=token)["ARN"]
    s3 = account.client("s3")
    s3.create_bucket(Bucket="models")
    s3.put_object(Bucket="models", Key="stylegan/latest.onnx", Body=b"onnx")
    s3.put_object(Bucket="models", Key="diffusion/sd15/model_index.json", Body=b"{}")
    s3.put_object(Bucket="models", Key="cartoonizer/whitebox/model.onnx", Body=b"onnx")
    topic = account.client("sns").create_topic(Name="alerts")["TopicArn"]
    if confirm:
        account.client("sns").subscribe(TopicArn=topic, Protocol="email", Endpoint="ops@example.com")
    account.storage_outputs({"BotTokenSecretArn": secret, "ModelsBucketName": "models", "OpsAlertsTopicArn": topic})


def _checks(account: Account) -> dict[str, Check]:
    return {c.name: c for c in run_checks(CONFIG, account.client, qualifier="hnb659fds", region=REGION)}


def test_a_ready_account_passes_every_check(account: Account) -> None:
    _ready(account)
    checks = _checks(account)
    assert [c.line() for c in checks.values() if not c.ok] == []
    # bootstrap, 4 quotas (processing and export share one), 3 roles, token, 3 models, alerts
    assert len(checks) == 13


def test_placeholder_token_is_a_miss_and_the_value_is_never_shown(account: Account) -> None:
    _ready(account, token='{"placeholder": "REPLACE-ME", "value": "s3cr3t-random"}')
    check = _checks(account)["Discord bot token"]
    assert not check.ok and "placeholder" in check.detail
    assert "s3cr3t" not in check.line()


def test_real_token_value_never_appears_in_the_checklist(account: Account) -> None:
    _ready(account, token="MTIzNDU2Nzg5MDEyMzQ1Njc4.abcdef.ghijklmnopqrstuvwxyz0123456")
    lines = "\n".join(c.line() for c in _checks(account).values())
    assert "MTIzNDU2" not in lines and "replaced" in lines


def test_missing_pieces_are_each_named_with_a_fix(account: Account) -> None:
    account.quotas({f"{CONFIG.diffusion.instance_type} for endpoint usage": 0})
    account.storage_outputs(None)
    checks = _checks(account)
    misses = {name: c for name, c in checks.items() if not c.ok}
    assert "cdk bootstrap" in misses["CDK bootstrap (hnb659fds)"].fix
    endpoint_quota = misses[f"quota '{CONFIG.diffusion.instance_type} for endpoint usage'"]
    assert endpoint_quota.detail == f"0 allowed, {CONFIG.diffusion.max_instances} needed"
    assert "request" in endpoint_quota.fix
    assert "create-service-linked-role --aws-service-name spot.amazonaws.com" in (
        misses["service-linked role AWSServiceRoleForEC2Spot"].fix
    )
    assert misses["GenArt-t-Storage"].fix == "make deploy ENV=t"
    assert all(c.fix for c in misses.values())


def test_old_bootstrap_unconfirmed_subscription_and_missing_models_are_misses(account: Account) -> None:
    _ready(account, confirm=False)
    account.client("ssm").put_parameter(
        Name="/cdk-bootstrap/hnb659fds/version", Value=str(MIN_BOOTSTRAP_VERSION - 1), Type="String", Overwrite=True
    )
    account.client("s3").delete_object(Bucket="models", Key="stylegan/latest.onnx")
    checks = _checks(account)
    assert not checks["CDK bootstrap (hnb659fds)"].ok
    assert not checks["ops-alerts subscription"].ok
    assert not checks["bot generator s3://models/stylegan/latest.onnx"].ok
    assert checks["diffusion weights s3://models/diffusion/sd15/"].ok
    assert checks["cartoonizer model s3://models/cartoonizer/whitebox/"].ok


def test_a_missing_cartoonizer_model_is_the_only_miss_and_names_its_prefix(account: Account) -> None:
    _ready(account)
    account.client("s3").delete_object(Bucket="models", Key="cartoonizer/whitebox/model.onnx")
    misses = [c for c in _checks(account).values() if not c.ok]
    assert [c.name for c in misses] == ["cartoonizer model s3://models/cartoonizer/whitebox/"]
    assert "s3://models/cartoonizer/whitebox/" in misses[0].fix


def test_missing_diffusion_weights_are_a_miss_only_without_a_model_source(account: Account) -> None:
    _ready(account)
    account.client("s3").delete_object(Bucket="models", Key="diffusion/sd15/model_index.json")
    name = "diffusion weights s3://models/diffusion/sd15/"
    seeded = _checks(account)[name]
    assert seeded.ok and "the Diffusion deploy seeds them from model source 'sd15-fp16'" in seeded.detail
    manual = load_config(
        {"t": {"storage": {"alerts_email": "ops@example.com"}, "diffusion": {"model_source": None}}}, "t"
    )
    # The stubbed answers are used up: give the second run its own.
    account.quotas(dict(required_quotas(manual)))
    secret = account.client("secretsmanager").describe_secret(SecretId="token")["ARN"]
    (topic,) = [t["TopicArn"] for t in account.client("sns").list_topics()["Topics"]]
    account.storage_outputs({"BotTokenSecretArn": secret, "ModelsBucketName": "models", "OpsAlertsTopicArn": topic})
    check = {c.name: c for c in run_checks(manual, account.client, qualifier="hnb659fds", region=REGION)}[name]
    assert not check.ok and "model_source is null" in check.detail
    assert (
        check.fix == "python -m runtime.endpoint.upload_model --source <diffusers folder> --bucket models --name sd15"
    )


def test_doctor_uses_only_read_only_calls() -> None:
    source = (REPO_ROOT / "infra" / "doctor.py").read_text()
    for call in ("put_", "create_", "delete_", "update_", "subscribe(", "start_"):
        assert f".{call}" not in source, call


def test_main_refuses_a_bad_env_name_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--env", "nope"]) == 2
    assert "unknown environment 'nope'" in capsys.readouterr().err


def test_required_quotas_follow_the_config() -> None:
    spot = required_quotas(load_config({"x": {"pipeline": {"use_spot": True, "training_instance_count": 2}}}, "x"))
    assert spot["ml.g5.2xlarge for spot training job usage"] == 2
    on_demand = required_quotas(load_config({"x": {"pipeline": {"use_spot": False}}}, "x"))
    assert "ml.g5.2xlarge for training job usage" in on_demand
    assert on_demand["ml.g4dn.xlarge for endpoint usage"] == 1  # the Cartoonizer's video endpoint
    shared = {
        "diffusion": {"max_instances": 2},
        "cartoonizer": {"video": {"instance_type": "ml.g5.xlarge", "max_instances": 3}},
    }
    assert required_quotas(load_config({"x": shared}, "x"))["ml.g5.xlarge for endpoint usage"] == 5
    assert json.dumps(on_demand)


def test_a_subscription_waiting_for_confirmation_is_a_miss() -> None:
    sns = boto3.client("sns", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    topic = "arn:aws:sns:us-east-1:123456789012:alerts"
    with Stubber(sns) as stub:
        for arn in ("PendingConfirmation", f"{topic}:1234"):
            stub.add_response(
                "list_subscriptions_by_topic",
                {"Subscriptions": [{"SubscriptionArn": arn, "Endpoint": "ops@example.com", "Protocol": "email"}]},
                {"TopicArn": topic},
            )
        pending = check_alert_subscription(lambda _: sns, topic, "ops@example.com")
        confirmed = check_alert_subscription(lambda _: sns, topic, "ops@example.com")
    assert (pending.ok, pending.detail) == (False, "ops@example.com has not confirmed")
    assert confirmed.ok
