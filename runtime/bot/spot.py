"""Spot interruption and rebalance watcher over IMDSv2 (token PUT, then metadata GETs)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

LOG = logging.getLogger(__name__)
TOKEN_PATH = "/latest/api/token"  # noqa: S105 - a URL path, not a secret
INSTANCE_ACTION_PATH = "/latest/meta-data/spot/instance-action"
REBALANCE_PATH = "/latest/meta-data/events/recommendations/rebalance"
TOKEN_TTL_S = 21600


@dataclass(frozen=True)
class SpotNotice:
    """An interruption notice (`kind="interruption"`, action terminate/stop/hibernate) or a rebalance recommendation."""

    kind: Literal["interruption", "rebalance"]
    action: str
    time: str


class ImdsClient:
    """Minimal IMDSv2 client; the base URL is configurable so tests can use a fake server."""

    def __init__(self, *, base_url: str = "http://169.254.169.254", timeout_s: float = 2.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._token: str | None = None
        self._token_expires = 0.0

    def _session_token(self) -> str:
        if self._token is None or time.monotonic() >= self._token_expires:
            request = urllib.request.Request(  # noqa: S310 - fixed scheme from configuration
                self.base_url + TOKEN_PATH,
                method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)},
            )
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                self._token = response.read().decode("utf-8").strip()
            self._token_expires = time.monotonic() + TOKEN_TTL_S - 60
        return self._token

    def get(self, path: str) -> str | None:
        """GET a metadata path; None on 404 (no such event). A 401 refreshes the session token once."""
        for attempt in range(2):
            request = urllib.request.Request(  # noqa: S310
                self.base_url + path, headers={"X-aws-ec2-metadata-token": self._session_token()}
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                    return str(response.read().decode("utf-8"))
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return None
                if exc.code == 401 and attempt == 0:
                    self._token = None
                    continue
                raise
        return None

    def poll(self) -> SpotNotice | None:
        """Return the most urgent pending notice: interruption first, then rebalance; None when all is quiet."""
        action = self.get(INSTANCE_ACTION_PATH)
        if action:
            parsed = _json_object(action)
            return SpotNotice(
                kind="interruption", action=str(parsed.get("action", "terminate")), time=str(parsed.get("time", ""))
            )
        rebalance = self.get(REBALANCE_PATH)
        if rebalance:
            parsed = _json_object(rebalance)
            return SpotNotice(kind="rebalance", action="rebalance", time=str(parsed.get("noticeTime", "")))
        return None


def _json_object(text: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


class SpotWatcher:
    """Poll IMDS every `interval_s` off the event loop and await `on_notice` once per notice kind."""

    def __init__(
        self,
        *,
        client: ImdsClient,
        on_notice: Callable[[SpotNotice], Awaitable[None]],
        interval_s: float = 5.0,
        max_failures_logged: int = 3,
    ) -> None:
        self._client = client
        self._on_notice = on_notice
        self._interval_s = interval_s
        self._max_failures_logged = max_failures_logged
        self.seen: set[str] = set()

    async def run(self) -> None:
        """Poll until cancelled. IMDS being unreachable (not on EC2) is logged a few times, then quietly retried."""
        failures = 0
        while True:
            try:
                notice = await asyncio.to_thread(self._client.poll)
            except (OSError, urllib.error.URLError) as exc:
                failures += 1
                if failures <= self._max_failures_logged:
                    LOG.warning(
                        "instance metadata unreachable",
                        extra={"fields": {"error": str(exc), "imds": self._client.base_url, "failures": failures}},
                    )
                notice = None
            else:
                failures = 0
            if notice is not None and notice.kind not in self.seen:
                self.seen.add(notice.kind)
                LOG.warning(
                    "spot notice", extra={"fields": {"kind": notice.kind, "action": notice.action, "at": notice.time}}
                )
                await self._on_notice(notice)
            await asyncio.sleep(self._interval_s)
