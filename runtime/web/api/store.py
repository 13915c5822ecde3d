"""DynamoDB: jobs and uploads per user (partition key = the caller's sub) and hourly rate counters.

Items: {user, sort, expires_at, doc}; `doc` is the record as JSON. Rate counters are {user, sort: "rate#<what>#<hour>",
count, expires_at}, raised with a conditional UpdateItem so two concurrent requests cannot both take the last slot.
"""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime
from typing import Any

from .. import contract
from .errors import RateLimitedError

USER, SORT, TTL = contract.TABLE_PARTITION_KEY, contract.TABLE_SORT_KEY, contract.TABLE_TTL_ATTRIBUTE
LIST_LIMIT = 20


@dataclasses.dataclass(kw_only=True)
class UploadRecord:
    """An upload link handed out: where the object goes and what it was announced as."""

    id: str
    key: str
    media: str
    content_type: str
    filename: str
    size: int
    created_at: str


@dataclasses.dataclass(kw_only=True)
class JobRecord:
    """A job as stored; its state is refined from S3 on read until it is done or failed."""

    id: str
    kind: str
    media: str | None
    created_at: str
    created_ts: float
    request: dict[str, Any]
    state: str = "queued"
    input: dict[str, Any] | None = None  # {"key", "content_type", "filename"}
    output_key: str | None = None  # cartoonize: where the result (and its progress JSON) goes
    async_output: str | None = None  # async endpoints: SageMaker's OutputLocation and FailureLocation
    async_failure: str | None = None
    endpoint: str | None = None
    results: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # {"key", "content_type", "seed"}
    error: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None
    licence: str | None = None

    @property
    def finished(self) -> bool:
        """Done or failed: nothing changes any more."""
        return self.state in ("done", "failed")


def now_iso(timestamp: float | None = None) -> str:
    """UTC time as 2026-12-02T10:00:00Z."""
    moment = datetime.fromtimestamp(time.time() if timestamp is None else timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    """Jobs, uploads and rate counters of every user in one table; every call is scoped to one user."""

    def __init__(self, *, table: str, client: Any, ttl_days: int, clock: Any = time.time) -> None:
        self.table = table
        self.client = client
        self.ttl_s = ttl_days * 86400
        self.clock = clock

    def _put(self, user: str, sort: str, doc: dict[str, Any]) -> None:
        item = {
            USER: {"S": user},
            SORT: {"S": sort},
            TTL: {"N": str(int(self.clock()) + self.ttl_s)},
            "doc": {"S": json.dumps(doc, separators=(",", ":"))},
        }
        self.client.put_item(TableName=self.table, Item=item)

    def _get(self, user: str, sort: str) -> dict[str, Any] | None:
        item = self.client.get_item(
            TableName=self.table, Key={USER: {"S": user}, SORT: {"S": sort}}, ConsistentRead=True
        ).get("Item")
        return None if item is None else dict(json.loads(item["doc"]["S"]))

    def put_upload(self, user: str, upload: UploadRecord) -> None:
        """Remember an upload link for this user."""
        self._put(user, contract.UPLOAD_SORT_PREFIX + upload.id, dataclasses.asdict(upload))

    def get_upload(self, user: str, upload_id: str) -> UploadRecord | None:
        """This user's upload, or None (another user's id reads as unknown)."""
        doc = self._get(user, contract.UPLOAD_SORT_PREFIX + upload_id)
        return None if doc is None else UploadRecord(**doc)

    def put_job(self, user: str, job: JobRecord) -> None:
        """Create or replace this user's job."""
        self._put(user, contract.JOB_SORT_PREFIX + job.id, dataclasses.asdict(job))

    def get_job(self, user: str, job_id: str) -> JobRecord | None:
        """This user's job, or None (another user's id reads as unknown)."""
        doc = self._get(user, contract.JOB_SORT_PREFIX + job_id)
        return None if doc is None else JobRecord(**doc)

    def list_jobs(self, user: str, *, limit: int = LIST_LIMIT) -> list[JobRecord]:
        """This user's newest jobs first (job ids start with their creation time, so the sort key orders them)."""
        answer = self.client.query(
            TableName=self.table,
            KeyConditionExpression="#u = :u AND begins_with(#s, :p)",
            ExpressionAttributeNames={"#u": USER, "#s": SORT},
            ExpressionAttributeValues={":u": {"S": user}, ":p": {"S": contract.JOB_SORT_PREFIX}},
            ScanIndexForward=False,
            Limit=limit,
        )
        return [JobRecord(**json.loads(item["doc"]["S"])) for item in answer.get("Items", [])]

    def take(self, user: str, *, what: str, amount: int, limit: int) -> None:
        """Count amount against this user's hourly allowance of `what`; RateLimitedError when it would pass limit."""
        now = self.clock()
        hour = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d%H")
        retry_after = 3600 - int(now) % 3600
        if amount > limit:
            raise RateLimitedError(
                f"{amount} {what} exceed the allowance of {limit} per hour", retry_after_s=retry_after
            )
        try:
            self.client.update_item(
                TableName=self.table,
                Key={USER: {"S": user}, SORT: {"S": f"{contract.RATE_SORT_PREFIX}{what}#{hour}"}},
                UpdateExpression="ADD #c :n SET #t = :t",
                ConditionExpression="attribute_not_exists(#c) OR #c <= :room",
                ExpressionAttributeNames={"#c": "count", "#t": TTL},
                ExpressionAttributeValues={
                    ":n": {"N": str(amount)},
                    ":room": {"N": str(limit - amount)},
                    ":t": {"N": str(int(now) + retry_after + 86400)},
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            minutes = max(1, round(retry_after / 60))
            raise RateLimitedError(
                f"you have used your {limit} {what} for this hour; try again in about {minutes} min",
                retry_after_s=retry_after,
            ) from None

    def give_back(self, user: str, *, what: str, amount: int) -> None:
        """Undo a take whose request then failed (best effort)."""
        hour = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y%m%d%H")
        self.client.update_item(
            TableName=self.table,
            Key={USER: {"S": user}, SORT: {"S": f"{contract.RATE_SORT_PREFIX}{what}#{hour}"}},
            UpdateExpression="ADD #c :n",
            ExpressionAttributeNames={"#c": "count"},
            ExpressionAttributeValues={":n": {"N": str(-amount)}},
        )
