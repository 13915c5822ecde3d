"""Starting jobs on their backends and reporting their state, derived from S3 objects and the stored record.

- image (cartoonize): the image Lambda writes the result and `<result key>.progress.json`; no progress after
  stale_after_s means the invocation never ran, and the job fails with a message saying so.
- video (cartoonize): the async endpoint writes progress next to the result, then its JSON answer to the async
  output location, or an error to the failure location. 0 running instances while queued reads "warming".
- generate: the Diffusion async endpoint's answer (InvocationResponse JSON) lists images[].s3_uri and seed.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from typing import Any

from ...cartoonizer import contract as cartoon_contract
from .. import contract
from ..settings import WebSettings
from .backends import Backends
from .errors import ApiError, NotFoundError, UnavailableError
from .models import JOB_ID, MAX_SEED, CartoonizeRequest, GenerateRequest, JobRequest
from .objects import head, read_text
from .store import JobRecord, Store, now_iso
from .uploads import uploaded

log = logging.getLogger(__name__)

RESULT_TYPES = {".jpg": "image/jpeg", ".png": "image/png", ".webp": "image/webp", ".mp4": "video/mp4"}
MAX_ERROR_CHARS = 500
MEDIA_ERROR = re.compile(r"^\d{3} (\w+): (.+)$", re.DOTALL)


def progress_error(text: Any) -> dict[str, Any]:
    """The error of a failed progress document: "<status> <code>: <message>" (cartoonizer MediaError) or a message."""
    message = str(text or "the job failed")
    found = MEDIA_ERROR.match(message)
    code, message = (found.group(1), found.group(2)) if found else ("failed", message)
    return {"code": code, "message": message[:MAX_ERROR_CHARS], "field": None}


def new_job_id(now: float) -> str:
    """j-, the creation time in hex milliseconds (so ids sort by age) and 8 random hex digits."""
    return f"j-{int(now * 1000):012x}{secrets.token_hex(4)}"


def _s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def _split_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


class Jobs:
    """Create, read and list one user's jobs."""

    def __init__(
        self, *, settings: WebSettings, store: Store, s3: Any, backends: Backends, clock: Any = time.time
    ) -> None:
        self.settings = settings
        self.store = store
        self.s3 = s3
        self.backends = backends
        self.clock = clock

    # Creating -------------------------------------------------------------------------------------------------

    def create(self, user: str, request: JobRequest) -> dict[str, Any]:
        """Check, count against the user's allowances, store and start the job; its view."""
        if isinstance(request, CartoonizeRequest):
            record = self._create_cartoonize(user, request)
        else:
            record = self._create_generate(user, request)
        return self.view(record, instances=None)

    def _new_record(self, request: JobRequest, *, media: str | None, public: dict[str, Any]) -> JobRecord:
        now = self.clock()
        return JobRecord(
            id=new_job_id(now),
            kind=request.kind,
            media=media,
            created_at=now_iso(now),
            created_ts=now,
            request=public,
        )

    def _create_cartoonize(self, user: str, request: CartoonizeRequest) -> JobRecord:
        bucket = self.settings.outputs_bucket
        upload = uploaded(user, request.upload_id, settings=self.settings, store=self.store, s3=self.s3)
        self.store.take(user, what="jobs", amount=1, limit=self.settings.jobs_per_hour)
        record = self._new_record(request, media=upload.media, public=request.public())
        ext = contract.IMAGE_CONTENT_TYPES[upload.content_type] if upload.media == "image" else ".mp4"
        record.output_key = f"{contract.CARTOON_RESULTS_PREFIX}{user}/{record.id}{ext}"
        record.input = {"key": upload.key, "content_type": upload.content_type, "filename": upload.filename}
        record.licence = self.settings.licence
        manifest = {
            cartoon_contract.JOB_INPUT: _s3_uri(bucket, upload.key),
            cartoon_contract.JOB_OUTPUT: _s3_uri(bucket, record.output_key),
            cartoon_contract.JOB_OPTIONS: {"smooth": request.smooth, "side_by_side": request.side_by_side},
        }
        self.store.put_job(user, record)
        try:
            if upload.media == "image":
                self.backends.start_image(manifest=manifest)
            else:
                record.endpoint = self.settings.video_endpoint
                key = f"{contract.VIDEO_JOBS_PREFIX}{user}/{record.id}.json"
                self.s3.put_object(
                    Bucket=bucket, Key=key, Body=json.dumps(manifest).encode(), ContentType="application/json"
                )
                record.async_output, record.async_failure = self.backends.start_async(
                    endpoint=record.endpoint,
                    input_location=_s3_uri(bucket, key),
                    inference_id=record.id,
                    timeout_s=self.settings.video_invocation_timeout_s,
                )
                self.store.put_job(user, record)
        except Exception as exc:
            self._not_started(user, record, what=("jobs", 1), exc=exc)
        return record

    def _create_generate(self, user: str, request: GenerateRequest) -> JobRecord:
        if not self.settings.generate_enabled:
            raise UnavailableError("Generate is off in this deployment (the Diffusion endpoint is not asynchronous)")
        bucket = self.settings.outputs_bucket
        self.store.take(user, what="images", amount=request.num_images, limit=self.settings.images_per_hour)
        try:
            self.store.take(user, what="jobs", amount=1, limit=self.settings.jobs_per_hour)
        except ApiError:
            self.store.give_back(user, what="images", amount=request.num_images)
            raise
        seed = secrets.randbelow(MAX_SEED + 1) if request.seed is None else request.seed
        record = self._new_record(request, media=None, public={**request.public(), "seed": seed})
        record.endpoint = self.settings.diffusion_endpoint
        self.store.put_job(user, record)
        key = f"{contract.GENERATE_JOBS_PREFIX}{user}/{record.id}.json"
        try:
            body = json.dumps(request.endpoint_request(seed=seed)).encode()
            self.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
            record.async_output, record.async_failure = self.backends.start_async(
                endpoint=record.endpoint, input_location=_s3_uri(bucket, key), inference_id=record.id, timeout_s=None
            )
            self.store.put_job(user, record)
        except Exception as exc:
            self.store.give_back(user, what="images", amount=request.num_images)
            self._not_started(user, record, what=("jobs", 1), exc=exc)
        return record

    def _not_started(self, user: str, record: JobRecord, *, what: tuple[str, int], exc: Exception) -> None:
        log.exception("job could not be started", extra={"fields": {"job": record.id}})
        record.state = "failed"
        record.error = {"code": "unavailable", "message": "the job could not be started; try again", "field": None}
        self.store.put_job(user, record)
        self.store.give_back(user, what=what[0], amount=what[1])
        raise UnavailableError("the job could not be started; try again in a minute") from exc

    # Reading --------------------------------------------------------------------------------------------------

    def get(self, user: str, job_id: str) -> dict[str, Any]:
        """This user's job with its current state; NotFoundError for unknown ids and other users' jobs."""
        record = self.store.get_job(user, job_id) if JOB_ID.match(job_id) else None
        if record is None:
            raise NotFoundError(f"no job {job_id}", field="id")
        return self._refreshed(user, record)

    def list(self, user: str) -> list[dict[str, Any]]:
        """This user's newest jobs first, each with its current state."""
        return [self._refreshed(user, record) for record in self.store.list_jobs(user)]

    def _refreshed(self, user: str, record: JobRecord) -> dict[str, Any]:
        instances = None
        if not record.finished:
            if record.kind == "generate" or record.media == "video":
                instances = self._refresh_async(record)
            else:
                self._refresh_image(record)
            if record.finished:
                self.store.put_job(user, record)
        return self.view(record, instances=instances)

    def _json(self, bucket: str, key: str) -> dict[str, Any] | None:
        """A JSON object from S3, or None when it is not there (yet)."""
        text = self._text(bucket, key)
        if text is None:
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def _text(self, bucket: str, key: str) -> str | None:
        return read_text(self.s3, bucket=bucket, key=key)

    def _exists(self, bucket: str, key: str) -> bool:
        return head(self.s3, bucket=bucket, key=key) is not None

    def _apply_progress(self, record: JobRecord) -> dict[str, Any] | None:
        """Read the cartoonizer's progress JSON next to the result into the record (running or failed)."""
        assert record.output_key is not None
        progress = self._json(self.settings.outputs_bucket, cartoon_contract.progress_key(record.output_key))
        if progress is None:
            return None
        state = progress.get(cartoon_contract.PROGRESS_STATE)
        if state == "failed":
            record.state, record.error = "failed", progress_error(progress.get(cartoon_contract.PROGRESS_ERROR))
            return progress
        done = progress.get(cartoon_contract.PROGRESS_FRAMES_DONE)
        total = progress.get(cartoon_contract.PROGRESS_FRAMES_TOTAL)
        fraction = min(done / total, 1.0) if isinstance(done, int) and isinstance(total, int) and total > 0 else 0.0
        eta = progress.get(cartoon_contract.PROGRESS_ETA_S)
        record.state = "running"
        # A "done" progress is written before the result is uploaded; the job is done once the result is there.
        record.progress = {
            "fraction": round(min(fraction, 0.99), 4),
            "frames_done": done if isinstance(done, int) else None,
            "frames_total": total if isinstance(total, int) else None,
            "eta_s": float(eta) if isinstance(eta, int | float) else None,
        }
        return progress

    def _finish_cartoon(self, record: JobRecord) -> None:
        assert record.output_key is not None
        suffix = record.output_key[record.output_key.rfind(".") :]
        record.state = "done"
        record.results = [{"key": record.output_key, "content_type": RESULT_TYPES.get(suffix), "seed": None}]
        if record.progress is not None:
            record.progress = {**record.progress, "fraction": 1.0, "eta_s": 0.0}
            record.progress["frames_done"] = record.progress["frames_total"] = (
                record.progress["frames_total"] or record.progress["frames_done"]
            )
        else:
            record.progress = {"fraction": 1.0, "frames_done": None, "frames_total": None, "eta_s": 0.0}

    def _refresh_image(self, record: JobRecord) -> None:
        assert record.output_key is not None
        progress = self._apply_progress(record)
        if record.state == "failed":
            return
        if progress is not None:
            if progress.get(cartoon_contract.PROGRESS_STATE) == "done" and self._exists(
                self.settings.outputs_bucket, record.output_key
            ):
                self._finish_cartoon(record)
            return
        if self.clock() - record.created_ts > self.settings.stale_after_s:
            record.state = "failed"
            record.error = {
                "code": "stale",
                "message": f"the image job did not start within {self.settings.stale_after_s} s; please try again",
                "field": None,
            }

    def _failure(self, record: JobRecord) -> dict[str, Any] | None:
        """The error an async endpoint stored at the failure location, as {"code", "message", "field"}."""
        if not record.async_failure:
            return None
        text = self._text(*_split_uri(record.async_failure))
        if text is None:
            return None
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            field = body.get("field")
            if field is None and isinstance(body.get("fields"), list) and body["fields"]:
                field = body["fields"][0].get("field")
            code = body.get("error") if isinstance(body.get("error"), str) else "failed"
            return {"code": code, "message": body["message"][:MAX_ERROR_CHARS], "field": field}
        return {"code": "failed", "message": (text.strip() or "the job failed")[:MAX_ERROR_CHARS], "field": None}

    def _refresh_async(self, record: JobRecord) -> int | None:
        """Refine a video or generate job from its failure, output and progress objects; instance count if queued."""
        error = self._failure(record)
        if error is not None:
            record.state, record.error = "failed", error
            return None
        answer = self._json(*_split_uri(record.async_output)) if record.async_output else None
        if record.kind == "generate":
            if answer is not None:
                self._finish_generate(record, answer)
                return None
        else:
            if answer is not None and answer.get(cartoon_contract.PROGRESS_STATE) == "done":
                self._apply_progress(record)
                self._finish_cartoon(record)
                return None
            if self._apply_progress(record) is not None:
                return None
        if record.endpoint is None or record.async_output is None:
            return None
        instances = self.backends.instance_count(record.endpoint)
        record.state = "running" if record.kind == "generate" and instances else "queued"
        return instances

    def _finish_generate(self, record: JobRecord, answer: dict[str, Any]) -> None:
        results = []
        for image in answer.get("images") or []:
            uri = image.get("s3_uri") if isinstance(image, dict) else None
            if not isinstance(uri, str):
                continue
            bucket, key = _split_uri(uri)
            if bucket != self.settings.outputs_bucket:
                continue
            image_format = image.get("format", "png")
            content_type = "image/jpeg" if image_format == "jpeg" else "image/png"
            results.append({"key": key, "content_type": content_type, "seed": image.get("seed")})
        if not results:
            record.state = "failed"
            record.error = {"code": "failed", "message": "the endpoint answered without images", "field": None}
            return
        record.state, record.results = "done", results
        record.progress = {"fraction": 1.0, "frames_done": None, "frames_total": None, "eta_s": 0.0}

    # Presenting -----------------------------------------------------------------------------------------------

    def _link(self, key: str) -> str:
        return str(
            self.s3.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.settings.outputs_bucket, "Key": key},
                ExpiresIn=self.settings.link_expiry_s,
            )
        )

    def view(self, record: JobRecord, *, instances: int | None) -> dict[str, Any]:
        """The Job object of the API (docs/web-studio.md), with presigned links."""
        state = record.state
        if state == "queued" and instances == 0:
            state = "warming"
        source = None
        if record.input is not None:
            source = {
                "url": self._link(record.input["key"]),
                "content_type": record.input["content_type"],
                "filename": record.input["filename"],
            }
        results = [
            {"url": self._link(result["key"]), "content_type": result["content_type"], "seed": result["seed"]}
            for result in record.results
        ]
        return {
            "id": record.id,
            "kind": record.kind,
            "media": record.media,
            "created_at": record.created_at,
            "state": state,
            "progress": record.progress if state in ("running", "done") else None,
            "error": record.error if state == "failed" else None,
            "input": source,
            "results": results,
            "request": record.request,
            "licence": record.licence,
        }
