"""Token sources (Secrets Manager via moto, env, file), clear config errors, exit codes and log redaction."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from runtime.bot import contract
from runtime.bot.cli import EXIT_CONFIG, main
from runtime.bot.config import BotEnvironment, build_parser, plan_workers, settings_from
from runtime.bot.errors import ConfigError
from runtime.bot.model_source import ModelSource
from runtime.bot.token_source import TokenSource, check_token, region_of, token_from_secrets_manager
from runtime.common.jsonlog import REDACTED, configure_logging

# Shaped like a Discord bot token (three base64url parts) but not a real one.
FAKE_TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0Mw.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"
PLACEHOLDER = json.dumps({"placeholder": "REPLACE-ME", "value": "f3a9c0d1e2"})


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_secret_value_is_read(aws: Any) -> None:
    arn = aws.create_secret(Name="genart/discord-token", SecretString=FAKE_TOKEN + "\n")["ARN"]
    assert TokenSource(secret_id=arn, region=None).read() == FAKE_TOKEN
    aws.put_secret_value(SecretId=arn, SecretString=json.dumps({"token": FAKE_TOKEN}))
    assert token_from_secrets_manager("genart/discord-token", region="us-east-1") == FAKE_TOKEN


def test_missing_secret_is_a_clear_error(aws: Any) -> None:
    with pytest.raises(ConfigError, match=r"ResourceNotFoundException \(no such secret"):
        token_from_secrets_manager("genart/nope", region="us-east-1")


def test_placeholder_secret_tells_the_operator_what_to_run(aws: Any) -> None:
    arn = aws.create_secret(Name="genart/discord-token", SecretString=PLACEHOLDER)["ARN"]
    with pytest.raises(ConfigError) as info:
        TokenSource(secret_id=arn).read()
    message = str(info.value)
    assert "placeholder" in message
    assert f'aws secretsmanager put-secret-value --secret-id {arn} --secret-string "$DISCORD_TOKEN"' in message
    assert "f3a9c0d1e2" not in message


class DeniedClient:
    def get_secret_value(self, **_: Any) -> dict[str, Any]:
        raise ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "User: arn:... is not authorized"}},
            "GetSecretValue",
        )


def test_access_denied_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"AccessDeniedException \(the instance role lacks secretsmanager"):
        token_from_secrets_manager(
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:x", region=None, client=DeniedClient()
        )


def test_no_credentials_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ConfigError, match="no AWS credentials"):
        token_from_secrets_manager("arn:aws:secretsmanager:us-east-1:123456789012:secret:x", region=None)


def test_region_comes_from_the_arn() -> None:
    assert region_of("arn:aws:secretsmanager:eu-central-1:123456789012:secret:tok-AbC", "us-east-1") == "eu-central-1"
    assert region_of("genart/discord-token", "us-east-1") == "us-east-1"


@pytest.mark.parametrize("value", ["", "  \n", "REPLACE-ME", "your_token_here", PLACEHOLDER, '{"foo": 1}', "a b"])
def test_bad_tokens_are_rejected(value: str) -> None:
    with pytest.raises(ConfigError):
        check_token(value, origin="DISCORD_TOKEN")


def test_env_and_file_tokens(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(FAKE_TOKEN + "\n")
    assert TokenSource(env_token=f"  {FAKE_TOKEN} ").read() == FAKE_TOKEN
    assert TokenSource(token_file=token_file).read() == FAKE_TOKEN
    with pytest.raises(ConfigError, match="cannot read token file"):
        TokenSource(token_file=tmp_path / "missing").read()
    with pytest.raises(ConfigError, match="no Discord token"):
        TokenSource().read()


def test_settings_from_environment(tmp_path: Path) -> None:
    env = {
        "GENART_TOKEN_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:t",
        "GENART_MODELS_BUCKET": "models-bucket",
        "GENART_MODEL_CACHE": str(tmp_path / "cache.onnx"),
        "GENART_OPERATOR_IDS": " 123, 456 ,",
        "GENART_IMDS_URL": "http://127.0.0.1:9",
        "GENART_LOG_LEVEL": "debug",
        "AWS_REGION": "eu-west-1",
    }
    settings = settings_from(env, build_parser().parse_args([]))
    assert settings.model_source.bucket == "models-bucket"
    assert settings.model_source.key == "stylegan/latest.onnx"
    assert settings.model_source.cache_path == tmp_path / "cache.onnx"
    assert settings.model_source.region == "eu-west-1"
    assert settings.token_source.secret_id == env["GENART_TOKEN_SECRET_ARN"]
    assert settings.operator_ids == {"123", "456"}
    assert settings.imds_url == "http://127.0.0.1:9" and settings.log_level == "DEBUG"
    assert settings.cooldown_s == 5.0 and settings.on_rebalance == "warn" and settings.cpu_arena is False
    overridden = settings_from(
        env, build_parser().parse_args(["--model", "m.onnx", "--cooldown", "0", "--workers", "2"])
    )
    assert overridden.model_source.local_path == Path("m.onnx") and overridden.cooldown_s == 0
    assert overridden.workers == 2
    assert plan_workers(2) == (1, 2) and plan_workers(16) == (4, 4)


def test_batching_knobs_come_from_the_shared_env_names() -> None:
    env = {"GENART_MAX_BATCH": "4", "GENART_BATCH_WINDOW_MS": "40", "GENART_MAX_QUEUE": "64"}
    settings = settings_from(env, build_parser().parse_args([]))
    assert (settings.max_batch, settings.batch_window_ms, settings.max_queue) == (4, 40.0, 64)
    assert settings_from(env, build_parser().parse_args(["--max-batch", "2"])).max_batch == 2


def test_fair_sharing_knobs_come_from_the_contract() -> None:
    defaults = settings_from({}, build_parser().parse_args([]))
    assert (defaults.user_burst, defaults.user_max_pending, defaults.max_wait_s) == (16, 16, 60.0)
    env = {"GENART_USER_BURST": "32", "GENART_USER_MAX_PENDING": "20", "GENART_MAX_WAIT_S": "90"}
    settings = settings_from(env, build_parser().parse_args([]))
    assert (settings.user_burst, settings.user_max_pending, settings.max_wait_s) == (32, 20, 90.0)


def test_model_poll_interval_defaults_to_the_contract_and_can_be_set_or_switched_off() -> None:
    assert settings_from({}, build_parser().parse_args([])).model_poll_s == contract.MODEL_POLL_S == 60
    env = {"GENART_MODEL_POLL_S": "30"}
    assert settings_from(env, build_parser().parse_args([])).model_poll_s == 30.0
    assert settings_from(env, build_parser().parse_args(["--model-poll", "0"])).model_poll_s == 0.0
    with pytest.raises(ConfigError, match="--model-poll must be from 0 to 3600"):
        settings_from({}, build_parser().parse_args(["--model-poll", "-5"]))


def test_environment_token_stays_out_of_reprs() -> None:
    settings = BotEnvironment.from_env({"DISCORD_TOKEN": FAKE_TOKEN})
    assert FAKE_TOKEN not in repr(settings)
    assert settings_from({"DISCORD_TOKEN": FAKE_TOKEN}, build_parser().parse_args([])).token_source.read() == FAKE_TOKEN


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GENART_OPERATOR_IDS": "admin"}, "numeric Discord user ids"),
        ({"GENART_ON_REBALANCE": "panic"}, "GENART_ON_REBALANCE"),
        ({"GENART_IMAGE_FORMAT": "gif"}, "png or jpeg"),
        ({"GENART_COOLDOWN_S": "nan"}, "GENART_COOLDOWN_S"),
        ({"GENART_PREFIX_COMMANDS": "maybe"}, "0/1/true/false"),
        ({"GENART_MAX_BATCH": "0"}, "GENART_MAX_BATCH must be >= 1, got '0'"),
        ({"GENART_MAX_QUEUE": "many"}, "GENART_MAX_QUEUE must be an integer"),
        ({"GENART_BATCH_WINDOW_MS": "-1"}, "GENART_BATCH_WINDOW_MS must be >= 0"),
        ({"GENART_USER_BURST": "8"}, "GENART_USER_BURST must be >= 16"),  # a grid of 16 must stay possible
        ({"GENART_USER_MAX_PENDING": "4"}, "GENART_USER_MAX_PENDING must be >= 16"),
        ({"GENART_MAX_WAIT_S": "inf"}, "GENART_MAX_WAIT_S"),
        ({"GENART_MODEL_POLL_S": "-1"}, "GENART_MODEL_POLL_S must be >= 0"),
        ({"GENART_MODEL_POLL_S": "inf"}, "GENART_MODEL_POLL_S"),
    ],
)
def test_bad_settings_are_clear(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from(env, build_parser().parse_args([]))


def test_model_source_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model file not found"):
        ModelSource(local_path=tmp_path / "missing.onnx").fetch()
    with pytest.raises(ConfigError, match="no model configured"):
        ModelSource().fetch()


def test_model_download_and_cache(aws: Any, tmp_path: Path) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="models")
    source = ModelSource(bucket="models", cache_path=tmp_path / "cache" / "model.onnx", region="us-east-1")
    with pytest.raises(ConfigError, match="has not published a model yet"):
        source.fetch()
    s3.put_object(Bucket="models", Key="stylegan/latest.onnx", Body=b"v1")
    assert source.fetch().read_bytes() == b"v1"
    s3.put_object(Bucket="models", Key="stylegan/latest.onnx", Body=b"v2")
    assert source.fetch().read_bytes() == b"v2"
    s3.delete_object(Bucket="models", Key="stylegan/latest.onnx")
    assert source.fetch().read_bytes() == b"v2"  # S3 trouble falls back to the cached copy


def test_cli_exits_2_with_one_line_error(capsys: pytest.CaptureFixture[str], restore_logging: None) -> None:
    code = main([], env={"DISCORD_TOKEN": "REPLACE-ME"})
    captured = capsys.readouterr()
    assert code == EXIT_CONFIG
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genart-bot: error: ") and "placeholder" in lines[0]
    assert json.loads(captured.out.strip().splitlines()[-1])["level"] == "ERROR"
    # A model not published yet is waited for (test_model_watch.py); no model source at all is a config error.
    assert main(["--console"], env={}) == EXIT_CONFIG
    assert "no model configured" in capsys.readouterr().err


def test_token_never_reaches_logs(restore_logging: None) -> None:
    stream = io.StringIO()
    redactor = configure_logging(level="DEBUG", stream=stream)
    secret = "plain-secret-value-123"
    redactor.add_secret(secret)
    log = logging.getLogger("discord.http")
    log.info("login with %s", secret)
    log.warning("headers", extra={"fields": {"authorization": f"Bot {secret}"}})
    log.info("unknown token %s seen", FAKE_TOKEN)
    try:
        raise RuntimeError(f"failed with {secret}")
    except RuntimeError:
        log.exception("boom")
    output = stream.getvalue()
    records = [json.loads(line) for line in output.splitlines()]
    assert len(records) == 4
    assert secret not in output and FAKE_TOKEN not in output
    assert records[0]["message"] == f"login with {REDACTED}"
    assert records[1]["authorization"] == f"Bot {REDACTED}"
    assert REDACTED in records[2]["message"]
    assert "RuntimeError" in records[3]["error"] and REDACTED in records[3]["error"]
