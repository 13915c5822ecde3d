"""Bot stack assertions by intent: NAT-free network, IMDSv2 launch template, Spot capacity, scoped role, user data.

Each test states what must hold for the bot to run (a launchable fleet, a bootstrap that ends in a running unit,
a role that reads exactly what the bootstrap and the bot fetch), not merely that a resource exists.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import posixpath
import re
import subprocess
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from infra.config import BotConfig, ConfigError, EnvConfig, load_config
from infra.stacks.bot import ROOT_VOLUME_GIB, model_list_prefix
from infra.stacks.bot_fleet import ASG_SPOT_ALLOCATION, REBALANCE_TERMINATION_DELAY_S
from infra.stacks.bot_user_data import (
    APP_DIR,
    BOT_LOG_FILE,
    CW_AGENT_CONFIG,
    FAILURE_LOG_FLUSH_S,
    RETRY_ATTEMPTS,
    RETRY_PAUSE_S,
    SERVICE_NAME,
    SERVICE_USER,
    VENV_DIR,
)
from runtime.bot import contract as bot_contract
from tests.infra.intrinsics import as_list, canonical_statements, render, value_of
from tests.infra.synth import ENV_NAMES, SynthesizedApp, resources_of_type, synth_config, synth_env

per_env = pytest.mark.parametrize("env_name", ENV_NAMES)

# The package the unit runs (`python -m <BOT_MODULE>` from WorkingDirectory). The one line to change when the
# install layout changes (e.g. to "runtime.bot"); every path check below follows from it and the module constants.
BOT_MODULE = "runtime.bot"

# Facts of Amazon Linux 2023 and its CloudWatch agent package, spelled out so a typo in the stack is caught.
AL2023_PACKAGES = {"amazon-cloudwatch-agent", "python3.11", "python3.11-pip", "logrotate"}
CW_AGENT_CTL = "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl"
BOOTSTRAP_LOG = "/var/log/cloud-init-output.log"
SPOT_FLEET_MANAGED_POLICY = "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonEC2SpotFleetTaggingRole"
SSM_CHANNEL_ACTIONS = [
    "ec2messages:AcknowledgeMessage",
    "ec2messages:DeleteMessage",
    "ec2messages:FailMessage",
    "ec2messages:GetEndpoint",
    "ec2messages:GetMessages",
    "ec2messages:SendReply",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
]
SYSTEMD_HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
}
_HEREDOC = re.compile(r"cat > (?P<path>\S+) <<'(?P<delimiter>\w+)'")


# ---------------------------------------------------------------------------------------------------------------
# helpers


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


def _assert_trusts_only(template: dict[str, Any], role_id: str, service: str) -> None:
    (statement,) = template["Resources"][role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement == {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": service}}


def _statements_of_role(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in resources_of_type(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _launch_template_data(template: dict[str, Any]) -> dict[str, Any]:
    _, launch_template = _one(template, "AWS::EC2::LaunchTemplate")
    return launch_template["Properties"]["LaunchTemplateData"]  # type: ignore[no-any-return]


def _user_data(app: SynthesizedApp) -> str:
    """The launch template's user data with every reference rendered as ${...}."""
    return render(_launch_template_data(_bot_template(app))["UserData"]["Fn::Base64"], app)


def _bootstrap(user_data: str) -> tuple[list[str], dict[str, str]]:
    """User data as its commands in order (a heredoc becomes `write <path>`) and the files the heredocs write."""
    steps: list[str] = []
    files: dict[str, str] = {}
    lines = iter(user_data.split("\n"))
    for line in lines:
        heredoc = _HEREDOC.fullmatch(line)
        if heredoc:
            delimiter = heredoc["delimiter"]
            files[heredoc["path"]] = "\n".join(itertools.takewhile(delimiter.__ne__, lines))
            steps.append(f"write {heredoc['path']}")
        elif line.strip() and not (line.startswith("#") and not line.startswith("#!")):
            steps.append(line)
    return steps, files


