"""Each runtime lock that runs on a CPU, installed alone into a fresh venv (--require-hashes), runs its smoke path.

The GPU images' locks are installed with torch swapped for the CPU build of the same version (locks.toml
[cpu_override]): their CUDA wheels are ~3 GB and cannot run here. pip's cache (PIP_CACHE_DIR or ~/.cache/pip)
makes reruns fast; docs/benchmarks.md has the measured times.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from scripts.locks import REPO_ROOT, load

pytestmark = pytest.mark.slow
LOCKS, CPU = {lock.name: lock for lock in load()[0]}, load()[1]
REGION = "us-east-1"
# The tiny config of tests/runtime/pipeline/test_local_run.py.
TINY_PIPELINE = ("--images", "12", "--kimg", "0.02", "--batch", "4")


def fresh_venv(tmp_path: Path, name: str, lock_text: str) -> Path:
    """A new venv holding exactly the lock (hashes required, no dependency resolution); returns its python."""
    venv = tmp_path / f"venv-{name}"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    lock = tmp_path / f"{name}.lock"
    lock.write_text(lock_text)
    python = venv / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input"]
    # The machine-wide pip constraints (if any) are for the dev venv; this set is the lock and nothing else.
    env = {**os.environ, "PIP_CONSTRAINT": ""}
    subprocess.run(
        [*install, "--require-hashes", "--no-deps", "--only-binary=:all:", "-r", str(lock)],
        check=True,
        timeout=900,
        env=env,
    )
    pip_check = [str(python), "-m", "pip", "check"]
    check = subprocess.run(pip_check, check=False, capture_output=True, text=True, timeout=120, env=env)
    assert check.returncode == 0, f"{name}: the lock is not a consistent set:\n{check.stdout}"
    return python


def _run_env(**extra: str) -> dict[str, str]:
    # Only the repository on the path: nothing of the dev venv leaks into the production set.
    return {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), "HOME": os.environ.get("HOME", "/tmp"), **extra}


def test_bot_lock_draws_a_face_in_console_mode(tmp_path: Path, tiny_generator_onnx: Path) -> None:
    python = fresh_venv(tmp_path, "bot", LOCKS["bot"].path.read_text())
    out = tmp_path / "faces"
    result = subprocess.run(  # noqa: PLW1510 (the return code is asserted with the output)
        [str(python), "-m", "runtime.bot", "--console", "--model", str(tiny_generator_onnx), "--out", str(out)],
        input="$claim_waifu Asuka Langley\n",
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=_run_env(),
    )
    assert result.returncode == 0, result.stderr
    (face,) = out.glob("*.png")
    assert face.stat().st_size > 100


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_endpoint_lock_in_cpu_mode_serves_ping_and_one_request(tmp_path: Path) -> None:
    python = fresh_venv(tmp_path, "endpoint", CPU.apply(LOCKS["endpoint"].path.read_text()))
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [str(python), "-m", "runtime.endpoint.serve", "--tiny-random", "--device", "cpu", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        # The tiny pipeline's sizes (tests/runtime/endpoint/conftest.py): any size, warmed at 64 px.
        env=_run_env(GENART_COMPILE="0", GENART_SIZES="any", GENART_WARMUP_SIZES="64", GENART_WARMUP_STEPS="1"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the endpoint never became healthy"
            time.sleep(1)
        body = json.dumps({"prompt": "a cat", "num_inference_steps": 2, "width": 64, "height": 64}).encode()
        request = urllib.request.Request(
            f"{base}/invocations", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            assert response.status == 200
            images = json.loads(response.read())["images"]
        assert len(images) == 1
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


@pytest.fixture
def moto_server() -> Iterator[str]:
    """A moto server on loopback: the Lambda's venv talks to it over HTTP (moto itself is not in its lock)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port())
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def test_notify_lock_publishes_under_moto(tmp_path: Path, moto_server: str) -> None:
    python = fresh_venv(tmp_path, "notify", LOCKS["notify"].path.read_text())
    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}
    clients = {"endpoint_url": moto_server, "region_name": REGION, "aws_access_key_id": "testing"}
    sns = boto3.client("sns", aws_secret_access_key="testing", **clients)  # type: ignore[call-overload]
    sqs = boto3.client("sqs", aws_secret_access_key="testing", **clients)  # type: ignore[call-overload]
    topic_arn = sns.create_topic(Name="genart-pipeline")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    models = "s3://genart-models-test/stylegan"
    event = {
        "action": "notify_published",
        "pipeline_name": "genart-dev-stylegan2",
        "execution_id": "abc123",
        "samples_uri": f"{models}/runs/abc123/samples",
        "model_uri": f"{models}/latest.onnx",
        "training_artifacts_uri": f"{models}/runs/abc123/training/model.tar.gz",
    }
    script = (
        "import json, sys; from runtime.lambdas.notify.handler import handler; "
        "print(json.dumps(handler(json.loads(sys.argv[1]), None)))"
    )
    result = subprocess.run(  # noqa: PLW1510 (the return code is asserted with the output)
        [str(python), "-c", script, json.dumps(event)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=_run_env(AWS_ENDPOINT_URL=moto_server, TOPIC_ARN=topic_arn, **creds),
    )
    assert result.returncode == 0, result.stderr
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    assert len(messages) == 1 and "abc123" in json.loads(messages[0]["Body"])["Message"]


def test_pipeline_lock_in_cpu_mode_runs_the_local_pipeline(tmp_path: Path) -> None:
    python = fresh_venv(tmp_path, "pipeline", CPU.apply(LOCKS["pipeline"].path.read_text()))
    workdir = tmp_path / "run"
    # The orchestrator (the SageMaker side: moto, the pipeline function) runs here; every step script runs in
    # the production set, through the same entry points the step image calls (local_run --python).
    result = subprocess.run(  # noqa: PLW1510 (the return code is asserted with the output)
        [
            sys.executable, "-m", "runtime.pipeline.local_run", "--workdir", str(workdir), *TINY_PIPELINE,
            "--python", str(python),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO_ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / "s3" / "models" / "stylegan" / "latest.onnx").stat().st_size > 0


def test_cartoonizer_lambda_lock_cartoonizes_an_image_under_moto(tmp_path: Path, moto_server: str) -> None:
    import io

    from PIL import Image

    from runtime.cartoonizer import contract
    from runtime.cartoonizer.model_store import write_manifest
    from runtime.cartoonizer.network import random_weights
    from runtime.cartoonizer.onnx_model import build_model

    python = fresh_venv(tmp_path, "cartoonizer-lambda", LOCKS["cartoonizer-lambda"].path.read_text())
    weights = {f"generator/{name}": value for name, value in random_weights(seed=7).items()}
    model = tmp_path / "model" / contract.MODEL_FILE
    model.parent.mkdir()
    model.write_bytes(build_model(weights).SerializeToString())
    write_manifest(model, name="smoke", source="synthetic")
    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}
    s3 = boto3.client(  # type: ignore[call-overload]
        "s3", endpoint_url=moto_server, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    for bucket in ("models", "outputs"):
        s3.create_bucket(Bucket=bucket)
    prefix = contract.model_prefix("smoke")
    s3.upload_file(str(model), "models", prefix + contract.MODEL_FILE)
    s3.upload_file(str(model.parent / contract.MANIFEST_FILE), "models", prefix + contract.MANIFEST_FILE)
    photo = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 120, 40)).save(photo, format="PNG")
    s3.put_object(Bucket="outputs", Key=contract.INPUTS_PREFIX + "a.png", Body=photo.getvalue())
    event = {
        "input": f"s3://outputs/{contract.INPUTS_PREFIX}a.png",
        "output": f"s3://outputs/{contract.RESULTS_PREFIX}a.png",
    }
    script = (
        "import json, sys; from runtime.cartoonizer.lambda_handler import handler; "
        "print(json.dumps(handler(json.loads(sys.argv[1]), None)))"
    )
    env = {
        contract.ENV_MODELS_BUCKET: "models",
        contract.ENV_MODEL_KEY: prefix + contract.MODEL_FILE,
        contract.ENV_OUTPUTS_BUCKET: "outputs",
        contract.ENV_DEVICE: "cpu",
    }
    result = subprocess.run(  # noqa: PLW1510 (the return code is asserted with the output)
        [str(python), "-c", script, json.dumps(event)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=_run_env(AWS_ENDPOINT_URL=moto_server, **creds, **env),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["status"] == 200 and answer["state"] == "done", answer
    data = s3.get_object(Bucket="outputs", Key=contract.RESULTS_PREFIX + "a.png")["Body"].read()
    assert Image.open(io.BytesIO(data)).size == (40, 30)
