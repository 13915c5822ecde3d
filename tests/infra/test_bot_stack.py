"""Bot stack assertions by intent: NAT-free network, IMDSv2 launch template, Spot capacity, scoped role, user data."""

from __future__ import annotations

import functools
import itertools
import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from infra.config import BotConfig, ConfigError, EnvConfig, load_config
from tests.infra.synth import ENV_NAMES, SynthesizedApp, resources_of_type, synth_config, synth_env

per_env = pytest.mark.parametrize("env_name", ENV_NAMES)


def _bot(env_name: str) -> tuple[BotConfig, dict[str, Any]]:
    app = synth_env(env_name)
    return app.config.bot, _bot_template(app)


def _bot_template(app: SynthesizedApp) -> dict[str, Any]:
    return app.by_name[f"{app.config.prefix}-Bot"].json


def _one(template: dict[str, Any], cfn_type: str) -> tuple[str, dict[str, Any]]:
    found = resources_of_type(template, cfn_type)
    assert len(found) == 1, f"expected one {cfn_type}, found {sorted(found)}"
    return next(iter(found.items()))


def _role_id_trusting(template: dict[str, Any], service: str) -> str:
    ids = [
        logical_id
        for logical_id, role in resources_of_type(template, "AWS::IAM::Role").items()
        if any(
            s.get("Principal", {}).get("Service") == service
            for s in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        )
    ]
    assert len(ids) == 1, f"expected one role for {service}, found {ids}"
    return ids[0]


