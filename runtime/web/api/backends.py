"""Where jobs run: the image Lambda (async invoke) and the async SageMaker endpoints; AWS implementation here.

runtime/web/local/backends.py implements the same Protocol on 127.0.0.1 for `make web-local`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

INSTANCE_CACHE_S = 20.0  # DescribeEndpoint is rate limited; a page polls every few seconds


class Backends(Protocol):
    """What the job handlers need from the services that do the work."""

    def start_image(self, *, manifest: dict[str, Any]) -> None:
        """Start the image Lambda on a job manifest without waiting (it writes the result and progress to S3)."""

    def start_async(
        self, *, endpoint: str, input_location: str, inference_id: str, timeout_s: int | None
    ) -> tuple[str, str | None]:
        """Queue a request (JSON already at input_location) on an async endpoint: (output, failure) S3 URIs."""

    def instance_count(self, endpoint: str) -> int | None:
        """Running instances of the endpoint (0: scaled to zero, a job waits for a GPU), None when unknown."""


class AwsBackends:
    """Lambda InvokeAsync (InvocationType=Event), SageMaker InvokeEndpointAsync and DescribeEndpoint."""

    def __init__(
        self,
        *,
        image_function: str,
        lambda_client: Any,
        runtime_client: Any,
        sagemaker_client: Any,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.image_function = image_function
        self.lambda_client = lambda_client
        self.runtime_client = runtime_client
        self.sagemaker_client = sagemaker_client
        self._clock = clock
        self._instances: dict[str, tuple[float, int | None]] = {}
        self._lock = threading.Lock()

    def start_image(self, *, manifest: dict[str, Any]) -> None:
        """Invoke the image Lambda asynchronously (Lambda retries and its failure handling apply)."""
        answer = self.lambda_client.invoke(
            FunctionName=self.image_function, InvocationType="Event", Payload=json.dumps(manifest).encode()
        )
        if int(answer.get("StatusCode", 0)) != 202:
            raise RuntimeError(f"image Lambda invoke answered {answer.get('StatusCode')}")

    def start_async(
        self, *, endpoint: str, input_location: str, inference_id: str, timeout_s: int | None
    ) -> tuple[str, str | None]:
        """InvokeEndpointAsync; SageMaker answers at once with where the response or the failure will be."""
        arguments: dict[str, Any] = {
            "EndpointName": endpoint,
            "InputLocation": input_location,
            "ContentType": "application/json",
            "Accept": "application/json",
            "InferenceId": inference_id,
        }
        if timeout_s is not None:
            arguments["InvocationTimeoutSeconds"] = timeout_s
        answer = self.runtime_client.invoke_endpoint_async(**arguments)
        return str(answer["OutputLocation"]), answer.get("FailureLocation")

    def instance_count(self, endpoint: str) -> int | None:
        """CurrentInstanceCount of the endpoint's first variant, cached for INSTANCE_CACHE_S."""
        now = self._clock()
        with self._lock:
            cached = self._instances.get(endpoint)
            if cached is not None and now - cached[0] < INSTANCE_CACHE_S:
                return cached[1]
        count: int | None
        try:
            variants = self.sagemaker_client.describe_endpoint(EndpointName=endpoint).get("ProductionVariants") or []
            count = int(variants[0].get("CurrentInstanceCount", 0)) if variants else 0
        except Exception:
            log.warning("describe_endpoint failed", extra={"fields": {"endpoint": endpoint}}, exc_info=True)
            count = None
        with self._lock:
            self._instances[endpoint] = (now, count)
        return count
