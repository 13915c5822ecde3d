"""A bot that waits well: it starts without a model, says so, and picks up a newly published one by itself.

S3 is moto (and botocore's Stubber for the 403 cases moto does not model); models are the project's tiny exports.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import queue
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from PIL import Image

from runtime.bot import contract
from runtime.bot.commands import NO_MODEL_TEXT, Requester
from runtime.bot.console import run_console
from runtime.bot.engine import Engine, open_engine
from runtime.bot.model_source import ModelSource, ModelStore
from runtime.bot.model_watch import ModelWatcher

from .test_console_and_packaging import deploy_layout

BUCKET, KEY = "models", contract.DEFAULT_MODEL_KEY
USER = Requester(user_id="u1")
pytestmark = pytest.mark.filterwarnings("ignore:'audioop' is deprecated:DeprecationWarning")


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A moto models bucket and the one client the bot and the test share (so its calls can be counted)."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture(scope="session")
def other_generator_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny generator (other weights): what a later pipeline run publishes."""
    from runtime.pipeline.stylegan2.export_onnx import export_random_generator

    return export_random_generator(tmp_path_factory.mktemp("onnx-v2") / "generator.onnx", resolution=16, seed=1)


class S3Calls:
    """The S3 operations a client makes, in order (botocore's before-call event)."""

    def __init__(self, client: Any) -> None:
        self.names: list[str] = []
        client.meta.events.register("before-call.s3", self._record)

    def _record(self, model: Any, **_: Any) -> None:
        self.names.append(model.name)

    def take(self) -> list[str]:
        """Return the calls since the last take."""
        names, self.names = self.names, []
        return names


class Feed:
    """Console stdin fed line by line from the test."""

    def __init__(self) -> None:
        self._lines: queue.Queue[str] = queue.Queue()

    def readline(self) -> str:
        return self._lines.get(timeout=60)

    def send(self, line: str) -> None:
        self._lines.put(line + "\n")