def _bootstrap_order() -> list[tuple[str, str]]:
    """(what the step is for, full-match pattern) for every first-boot command, in the order they must run."""
    e = re.escape
    unit_path = f"/etc/systemd/system/{SERVICE_NAME}"
    install_root = os.path.commonpath([APP_DIR, VENV_DIR])
    return [
        ("bash runs the script", e("#!/bin/bash")),
        ("stop at the first failing command", e("set -euxo pipefail")),
        (
            "retry network steps with growing pauses",
            e(f'retry() {{ for n in $(seq 1 {RETRY_ATTEMPTS}); do "$@" && return 0; ')
            + e(f"sleep $((n * {RETRY_PAUSE_S})); done; return 1; }}"),
        ),
        (
            "a failure that remains terminates the instance",
            e(f'trap \'echo "GenArt bootstrap failed at line $LINENO" >&2; sleep {FAILURE_LOG_FLUSH_S}; ')
            + e("shutdown -h now' ERR"),
        ),
        ("install the agent, Python and logrotate", r"retry dnf install -y (?P<packages>[\w.\- ]+)"),
        ("write the agent config", e(f"write {CW_AGENT_CONFIG}")),
        ("agent config readable", e(f"chmod 0644 {CW_AGENT_CONFIG}")),
        (
            "ship logs before anything else can fail",
            e(f"{CW_AGENT_CTL} -a fetch-config -m ec2 -s -c file:{CW_AGENT_CONFIG}"),
        ),
        (
            "create the unprivileged service user",
            e(f"id -u {SERVICE_USER} >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent")
            + e(f" --shell /sbin/nologin {SERVICE_USER}"),
        ),
        ("create root-owned folders", r"install -d -m 0755 -o root -g root (?P<folders>[/\w.\- ]+)"),
        (
            "download the code object",
            r"retry aws s3 cp 's3://(?P<bucket>[^/']+)/(?P<key>[^']+)' (?P<archive>/\S+)"
            r" --region (?P<region>\S+) --only-show-errors",
        ),
        ("remove the previous code", r"rm -rf (?P<stale>/\S+)"),
        ("unpack the code", r"python3\.11 -m zipfile -e (?P<unpack_from>/\S+) (?P<unpack_to>/\S+)"),
        ("create the venv", e(f"python3.11 -m venv {VENV_DIR}")),
        (
            "install pinned wheels only",
            e(f"retry {VENV_DIR}/bin/pip install --no-cache-dir --disable-pip-version-check --no-input")
            + e(" --only-binary=:all: --require-hashes --no-deps -r ")
            + r"(?P<requirements>/\S+)",
        ),
        ("code and venv root-owned", e(f"chown -R root:root {install_root}")),
        ("code and venv read-only for the bot", e(f"chmod -R u=rwX,go=rX {install_root}")),
        ("write the unit", e(f"write {unit_path}")),
        ("unit readable", e(f"chmod 0644 {unit_path}")),
        ("write the logrotate config", r"write (?P<logrotate>/etc/logrotate\.d/\S+)"),
        ("logrotate config readable", r"chmod 0644 /etc/logrotate\.d/\S+"),
        ("load the unit", e("systemctl daemon-reload")),
        ("start the bot now and at every boot", e(f"systemctl enable --now {SERVICE_NAME}")),
    ]


def _match_bootstrap(steps: list[str]) -> dict[str, str]:
    """Match the steps one-to-one, in order, against _bootstrap_order(); return the named groups."""
    order = _bootstrap_order()
    assert len(steps) == len(order), "\n".join(["bootstrap steps differ from the expected order:", *steps])
    groups: dict[str, str] = {}
    for step, (purpose, pattern) in zip(steps, order, strict=True):
        matched = re.fullmatch(pattern, step)
        assert matched, f"expected step '{purpose}' ({pattern}), found: {step}"
        groups.update(matched.groupdict())
    return groups


def _systemd_unit(files: dict[str, str]) -> dict[str, list[tuple[str, str]]]:
    """The unit file as section -> [(key, value)] (repeated keys kept, comments dropped)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for line in files[f"/etc/systemd/system/{SERVICE_NAME}"].split("\n"):
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
        else:
            key, value = line.split("=", 1)
            sections[current].append((key, value))
    return sections


def _single(entries: list[tuple[str, str]], key: str) -> str:
    values = [value for k, value in entries if k == key]
    assert len(values) == 1, f"expected one {key}=, found {values}"
    return values[0]


def _unit_environment(service: list[tuple[str, str]]) -> dict[str, str]:
    pairs = [value.strip('"').split("=", 1) for key, value in service if key == "Environment"]
    names = [name for name, _ in pairs]
    assert len(names) == len(set(names)), f"an environment variable is set twice: {names}"
    return dict(pairs)  # type: ignore[arg-type]


def _is_inside(path: str, folder: str) -> bool:
    return posixpath.commonpath([path, folder]) == folder


def _asset_files(app: SynthesizedApp, bucket: str, key: str) -> set[str]:
    """Files of the Bot stack's file asset published as s3://bucket/key (paths relative to the archive root)."""
    stack = app.by_name[f"{app.config.prefix}-Bot"]
    outdir = Path(cdk.Stage.of(stack.stack).outdir)  # type: ignore[union-attr]
    manifest = json.loads((outdir / f"{stack.name}.assets.json").read_text())
    sources = [
        asset["source"]
        for asset in manifest["files"].values()
        for destination in asset["destinations"].values()
        if (destination["bucketName"], destination["objectKey"]) == (bucket, key)
    ]
    assert len(sources) == 1, f"no file asset of the Bot stack is published as s3://{bucket}/{key}"
    assert sources[0]["packaging"] == "zip"
    root = outdir / sources[0]["path"]
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _bot_log_group_id(template: dict[str, Any]) -> str:
    (output,) = [o for name, o in template["Outputs"].items() if name.startswith("LogGroupName")]
    return output["Value"]["Ref"]  # type: ignore[no-any-return]


