"""First-boot script for the bot instance: CloudWatch agent, code download, venv, hardened systemd unit."""

from __future__ import annotations

import json
from collections.abc import Mapping

from aws_cdk import aws_ec2 as ec2

from runtime.bot import contract as bot_contract

APP_DIR = "/opt/genart/app"
VENV_DIR = "/opt/genart/venv"
BOT_LOG_FILE = "/var/log/genart/bot.log"
SERVICE_NAME = "genart-bot.service"
SERVICE_USER = "genart"
CW_AGENT_CONFIG = "/opt/aws/amazon-cloudwatch-agent/etc/genart-logs.json"
RETRY_ATTEMPTS = 5
RETRY_PAUSE_S = 15
FAILURE_LOG_FLUSH_S = 60
_CW_AGENT_CTL = "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl"


def systemd_unit(*, environment: Mapping[str, str]) -> str:
    """The genart-bot unit: non-root, restarted on failure, stdout+stderr appended to the file the agent ships."""
    env_lines = "\n".join(f'Environment="{key}={value}"' for key, value in environment.items())
    return f"""[Unit]
Description=GenArt Discord bot
Wants=network-online.target
After=network-online.target
# Never give up: a placeholder token or a network outage heals itself once fixed (RestartSec bounds the rate).
StartLimitIntervalSec=0

[Service]
Type=exec
User={SERVICE_USER}
Group={SERVICE_USER}
WorkingDirectory={APP_DIR}
{env_lines}
Environment="PYTHONUNBUFFERED=1"
Environment="PYTHONDONTWRITEBYTECODE=1"
Environment="MALLOC_ARENA_MAX={bot_contract.MALLOC_ARENA_MAX}"
ExecStart={VENV_DIR}/bin/python -m {bot_contract.ENTRY_MODULE}
# The bot exits 0 after a Spot interruption notice or SIGTERM; anything else is a crash.
Restart=on-failure
RestartSec=30
# SIGTERM starts one drain of {bot_contract.DRAIN_DEADLINE_S} s plus {bot_contract.CLOSE_MARGIN_S} s to close; \
this stays inside the {bot_contract.SPOT_NOTICE_S} s Spot notice.
TimeoutStopSec={bot_contract.STOP_TIMEOUT_S}
# Shares of the instance's RAM, so every instance type gets a limit that fits it: above MemoryHigh the kernel
# reclaims and throttles the bot, at MemoryMax it kills the bot (then systemd restarts it) instead of the
# CloudWatch or SSM agent. Model reloads never hold two models (docs/bot.md); peak RSS is in docs/benchmarks.md.
MemoryHigh={bot_contract.MEMORY_HIGH}
MemoryMax={bot_contract.MEMORY_MAX}
MemorySwapMax=0
StandardOutput=append:{BOT_LOG_FILE}
StandardError=append:{BOT_LOG_FILE}
CacheDirectory=genart
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes

[Install]
WantedBy=multi-user.target
"""


def cloudwatch_agent_config(*, log_group_name: str) -> str:
    """Agent config that ships the bot's JSON lines and the bootstrap log to one log group, a stream per instance."""
    config = {
        "logs": {
            "force_flush_interval": 5,
            "logs_collected": {
                "files": {
                    "collect_list": [
                        {
                            "file_path": BOT_LOG_FILE,
                            "log_group_name": log_group_name,
                            "log_stream_name": "{instance_id}/bot",
                            "timezone": "UTC",
                        },
                        {
                            "file_path": "/var/log/cloud-init-output.log",
                            "log_group_name": log_group_name,
                            "log_stream_name": "{instance_id}/bootstrap",
                            "timezone": "UTC",
                        },
                    ]
                }
            },
        }
    }
    return json.dumps(config, indent=2)


_LOGROTATE = f"""{BOT_LOG_FILE} {{
    daily
    maxsize 50M
    rotate 3
    compress
    missingok
    notifempty
    copytruncate
}}
"""