async def _until(condition: Callable[[], bool], *, timeout_s: float = 30.0) -> float:
    """Wait until condition() holds; return how long it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def s3_source(tmp_path: Path) -> ModelSource:
    return ModelSource(bucket=BUCKET, key=KEY, cache_path=tmp_path / "cache" / "model.onnx", region="us-east-1")


async def _face(engine: Engine, name: str = "Asuka") -> bytes:
    reply = await engine.service.claim_waifu(USER, name)
    assert reply.files, reply.text
    return reply.files[0].data


# ---------------------------------------------------------------------------------------------------------------
# console mode, end to end


def test_console_started_without_a_model_draws_as_soon_as_one_is_published(
    s3: Any, make_settings: Any, tiny_generator_onnx: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(model_source=s3_source(tmp_path), model_poll_s=0.05, console=True)
    feed, sink, out = Feed(), io.StringIO(), tmp_path / "faces"

    async def ask(line: str) -> str:
        before = len(sink.getvalue())
        feed.send(line)
        await _until(lambda: len(sink.getvalue()) > before)
        await asyncio.sleep(0.05)  # a reply with a file prints two lines
        return sink.getvalue()[before:]

    async def scenario() -> tuple[str, str, str, float]:
        engine = await open_engine(settings, s3_client=s3)
        console = asyncio.create_task(run_console(engine, out_dir=out, stdin=feed, stdout=sink))  # type: ignore[arg-type]
        waiting = await ask("$claim_waifu Asuka Langley")
        help_text = await ask("$waifu_help")
        s3.put_object(Bucket=BUCKET, Key=KEY, Body=tiny_generator_onnx.read_bytes())
        picked_up_s = await _until(lambda: engine.holder.loaded)
        drawn = await ask("$claim_waifu Asuka Langley")
        feed.send("quit")
        await console
        await engine.close()
        return waiting, help_text, drawn, picked_up_s

    with caplog.at_level(logging.INFO):
        waiting, help_text, drawn, picked_up_s = asyncio.run(scenario())
    assert waiting.strip() == NO_MODEL_TEXT and "wrote" not in waiting
    assert "run the StyleGAN2 pipeline" in waiting
    assert help_text.startswith("**GenArt waifu bot**")  # commands that need no model still work
    assert picked_up_s < 10, f"picked up {picked_up_s:.1f} s after publishing with a 0.05 s poll"
    written = [Path(line.removeprefix("wrote ")) for line in drawn.splitlines() if line.startswith("wrote ")]
    assert len(written) == 1 and Image.open(written[0]).size == (16, 16)
    messages = [record.getMessage() for record in caplog.records]
    assert messages.count("no face generator published yet; waiting for it") == 1
    assert "new model picked up" in messages
    # Waiting for the pipeline is normal: nothing for the WARNING/ERROR log query (docs/bot-operations.md).
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING] == []


def test_deployed_console_waits_for_a_local_model_file_to_appear(tmp_path: Path, tiny_generator_onnx: Path) -> None:
    app = deploy_layout(tmp_path)
    model = tmp_path / "publish" / "latest.onnx"
    flags = ["--console", "--model", str(model), "--out", str(tmp_path / "out"), "--model-poll", "0.1"]
    bot = subprocess.Popen(
        [sys.executable, "-m", contract.ENTRY_MODULE, *flags],
        cwd=app,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={"PATH": "/usr/bin:/bin", "GENART_LOG_LEVEL": "WARNING"},
    )
    assert bot.stdin is not None and bot.stdout is not None

    def ask(line: str) -> str:
        bot.stdin.write(line + "\n")  # type: ignore[union-attr]
        bot.stdin.flush()  # type: ignore[union-attr]
        return bot.stdout.readline().strip()  # type: ignore[union-attr]

    try:
        assert ask("$claim_waifu Asuka") == NO_MODEL_TEXT
        model.parent.mkdir()
        shutil.copyfile(tiny_generator_onnx, model.with_suffix(".part"))
        os.replace(model.with_suffix(".part"), model)  # as a publish step writes it
        deadline = time.monotonic() + 30
        while (answer := ask("$claim_waifu Asuka")) == NO_MODEL_TEXT and time.monotonic() < deadline:
            time.sleep(0.1)
        assert answer == "**Asuka**"
        assert bot.stdout.readline().startswith("wrote ")
        bot.stdin.write("quit\n")
        bot.stdin.flush()
        assert bot.wait(timeout=30) == 0
    finally:
        if bot.poll() is None:
            bot.kill()


# ---------------------------------------------------------------------------------------------------------------
# picking up new versions


def test_an_etag_change_reloads_and_an_unchanged_object_costs_one_head_per_poll(
    s3: Any, make_settings: Any, tiny_generator_onnx: Path, other_generator_onnx: Path, tmp_path: Path
) -> None:
    source = s3_source(tmp_path)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=tiny_generator_onnx.read_bytes())
    calls = S3Calls(s3)

    async def scenario() -> dict[str, Any]:
        engine = Engine(settings=make_settings(model_source=source, model_poll_s=60.0), s3_client=s3)
        assert await engine.watcher.check() == 60.0
        first, first_face = engine.version, await _face(engine)
        calls.take()
        idle = [await engine.watcher.check() for _ in range(5)]
        idle_calls = calls.take()
        put = s3.put_object(Bucket=BUCKET, Key=KEY, Body=other_generator_onnx.read_bytes())
        calls.take()
        await engine.watcher.check()
        change_calls = calls.take()
        facts = {
            "first": first,
            "second": engine.version,
            "new_etag": put["ETag"],
            "faces_differ": first_face != await _face(engine),
            "idle": idle,
            "idle_calls": idle_calls,
            "change_calls": change_calls,
            "cache": source.cache_path.read_bytes(),
            "etag_file": source.cache_path.with_name("model.onnx.etag").read_text(),
            "leftovers": sorted(path.name for path in source.cache_path.parent.iterdir()),
        }
        await engine.close()
        return facts

    facts = asyncio.run(scenario())
    assert facts["idle"] == [60.0] * 5
    assert facts["idle_calls"] == ["HeadObject"] * 5  # polling is one HEAD per interval, no download
    assert "GetObject" in facts["change_calls"]
    assert facts["second"] == facts["new_etag"] != facts["first"]
    assert facts["faces_differ"]  # the same name is drawn by the new weights
    assert facts["cache"] == other_generator_onnx.read_bytes() and facts["etag_file"] == facts["new_etag"]
    assert facts["leftovers"] == ["model.onnx", "model.onnx.etag"]


def test_a_corrupt_new_model_keeps_the_old_one_serving_and_is_reported_once(
    s3: Any,
    make_settings: Any,
    tiny_generator_onnx: Path,
    other_generator_onnx: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = s3_source(tmp_path)
    good = tiny_generator_onnx.read_bytes()
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=good)
    calls = S3Calls(s3)

    async def scenario() -> dict[str, Any]:
        engine = Engine(settings=make_settings(model_source=source, model_poll_s=60.0), s3_client=s3)
        await engine.watcher.check()
        serving, face = engine.version, await _face(engine)
        bad = s3.put_object(Bucket=BUCKET, Key=KEY, Body=good[: len(good) // 2])["ETag"]  # a truncated upload
        caplog.clear()
        await engine.watcher.check()
        after_bad = {
            "version": engine.version,
            "face_unchanged": await _face(engine) == face,
            "rejected": set(engine.rejected),
            "errors": [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR],
            "cache_is_old": source.cache_path.read_bytes() == good,
            "files": sorted(path.name for path in source.cache_path.parent.iterdir()),
        }
        caplog.clear()
        calls.take()
        await engine.watcher.check()
        await engine.watcher.check()
        again = {"calls": calls.take(), "errors": [r for r in caplog.records if r.levelno >= logging.ERROR]}
        fixed = s3.put_object(Bucket=BUCKET, Key=KEY, Body=other_generator_onnx.read_bytes())["ETag"]
        await engine.watcher.check()
        result = {"serving": serving, "bad": bad, "after_bad": after_bad, "again": again, "fixed": fixed}
        result["final"] = engine.version
        await engine.close()
        return result

    with caplog.at_level(logging.INFO):
        facts = asyncio.run(scenario())
    after_bad = facts["after_bad"]
    assert after_bad["version"] == facts["serving"] and after_bad["face_unchanged"] and after_bad["cache_is_old"]
    assert after_bad["rejected"] == {facts["bad"]}
    assert after_bad["errors"] == ["published model rejected; still serving the previous one"]
    assert after_bad["files"] == ["model.onnx", "model.onnx.etag"]  # the rejected download is gone
    assert facts["again"] == {"calls": ["HeadObject", "HeadObject"], "errors": []}  # reported once, not re-fetched
    assert facts["final"] == facts["fixed"]  # the next good version is picked up


def test_a_damaged_cache_is_downloaded_again_instead_of_blaming_the_published_object(
    s3: Any, make_settings: Any, tiny_generator_onnx: Path, tmp_path: Path
) -> None:
    source = s3_source(tmp_path)
    etag = s3.put_object(Bucket=BUCKET, Key=KEY, Body=tiny_generator_onnx.read_bytes())["ETag"]
    source.cache_path.parent.mkdir(parents=True)
    source.cache_path.write_bytes(b"disk trouble")  # an earlier run's copy, damaged, with the current ETag
    source.cache_path.with_name("model.onnx.etag").write_text(etag)
    calls = S3Calls(s3)

    async def scenario() -> tuple[bool, set[str], list[str], str | None]:
        engine = Engine(settings=make_settings(model_source=source, model_poll_s=60.0), s3_client=s3)
        await engine.start()  # the cache is "current", so it is tried first and does not load
        loaded_at_start, rejected = engine.holder.loaded, set(engine.rejected)
        calls.take()
        await engine.watcher.check()
        version = engine.version
        await engine.close()
        return loaded_at_start, rejected, calls.take(), version

    loaded_at_start, rejected, calls_after, version = asyncio.run(scenario())
    assert not loaded_at_start and rejected == set()
    assert "GetObject" in calls_after and version == etag
    assert source.cache_path.read_bytes() == tiny_generator_onnx.read_bytes()


def test_a_watched_local_file_is_picked_up_and_a_bad_overwrite_keeps_the_old_model(
    make_settings: Any, tiny_generator_onnx: Path, other_generator_onnx: Path, tmp_path: Path
) -> None:
    model = tmp_path / "latest.onnx"

    async def scenario() -> dict[str, Any]:
        engine = Engine(settings=make_settings(model_source=ModelSource(local_path=model), model_poll_s=60.0))
        await engine.start()  # polling would start here; the test drives check() instead
        waiting = engine.holder.loaded
        shutil.copyfile(tiny_generator_onnx, model)
        await engine.watcher.check()
        face = await _face(engine)
        model.write_bytes(b"not an onnx model")
        await engine.watcher.check()
        kept = await _face(engine) == face
        shutil.copyfile(other_generator_onnx, model)
        os.utime(model, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
        await engine.watcher.check()
        changed = await _face(engine) != face
        serving_path = engine.holder.current.model_path
        await engine.close()
        return {"waiting": waiting, "kept": kept, "changed": changed, "serving": serving_path}

    facts = asyncio.run(scenario())
    assert facts["waiting"] is False
    assert facts["kept"] and facts["changed"]
    assert facts["serving"] != model  # served from a private copy the next overwrite cannot damage


# ---------------------------------------------------------------------------------------------------------------
# missing (404) vs forbidden (403), errors and backoff


def _stubbed() -> tuple[Any, Stubber]:
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return client, Stubber(client)


def _head_fails(stubber: Stubber, status: int) -> None:
    stubber.add_client_error(
        "head_object",
        service_error_code=str(status),
        http_status_code=status,
        expected_params={"Bucket": BUCKET, "Key": KEY},
    )


LIST_PARAMS = {"Bucket": BUCKET, "Prefix": KEY, "MaxKeys": 1}


def test_missing_and_forbidden_are_told_apart(tmp_path: Path) -> None:
    source = s3_source(tmp_path)
    client, stubber = _stubbed()
    _head_fails(stubber, 404)
    _head_fails(stubber, 403)  # no s3:ListBucket: S3 says 403 for a missing key too; the listing tells
    stubber.add_response("list_objects_v2", {"KeyCount": 0, "Name": BUCKET}, LIST_PARAMS)
    _head_fails(stubber, 403)
    stubber.add_client_error("list_objects_v2", service_error_code="AccessDenied", http_status_code=403)
    _head_fails(stubber, 403)
    stubber.add_response("list_objects_v2", {"KeyCount": 1, "Contents": [{"Key": KEY}]}, LIST_PARAMS)
    with stubber:
        probes = [source.probe(s3_client=client) for _ in range(4)]
        stubber.assert_no_pending_responses()
    assert [probe.state for probe in probes] == ["missing", "missing", "forbidden", "forbidden"]
    assert "has not published a model yet" in probes[0].detail
    assert "s3:ListBucket on its prefix" in probes[2].detail
    assert "may not read it (s3:GetObject)" in probes[3].detail


def test_waiting_is_logged_once_and_permission_problems_back_off_with_an_error_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client, stubber = _stubbed()
    for status in (404, 404, 403, 403, 403, 403, 404, 404):
        _head_fails(stubber, status)
        if status == 403:
            stubber.add_client_error("list_objects_v2", service_error_code="AccessDenied", http_status_code=403)
    store = ModelStore(source=s3_source(tmp_path), s3_client=client)

    async def reload() -> str:
        raise AssertionError("nothing to reload")

    watcher = ModelWatcher(store=store, reload=reload, serving_version=lambda: None, rejected=(), interval_s=60)

    async def scenario() -> list[float]:
        return [await watcher.check() for _ in range(8)]

    with stubber, caplog.at_level(logging.INFO, logger="genart.bot.model"):
        delays = asyncio.run(scenario())
    assert delays == [60, 60, 120, 240, 480, 900, 60, 60]  # doubling after each error, capped at 15 minutes
    records = [(record.levelname, record.getMessage()) for record in caplog.records]
    waiting = ("INFO", "no face generator published yet; waiting for it")
    assert records == [waiting, *[("ERROR", "model not readable: permission problem")] * 4, waiting]


def test_the_watcher_survives_any_failure_and_backs_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ModelStore(source=ModelSource(local_path=tmp_path / "m.onnx"))
    outcomes: list[BaseException | str] = [RuntimeError("boom"), OSError("disk"), "10 px, kimg 0"]

    async def reload() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    watcher = ModelWatcher(store=store, reload=reload, serving_version=lambda: None, rejected=(), interval_s=1)
    (tmp_path / "m.onnx").write_bytes(b"x")

    def broken_probe() -> Any:
        raise ValueError("unexpected")

    async def scenario() -> list[float]:
        delays = [await watcher.check(), await watcher.check(), await watcher.check()]
        monkeypatch.setattr(store, "probe", broken_probe)
        return [*delays, await watcher.check()]

    assert asyncio.run(scenario()) == [2, 4, 1, 2]


def test_polls_are_jittered_around_the_interval() -> None:
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) == 50:
            raise asyncio.CancelledError

    async def reload() -> str:
        return ""

    store = ModelStore(source=ModelSource(local_path=Path("/nonexistent/m.onnx")))
    watcher = ModelWatcher(
        store=store, reload=reload, serving_version=lambda: None, rejected=(), interval_s=60, sleep=sleep
    )
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(watcher.run())
    assert all(54 <= delay <= 66 for delay in delays)
    assert len({round(delay, 3) for delay in delays}) > 40  # spread, so many bots never poll in lockstep