def _security_group_id(template: dict[str, Any]) -> str:
    (sg_ref,) = _launch_template_data(template)["SecurityGroupIds"]
    assert sg_ref == {"Fn::GetAtt": [sg_ref["Fn::GetAtt"][0], "GroupId"]}
    return sg_ref["Fn::GetAtt"][0]  # type: ignore[no-any-return]


def _is_graviton(instance_type: str) -> bool:
    """Graviton families carry a `g` right after the generation (t4g, c7gn, m8gd); a1 is the first Graviton."""
    return re.match(r"^([a-z]+\d+g[a-z]*|a1)\.", instance_type) is not None


# ---------------------------------------------------------------------------------------------------------------
# network


@per_env
def test_vpc_is_public_only_without_nat_gateways_or_paid_endpoints(env_name: str) -> None:
    _, template = _bot(env_name)
    for paid in ("AWS::EC2::NatGateway", "AWS::EC2::EIP", "AWS::EC2::VPCEndpoint", "AWS::EC2::TransitGateway"):
        assert resources_of_type(template, paid) == {}, paid
    vpc_id, _ = _one(template, "AWS::EC2::VPC")
    igw_id, _ = _one(template, "AWS::EC2::InternetGateway")
    _, attachment = _one(template, "AWS::EC2::VPCGatewayAttachment")
    assert attachment["Properties"] == {"InternetGatewayId": {"Ref": igw_id}, "VpcId": {"Ref": vpc_id}}
    subnets = resources_of_type(template, "AWS::EC2::Subnet")
    assert len(subnets) == 2
    # Two different AZs, chosen at deploy time.
    assert sorted(s["Properties"]["AvailabilityZone"]["Fn::Select"][0] for s in subnets.values()) == [0, 1]
    routes = resources_of_type(template, "AWS::EC2::Route").values()
    associations = resources_of_type(template, "AWS::EC2::SubnetRouteTableAssociation").values()
    for subnet_id, subnet in subnets.items():
        assert subnet["Properties"]["MapPublicIpOnLaunch"] is True
        assert subnet["Properties"]["VpcId"] == {"Ref": vpc_id}
        (table,) = [
            a["Properties"]["RouteTableId"] for a in associations if a["Properties"]["SubnetId"] == {"Ref": subnet_id}
        ]
        table_routes = [r["Properties"] for r in routes if r["Properties"]["RouteTableId"] == table]
        assert [(r["DestinationCidrBlock"], r.get("GatewayId")) for r in table_routes] == [
            ("0.0.0.0/0", {"Ref": igw_id})
        ], f"{subnet_id} must reach the internet through the internet gateway only"


@per_env
def test_vpc_flow_logs_all_traffic_to_their_own_retained_log_group(env_name: str) -> None:
    bot, template = _bot(env_name)
    vpc_id, _ = _one(template, "AWS::EC2::VPC")
    _, flow_log = _one(template, "AWS::EC2::FlowLog")
    props = flow_log["Properties"]
    assert (props["ResourceType"], props["ResourceId"], props["TrafficType"]) == ("VPC", {"Ref": vpc_id}, "ALL")
    assert props["LogDestinationType"] == "cloud-watch-logs"
    group_id = props["LogGroupName"]["Ref"]
    assert group_id != _bot_log_group_id(template)
    assert template["Resources"][group_id]["Properties"]["RetentionInDays"] == bot.log_retention_days
    role_id = _role_id_trusting(template, "vpc-flow-logs.amazonaws.com")
    assert props["DeliverLogsPermissionArn"] == {"Fn::GetAtt": [role_id, "Arn"]}
    (statement,) = _statements_of_role(template, role_id)
    assert {"logs:CreateLogStream", "logs:PutLogEvents"} <= set(as_list(statement["Action"]))
    assert statement["Resource"] == {"Fn::GetAtt": [group_id, "Arn"]}


@per_env
def test_security_group_has_no_inbound_rules_and_exactly_one_https_egress(env_name: str) -> None:
    _, template = _bot(env_name)
    vpc_id, _ = _one(template, "AWS::EC2::VPC")
    sg_id = _security_group_id(template)
    assert list(resources_of_type(template, "AWS::EC2::SecurityGroup")) == [sg_id]
    sg = template["Resources"][sg_id]["Properties"]
    assert sg["VpcId"] == {"Ref": vpc_id}
    assert "SecurityGroupIngress" not in sg
    assert resources_of_type(template, "AWS::EC2::SecurityGroupIngress") == {}
    assert resources_of_type(template, "AWS::EC2::SecurityGroupEgress") == {}
    egress = [{k: v for k, v in rule.items() if k != "Description"} for rule in sg["SecurityGroupEgress"]]
    assert egress == [{"CidrIp": "0.0.0.0/0", "IpProtocol": "tcp", "FromPort": 443, "ToPort": 443}]


# ---------------------------------------------------------------------------------------------------------------
# launch template


