"""The model-seed custom resource against moto S3 and a real HTTP server on 127.0.0.1 serving small fake files.

Parts are 64 KiB here (moto's minimum part size is lowered to match), so "large" files of a few hundred KiB go
through the same multipart path as a 1.7 GB UNet; time budgets are counted with a fake clock.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import moto.s3.models
import pytest
from moto import mock_aws

from runtime.lambdas.model_seed import contract
from runtime.lambdas.model_seed import handler as seed_handler
from runtime.lambdas.model_seed.contract import ManifestError, SeedFile
from runtime.lambdas.model_seed.seeder import Seeder, SeedError, SeedSpec

BUCKET = "genart-models-test"
PREFIX = "diffusion/tiny/"
PART = 64 * 1024
CHUNK = 16 * 1024


def blob(seed: int, size: int) -> bytes:
    """Deterministic pseudo-random bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


@dataclass
class FakeOrigin:
    """A model host: serves files by path with Range support; counts requests; can stall, fail or ignore ranges."""

    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    stall: set[str] = field(default_factory=set)
    fail_once: dict[str, int] = field(default_factory=dict)
    ignore_range: bool = False
    base: str = ""

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"

    def count(self, path: str) -> int:
        return sum(1 for requested, _ in self.requests if requested == f"/{path}")


@pytest.fixture
def origin() -> Iterator[FakeOrigin]:
    state = FakeOrigin()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path
            state.requests.append((path, self.headers.get("Range")))
            name = path.lstrip("/")
            if name in state.fail_once and state.fail_once[name] > 0:
                state.fail_once[name] -= 1
                self.send_error(503, "try later")
                return
            data = state.files.get(name)
            if data is None:
                self.send_error(404, "no such file")
                return
            if name in state.stall:
                time.sleep(1.5)  # longer than the seeder's read timeout in the tests
            start = 0
            ranged = self.headers.get("Range")
            if ranged and not state.ignore_range:
                start = int(ranged.removeprefix("bytes=").split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data[start:])

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    # S3 refuses parts under 5 MiB except the last; moto enforces the same, so lower it to the tests' part size.
    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", 16 * 1024)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client


@pytest.fixture(autouse=True)
def fresh_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    monkeypatch.setattr(seed_handler, "_logging_configured", False)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def serve(origin: FakeOrigin, name: str, data: bytes, *, sha256: str | None = None) -> SeedFile:
    """Put data on the origin and return its file entry (the sha256 of data unless given)."""
    origin.files[name] = data
    return SeedFile(url=origin.url(name), key=name, sha256=sha256 or hashlib.sha256(data).hexdigest(), size=len(data))


def model(origin: FakeOrigin) -> tuple[SeedFile, ...]:
    """A tiny 'model': two small files, one large (5 parts) and the marker last."""
    return (
        serve(origin, "unet/config.json", b'{"sample_size": 8}'),
        serve(origin, "unet/diffusion_pytorch_model.safetensors", blob(1, 5 * PART - 123)),
        serve(origin, "tokenizer/vocab.json", blob(2, 3000)),
        serve(origin, "model_index.json", b'{"_class_name": "StableDiffusionPipeline"}'),
    )


def seeder(s3: Any, files: tuple[SeedFile, ...], **kwargs: Any) -> Seeder:
    options: dict[str, Any] = {
        "deadline": time.monotonic() + 60,
        "part_size": PART,
        "chunk": CHUNK,
        "read_timeout": 0.5,
        "attempts": 2,
        "backoff_s": 0,
    }
    options.update(kwargs)
    marker = "model_index.json" if any(f.key == "model_index.json" for f in files) else None
    return Seeder(s3, SeedSpec(bucket=BUCKET, prefix=PREFIX, files=files, marker=marker), **options)


def stored(s3: Any, name: str) -> bytes:
    return bytes(s3.get_object(Bucket=BUCKET, Key=PREFIX + name)["Body"].read())