def _statements_of_role(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in resources_of_type(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _user_data_parts(template: dict[str, Any]) -> list[Any]:
    _, launch_template = _one(template, "AWS::EC2::LaunchTemplate")
    join = launch_template["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Join"]
    assert join[0] == ""
    return join[1]  # type: ignore[no-any-return]


def _user_data_text(template: dict[str, Any]) -> str:
    return "".join(p if isinstance(p, str) else json.dumps(p, sort_keys=True) for p in _user_data_parts(template))


def _bot_log_group_id(template: dict[str, Any]) -> str:
    (output,) = [o for name, o in template["Outputs"].items() if name.startswith("LogGroupName")]
    return output["Value"]["Ref"]  # type: ignore[no-any-return]


@per_env
def test_vpc_is_public_only_without_nat_gateways(env_name: str) -> None:
    _, template = _bot(env_name)
    assert resources_of_type(template, "AWS::EC2::NatGateway") == {}
    assert resources_of_type(template, "AWS::EC2::EIP") == {}
    subnets = resources_of_type(template, "AWS::EC2::Subnet")
    assert len(subnets) == 2
    assert all(s["Properties"]["MapPublicIpOnLaunch"] is True for s in subnets.values())
    igw_routes = [r for r in resources_of_type(template, "AWS::EC2::Route").values() if "GatewayId" in r["Properties"]]
    assert len(igw_routes) == len(subnets)
    assert all(r["Properties"]["DestinationCidrBlock"] == "0.0.0.0/0" for r in igw_routes)


@per_env
def test_vpc_flow_logs_go_to_a_retained_log_group(env_name: str) -> None:
    bot, template = _bot(env_name)
    _, flow_log = _one(template, "AWS::EC2::FlowLog")
    props = flow_log["Properties"]
    assert props["ResourceType"] == "VPC"
    assert props["TrafficType"] == "ALL"
    group = template["Resources"][props["LogGroupName"]["Ref"]]
    assert group["Properties"]["RetentionInDays"] == bot.log_retention_days


@per_env
def test_security_group_has_no_inbound_rules_and_https_only_egress(env_name: str) -> None:
    _, template = _bot(env_name)
    _, launch_template = _one(template, "AWS::EC2::LaunchTemplate")
    (sg_ref,) = launch_template["Properties"]["LaunchTemplateData"]["SecurityGroupIds"]
    sg = template["Resources"][sg_ref["Fn::GetAtt"][0]]["Properties"]
    assert "SecurityGroupIngress" not in sg
    assert resources_of_type(template, "AWS::EC2::SecurityGroupIngress") == {}
    assert [(e["IpProtocol"], e["FromPort"], e["ToPort"]) for e in sg["SecurityGroupEgress"]] == [("tcp", 443, 443)]


@per_env
def test_launch_template_requires_imdsv2_encrypted_gp3_and_no_ssh_key(env_name: str) -> None:
    bot, template = _bot(env_name)
    _, launch_template = _one(template, "AWS::EC2::LaunchTemplate")
    data = launch_template["Properties"]["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["MetadataOptions"]["HttpEndpoint"] == "enabled"
    assert data["MetadataOptions"]["HttpPutResponseHopLimit"] in (1, 2)
    assert "KeyName" not in data
    (root,) = data["BlockDeviceMappings"]
    assert root["DeviceName"] == "/dev/xvda"
    assert root["Ebs"]["Encrypted"] is True
    assert root["Ebs"]["VolumeType"] == "gp3"
    # The AMI is a deploy-time SSM parameter, never an id baked in at synth.
    parameter = template["Parameters"][data["ImageId"]["Ref"]]
    assert parameter["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    assert parameter["Default"].startswith("/aws/service/ami-amazon-linux-latest/al2023-ami-")
    assert parameter["Default"].endswith("-arm64" if bot.architecture == "arm64" else "-x86_64")
    profile = template["Resources"][data["IamInstanceProfile"]["Arn"]["Fn::GetAtt"][0]]
    assert profile["Properties"]["Roles"] == [{"Ref": _role_id_trusting(template, "ec2.amazonaws.com")}]


@per_env
def test_spot_fleet_maintains_target_capacity_over_every_type_and_subnet(env_name: str) -> None:
    bot, template = _bot(env_name)
    _, fleet = _one(template, "AWS::EC2::SpotFleet")
    data = fleet["Properties"]["SpotFleetRequestConfigData"]
    assert data["Type"] == "maintain"
    assert data["TargetCapacity"] == bot.target_capacity
    assert data["AllocationStrategy"] == bot.allocation_strategy
    assert data["SpotMaintenanceStrategies"]["CapacityRebalance"]["ReplacementStrategy"] in (
        "launch",
        "launch-before-terminate",
    )
    (config,) = data["LaunchTemplateConfigs"]
    launch_template_id, _ = _one(template, "AWS::EC2::LaunchTemplate")
    assert config["LaunchTemplateSpecification"]["LaunchTemplateId"] == {"Ref": launch_template_id}
    subnet_ids = sorted(resources_of_type(template, "AWS::EC2::Subnet"))
    overrides = sorted((o["InstanceType"], o["SubnetId"]["Ref"]) for o in config["Overrides"])
    assert overrides == sorted(itertools.product(bot.instance_types, subnet_ids))
    assert data["IamFleetRole"] == {"Fn::GetAtt": [_role_id_trusting(template, "spotfleet.amazonaws.com"), "Arn"]}
    assert resources_of_type(template, "AWS::AutoScaling::AutoScalingGroup") == {}


@per_env
def test_instance_role_names_exact_arns_for_s3_secrets_and_logs(env_name: str) -> None:
    bot, template = _bot(env_name)
    role_id = _role_id_trusting(template, "ec2.amazonaws.com")
    role = template["Resources"][role_id]["Properties"]
    assert "ManagedPolicyArns" not in role
    statements = _statements_of_role(template, role_id)
    by_service: dict[str, list[dict[str, Any]]] = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        for service in sorted({action.split(":")[0] for action in _as_list(statement["Action"])}):
            by_service.setdefault(service, []).append(statement)
    for service in ("s3", "secretsmanager", "logs"):
        for statement in by_service[service]:
            assert "*" not in _as_list(statement["Resource"]), statement
            assert "*" not in json.dumps(statement["Resource"]), statement
            assert all(a.startswith(f"{service}:") and "*" not in a for a in _as_list(statement["Action"]))

    (s3_statement,) = by_service["s3"]
    assert _as_list(s3_statement["Action"]) == ["s3:GetObject"]
    object_arns = [json.dumps(r) for r in s3_statement["Resource"]]
    assert len(object_arns) == 2
    assert any(arn.endswith(f'"/{bot.model_key}"]]}}') for arn in object_arns)
    assert any("cdk-hnb659fds-assets" in arn and '.zip"' in arn for arn in object_arns)

    (secret_statement,) = by_service["secretsmanager"]
    assert "DiscordBotToken" in json.dumps(secret_statement["Resource"])

    (logs_statement,) = by_service["logs"]
    assert sorted(logs_statement["Action"]) == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert logs_statement["Resource"] == {"Fn::GetAtt": [_bot_log_group_id(template), "Arn"]}
    # Only SSM's channel actions (which have no resource ARNs) may use "*".
    wildcard_actions = {a for s in statements if s["Resource"] == "*" for a in _as_list(s["Action"])}
    assert wildcard_actions and all(a.split(":")[0] in ("ssmmessages", "ec2messages") for a in wildcard_actions)


@per_env
def test_user_data_runs_the_bot_under_systemd_and_holds_no_secret(env_name: str) -> None:
    bot, template = _bot(env_name)
    text = _user_data_text(template)
    for expected in (
        "dnf install -y amazon-cloudwatch-agent python3.11 python3.11-pip",
        "python3.11 -m venv /opt/genart/venv",
        "--only-binary=:all: -r /opt/genart/app/bot/requirements.txt",
        "python3.11 -m zipfile -e /opt/genart/bot.zip /opt/genart/app/bot",
        "[Service]",
        "User=genart",
        "WorkingDirectory=/opt/genart/app",
        "ExecStart=/opt/genart/venv/bin/python -m bot",
        "Restart=on-failure",
        f'Environment="GENART_MODEL_KEY={bot.model_key}"',
        'Environment="GENART_MODEL_CACHE=/var/cache/genart/model.onnx"',
        'Environment="GENART_LOG_LEVEL=INFO"',
        "StandardOutput=append:/var/log/genart/bot.log",
        "amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s",
        "systemctl enable --now genart-bot.service",
    ):
        assert expected in text, expected
    assert "User=root" not in text
    assert ("GENART_OPERATOR_IDS" in text) == bool(bot.operator_ids)

    parts = _user_data_parts(template)
    following = {
        part.rsplit("\n", 1)[-1]: parts[i + 1]
        for i, part in enumerate(parts[:-1])
        if isinstance(part, str) and part.endswith("=")
    }
    assert "DiscordBotToken" in json.dumps(following['Environment="GENART_TOKEN_SECRET_ARN='])
    assert "ModelsBucket" in json.dumps(following['Environment="GENART_MODELS_BUCKET='])
    assert following['Environment="AWS_REGION='] == {"Ref": "AWS::Region"}
    # The token is read by the bot at run time: no dynamic reference, no token variable, no placeholder JSON.
    for forbidden in ("resolve:secretsmanager", "SecretString", "DISCORD_TOKEN", "REPLACE-ME", "GetSecretValue"):
        assert forbidden not in text, forbidden
    agent_config = text.split("genart-logs.json <<'GENART_EOF'\n", 1)[1].split("\nGENART_EOF", 1)[0]
    assert json.dumps({"Ref": _bot_log_group_id(template)}, sort_keys=True) in agent_config


@per_env
def test_bot_log_group_retention_and_removal_follow_config(env_name: str) -> None:
    bot, template = _bot(env_name)
    group = template["Resources"][_bot_log_group_id(template)]
    assert group["Properties"]["RetentionInDays"] == bot.log_retention_days
    retain = synth_env(env_name).config.storage.retain_data
    assert group["DeletionPolicy"] == ("Retain" if retain else "Delete")


@per_env
def test_outputs_name_fleet_log_group_and_role(env_name: str) -> None:
    _, template = _bot(env_name)
    fleet_id, _ = _one(template, "AWS::EC2::SpotFleet")
    values = {name: output["Value"] for name, output in template["Outputs"].items()}
    assert values["SpotFleetRequestId"] == {"Ref": fleet_id}
    assert values["InstanceRoleArn"] == {"Fn::GetAtt": [_role_id_trusting(template, "ec2.amazonaws.com"), "Arn"]}
    assert "LogGroupName" in values


@functools.cache
def _asg_app() -> SynthesizedApp:
    """The asg variant, pinned to an account and region to prove the stack still needs no lookups."""
    base = synth_env("dev").config
    config = EnvConfig.model_validate(
        base.model_dump()
        | {
            "account": "123456789012",
            "region": "eu-west-1",
            "bot": base.bot.model_dump()
            | {
                "fleet": "asg",
                "allocation_strategy": "capacityOptimized",
                "target_capacity": 2,
                "operator_ids": ("123456789012345678", "223456789012345678"),
            },
        }
    )
    return synth_config(config)


def test_asg_variant_is_all_spot_with_capacity_rebalance() -> None:
    app = _asg_app()
    bot, template = app.config.bot, _bot_template(app)
    assert resources_of_type(template, "AWS::EC2::SpotFleet") == {}
    group_id, group = _one(template, "AWS::AutoScaling::AutoScalingGroup")
    props = group["Properties"]
    assert props["CapacityRebalance"] is True
    assert props["MinSize"] == props["MaxSize"] == str(bot.target_capacity)
    policy = props["MixedInstancesPolicy"]
    assert policy["InstancesDistribution"] == {
        "OnDemandBaseCapacity": 0,
        "OnDemandPercentageAboveBaseCapacity": 0,
        "SpotAllocationStrategy": "capacity-optimized",
    }
    assert [o["InstanceType"] for o in policy["LaunchTemplate"]["Overrides"]] == list(bot.instance_types)
    subnet_ids = sorted(resources_of_type(template, "AWS::EC2::Subnet"))
    assert sorted(s["Ref"] for s in props["VPCZoneIdentifier"]) == subnet_ids
    assert template["Outputs"]["AutoScalingGroupName"]["Value"] == {"Ref": group_id}
    _, launch_template = _one(template, "AWS::EC2::LaunchTemplate")
    assert launch_template["Properties"]["LaunchTemplateData"]["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] is True
    assert f'Environment="GENART_OPERATOR_IDS={",".join(bot.operator_ids)}"' in _user_data_text(template)


def test_asg_variant_passes_cdk_nag_and_needs_no_synth_time_lookups() -> None:
    app = _asg_app()
    stack = app.by_name[f"{app.config.prefix}-Bot"]
    assert stack.nag_findings() == []
    # Subnets get their AZs from Fn::GetAZs at deploy time, even with an account/region-pinned env.
    stage = cdk.Stage.of(stack.stack)
    assert stage is not None
    manifest = json.loads((Path(stage.synth().directory) / "manifest.json").read_text())
    assert manifest.get("missing") is None
    for subnet in resources_of_type(stack.json, "AWS::EC2::Subnet").values():
        assert "Fn::GetAZs" in json.dumps(subnet["Properties"]["AvailabilityZone"])


def test_config_rejects_diversified_for_asg() -> None:
    with pytest.raises(ConfigError, match=r"envs\.x\.bot\.allocation_strategy"):
        load_config({"x": {"bot": {"fleet": "asg", "allocation_strategy": "diversified"}}}, "x")
    load_config({"x": {"bot": {"fleet": "spot-fleet", "allocation_strategy": "diversified"}}}, "x")


def test_config_rejects_operator_ids_that_are_not_discord_user_ids() -> None:
    with pytest.raises(ConfigError, match=r"envs\.x\.bot\.operator_ids"):
        load_config({"x": {"bot": {"operator_ids": ["alice"]}}}, "x")
    load_config({"x": {"bot": {"operator_ids": ["123456789012345678"]}}}, "x")