@per_env
def test_launch_template_requires_imdsv2_with_one_hop_and_no_ssh_key(env_name: str) -> None:
    _, template = _bot(env_name)
    data = _launch_template_data(template)
    assert data["MetadataOptions"] == {
        "HttpEndpoint": "enabled",
        "HttpTokens": "required",
        "HttpPutResponseHopLimit": 1,
        "InstanceMetadataTags": "disabled",
    }
    assert "KeyName" not in data
    assert "NetworkInterfaces" not in data  # the security group applies through SecurityGroupIds


@per_env
def test_launch_template_root_volume_is_encrypted_gp3_of_declared_size(env_name: str) -> None:
    _, template = _bot(env_name)
    assert _launch_template_data(template)["BlockDeviceMappings"] == [
        {
            "DeviceName": "/dev/xvda",
            "Ebs": {"DeleteOnTermination": True, "Encrypted": True, "VolumeSize": ROOT_VOLUME_GIB, "VolumeType": "gp3"},
        }
    ]


@per_env
def test_launch_template_uses_instance_role_security_group_and_an_ami_of_the_fleet_architecture(env_name: str) -> None:
    bot, template = _bot(env_name)
    data = _launch_template_data(template)
    role_id = _role_id_trusting(template, "ec2.amazonaws.com")
    profile_id, profile = _one(template, "AWS::IAM::InstanceProfile")
    assert data["IamInstanceProfile"] == {"Arn": {"Fn::GetAtt": [profile_id, "Arn"]}}
    assert profile["Properties"]["Roles"] == [{"Ref": role_id}]
    assert data["SecurityGroupIds"] == [{"Fn::GetAtt": [_security_group_id(template), "GroupId"]}]
    # The AMI is a deploy-time SSM parameter (the newest AL2023), never an id baked in at synth.
    parameter = template["Parameters"][data["ImageId"]["Ref"]]
    assert parameter["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    assert re.fullmatch(
        r"/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-(default|\d+\.\d+)-" + re.escape(bot.architecture),
        parameter["Default"],
    )
    # Every instance type the fleet may launch runs that AMI.
    assert all(_is_graviton(t) == (bot.architecture == "arm64") for t in bot.instance_types), bot.instance_types
    # The instance must not boot before its policy exists: the bootstrap's first S3 read would fail.
    (policy_id,) = [
        pid
        for pid, p in resources_of_type(template, "AWS::IAM::Policy").items()
        if p["Properties"]["Roles"] == [{"Ref": role_id}]
    ]
    launch_template_id, launch_template = _one(template, "AWS::EC2::LaunchTemplate")
    assert policy_id in launch_template.get("DependsOn", []), launch_template_id


# ---------------------------------------------------------------------------------------------------------------
# Spot capacity


@per_env
def test_spot_fleet_role_is_trusted_by_spot_fleet_and_holds_its_service_policy(env_name: str) -> None:
    _, template = _bot(env_name)
    role_id = _role_id_trusting(template, "spotfleet.amazonaws.com")
    _assert_trusts_only(template, role_id, "spotfleet.amazonaws.com")
    app = synth_env(env_name)
    role = template["Resources"][role_id]["Properties"]
    # Without this policy the fleet request is accepted and then launches nothing.
    assert [render(arn, app) for arn in role.get("ManagedPolicyArns", [])] == [SPOT_FLEET_MANAGED_POLICY]
    assert "Policies" not in role
    assert _statements_of_role(template, role_id) == []


@per_env
def test_spot_fleet_maintains_target_capacity_over_every_type_and_subnet(env_name: str) -> None:
    bot, template = _bot(env_name)
    _, fleet = _one(template, "AWS::EC2::SpotFleet")
    data = fleet["Properties"]["SpotFleetRequestConfigData"]
    assert data["IamFleetRole"] == {"Fn::GetAtt": [_role_id_trusting(template, "spotfleet.amazonaws.com"), "Arn"]}
    assert data["Type"] == "maintain"
    assert data["TargetCapacity"] == bot.target_capacity
    assert data["AllocationStrategy"] == bot.allocation_strategy
    assert data["InstanceInterruptionBehavior"] == "terminate"
    assert data["ReplaceUnhealthyInstances"] is True
    # No price cap, no expiry, no on-demand share: the fleet keeps one Spot bot running indefinitely.
    for absent in ("SpotPrice", "ValidUntil", "ValidFrom", "OnDemandTargetCapacity", "LaunchSpecifications"):
        assert absent not in data, absent
    (config,) = data["LaunchTemplateConfigs"]
    launch_template_id, _ = _one(template, "AWS::EC2::LaunchTemplate")
    assert config["LaunchTemplateSpecification"] == {
        "LaunchTemplateId": {"Ref": launch_template_id},
        "Version": {"Fn::GetAtt": [launch_template_id, "LatestVersionNumber"]},
    }
    subnet_ids = sorted(resources_of_type(template, "AWS::EC2::Subnet"))
    # Each override names only a type and a subnet: no per-override price cap or weight.
    assert all(set(o) == {"InstanceType", "SubnetId"} for o in config["Overrides"])
    overrides = sorted((o["InstanceType"], o["SubnetId"]["Ref"]) for o in config["Overrides"])
    assert overrides == sorted(itertools.product(bot.instance_types, subnet_ids))
    assert resources_of_type(template, "AWS::AutoScaling::AutoScalingGroup") == {}


