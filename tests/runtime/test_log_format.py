"""Every runtime logs the same JSON field set through runtime/common/jsonlog.py, and redacts Discord tokens."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runtime.common.jsonlog import ERROR_FIELD, FIELDS, REDACTED

ROOT = Path(__file__).resolve().parents[2]
# Shaped like a Discord bot token (three base64url parts) but not a real one.
FAKE_TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0Mw.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"

# How each runtime's entry point configures logging (bot: cli.main, endpoint: serve.main, the functions: their
# handlers, pipeline: every step's main and the train entry).
CONFIGURE = {
    "bot": "from runtime.bot.cli import configure_bot_logging as c; c(level='INFO', console=False)",
    "endpoint": "from runtime.endpoint.request_context import configure_logging as c; c(level='INFO')",
    "notify": "from runtime.lambdas.notify.handler import configure_function_logging as c; c()",
    "model_seed": "from runtime.lambdas.model_seed.handler import configure_function_logging as c; c()",
    "pipeline": "from runtime.pipeline.stylegan2.cli import configure_step_logging as c; c()",
}
# Extra fields a runtime adds to every record on purpose.
EXTRAS = {"endpoint": {"request_id"}}
PROBE = """
import logging
{configure}
log = logging.getLogger("probe")
log.info("logging in with %s", {token!r}, extra={{"fields": {{"header": "Bot " + {token!r}}}}})
try:
    raise RuntimeError("failed with " + {token!r})
except RuntimeError:
    log.exception("boom")
"""


def _records(runtime: str) -> list[dict[str, Any]]:
    probe = PROBE.format(configure=CONFIGURE[runtime], token=FAKE_TOKEN)
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert FAKE_TOKEN not in output, f"{runtime} leaked the token"
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("runtime", sorted(CONFIGURE))
def test_runtime_logs_the_shared_fields_and_redacts_tokens(runtime: str) -> None:
    info, failure = _records(runtime)
    for record in (info, failure):
        assert tuple(record)[: len(FIELDS)] == FIELDS, record
        assert record["logger"] == "probe"
        assert record["time"].endswith("Z") and "T" in record["time"]
    assert set(info) - set(FIELDS) == {"header", *EXTRAS.get(runtime, set())}
    assert set(failure) - set(FIELDS) == {ERROR_FIELD, *EXTRAS.get(runtime, set())}
    assert (info["level"], failure["level"]) == ("INFO", "ERROR")
    assert info["message"] == f"logging in with {REDACTED}" and info["header"] == f"Bot {REDACTED}"
    assert "RuntimeError" in failure[ERROR_FIELD] and REDACTED in failure[ERROR_FIELD]


def test_every_runtime_field_set_is_the_same() -> None:
    shapes = {
        runtime: tuple(k for k in _records(runtime)[0] if k not in EXTRAS.get(runtime, set())) for runtime in CONFIGURE
    }
    assert len(set(shapes.values())) == 1, shapes