def _heredoc(path: str, content: str, *, mode: str = "0644") -> list[str]:
    # Quoted delimiter: the shell expands nothing inside; CloudFormation has already substituted the tokens.
    return [f"cat > {path} <<'GENART_EOF'", content.rstrip("\n"), "GENART_EOF", f"chmod {mode} {path}"]


def bot_user_data(
    *,
    code_bucket_name: str,
    code_object_key: str,
    log_group_name: str,
    region: str,
    environment: Mapping[str, str],
) -> ec2.UserData:
    """User data for Amazon Linux 2023; holds ARNs and names only, never the token itself."""
    zip_path = "/opt/genart/bot.zip"
    user_data = ec2.UserData.for_linux(shebang="#!/bin/bash")
    user_data.add_commands(
        "# GenArt bot bootstrap (first boot); output goes to /var/log/cloud-init-output.log and CloudWatch.",
        "set -euxo pipefail",
        # Package mirrors, S3 and PyPI hiccup: each network step gets RETRY_ATTEMPTS tries with growing pauses.
        f'retry() {{ for n in $(seq 1 {RETRY_ATTEMPTS}); do "$@" && return 0; '
        f"sleep $((n * {RETRY_PAUSE_S})); done; return 1; }}",
        # Any failure left after that stops the instance; the launch template makes a shutdown a termination,
        # so the fleet launches a fresh one and the heartbeat alarm reports the trouble meanwhile. The pause
        # lets the agent (once running) ship the bootstrap log.
        f'trap \'echo "GenArt bootstrap failed at line $LINENO" >&2; sleep {FAILURE_LOG_FLUSH_S}; '
        "shutdown -h now' ERR",
        "retry dnf install -y amazon-cloudwatch-agent python3.11 python3.11-pip logrotate",
        # Start log shipping first, so a failing bootstrap is visible in CloudWatch without logging in.
        *_heredoc(CW_AGENT_CONFIG, cloudwatch_agent_config(log_group_name=log_group_name)),
        f"{_CW_AGENT_CTL} -a fetch-config -m ec2 -s -c file:{CW_AGENT_CONFIG}",
        f"id -u {SERVICE_USER} >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent"
        f" --shell /sbin/nologin {SERVICE_USER}",
        f"install -d -m 0755 -o root -g root /opt/genart {APP_DIR} /var/log/genart",
        f"retry aws s3 cp 's3://{code_bucket_name}/{code_object_key}' {zip_path} --region {region} --only-show-errors",
        f"rm -rf {APP_DIR}/{bot_contract.CODE_ASSET_DIR}",
        # The asset zip holds runtime/ cut down to __init__.py, bot/ and common/: it unpacks into the `runtime`
        # package, so the bot runs as `python -m runtime.bot` with its shared modules beside it.
        f"python3.11 -m zipfile -e {zip_path} {APP_DIR}/{bot_contract.CODE_ASSET_DIR}",
        f"python3.11 -m venv {VENV_DIR}",
        # The runtime's lock (every package, its hashes; resolved for aarch64 and x86_64 by `make lock`): pip refuses
        # any file whose hash differs. Wheels only: AL2023 has no compiler, and every locked version ships wheels.
        f"retry {VENV_DIR}/bin/pip install --no-cache-dir --disable-pip-version-check --no-input --only-binary=:all:"
        f" --require-hashes --no-deps -r {APP_DIR}/{bot_contract.REQUIREMENTS_FILE}",
        # Code and venv stay root-owned: the bot user can read and run them, never modify them.
        "chown -R root:root /opt/genart",
        "chmod -R u=rwX,go=rX /opt/genart",
        *_heredoc(f"/etc/systemd/system/{SERVICE_NAME}", systemd_unit(environment=environment)),
        *_heredoc("/etc/logrotate.d/genart-bot", _LOGROTATE),
        "systemctl daemon-reload",
        f"systemctl enable --now {SERVICE_NAME}",
    )
    return user_data
