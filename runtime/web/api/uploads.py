"""Presigned POST uploads into the caller's prefix, and the check that an upload arrived as announced."""

from __future__ import annotations

import secrets
from typing import Any

from .. import contract
from ..settings import WebSettings
from . import objects
from .errors import NotFoundError, NotUploadedError, TooLargeError, UnsupportedTypeError
from .models import UploadRequest, max_bytes_of, media_of
from .store import Store, UploadRecord, now_iso


def new_upload_id() -> str:
    """u- and 24 random hex digits."""
    return "u-" + secrets.token_hex(12)


def upload_key(user: str, upload_id: str, content_type: str) -> str:
    """contract.UPLOADS_PREFIX + <user>/<upload id><ext>."""
    ext = {**contract.IMAGE_CONTENT_TYPES, **contract.VIDEO_CONTENT_TYPES}[content_type]
    return f"{contract.UPLOADS_PREFIX}{user}/{upload_id}{ext}"


def create_upload(user: str, request: UploadRequest, *, settings: WebSettings, store: Store, s3: Any) -> dict[str, Any]:
    """Presign a POST that S3 only accepts for this key, this Content-Type and 1..max bytes; remember the upload."""
    upload_id = new_upload_id()
    key = upload_key(user, upload_id, request.content_type)
    max_bytes = max_bytes_of(request.media, settings)
    post = s3.generate_presigned_post(
        Bucket=settings.outputs_bucket,
        Key=key,
        Fields={"Content-Type": request.content_type},
        Conditions=[["content-length-range", 1, max_bytes], {"Content-Type": request.content_type}],
        ExpiresIn=settings.link_expiry_s,
    )
    store.put_upload(
        user,
        UploadRecord(
            id=upload_id,
            key=key,
            media=request.media,
            content_type=request.content_type,
            filename=request.filename,
            size=request.size,
            created_at=now_iso(),
        ),
    )
    return {
        "upload_id": upload_id,
        "media": request.media,
        "url": post["url"],
        "fields": post["fields"],
        "max_bytes": max_bytes,
        "expires_in": settings.link_expiry_s,
    }


def uploaded(user: str, upload_id: str, *, settings: WebSettings, store: Store, s3: Any) -> UploadRecord:
    """This user's upload, checked in the bucket: 404 unknown, 409 not there yet, 413 too big, 415 wrong type."""
    upload = store.get_upload(user, upload_id)
    if upload is None:
        raise NotFoundError(f"no upload {upload_id}", field="upload_id")
    head = objects.head(s3, bucket=settings.outputs_bucket, key=upload.key)
    if head is None:
        raise NotUploadedError(
            f"upload {upload_id} has not arrived; post the file to the upload URL first", field="upload_id"
        )
    size = int(head.get("ContentLength", 0))
    content_type = str(head.get("ContentType", "")).split(";")[0].strip().lower()
    if media_of(content_type) != upload.media:
        raise UnsupportedTypeError(
            f"the uploaded file is {content_type or 'untyped'}, not {upload.content_type}", field="content_type"
        )
    limit = max_bytes_of(upload.media, settings)
    if size > limit:
        raise TooLargeError(f"the uploaded {upload.media} is {size} bytes; the limit is {limit}", field="size")
    return upload
