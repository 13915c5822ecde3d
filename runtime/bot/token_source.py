"""Discord token from Secrets Manager (deployed) or an environment variable / file (local runs)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from .errors import ConfigError

PLACEHOLDER_MARKERS = ("REPLACE-ME", "REPLACE_ME", "CHANGEME", "PLACEHOLDER", "YOUR_TOKEN", "YOUR-TOKEN")
_ARN_REGION = re.compile(r"^arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):")


def put_secret_hint(secret_id: str) -> str:
    """Return the command an operator runs to store the real token."""
    return f'aws secretsmanager put-secret-value --secret-id {secret_id} --secret-string "$DISCORD_TOKEN"'


def check_token(token: str, *, origin: str, secret_id: str | None = None) -> str:
    """Return the stripped token, or raise ConfigError when it is empty or a placeholder."""
    value = token.strip()
    fix = put_secret_hint(secret_id) if secret_id else "set DISCORD_TOKEN or DISCORD_TOKEN_FILE to the bot token"
    if not value:
        raise ConfigError(f"the Discord token from {origin} is empty; run: {fix}")
    if value.startswith("{"):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            if "placeholder" in parsed:
                raise ConfigError(f"the Discord token in {origin} is still the deployment placeholder; run: {fix}")
            for key in ("token", "DISCORD_TOKEN", "discord_token"):
                if isinstance(parsed.get(key), str):
                    return check_token(parsed[key], origin=origin, secret_id=secret_id)
            raise ConfigError(f"{origin} holds JSON without a token; store the raw token string instead: {fix}")
    upper = value.upper()
    if any(marker in upper for marker in PLACEHOLDER_MARKERS):
        raise ConfigError(f"the Discord token from {origin} is a placeholder; run: {fix}")
    if any(ch.isspace() for ch in value):
        raise ConfigError(f"the Discord token from {origin} contains whitespace; it is not a bot token")
    return value


def region_of(secret_id: str, default: str | None) -> str | None:
    """Return the region named in a secret ARN, else the default."""
    match = _ARN_REGION.match(secret_id)
    return match.group(1) if match else default


def token_from_secrets_manager(secret_id: str, *, region: str | None, client: Any | None = None) -> str:
    """Read the raw token string from Secrets Manager, translating AWS errors into one clear line."""
    origin = f"secret {secret_id}"
    try:
        sm = client or boto3.client("secretsmanager", region_name=region_of(secret_id, region))
        response = sm.get_secret_value(SecretId=secret_id)
    except NoRegionError as exc:
        raise ConfigError(f"cannot read {origin}: no AWS region; set AWS_REGION or use the full secret ARN") from exc
    except NoCredentialsError as exc:
        raise ConfigError(f"cannot read {origin}: no AWS credentials (instance role missing?)") from exc
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
        hints = {
            "ResourceNotFoundException": "no such secret in this account/region; check GENART_TOKEN_SECRET_ARN",
            "AccessDeniedException": "the instance role lacks secretsmanager:GetSecretValue (or kms:Decrypt) on it",
            "UnrecognizedClientException": "the AWS credentials are invalid",
            "ExpiredTokenException": "the AWS credentials have expired",
            "DecryptionFailure": "the secret's KMS key cannot be used by this role",
            "InvalidRequestException": "the secret is scheduled for deletion or disabled",
        }
        raise ConfigError(f"cannot read {origin}: {code} ({hints.get(code, 'AWS refused the request')})") from exc
    except BotoCoreError as exc:
        raise ConfigError(f"cannot read {origin}: {type(exc).__name__} ({exc})") from exc
    if "SecretString" not in response:
        raise ConfigError(f"{origin} has no string value; run: {put_secret_hint(secret_id)}")
    return check_token(str(response["SecretString"]), origin=origin, secret_id=secret_id)


@dataclass(frozen=True)
class TokenSource:
    """Where to read the token from, in priority order: secret, environment value, file."""

    secret_id: str | None = None
    env_token: str | None = None
    token_file: Path | None = None
    region: str | None = None

    def read(self, *, client: Any | None = None) -> str:
        """Return the token or raise ConfigError with a one-line explanation."""
        if self.secret_id:
            return token_from_secrets_manager(self.secret_id, region=self.region, client=client)
        if self.env_token is not None:
            return check_token(self.env_token, origin="DISCORD_TOKEN")
        if self.token_file is not None:
            try:
                text = self.token_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"cannot read token file {self.token_file}: {exc.strerror}") from exc
            return check_token(text, origin=f"token file {self.token_file}")
        raise ConfigError("no Discord token: set GENART_TOKEN_SECRET_ARN, DISCORD_TOKEN or DISCORD_TOKEN_FILE")
