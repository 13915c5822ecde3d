"""EncryptedTopic and OpsAlertsTopic on bare stacks: encryption, TLS, who may publish and under which conditions."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_events as events
from aws_cdk.assertions import Template

from infra.components.ops_alerts import OpsAlertsTopic
from tests.infra.components.conftest import new_app, only, resources, text


@pytest.fixture(scope="module")
def alerts() -> tuple[cdk.App, cdk.Stack, cdk.Stack, OpsAlertsTopic]:
    app = new_app()
    shared = cdk.Stack(app, "Shared")
    topic = OpsAlertsTopic(shared, "Alerts", display_name="ops", email="ops@example.com")
    # A rule in another stack, the way a system stack adds one.
    system = cdk.Stack(app, "System")
    for rule_id in ("Rule", "SecondRule"):  # a stack may route several rules to the topic
        rule = events.Rule(system, rule_id, event_pattern=events.EventPattern(source=["aws.sagemaker"]))
        rule.add_target(topic.rule_target(system))
    return app, shared, system, topic


@pytest.fixture(scope="module")
def shared_template(alerts: tuple[cdk.App, cdk.Stack, cdk.Stack, OpsAlertsTopic]) -> dict[str, Any]:
    return Template.from_stack(alerts[1]).to_json()  # type: ignore[no-any-return]


def _topic_statements(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    policy = only(template, "AWS::SNS::TopicPolicy")
    return {s.get("Sid", s["Effect"]): s for s in policy["PolicyDocument"]["Statement"]}


def _key_statements(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    key = only(template, "AWS::KMS::Key")
    return {s.get("Sid", ""): s for s in key["KeyPolicy"]["Statement"]}


def test_topic_is_encrypted_with_its_own_rotating_key(shared_template: dict[str, Any]) -> None:
    (key_id,) = resources(shared_template, "AWS::KMS::Key")
    assert shared_template["Resources"][key_id]["Properties"]["EnableKeyRotation"] is True
    assert only(shared_template, "AWS::SNS::Topic")["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}


def test_topic_refuses_requests_without_tls(shared_template: dict[str, Any]) -> None:
    (deny,) = [s for s in _topic_statements(shared_template).values() if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Principal"] == {"AWS": "*"} or deny["Principal"] == "*"


@pytest.mark.parametrize(
    ("sid", "service", "source"),
    [
        ("CloudWatchAlarms", "cloudwatch.amazonaws.com", ":cloudwatch:"),
        ("EventBridgeRules", "events.amazonaws.com", ":events:"),
    ],
)
def test_services_may_publish_only_for_this_accounts_alarms_and_rules(
    shared_template: dict[str, Any], sid: str, service: str, source: str
) -> None:
    statement = _topic_statements(shared_template)[sid]
    assert statement["Principal"] == {"Service": service}
    assert statement["Action"] == "sns:Publish"
    assert set(statement["Condition"]) == {"ArnLike", "StringEquals"}
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    pattern = text(statement["Condition"]["ArnLike"]["aws:SourceArn"])
    assert source in pattern and '{"Ref": "AWS::AccountId"}' in pattern
    assert pattern.endswith(':alarm:*"]]}') or pattern.endswith(':rule/*"]]}')


def test_key_admits_alarms_with_source_conditions_and_rules_without(shared_template: dict[str, Any]) -> None:
    statements = _key_statements(shared_template)
    alarms, rules = statements["CloudWatchAlarms"], statements["EventBridgeRules"]
    for statement, service in ((alarms, "cloudwatch.amazonaws.com"), (rules, "events.amazonaws.com")):
        assert statement["Principal"] == {"Service": service}
        assert statement["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert alarms["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert ":alarm:*" in text(alarms["Condition"]["ArnLike"])
    # EventBridge's KMS calls carry no source keys: a condition would silently drop every delivery.
    assert "Condition" not in rules


def test_email_subscription_is_created_when_given(shared_template: dict[str, Any]) -> None:
    subscription = only(shared_template, "AWS::SNS::Subscription")
    assert (subscription["Protocol"], subscription["Endpoint"]) == ("email", "ops@example.com")


def test_a_rule_in_another_stack_targets_the_topic_without_editing_the_shared_stack(
    alerts: tuple[cdk.App, cdk.Stack, cdk.Stack, OpsAlertsTopic], shared_template: dict[str, Any]
) -> None:
    _, shared, system, _ = alerts
    rules = resources(Template.from_stack(system).to_json(), "AWS::Events::Rule").values()
    assert len(rules) == 2
    for rule in rules:
        (target,) = rule["Properties"]["Targets"]
        assert "AlertsTopic" in text(target["Arn"])
    # Storage must not depend on the systems (that would be a cycle): its policies name no rule of theirs.
    assert "System" not in text(shared_template)
    assert shared not in system.dependencies or system not in shared.dependencies
    assert system not in shared.dependencies


def test_a_role_of_another_stack_is_granted_on_its_own_policy_only() -> None:
    """grant_publish from a system stack must not edit the shared stack's policies (that would be a cycle)."""

    def build(*, grant: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        app = new_app()
        shared = cdk.Stack(app, "Shared")
        topic = OpsAlertsTopic(shared, "Alerts", display_name="ops")
        system = cdk.Stack(app, "System")
        role = cdk.aws_iam.Role(system, "Publisher", assumed_by=cdk.aws_iam.ServicePrincipal("lambda.amazonaws.com"))
        if grant:
            topic.grant_publish(role)
        return Template.from_stack(shared).to_json(), Template.from_stack(system).to_json()

    (without, _), (shared, system) = build(grant=False), build(grant=True)
    assert shared["Resources"] == without["Resources"]
    policy = only(system, "AWS::IAM::Policy")
    statements = policy["PolicyDocument"]["Statement"]
    actions = sorted(a for s in statements for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]]))
    assert actions == ["kms:Decrypt", "kms:GenerateDataKey*", "sns:Publish"]