@per_env
def test_spot_fleet_replaces_a_rebalanced_instance_before_terminating_it(env_name: str) -> None:
    _, template = _bot(env_name)
    _, fleet = _one(template, "AWS::EC2::SpotFleet")
    strategies = fleet["Properties"]["SpotFleetRequestConfigData"]["SpotMaintenanceStrategies"]
    assert strategies == {
        "CapacityRebalance": {
            "ReplacementStrategy": "launch-before-terminate",
            "TerminationDelay": REBALANCE_TERMINATION_DELAY_S,
        }
    }
    assert 120 <= REBALANCE_TERMINATION_DELAY_S <= 7200  # Spot Fleet's allowed range


# ---------------------------------------------------------------------------------------------------------------
# instance role


@per_env
def test_instance_role_grants_exactly_code_model_model_listing_secret_logs_and_ssm(env_name: str) -> None:
    app = synth_env(env_name)
    bot, template = app.config.bot, _bot_template(app)
    storage = app.stacks.storage
    role_id = _role_id_trusting(template, "ec2.amazonaws.com")
    _assert_trusts_only(template, role_id, "ec2.amazonaws.com")
    role = template["Resources"][role_id]["Properties"]
    assert "ManagedPolicyArns" not in role and "Policies" not in role
    # The code object the bootstrap downloads is the one the role may read.
    download = _match_bootstrap(_bootstrap(_user_data(app))[0])
    code_object = f"arn:${{AWS::Partition}}:s3:::{download['bucket']}/{download['key']}"
    model_object = value_of(storage, storage.models_bucket.bucket_arn, app) + f"/{bot.model_key}"
    models_bucket = value_of(storage, storage.models_bucket.bucket_arn, app)
    expected = [
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": sorted([code_object, model_object])},
        {
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [models_bucket],
            "Condition": {"StringLike": {"s3:prefix": [bot.model_key.rsplit("/", 1)[0] + "/*"]}},
        },
        {
            "Effect": "Allow",
            "Action": ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"],
            "Resource": [value_of(storage, storage.bot_token_secret.secret_arn, app)],
        },
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [f"${{{_bot_log_group_id(template)}.Arn}}"],
        },
        {
            "Effect": "Allow",
            "Action": ["ssm:UpdateInstanceInformation"],
            "Resource": ["arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*"],
        },
        {"Effect": "Allow", "Action": SSM_CHANNEL_ACTIONS, "Resource": ["*"]},
    ]
    assert canonical_statements(_statements_of_role(template, role_id), app) == canonical_statements(expected, app)


