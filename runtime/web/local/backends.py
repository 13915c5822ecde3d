"""The job backends of `make web-local`: the services the API starts jobs on, emulated on this machine.

- The image Lambda: its real handler (runtime.cartoonizer.lambda_handler) on a worker thread, as an async
  (InvocationType=Event) invoke would run it, against the moto S3.
- Async SageMaker endpoints: like SageMaker, InvokeEndpointAsync answers at once with an output and a failure
  location; a worker reads the input JSON from S3, posts it to the container's real /invocations (the cartoonizer
  server; the Diffusion server with the tiny random pipeline), and writes a 2xx answer to the output location or
  anything else to the failure location. An endpoint starts at 0 instances and reports 1 once its app answers
  /ping and `warmup_s` have passed since its first request (scale-out from zero), so jobs read "warming" meanwhile.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class AsyncRequest:
    """One queued invocation: where its input is and where SageMaker would write the answer."""

    input_location: str
    output_location: str
    failure_location: str
    inference_id: str


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


class EmulatedEndpoint:
    """One async endpoint: a container app (anything with .get/.post like a TestClient) behind a queue."""

    def __init__(
        self,
        *,
        name: str,
        start_app: Callable[[], Any],
        s3: Any,
        bucket: str,
        output_prefix: str,
        failure_prefix: str,
        warmup_s: float,
    ) -> None:
        self.name = name
        self.s3 = s3
        self.bucket = bucket
        self.output_prefix = output_prefix
        self.failure_prefix = failure_prefix
        self.warmup_s = warmup_s
        self._start_app = start_app
        self._client: Any = None
        self._queue: queue.Queue[AsyncRequest | None] = queue.Queue()
        self._scale_out_at: float | None = None if warmup_s > 0 else 0.0
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._loader = threading.Thread(target=self._load, name=f"{name}-load", daemon=True)
        self._worker = threading.Thread(target=self._work, name=f"{name}-worker", daemon=True)

    def start(self) -> None:
        """Load the container app in the background and start serving the queue."""
        self._loader.start()
        self._worker.start()

    def _load(self) -> None:
        try:
            self._client = self._start_app()
            deadline = time.monotonic() + 600
            while self._client.get("/ping").status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name}: the container never answered /ping with 200")
                time.sleep(0.1)
            self._ready.set()
            log.info("endpoint container healthy", extra={"fields": {"endpoint": self.name}})
        except Exception:
            log.exception("endpoint container failed to start", extra={"fields": {"endpoint": self.name}})

    def instance_count(self) -> int:
        """1 once healthy and scaled out (warm-up passed since the first request), else 0."""
        with self._lock:
            scaled = self._scale_out_at is not None and time.monotonic() >= self._scale_out_at
        return 1 if scaled and self._ready.is_set() else 0

    def invoke_async(self, *, input_location: str, inference_id: str) -> AsyncRequest:
        """Queue an invocation; SageMaker names the output after a fresh uuid."""
        name = str(uuid.uuid4())
        request = AsyncRequest(
            input_location=input_location,
            output_location=f"s3://{self.bucket}/{self.output_prefix}{name}.out",
            failure_location=f"s3://{self.bucket}/{self.failure_prefix}{name}-error.out",
            inference_id=inference_id,
        )
        with self._lock:
            if self._scale_out_at is None:
                self._scale_out_at = time.monotonic() + self.warmup_s
        self._queue.put(request)
        return request

    def _work(self) -> None:
        while True:
            request = self._queue.get()
            if request is None:
                return
            while self.instance_count() == 0:
                time.sleep(0.1)
            try:
                self._serve(request)
            except Exception:
                log.exception("async invocation failed", extra={"fields": {"inference_id": request.inference_id}})
                body = b'{"error": "internal_error", "message": "internal error; see the endpoint\'s logs"}'
                bucket, key = _split(request.failure_location)
                with contextlib.suppress(Exception):
                    self.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")

    def _serve(self, request: AsyncRequest) -> None:
        bucket, key = _split(request.input_location)
        body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        answer = self._client.post(
            "/invocations",
            content=body,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "X-Amzn-SageMaker-Inference-Id": request.inference_id,
            },
        )
        target = request.output_location if 200 <= answer.status_code < 300 else request.failure_location
        bucket, key = _split(target)
        self.s3.put_object(Bucket=bucket, Key=key, Body=answer.content, ContentType="application/json")

    def stop(self) -> None:
        """Stop the worker after the job in hand."""
        self._queue.put(None)


class LocalBackends:
    """The Backends Protocol (runtime/web/api/backends.py) on this machine."""

    def __init__(self, *, image_handler: Callable[[dict[str, Any]], Any], endpoints: dict[str, EmulatedEndpoint]):
        self.image_handler = image_handler
        self.endpoints = endpoints
        self._images = ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-lambda")

    def start_image(self, *, manifest: dict[str, Any]) -> None:
        """Run the image Lambda's handler on a worker thread (an Event invoke: nobody waits for it)."""
        self._images.submit(self._run_image, dict(manifest))

    def _run_image(self, manifest: dict[str, Any]) -> None:
        try:
            answer = self.image_handler(manifest)
            log.info(
                "image Lambda answered",
                extra={"fields": {"state": answer.get("state"), "status": answer.get("status")}},
            )
        except Exception:
            log.exception("image Lambda raised")

    def start_async(
        self, *, endpoint: str, input_location: str, inference_id: str, timeout_s: int | None
    ) -> tuple[str, str | None]:
        """InvokeEndpointAsync on an emulated endpoint."""
        if endpoint not in self.endpoints:
            raise RuntimeError(f"no local endpoint {endpoint!r}")
        request = self.endpoints[endpoint].invoke_async(input_location=input_location, inference_id=inference_id)
        return request.output_location, request.failure_location

    def instance_count(self, endpoint: str) -> int | None:
        """0 while the emulated endpoint scales out from zero, then 1."""
        target = self.endpoints.get(endpoint)
        return None if target is None else target.instance_count()

    def shutdown(self) -> None:
        """Stop the workers."""
        for target in self.endpoints.values():
            target.stop()
        self._images.shutdown(wait=False, cancel_futures=True)