def is_verified(s3: Any, seed_file: SeedFile) -> bool:
    key = PREFIX + seed_file.key
    tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]}
    head = s3.head_object(Bucket=BUCKET, Key=key)
    return tags.get(contract.TAG_VERIFIED) == seed_file.sha256 and head["ContentLength"] == seed_file.size


def keys(s3: Any) -> set[str]:
    return {item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def open_uploads(s3: Any) -> list[str]:
    return [u["Key"] for u in s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])]


class StepClock:
    """A clock that advances one tick per reading: a budget of N ticks allows about N chunk reads."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


# ------------------------------------------------------------------------------------------------------- good


def test_good_files_are_copied_hashed_and_tagged_verified(s3: Any, origin: FakeOrigin) -> None:
    files = model(origin)
    report = seeder(s3, files).run()
    assert report.complete and not report.left_alone
    assert report.copied == [f.key for f in files]
    for seed_file in files:
        assert stored(s3, seed_file.key) == origin.files[seed_file.key]
        assert is_verified(s3, seed_file)
        head = s3.head_object(Bucket=BUCKET, Key=PREFIX + seed_file.key)
        assert head["Metadata"] == {contract.META_SHA256: seed_file.sha256}
    assert open_uploads(s3) == []
    # The large file streamed in one GET (no range requests needed when nothing was uploaded before).
    assert origin.count("unet/diffusion_pytorch_model.safetensors") == 1
    assert all(r is None for _, r in origin.requests)


def test_a_second_run_skips_verified_files_without_downloading(s3: Any, origin: FakeOrigin) -> None:
    files = model(origin)
    seeder(s3, files).run()
    origin.requests.clear()
    report = seeder(s3, files).run()
    assert report.complete
    assert report.skipped == [f.key for f in files] and report.copied == []
    assert origin.requests == []


# ------------------------------------------------------------------------------------------------------- corrupt


def test_corrupt_small_file_fails_naming_it_and_writes_nothing(s3: Any, origin: FakeOrigin) -> None:
    good = serve(origin, "unet/config.json", b"{}")
    bad = serve(origin, "tokenizer/vocab.json", b"tampered", sha256=hashlib.sha256(b"original").hexdigest())
    with pytest.raises(SeedError) as caught:
        seeder(s3, (good, bad, serve(origin, "model_index.json", b"{}"))).run()
    message = str(caught.value)
    assert "tokenizer/vocab.json" in message and "sha256 mismatch" in message and bad.sha256 in message
    assert "nothing was written" in message
    assert keys(s3) == {PREFIX + "unet/config.json"}


def test_corrupt_large_file_aborts_its_upload_and_leaves_no_object(s3: Any, origin: FakeOrigin) -> None:
    data = blob(3, 3 * PART + 10)
    bad = serve(origin, "unet/diffusion_pytorch_model.safetensors", data, sha256=hashlib.sha256(b"x").hexdigest())
    with pytest.raises(SeedError, match=r"unet/diffusion_pytorch_model\.safetensors.*sha256 mismatch.*aborted"):
        seeder(s3, (bad, serve(origin, "model_index.json", b"{}"))).run()
    assert keys(s3) == set()
    assert open_uploads(s3) == []


def test_a_source_of_another_size_fails_before_downloading_it(s3: Any, origin: FakeOrigin) -> None:
    data = blob(4, 1000)
    origin.files["vae/config.json"] = data
    wrong = SeedFile(url=origin.url("vae/config.json"), key="vae/config.json", sha256="0" * 64, size=999)
    with pytest.raises(SeedError, match=r"vae/config\.json.* has 1000 bytes, expected 999"):
        seeder(s3, (wrong,)).run()
    assert keys(s3) == set()


# ------------------------------------------------------------------------------------------------------- missing


def test_missing_file_fails_with_the_http_status_and_keeps_what_was_verified(s3: Any, origin: FakeOrigin) -> None:
    first = serve(origin, "unet/config.json", b"{}")
    gone = SeedFile(url=origin.url("vae/gone.bin"), key="vae/gone.bin", sha256="1" * 64, size=10)
    with pytest.raises(SeedError) as caught:
        seeder(s3, (first, gone, serve(origin, "model_index.json", b"{}"))).run()
    assert "vae/gone.bin" in str(caught.value) and "HTTP 404" in str(caught.value)
    assert origin.count("vae/gone.bin") == 1  # a 404 is final, not retried
    assert keys(s3) == {PREFIX + "unet/config.json"}
    assert is_verified(s3, first)


def test_a_passing_server_error_is_retried(s3: Any, origin: FakeOrigin) -> None:
    files = model(origin)
    origin.fail_once["tokenizer/vocab.json"] = 1
    assert seeder(s3, files).run().complete
    assert origin.count("tokenizer/vocab.json") == 2


# ------------------------------------------------------------------------------------------------------- slow


def test_a_stalled_source_times_out_with_a_clear_error(s3: Any, origin: FakeOrigin) -> None:
    files = model(origin)
    origin.stall.add("tokenizer/vocab.json")
    started = time.monotonic()
    with pytest.raises(SeedError) as caught:
        seeder(s3, files, read_timeout=0.3, attempts=2).run()
    message = str(caught.value)
    assert "tokenizer/vocab.json" in message and "timed out" in message and "2 attempts" in message
    assert time.monotonic() - started < 10
    assert PREFIX + "tokenizer/vocab.json" not in keys(s3)
    assert PREFIX + "model_index.json" not in keys(s3)


def test_a_call_that_makes_no_progress_says_the_source_is_too_slow(s3: Any, origin: FakeOrigin) -> None:
    large = serve(origin, "unet/diffusion_pytorch_model.safetensors", blob(5, 3 * PART))
    # 3 ticks: not even one 64 KiB part (4 chunks of 16 KiB) fits.
    with pytest.raises(SeedError, match=r"unet/diffusion_pytorch_model\.safetensors.*no progress.*too slow"):
        seeder(s3, (large,), clock=StepClock(), deadline=3).run()
    assert keys(s3) == set()


# ------------------------------------------------------------------------------------------------------- resume


def test_tiny_budgets_resume_across_calls_until_every_file_is_verified(s3: Any, origin: FakeOrigin) -> None:
    files = model(origin)
    large = files[1]
    calls = 0
    while True:
        calls += 1
        clock = StepClock()
        report = seeder(s3, files, clock=clock, deadline=9).run()  # about two parts per call
        if report.complete:
            break
        assert PREFIX + "model_index.json" not in keys(s3)  # the marker only once everything else is verified
        assert calls < 20
    assert calls >= 3
    for seed_file in files:
        assert stored(s3, seed_file.key) == origin.files[seed_file.key]
        assert is_verified(s3, seed_file)
    # Later calls asked only for the rest of the large file.
    ranges = [r for path, r in origin.requests if path == f"/{large.key}" and r]
    assert ranges and all(r.startswith("bytes=") and int(r[6:].split("-")[0]) % PART == 0 for r in ranges)
    assert open_uploads(s3) == []


def test_resume_works_when_the_server_ignores_ranges(s3: Any, origin: FakeOrigin) -> None:
    files = model(origin)
    origin.ignore_range = True
    assert not seeder(s3, files, clock=StepClock(), deadline=9).run().complete
    # The next call asks for the rest, gets the whole file (200) and reads past what is already uploaded.
    assert seeder(s3, files, clock=StepClock(), deadline=60).run().complete
    assert any(r for path, r in origin.requests if path == f"/{files[1].key}")
    assert all(is_verified(s3, f) and stored(s3, f.key) == origin.files[f.key] for f in files)


def test_a_resumed_file_with_a_bad_part_is_removed_after_hashing_it_back(s3: Any, origin: FakeOrigin) -> None:
    data = blob(6, 3 * PART + 5)
    large = serve(origin, "unet/diffusion_pytorch_model.safetensors", data)
    first = seeder(s3, (large,), clock=StepClock(), deadline=7).run()
    assert not first.complete and open_uploads(s3)
    origin.files[large.key] = data[:-5] + b"XXXXX"  # the source changes under the upload
    with pytest.raises(SeedError, match=r"sha256 mismatch.*the object was removed"):
        for _ in range(10):
            seeder(s3, (large,), clock=StepClock(), deadline=9).run()
    assert keys(s3) == set()


# ------------------------------------------------------------------------------ objects the seeder did not write


def test_a_marker_the_seeder_did_not_write_leaves_the_prefix_alone(s3: Any, origin: FakeOrigin) -> None:
    files = model(origin)
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "model_index.json", Body=b"{}")  # an operator's own upload
    report = seeder(s3, files).run()
    assert report.complete and report.left_alone
    assert origin.requests == [] and keys(s3) == {PREFIX + "model_index.json"}


def test_an_identical_foreign_file_is_adopted_and_a_different_one_is_never_overwritten(
    s3: Any, origin: FakeOrigin
) -> None:
    files = model(origin)
    config = files[0]
    s3.put_object(Bucket=BUCKET, Key=PREFIX + config.key, Body=origin.files[config.key])
    seeder(s3, files).run()
    assert is_verified(s3, config) and origin.count(config.key) == 0

    other = serve(origin, "other/config.json", b"{}")
    s3.put_object(Bucket=BUCKET, Key=PREFIX + other.key, Body=b"mine")
    with pytest.raises(SeedError, match=r"other/config\.json.*the seeder did not write it.*left as it is"):
        seeder(s3, (other,)).run()
    assert stored(s3, other.key) == b"mine"


def test_an_unverified_object_of_the_seeder_is_hashed_back_not_downloaded(s3: Any, origin: FakeOrigin) -> None:
    config = serve(origin, "unet/config.json", b'{"a": 1}')
    # As if a call completed the upload but stopped before tagging it.
    s3.put_object(
        Bucket=BUCKET, Key=PREFIX + config.key, Body=b'{"a": 1}', Metadata={contract.META_SHA256: config.sha256}
    )
    report = seeder(s3, (config,)).run()
    assert report.verified == [config.key] and origin.requests == []
    assert is_verified(s3, config)


def test_an_object_seeded_for_other_content_is_replaced(s3: Any, origin: FakeOrigin) -> None:
    config = serve(origin, "unet/config.json", b'{"new": true}')
    s3.put_object(Bucket=BUCKET, Key=PREFIX + config.key, Body=b"{}", Metadata={contract.META_SHA256: "2" * 64})
    assert seeder(s3, (config,)).run().copied == [config.key]
    assert stored(s3, config.key) == b'{"new": true}' and is_verified(s3, config)


# ------------------------------------------------------------------------------------------------------- handlers


class Context:
    def __init__(self, remaining_ms: int = 900_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def event(request: str, files: tuple[SeedFile, ...], **extra: Any) -> dict[str, Any]:
    return {
        "RequestType": request,
        "PhysicalResourceId": f"s3://{BUCKET}/{PREFIX}",
        "ResourceProperties": {
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:framework",
            contract.PROP_BUCKET: BUCKET,
            contract.PROP_PREFIX: PREFIX,
            contract.PROP_FILES: [f.to_property() for f in files],
            contract.PROP_MARKER: "model_index.json",
        },
        **extra,
    }


def test_on_event_validates_and_starts_the_clock_and_is_complete_copies(s3: Any, origin: FakeOrigin) -> None:
    files = model(origin)
    started = seed_handler.on_event(event("Create", files), Context())
    assert started["PhysicalResourceId"] == f"s3://{BUCKET}/{PREFIX}"
    assert 0 < int(started[contract.EVENT_DEADLINE]) - time.time() <= contract.DEADLINE_S
    done = seed_handler.is_complete({**event("Create", files), **started}, Context(), s3=s3)
    assert done["IsComplete"] is True and done["Data"]["Files"] == "4"
    assert all(is_verified(s3, f) for f in files)


def test_delete_keeps_every_seeded_object(s3: Any, origin: FakeOrigin) -> None:
    files = model(origin)
    seeder(s3, files).run()
    before = keys(s3)
    deleted = seed_handler.on_event(event("Delete", files), Context())
    assert deleted == {"PhysicalResourceId": f"s3://{BUCKET}/{PREFIX}"}
    assert seed_handler.is_complete(event("Delete", files), Context(), s3=s3) == {"IsComplete": True}
    assert keys(s3) == before


def test_is_complete_gives_up_at_the_deadline_with_what_to_do(s3: Any, origin: FakeOrigin) -> None:
    files = model(origin)
    late = event("Create", files, **{contract.EVENT_DEADLINE: str(int(time.time()) - 1)})
    with pytest.raises(SeedError, match=r"did not finish within 55 minutes.*deploy again to resume"):
        seed_handler.is_complete(late, Context(), s3=s3)


def test_bad_properties_name_the_entry() -> None:
    bad = event("Create", ())
    bad["ResourceProperties"][contract.PROP_FILES] = [{"Url": "https://x/y", "Key": "a", "Sha256": "z", "Size": "1"}]
    with pytest.raises(ManifestError, match=r"file 'a': sha256 must be 64 lowercase hex"):
        seed_handler.on_event(bad, Context())
    bad["ResourceProperties"][contract.PROP_FILES] = [{"Url": "https://x/y", "Key": "../a", "Sha256": "0" * 64}]
    with pytest.raises(ManifestError, match=r"Files\[0\]: missing Size"):
        seed_handler.on_event(bad, Context())
    with pytest.raises(ManifestError, match=r"Marker: 'model_index.json' is not one of"):
        seed_handler.on_event(event("Create", (SeedFile("https://x/y", "a", "0" * 64, 1),)), Context())


@pytest.mark.parametrize("key", ["/abs", "a//b", "a/../b", "dir/", "a b"])
def test_seed_file_keys_stay_below_the_prefix(key: str) -> None:
    with pytest.raises(ManifestError):
        SeedFile(url="https://example.com/x", key=key, sha256="0" * 64, size=1)


def check_event(request: str = "Create") -> dict[str, Any]:
    return {
        "RequestType": request,
        "PhysicalResourceId": f"s3://{BUCKET}/{PREFIX}",
        "ResourceProperties": {
            contract.PROP_BUCKET: BUCKET,
            contract.PROP_PREFIX: PREFIX,
            contract.PROP_REQUIRED: ["model_index.json"],
            contract.PROP_HOW_TO_FIX: "Upload one: python -m runtime.endpoint.upload_model ...",
        },
    }


def test_the_prefix_check_fails_with_how_to_fix_until_the_model_is_there(s3: Any) -> None:
    with pytest.raises(seed_handler.PrefixCheckError) as caught:
        seed_handler.check(check_event(), Context(), s3=s3)
    message = str(caught.value)
    assert f"s3://{BUCKET}/{PREFIX}model_index.json does not exist" in message
    assert "python -m runtime.endpoint.upload_model" in message
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "model_index.json", Body=b"{}")
    assert (
        seed_handler.check(check_event("Update"), Context(), s3=s3)["PhysicalResourceId"] == f"s3://{BUCKET}/{PREFIX}"
    )
    assert (
        seed_handler.check(check_event("Delete"), Context(), s3=s3)["PhysicalResourceId"] == f"s3://{BUCKET}/{PREFIX}"
    )
    assert keys(s3) == {PREFIX + "model_index.json"}


def test_function_settings_are_validated(monkeypatch: pytest.MonkeyPatch, s3: Any, origin: FakeOrigin) -> None:
    monkeypatch.setenv(contract.ENV_PART_SIZE, "1024")
    with pytest.raises(Exception, match=rf"{contract.ENV_PART_SIZE} must be at least {contract.MIN_PART_SIZE}"):
        seed_handler.is_complete(event("Create", model(origin)), Context(), s3=s3)


def test_the_clock_is_only_read_through_the_injected_callable(s3: Any, origin: FakeOrigin) -> None:
    """A deadline already behind the injected clock stops before any download (the no-progress error)."""
    clock: Callable[[], float] = lambda: 100.0  # noqa: E731
    with pytest.raises(SeedError, match="no progress"):
        seeder(s3, model(origin), clock=clock, deadline=50).run()
    assert origin.requests == []
