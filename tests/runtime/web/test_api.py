"""The API Lambda's routes and error codes against moto, with recording backends (docs/web-studio.md "API")."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from runtime.cartoonizer import contract as cartoon_contract
from runtime.web import contract
from runtime.web.api import handler as handler_module

from .conftest import ALICE, BOB, Api, make_event, png_bytes, upload

UPLOAD = contract.ROUTE_CREATE_UPLOAD
CREATE = contract.ROUTE_CREATE_JOB
LIST = contract.ROUTE_LIST_JOBS
GET = contract.ROUTE_GET_JOB
GENERATE = {"kind": "generate", "prompt": "a red cat", "width": 256, "height": 256, "steps": 4}


def _error(body: dict[str, Any]) -> tuple[str, str | None]:
    return body["error"]["code"], body["error"]["field"]


def _policy(fields: dict[str, str]) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(fields["policy"])))


# Uploads ---------------------------------------------------------------------------------------------------------


def test_upload_is_a_presigned_post_limited_to_the_callers_key_type_and_size(api: Api) -> None:
    status, body, _ = api.call(UPLOAD, body={"filename": "dir/cat.jpg", "content_type": "image/jpeg", "size": 1234})
    assert status == 201
    assert body["upload_id"].startswith("u-") and body["media"] == "image"
    assert body["max_bytes"] == api.settings.max_image_bytes and body["expires_in"] == api.settings.link_expiry_s
    key = body["fields"]["key"]
    assert key == f"{contract.UPLOADS_PREFIX}{ALICE}/{body['upload_id']}.jpg"
    assert body["fields"]["Content-Type"] == "image/jpeg"
    conditions = _policy(body["fields"])["conditions"]
    assert ["content-length-range", 1, api.settings.max_image_bytes] in conditions
    assert {"Content-Type": "image/jpeg"} in conditions
    assert {"key": key} in conditions and {"bucket": api.settings.outputs_bucket} in conditions


def test_video_upload_gets_the_video_limit(api: Api) -> None:
    status, body, _ = api.call(UPLOAD, body={"filename": "clip.mov", "content_type": "video/quicktime", "size": 10})
    assert status == 201 and body["media"] == "video" and body["fields"]["key"].endswith(".mov")
    assert ["content-length-range", 1, api.settings.max_video_bytes] in _policy(body["fields"])["conditions"]


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"filename": "a.gif", "content_type": "image/gif", "size": 10}, 415, "unsupported_type", "content_type"),
        ({"filename": "a.png", "content_type": "image/png", "size": 25_000_001}, 413, "too_large", "size"),
        ({"filename": "a.mp4", "content_type": "video/mp4", "size": 500_000_001}, 413, "too_large", "size"),
        ({"filename": "a.png", "content_type": "image/png", "size": 0}, 400, "invalid", "size"),
        ({"filename": "a.png", "content_type": "image/png", "size": "12"}, 400, "invalid", "size"),
        ({"filename": "a.png", "content_type": "image/png", "size": True}, 400, "invalid", "size"),
        ({"content_type": "image/png", "size": 12}, 400, "invalid", "filename"),
        ({"filename": "a.png", "content_type": "image/png", "size": 1, "acl": "public"}, 400, "invalid", "acl"),
        ("not json", 400, "invalid", "body"),
        ([1, 2], 400, "invalid", "body"),
    ],
)
def test_upload_errors_name_the_field(refusing_api: Api, body: Any, status: int, code: str, field: str) -> None:
    got_status, got, _ = refusing_api.call(UPLOAD, body=body)
    assert (got_status, *_error(got)) == (status, code, field)
    assert got["error"]["message"]


# Starting cartoonize jobs ----------------------------------------------------------------------------------------


def test_image_job_invokes_the_image_lambda_with_a_manifest_under_the_caller(api: Api) -> None:
    upload_id = upload(api, png_bytes())
    body = {"kind": "cartoonize", "upload_id": upload_id, "options": {"side_by_side": True}}
    status, answer, _ = api.call(CREATE, body=body)
    assert status == 202
    job = answer["job"]
    assert job["id"].startswith("j-") and job["kind"] == "cartoonize" and job["media"] == "image"
    assert job["state"] == "queued" and job["results"] == [] and job["licence"] == api.settings.licence
    assert job["request"] == {"upload_id": upload_id, "options": {"smooth": False, "side_by_side": True}}
    assert job["input"]["filename"] == "a.png" and job["input"]["content_type"] == "image/png"
    bucket = api.settings.outputs_bucket
    [manifest] = api.backends.images
    assert manifest["input"] == f"s3://{bucket}/{contract.UPLOADS_PREFIX}{ALICE}/{upload_id}.png"
    assert manifest["output"] == f"s3://{bucket}/{contract.CARTOON_RESULTS_PREFIX}{ALICE}/{job['id']}.png"
    assert manifest["options"] == {"smooth": False, "side_by_side": True}


def test_video_job_queues_an_async_invocation_with_its_manifest_in_s3(api: Api) -> None:
    upload_id = upload(api, b"\x00" * 64, content_type="video/mp4", name="clip.mp4")
    status, answer, _ = api.call(CREATE, body={"kind": "cartoonize", "upload_id": upload_id})
    assert status == 202 and answer["job"]["media"] == "video"
    [call] = api.backends.invocations
    job_id = answer["job"]["id"]
    assert call["endpoint"] == api.settings.video_endpoint and call["inference_id"] == job_id
    assert call["timeout_s"] == api.settings.video_invocation_timeout_s
    key = f"{contract.VIDEO_JOBS_PREFIX}{ALICE}/{job_id}.json"
    assert call["input_location"] == f"s3://{api.settings.outputs_bucket}/{key}"
    manifest = json.loads(api.s3.get_object(Bucket=api.settings.outputs_bucket, Key=key)["Body"].read())
    assert manifest["output"].endswith(f"{contract.CARTOON_RESULTS_PREFIX}{ALICE}/{job_id}.mp4")
    assert manifest["input"].endswith(f"{ALICE}/{upload_id}.mp4")


def test_cartoonize_checks_the_upload_in_the_bucket(api: Api) -> None:
    status, body, _ = api.call(UPLOAD, body={"filename": "a.png", "content_type": "image/png", "size": 10})
    pending = body["upload_id"]
    status, body, _ = api.call(CREATE, body={"kind": "cartoonize", "upload_id": pending})
    assert (status, *_error(body)) == (409, "not_uploaded", "upload_id")

    status, body, _ = api.call(CREATE, body={"kind": "cartoonize", "upload_id": "u-0123456789abcdef01234567"})
    assert (status, *_error(body)) == (404, "not_found", "upload_id")

    key = f"{contract.UPLOADS_PREFIX}{ALICE}/{pending}.png"
    api.s3.put_object(Bucket=api.settings.outputs_bucket, Key=key, Body=b"x" * 10, ContentType="text/html")
    status, body, _ = api.call(CREATE, body={"kind": "cartoonize", "upload_id": pending})
    assert (status, *_error(body)) == (415, "unsupported_type", "content_type")

    api.rebuild(**{contract.ENV_MAX_IMAGE_BYTES: "100"})
    api.s3.put_object(Bucket=api.settings.outputs_bucket, Key=key, Body=b"x" * 101, ContentType="image/png")
    status, body, _ = api.call(CREATE, body={"kind": "cartoonize", "upload_id": pending})
    assert (status, *_error(body)) == (413, "too_large", "size")
    assert api.backends.images == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "paint"}, "kind"),
        ({}, "kind"),
        ({"kind": "cartoonize"}, "upload_id"),
        ({"kind": "cartoonize", "upload_id": "../../etc"}, "upload_id"),
        ({"kind": "cartoonize", "upload_id": "u-0123456789abcdef", "options": {"smooth": "yes"}}, "options.smooth"),
        ({"kind": "cartoonize", "upload_id": "u-0123456789abcdef", "options": {"max_side": 9}}, "options.max_side"),
        ({**GENERATE, "prompt": "  "}, "prompt"),
        ({**GENERATE, "prompt": "x" * 1001}, "prompt"),
        ({**GENERATE, "negative_prompt": 3}, "negative_prompt"),
        ({**GENERATE, "width": 320}, "width"),
        ({**GENERATE, "height": 512}, "height"),
        ({**GENERATE, "width": 1024, "height": 1024}, "width"),
        ({**GENERATE, "steps": 51}, "steps"),
        ({**GENERATE, "steps": 0}, "steps"),
        ({**GENERATE, "steps": 2.5}, "steps"),
        ({**GENERATE, "seed": -1}, "seed"),
        ({**GENERATE, "seed": 2**32}, "seed"),
        ({**GENERATE, "num_images": 5}, "num_images"),
        ({**GENERATE, "guidance_scale": 7}, "guidance_scale"),
    ],
)
def test_job_request_errors_name_the_field(refusing_api: Api, body: dict[str, Any], field: str) -> None:
    status, answer, _ = refusing_api.call(CREATE, body=body)
    assert (status, *_error(answer)) == (400, "invalid", field)


# Generate --------------------------------------------------------------------------------------------------------


def test_generate_writes_the_endpoint_request_and_picks_a_seed(api: Api) -> None:
    status, answer, _ = api.call(CREATE, body={**GENERATE, "negative_prompt": "blurry", "num_images": 2})
    assert status == 202
    job = answer["job"]
    seed = job["request"]["seed"]
    assert isinstance(seed, int) and 0 <= seed < 2**32
    [call] = api.backends.invocations
    assert call["endpoint"] == api.settings.diffusion_endpoint and call["inference_id"] == job["id"]
    key = call["input_location"].split("/", 3)[3]
    assert key == f"{contract.GENERATE_JOBS_PREFIX}{ALICE}/{job['id']}.json"
    request = json.loads(api.s3.get_object(Bucket=api.settings.outputs_bucket, Key=key)["Body"].read())
    assert request == {
        "prompt": "a red cat",
        "negative_prompt": "blurry",
        "width": 256,
        "height": 256,
        "num_inference_steps": 4,
        "num_images": 2,
        "seed": seed,
        "output": "s3",
    }


def test_generate_keeps_a_given_seed(api: Api) -> None:
    status, answer, _ = api.call(CREATE, body={**GENERATE, "seed": 123})
    assert status == 202 and answer["job"]["request"]["seed"] == 123


def test_generate_is_unavailable_without_an_async_diffusion_endpoint(api: Api) -> None:
    api.rebuild(**{contract.ENV_DIFFUSION_ENDPOINT: " "})
    status, body, _ = api.call(CREATE, body=GENERATE)
    assert (status, body["error"]["code"]) == (503, "unavailable") and api.backends.invocations == []


def test_a_backend_that_cannot_start_answers_503_and_gives_the_allowance_back(api: Api) -> None:
    api.rebuild(**{contract.ENV_JOBS_PER_HOUR: "1"})
    api.backends.fail = True
    status, body, _ = api.call(CREATE, body=GENERATE)
    assert (status, body["error"]["code"]) == (503, "unavailable")
    api.backends.fail = False
    assert api.call(CREATE, body=GENERATE)[0] == 202


# Rate limits -----------------------------------------------------------------------------------------------------


def test_jobs_per_hour_are_limited_per_user_with_retry_after(api: Api) -> None:
    api.rebuild(**{contract.ENV_JOBS_PER_HOUR: "2"})
    api.app.store.clock = lambda: 3600.0 * 500_000 + 3000  # 3000 s into an hour: the next one starts in 600 s
    assert [api.call(CREATE, body=GENERATE)[0] for _ in range(2)] == [202, 202]
    status, body, headers = api.call(CREATE, body=GENERATE)
    assert (status, body["error"]["code"]) == (429, "rate_limited")
    assert (body["retry_after_s"], headers["Retry-After"]) == (600, "600")
    assert api.call(CREATE, user=BOB, body=GENERATE)[0] == 202
    assert len(api.backends.invocations) == 3


def test_generated_images_per_hour_are_limited(api: Api) -> None:
    api.rebuild(**{contract.ENV_IMAGES_PER_HOUR: "5"})
    assert api.call(CREATE, body={**GENERATE, "num_images": 4})[0] == 202
    status, body, headers = api.call(CREATE, body={**GENERATE, "num_images": 2})
    assert status == 429 and body["error"]["code"] == "rate_limited" and "Retry-After" in headers
    assert api.call(CREATE, body={**GENERATE, "num_images": 1})[0] == 202


def test_uploads_per_hour_are_limited(api: Api) -> None:
    api.rebuild(**{contract.ENV_UPLOADS_PER_HOUR: "1"})
    body = {"filename": "a.png", "content_type": "image/png", "size": 10}
    assert api.call(UPLOAD, body=body)[0] == 201
    status, answer, headers = api.call(UPLOAD, body=body)
    assert status == 429 and answer["error"]["code"] == "rate_limited" and int(headers["Retry-After"]) >= 1


# Reading jobs and isolation --------------------------------------------------------------------------------------


def test_users_only_ever_see_their_own_jobs_and_uploads(api: Api) -> None:
    upload_id = upload(api, png_bytes())
    status, answer, _ = api.call(CREATE, body={"kind": "cartoonize", "upload_id": upload_id})
    job_id = answer["job"]["id"]
    assert api.call(GET, job_id=job_id)[1]["job"]["id"] == job_id
    status, body, _ = api.call(GET, user=BOB, job_id=job_id)
    assert (status, *_error(body)) == (404, "not_found", "id")
    assert api.call(LIST, user=BOB)[1] == {"jobs": []}
    status, body, _ = api.call(CREATE, user=BOB, body={"kind": "cartoonize", "upload_id": upload_id})
    assert (status, body["error"]["code"]) == (404, "not_found")
    assert [job["id"] for job in api.call(LIST)[1]["jobs"]] == [job_id]


def test_list_is_newest_first_and_at_most_20(api: Api) -> None:
    api.rebuild(**{contract.ENV_JOBS_PER_HOUR: "30", contract.ENV_IMAGES_PER_HOUR: "30"})
    ids = []
    for _ in range(22):
        ids.append(api.call(CREATE, body=GENERATE)[1]["job"]["id"])
        time.sleep(0.002)
    jobs = api.call(LIST)[1]["jobs"]
    assert [job["id"] for job in jobs] == ids[::-1][:20]


def test_unknown_job_ids_and_routes_are_404(api: Api) -> None:
    assert api.call(GET, job_id="j-0123456789abcdef")[0] == 404
    assert api.call(GET, job_id="nonsense")[0] == 404
    status, body, _ = api.call("DELETE /api/jobs/{id}", job_id="j-0123456789abcdef")
    assert (status, body["error"]["code"]) == (404, "not_found")


def test_no_claims_is_401_like_api_gateway(api: Api) -> None:
    status, body, _ = api.call(LIST, user=None)
    assert (status, body) == (401, {"message": "Unauthorized"})


def test_unexpected_errors_are_500_without_details(api: Api) -> None:
    api.dynamodb.delete_table(TableName=api.settings.table)
    status, body, _ = api.call(LIST)
    assert status == 500 and body == {
        "error": {"code": "internal_error", "message": body["error"]["message"], "field": None}
    }
    assert "Table" not in body["error"]["message"] and "Traceback" not in body["error"]["message"]


# Job states derived from S3 --------------------------------------------------------------------------------------


def _put_json(api: Api, uri_or_key: str, document: Any) -> None:
    key = uri_or_key.split("/", 3)[3] if uri_or_key.startswith("s3://") else uri_or_key
    api.s3.put_object(Bucket=api.settings.outputs_bucket, Key=key, Body=json.dumps(document).encode())


def _image_job(api: Api) -> tuple[str, str]:
    upload_id = upload(api, png_bytes())
    job = api.call(CREATE, body={"kind": "cartoonize", "upload_id": upload_id})[1]["job"]
    output_key = api.backends.images[-1]["output"].split("/", 3)[3]
    return job["id"], output_key


def test_image_job_follows_its_progress_json_to_done_with_links(api: Api) -> None:
    job_id, output_key = _image_job(api)
    progress_key = cartoon_contract.progress_key(output_key)
    _put_json(api, progress_key, {"state": "running", "frames_done": 0, "frames_total": 1, "eta_s": None})
    job = api.call(GET, job_id=job_id)[1]["job"]
    assert job["state"] == "running" and job["progress"]["fraction"] == 0.0 and job["progress"]["frames_total"] == 1
    _put_json(api, progress_key, {"state": "done", "frames_done": 1, "frames_total": 1, "eta_s": 0.0})
    assert api.call(GET, job_id=job_id)[1]["job"]["state"] == "running"  # done is written before the upload
    api.s3.put_object(Bucket=api.settings.outputs_bucket, Key=output_key, Body=b"png", ContentType="image/png")
    job = api.call(GET, job_id=job_id)[1]["job"]
    assert job["state"] == "done" and job["progress"]["fraction"] == 1.0 and job["error"] is None
    [result] = job["results"]
    assert result["content_type"] == "image/png" and result["seed"] is None
    assert output_key in result["url"] and "X-Amz-Signature" in result["url"]
    assert job["input"]["url"].split("?")[0].endswith(".png")


@pytest.mark.parametrize(
    ("written", "code", "message"),
    [
        ("input: options.max_side must be >= 16", "failed", "input: options.max_side must be >= 16"),
        ("413 too_large: the image is 9000 px wide", "too_large", "the image is 9000 px wide"),
    ],
)
def test_image_job_failure_in_progress_is_reported(api: Api, written: str, code: str, message: str) -> None:
    job_id, output_key = _image_job(api)
    _put_json(api, cartoon_contract.progress_key(output_key), {"state": "failed", "error": written})
    job = api.call(GET, job_id=job_id)[1]["job"]
    assert job["state"] == "failed" and job["results"] == []
    assert job["error"] == {"code": code, "message": message, "field": None}


def test_image_job_without_progress_goes_stale(api: Api) -> None:
    job_id, _ = _image_job(api)
    assert api.call(GET, job_id=job_id)[1]["job"]["state"] == "queued"
    api.app.jobs.clock = lambda: time.time() + api.settings.stale_after_s + 1
    job = api.call(GET, job_id=job_id)[1]["job"]
    assert job["state"] == "failed" and "did not start" in job["error"]["message"]
    api.app.jobs.clock = time.time
    assert api.call(GET, job_id=job_id)[1]["job"]["state"] == "failed"  # stored once finished


def test_video_job_is_warming_then_running_then_done(api: Api) -> None:
    upload_id = upload(api, b"\x00" * 64, content_type="video/mp4", name="clip.mp4")
    job_id = api.call(CREATE, body={"kind": "cartoonize", "upload_id": upload_id})[1]["job"]["id"]
    api.backends.instances[api.settings.video_endpoint] = 0
    assert api.call(GET, job_id=job_id)[1]["job"]["state"] == "warming"
    api.backends.instances[api.settings.video_endpoint] = 1
    assert api.call(GET, job_id=job_id)[1]["job"]["state"] == "queued"
    output_key = f"{contract.CARTOON_RESULTS_PREFIX}{ALICE}/{job_id}.mp4"
    progress = {"state": "running", "frames_done": 30, "frames_total": 120, "eta_s": 9.5}
    _put_json(api, cartoon_contract.progress_key(output_key), progress)
    job = api.call(GET, job_id=job_id)[1]["job"]
    assert job["state"] == "running"
    assert job["progress"] == {"fraction": 0.25, "frames_done": 30, "frames_total": 120, "eta_s": 9.5}
    _put_json(api, api.backends.invocations[0]["output"], {"state": "done", "result": {"kind": "video"}})
    job = api.call(GET, job_id=job_id)[1]["job"]
    assert job["state"] == "done" and job["progress"]["fraction"] == 1.0
    assert job["results"][0]["content_type"] == "video/mp4"


def test_async_failure_object_fails_the_job_with_its_message(api: Api) -> None:
    upload_id = upload(api, b"\x00" * 64, content_type="video/mp4", name="clip.mp4")
    job_id = api.call(CREATE, body={"kind": "cartoonize", "upload_id": upload_id})[1]["job"]["id"]
    failure = {"error": "video_too_long", "message": "the video is 700 s; the limit is 600 s", "field": "input"}
    _put_json(api, api.backends.invocations[0]["failure"], failure)
    job = api.call(GET, job_id=job_id)[1]["job"]
    assert job["state"] == "failed"
    assert job["error"] == {"code": "video_too_long", "message": failure["message"], "field": "input"}


def test_generate_job_done_lists_images_with_seeds(api: Api) -> None:
    job = api.call(CREATE, body={**GENERATE, "seed": 7, "num_images": 2})[1]["job"]
    api.backends.instances[api.settings.diffusion_endpoint] = 0
    assert api.call(GET, job_id=job["id"])[1]["job"]["state"] == "warming"
    api.backends.instances[api.settings.diffusion_endpoint] = 1
    assert api.call(GET, job_id=job["id"])[1]["job"]["state"] == "running"
    bucket = api.settings.outputs_bucket
    images = [
        {"seed": 7 + i, "format": "png", "nsfw": False, "s3_uri": f"s3://{bucket}/diffusion/x/{i:02d}-{7 + i}.png"}
        for i in range(2)
    ]
    _put_json(api, api.backends.invocations[0]["output"], {"request_id": job["id"], "images": images})
    done = api.call(GET, job_id=job["id"])[1]["job"]
    assert done["state"] == "done" and [r["seed"] for r in done["results"]] == [7, 8]
    assert all(r["content_type"] == "image/png" and "diffusion/x/" in r["url"] for r in done["results"])


def test_the_lambda_handler_reads_its_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, aws_env: None
) -> None:
    monkeypatch.delenv(contract.ENV_TABLE, raising=False)
    monkeypatch.setattr(handler_module, "_state", {"configured": True})
    answer = handler_module.handler(make_event(LIST, user=ALICE))
    assert answer["statusCode"] == 500 and json.loads(answer["body"])["error"]["code"] == "internal_error"


def test_a_job_refused_by_the_jobs_allowance_does_not_use_up_images(api: Api) -> None:
    api.rebuild(**{contract.ENV_JOBS_PER_HOUR: "1", contract.ENV_IMAGES_PER_HOUR: "10"})
    assert api.call(CREATE, body={**GENERATE, "num_images": 2})[0] == 202
    assert api.call(CREATE, body={**GENERATE, "num_images": 3})[0] == 429
    items = api.dynamodb.query(
        TableName=api.settings.table,
        KeyConditionExpression="#u = :u AND begins_with(#s, :p)",
        ExpressionAttributeNames={"#u": contract.TABLE_PARTITION_KEY, "#s": contract.TABLE_SORT_KEY},
        ExpressionAttributeValues={":u": {"S": ALICE}, ":p": {"S": f"{contract.RATE_SORT_PREFIX}images#"}},
    )["Items"]
    assert [item["count"]["N"] for item in items] == ["2"]
    assert all(int(item[contract.TABLE_TTL_ATTRIBUTE]["N"]) > time.time() + 3600 for item in items)