@per_env
def test_the_bot_may_list_only_its_models_folder_so_a_missing_model_reads_404_not_403(env_name: str) -> None:
    bot, template = _bot(env_name)
    listing = [
        statement
        for policy in resources_of_type(template, "AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if any(action.startswith(("s3:List", "s3:*")) for action in as_list(statement["Action"]))
    ]
    assert len(listing) == 1
    assert as_list(listing[0]["Action"]) == ["s3:ListBucket"]
    assert listing[0]["Condition"] == {"StringLike": {"s3:prefix": ["stylegan/*"]}}
    assert bot.model_key == "stylegan/latest.onnx"  # the default the condition above spells out


def test_a_model_key_without_a_folder_is_the_listing_prefix_itself() -> None:
    assert model_list_prefix("models/gan/latest.onnx") == "models/gan/*"
    assert model_list_prefix("latest.onnx") == "latest.onnx"


# ---------------------------------------------------------------------------------------------------------------
# user data


@per_env
def test_user_data_runs_every_bootstrap_step_in_order(env_name: str) -> None:
    app = synth_env(env_name)
    steps, files = _bootstrap(_user_data(app))
    found = _match_bootstrap(steps)
    assert set(found["packages"].split()) == AL2023_PACKAGES
    # Folders exist before the download writes into them; the bot log folder exists before the unit appends.
    folders = found["folders"].split()
    assert posixpath.dirname(found["archive"]) in folders
    assert APP_DIR in folders and posixpath.dirname(BOT_LOG_FILE) in folders
    assert found["region"] == "${AWS::Region}"
    # The downloaded archive is what gets unpacked; stale code is removed from where it is unpacked.
    assert found["unpack_from"] == found["archive"]
    assert _is_inside(found["unpack_to"], APP_DIR)
    assert _is_inside(found["stale"], found["unpack_to"])
    # The unit's module and the installed requirements are where the archive unpacks.
    module_dir = posixpath.join(APP_DIR, *BOT_MODULE.split("."))
    assert _is_inside(module_dir, found["unpack_to"])
    assert found["requirements"] == f"{module_dir}/requirements.txt"
    assert found["logrotate"] in files


@per_env
def test_user_data_downloads_the_bot_code_asset_with_its_entry_point_and_requirements(env_name: str) -> None:
    app = synth_env(env_name)
    found = _match_bootstrap(_bootstrap(_user_data(app))[0])
    assert found["bucket"] == "cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}"
    files = _asset_files(app, found["bucket"], found["key"])
    module_in_archive = posixpath.relpath(posixpath.join(APP_DIR, *BOT_MODULE.split(".")), found["unpack_to"])
    for needed in ("__main__.py", "requirements.txt", "contract.py"):
        assert posixpath.normpath(posixpath.join(module_in_archive, needed)) in files, needed
    assert not any("__pycache__" in f or f.endswith(".pyc") or f.startswith("tests/") for f in files)


@per_env
def test_systemd_unit_runs_the_bot_unprivileged_restarts_it_and_logs_to_the_shipped_file(env_name: str) -> None:
    app = synth_env(env_name)
    unit = _systemd_unit(_bootstrap(_user_data(app))[1])
    service = unit["Service"]
    assert _single(service, "Type") == "exec"
    assert _single(service, "User") == _single(service, "Group") == SERVICE_USER != "root"
    assert _single(service, "WorkingDirectory") == APP_DIR
    assert _single(service, "ExecStart") == f"{VENV_DIR}/bin/python -m {BOT_MODULE}"
    assert _single(service, "Restart") == "on-failure"
    assert 0 < int(_single(service, "RestartSec")) <= 60
    # The bot finishes its SIGTERM shutdown before a rebalanced instance is terminated: one drain deadline plus
    # the gateway close fit in TimeoutStopSec, which fits in the Spot notice.
    stop_s = int(_single(service, "TimeoutStopSec"))
    assert 0 < stop_s < REBALANCE_TERMINATION_DELAY_S
    assert stop_s == bot_contract.STOP_TIMEOUT_S
    assert bot_contract.DRAIN_DEADLINE_S + bot_contract.CLOSE_MARGIN_S <= stop_s < bot_contract.SPOT_NOTICE_S
    # Memory is bounded relative to the instance: MemoryHigh (throttle) below MemoryMax (kill), no swap.
    high, hard = _single(service, "MemoryHigh"), _single(service, "MemoryMax")
    assert re.fullmatch(r"\d+%", high) and re.fullmatch(r"\d+%", hard)
    assert 50 <= int(high[:-1]) < int(hard[:-1]) <= 85
    assert _single(service, "MemorySwapMax") == "0"
    assert _single(service, "StandardOutput") == _single(service, "StandardError") == f"append:{BOT_LOG_FILE}"
    for directive, value in SYSTEMD_HARDENING.items():
        assert _single(service, directive) == value, directive
    # ProtectSystem=strict leaves only CacheDirectory writable: the model cache must live there.
    assert bot_contract.MODEL_CACHE_PATH.startswith(f"/var/cache/{_single(service, 'CacheDirectory')}/")
    assert _single(unit["Unit"], "Wants") == _single(unit["Unit"], "After") == "network-online.target"
    assert _single(unit["Unit"], "StartLimitIntervalSec") == "0"
    assert unit["Install"] == [("WantedBy", "multi-user.target")]


@per_env
def test_systemd_unit_environment_names_come_from_the_bot_contract_and_hold_no_secret(env_name: str) -> None:
    app = synth_env(env_name)
    bot, storage = app.config.bot, app.stacks.storage
    user_data = _user_data(app)
    environment = _unit_environment(_systemd_unit(_bootstrap(user_data)[1])["Service"])
    expected = {
        bot_contract.ENV_TOKEN_SECRET_ARN: value_of(storage, storage.bot_token_secret.secret_arn, app),
        bot_contract.ENV_MODELS_BUCKET: value_of(storage, storage.models_bucket.bucket_name, app),
        bot_contract.ENV_MODEL_KEY: bot.model_key,
        bot_contract.ENV_MODEL_CACHE: bot_contract.MODEL_CACHE_PATH,
        bot_contract.ENV_MODEL_POLL_S: str(bot.model_poll_s),
        bot_contract.ENV_LOG_LEVEL: "INFO",
        "AWS_REGION": "${AWS::Region}",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MALLOC_ARENA_MAX": str(bot_contract.MALLOC_ARENA_MAX),
    }
    if bot.operator_ids:
        expected[bot_contract.ENV_OPERATOR_IDS] = ",".join(bot.operator_ids)
    assert environment == expected
    contract_names = {v for k, v in vars(bot_contract).items() if k.startswith("ENV_")}
    assert {name for name in environment if name.startswith("GENART_")} <= contract_names
    # The token is read by the bot at run time: no dynamic reference, no token variable, no placeholder JSON.
    for forbidden in ("resolve:secretsmanager", "SecretString", "DISCORD_TOKEN", "REPLACE-ME", "GetSecretValue"):
        assert forbidden not in user_data, forbidden


@per_env
def test_cloudwatch_agent_ships_bot_and_bootstrap_logs_to_the_bot_log_group(env_name: str) -> None:
    app = synth_env(env_name)
    template = _bot_template(app)
    files = _bootstrap(_user_data(app))[1]
    config = json.loads(files[CW_AGENT_CONFIG])
    shipped = {
        (entry["file_path"], entry["log_group_name"], entry["log_stream_name"])
        for entry in config["logs"]["logs_collected"]["files"]["collect_list"]
    }
    group = f"${{{_bot_log_group_id(template)}}}"
    assert shipped == {(BOT_LOG_FILE, group, "{instance_id}/bot"), (BOOTSTRAP_LOG, group, "{instance_id}/bootstrap")}
    logrotate = files[_match_bootstrap(_bootstrap(_user_data(app))[0])["logrotate"]]
    assert logrotate.split(None, 1)[0] == BOT_LOG_FILE
    # systemd keeps the file open for appending: rotation must truncate in place, not move it away.
    assert "copytruncate" in logrotate.split()


@per_env
def test_bot_log_group_retention_and_removal_follow_config(env_name: str) -> None:
    bot, template = _bot(env_name)
    retain = synth_env(env_name).config.storage.retain_data
    for group_id in (
        _bot_log_group_id(template),
        _one(template, "AWS::EC2::FlowLog")[1]["Properties"]["LogGroupName"]["Ref"],
    ):
        group = template["Resources"][group_id]
        assert group["Properties"]["RetentionInDays"] == bot.log_retention_days
        assert group["DeletionPolicy"] == group["UpdateReplacePolicy"] == ("Retain" if retain else "Delete")


@per_env
def test_outputs_name_fleet_log_group_and_role(env_name: str) -> None:
    _, template = _bot(env_name)
    fleet_id, _ = _one(template, "AWS::EC2::SpotFleet")
    values = {name: output["Value"] for name, output in template["Outputs"].items()}
    assert values["SpotFleetRequestId"] == {"Ref": fleet_id}
    assert values["LogGroupName"] == {"Ref": _bot_log_group_id(template)}
    assert values["InstanceRoleArn"] == {"Fn::GetAtt": [_role_id_trusting(template, "ec2.amazonaws.com"), "Arn"]}
    group_type = template["Resources"][_bot_log_group_id(template)]["Type"]
    assert group_type == "AWS::Logs::LogGroup"


# ---------------------------------------------------------------------------------------------------------------
# Auto Scaling group variant


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


def test_asg_variant_is_all_spot_at_a_fixed_size_with_capacity_rebalance() -> None:
    app = _asg_app()
    bot, template = app.config.bot, _bot_template(app)
    assert resources_of_type(template, "AWS::EC2::SpotFleet") == {}
    group_id, group = _one(template, "AWS::AutoScaling::AutoScalingGroup")
    props = group["Properties"]
    assert props["CapacityRebalance"] is True
    assert props["MinSize"] == props["MaxSize"] == str(bot.target_capacity)
    assert props.get("DesiredCapacity", str(bot.target_capacity)) == str(bot.target_capacity)
    policy = props["MixedInstancesPolicy"]
    assert policy["InstancesDistribution"] == {
        "OnDemandBaseCapacity": 0,
        "OnDemandPercentageAboveBaseCapacity": 0,
        "SpotAllocationStrategy": "capacity-optimized",
    }
    launch_template_id, _ = _one(template, "AWS::EC2::LaunchTemplate")
    assert policy["LaunchTemplate"]["LaunchTemplateSpecification"] == {
        "LaunchTemplateId": {"Ref": launch_template_id},
        "Version": {"Fn::GetAtt": [launch_template_id, "LatestVersionNumber"]},
    }
    assert policy["LaunchTemplate"]["Overrides"] == [{"InstanceType": t} for t in bot.instance_types]
    subnet_ids = sorted(resources_of_type(template, "AWS::EC2::Subnet"))
    assert sorted(s["Ref"] for s in props["VPCZoneIdentifier"]) == subnet_ids
    # A new launch template version replaces the bot one instance at a time.
    rolling = group["UpdatePolicy"]["AutoScalingRollingUpdate"]
    assert (rolling["MaxBatchSize"], rolling["MinInstancesInService"]) == (1, 0)
    assert template["Outputs"]["AutoScalingGroupName"]["Value"] == {"Ref": group_id}
    assert "SpotFleetRequestId" not in template["Outputs"]
    assert f'Environment="GENART_OPERATOR_IDS={",".join(bot.operator_ids)}"' in _user_data(app)


def test_asg_variant_launches_the_same_encrypted_imdsv2_template_without_a_fleet_role() -> None:
    template = _bot_template(_asg_app())
    data = _launch_template_data(template)
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    # cdk-nag cannot see this volume through the MixedInstancesPolicy (EC26 is suppressed on that ground).
    assert data["BlockDeviceMappings"][0]["Ebs"] == {
        "DeleteOnTermination": True,
        "Encrypted": True,
        "VolumeSize": ROOT_VOLUME_GIB,
        "VolumeType": "gp3",
    }
    trusted = {
        s["Principal"].get("Service")
        for role in resources_of_type(template, "AWS::IAM::Role").values()
        for s in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    }
    assert "spotfleet.amazonaws.com" not in trusted


def test_asg_spot_allocation_strategies_map_to_the_same_named_strategy() -> None:
    for name, strategy in ASG_SPOT_ALLOCATION.items():
        assert strategy.name == re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper(), name


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


# ---------------------------------------------------------------------------------------------------------------
# config


def test_config_rejects_diversified_for_asg() -> None:
    with pytest.raises(ConfigError, match=r"envs\.x\.bot\.allocation_strategy"):
        load_config({"x": {"bot": {"fleet": "asg", "allocation_strategy": "diversified"}}}, "x")
    load_config({"x": {"bot": {"fleet": "spot-fleet", "allocation_strategy": "diversified"}}}, "x")


def test_config_rejects_operator_ids_that_are_not_discord_user_ids() -> None:
    with pytest.raises(ConfigError, match=r"envs\.x\.bot\.operator_ids"):
        load_config({"x": {"bot": {"operator_ids": ["alice"]}}}, "x")
    load_config({"x": {"bot": {"operator_ids": ["123456789012345678"]}}}, "x")


# ---------------------------------------------------------------------------------------------------------------
# heartbeat


@per_env
def test_heartbeat_lines_of_the_bot_log_group_become_a_metric(env_name: str) -> None:
    app = synth_env(env_name)
    template = _bot_template(app)
    ((log_group_id, _),) = [
        (k, v) for k, v in resources_of_type(template, "AWS::Logs::LogGroup").items() if k.startswith("BotLogGroup")
    ]
    (metric_filter,) = resources_of_type(template, "AWS::Logs::MetricFilter").values()
    props = metric_filter["Properties"]
    assert props["LogGroupName"] == {"Ref": log_group_id}
    assert props["FilterPattern"] == f'{{ $.message = "{bot_contract.HEARTBEAT_MESSAGE}" }}'
    assert props["MetricTransformations"] == [
        {"MetricNamespace": f"GenArt/{env_name}", "MetricName": "BotHeartbeats", "MetricValue": "1"}
    ]


@per_env
def test_silent_bot_alarms_on_the_ops_alerts_topic_even_when_no_data_arrives(env_name: str) -> None:
    app = synth_env(env_name)
    (alarm,) = resources_of_type(_bot_template(app), "AWS::CloudWatch::Alarm").values()
    props = alarm["Properties"]
    assert (props["Namespace"], props["MetricName"], props["Statistic"]) == (
        f"GenArt/{env_name}",
        "BotHeartbeats",
        "Sum",
    )
    assert "Dimensions" not in props
    assert (props["ComparisonOperator"], props["Threshold"]) == ("LessThanThreshold", 1)
    assert (props["Period"], props["EvaluationPeriods"]) == (300, 3)
    assert props["TreatMissingData"] == "breaching"
    # The heartbeat interval leaves several lines per period, so one late line cannot trip the alarm.
    assert props["Period"] >= bot_contract.HEARTBEAT_INTERVAL_S * 3
    storage = app.stacks.storage
    expected = [value_of(storage, storage.ops_alerts.topic_arn, app)]
    assert [render(a, app) for a in props["AlarmActions"]] == expected
    assert [render(a, app) for a in props["OKActions"]] == expected


def test_a_bot_scaled_to_zero_has_no_heartbeat_alarm() -> None:
    app = synth_config(load_config({"x": {"bot": {"target_capacity": 0}}}, "x"))
    template = _bot_template(app)
    assert not resources_of_type(template, "AWS::CloudWatch::Alarm")
    assert not resources_of_type(template, "AWS::Logs::MetricFilter")


def test_user_data_is_valid_bash_whose_retry_and_failure_trap_work(tmp_path: Path) -> None:
    script = _user_data(synth_env("dev"))
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    # Run the script's own retry function and trap with stand-ins for shutdown and the pauses.
    lines = script.split("\n")
    (retry,) = [line for line in lines if line.startswith("retry() {")]
    (trap,) = [line for line in lines if line.startswith("trap ")]
    probe = "\n".join(
        [
            "set -euo pipefail",
            "sleep() { :; }",
            f"shutdown() {{ echo shutdown >> {tmp_path}/calls; }}",
            retry,
            trap,
            f"flaky() {{ echo try >> {tmp_path}/calls; [ $(grep -c try {tmp_path}/calls) -ge 3 ]; }}",
            "retry flaky",
            "echo recovered >> " + str(tmp_path / "calls"),
            "retry false",
            "echo unreachable >> " + str(tmp_path / "calls"),
        ]
    )
    result = subprocess.run(["bash", "-c", probe], text=True, capture_output=True, check=False)
    calls = (tmp_path / "calls").read_text().split()
    assert calls == ["try", "try", "try", "recovered", "shutdown"], (calls, result.stderr)
    assert result.returncode != 0 and "GenArt bootstrap failed at line" in result.stderr


def test_a_shutdown_from_the_bootstrap_terminates_the_spot_instance() -> None:
    data = _launch_template_data(_bot_template(synth_env("dev")))
    assert data["InstanceInitiatedShutdownBehavior"] == "terminate"
