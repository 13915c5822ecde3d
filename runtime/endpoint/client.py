"""Client CLI: call the endpoint (real-time, asynchronous, or a local server) and save the images."""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.exceptions import ClientError

from ..common.errors import GenArtError
from . import contract

ASYNC_INPUT_PREFIX = contract.ASYNC_INPUT_PREFIX


class EndpointCallError(GenArtError, RuntimeError):
    """The endpoint answered with an error or the async result never arrived."""


def split_s3_uri(uri: str) -> tuple[str, str]:
    """Return (bucket, key) of an s3:// URI."""
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"not an s3 URI: {uri!r}")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def invoke_local(url: str, payload: dict[str, Any], *, timeout: float = 300.0) -> dict[str, Any]:
    """POST the payload to a server's /invocations (e.g. http://localhost:8080) and return its JSON."""
    response = httpx.post(f"{url.rstrip('/')}/invocations", json=payload, timeout=timeout)
    try:
        body: dict[str, Any] = response.json()
    except ValueError:  # e.g. a proxy's HTML error page in front of the server
        raise EndpointCallError(f"HTTP {response.status_code}: {response.text[:200]!r}") from None
    if response.status_code != 200:
        raise EndpointCallError(f"HTTP {response.status_code}: {json.dumps(body)}")
    return body


def invoke_realtime(runtime: Any, *, endpoint: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Call a real-time endpoint with sagemaker-runtime invoke_endpoint."""
    try:
        response = runtime.invoke_endpoint(
            EndpointName=endpoint,
            ContentType="application/json",
            Accept="application/json",
            Body=json.dumps(payload).encode(),
        )
    except ClientError as exc:
        raise EndpointCallError(str(exc)) from exc
    body: dict[str, Any] = json.loads(response["Body"].read())
    return body


def _read_json(s3: Any, uri: str) -> dict[str, Any] | None:
    bucket, key = split_s3_uri(uri)
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
            return None
        raise
    body: dict[str, Any] = json.loads(obj["Body"].read())
    return body


def invoke_async(
    runtime: Any,
    s3: Any,
    *,
    endpoint: str,
    payload: dict[str, Any],
    input_bucket: str,
    input_prefix: str = ASYNC_INPUT_PREFIX,
    timeout: float = 900.0,
    poll_seconds: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Upload the payload, call invoke_endpoint_async and poll the output (or failure) object until it appears."""
    inference_id = uuid.uuid4().hex
    key = f"{input_prefix}{inference_id}.json"
    s3.put_object(Bucket=input_bucket, Key=key, Body=json.dumps(payload).encode(), ContentType="application/json")
    response = runtime.invoke_endpoint_async(
        EndpointName=endpoint,
        InputLocation=f"s3://{input_bucket}/{key}",
        ContentType="application/json",
        Accept="application/json",
        InferenceId=inference_id,
    )
    output_uri = response["OutputLocation"]
    failure_uri = response.get("FailureLocation")
    if progress is not None:
        progress(f"queued {inference_id}; waiting for {output_uri}")
    deadline = time.monotonic() + timeout
    while True:
        result = _read_json(s3, output_uri)
        if result is not None:
            return result
        if failure_uri:
            bucket, failure_key = split_s3_uri(failure_uri)
            try:
                failure = s3.get_object(Bucket=bucket, Key=failure_key)["Body"].read().decode(errors="replace")
            except ClientError:
                failure = None
            if failure is not None:
                raise EndpointCallError(f"async inference {inference_id} failed: {failure}")
        if time.monotonic() >= deadline:
            raise EndpointCallError(f"no result at {output_uri} after {timeout:.0f} s")
        sleep(poll_seconds)


def save_images(body: dict[str, Any], out_dir: Path, *, s3: Any = None) -> list[Path]:
    """Write every image of a response to out_dir (downloading S3 outputs) and return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    request_id = body.get("request_id", "response")
    for index, image in enumerate(body["images"]):
        ext = "jpg" if image.get("format") == "jpeg" else "png"
        path = out_dir / f"{request_id}-{index:02d}-seed{image['seed']}.{ext}"
        if image.get("b64"):
            path.write_bytes(base64.b64decode(image["b64"]))
        else:
            bucket, key = split_s3_uri(image["s3_uri"])
            s3 = s3 or boto3.client("s3")
            path.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        paths.append(path)
    return paths


def build_payload(args: argparse.Namespace) -> dict[str, Any]:
    """Request JSON from CLI arguments (unset options take the server's defaults)."""
    payload: dict[str, Any] = {"prompt": args.prompt}
    optional = {
        "negative_prompt": args.negative_prompt,
        "num_inference_steps": args.steps,
        "guidance_scale": args.guidance,
        "width": args.width,
        "height": args.height,
        "num_images": args.num_images,
        "seed": args.seed,
        "scheduler": args.scheduler,
        "output": args.output,
        "image_format": args.format,
    }
    payload.update({key: value for key, value in optional.items() if value is not None})
    return payload


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runtime.endpoint.client", description=__doc__)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--endpoint", help="SageMaker endpoint name (Diffusion stack output)")
    target.add_argument("--url", help="local server, e.g. http://localhost:8080")
    parser.add_argument("--async", dest="use_async", action="store_true", help="asynchronous endpoint")
    parser.add_argument("--input-bucket", help="bucket for async request payloads (the outputs bucket)")
    parser.add_argument("--input-prefix", default=ASYNC_INPUT_PREFIX, help=f"default {ASYNC_INPUT_PREFIX}")
    parser.add_argument("--region", help="AWS region (default: your AWS config)")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--negative-prompt")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--guidance", type=float)
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--num-images", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--scheduler")
    parser.add_argument("--output", choices=("inline", "s3"), help="inline base64 (default) or S3 URIs")
    parser.add_argument("--format", choices=("png", "jpeg"))
    parser.add_argument("--out", type=Path, default=Path("out"), help="folder for the images (default ./out)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait (async polling included)")
    args = parser.parse_args(argv)
    if args.use_async and not (args.endpoint and args.input_bucket):
        parser.error("--async needs --endpoint and --input-bucket")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI."""
    args = _parse(argv)
    payload = build_payload(args)
    session = boto3.session.Session(region_name=args.region)
    s3 = session.client("s3") if args.endpoint else None
    try:
        if args.url:
            body = invoke_local(args.url, payload, timeout=args.timeout)
        elif args.use_async:
            body = invoke_async(
                session.client("sagemaker-runtime"),
                s3,
                endpoint=args.endpoint,
                payload=payload,
                input_bucket=args.input_bucket,
                input_prefix=args.input_prefix,
                timeout=args.timeout,
                progress=lambda line: print(line, flush=True),
            )
        else:
            body = invoke_realtime(session.client("sagemaker-runtime"), endpoint=args.endpoint, payload=payload)
        if "images" not in body:
            raise EndpointCallError(f"endpoint error: {json.dumps(body)}")
        paths = save_images(body, args.out, s3=s3)
    except (EndpointCallError, httpx.HTTPError) as exc:
        print(f"client: {exc}", file=sys.stderr)
        return 1
    for path, image in zip(paths, body["images"], strict=True):
        print(f"{path} (seed {image['seed']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
