"""Names the web studio's stack, API Lambda, page and local server share: env vars, routes, keys, fields (no imports).

docs/web-studio.md describes the API these names make up.
"""

from __future__ import annotations

# Environment variables of the API Lambda (runtime/web/settings.py reads them; the Cartoonizer stack sets them).
ENV_TABLE = "GENART_WEB_TABLE"  # DynamoDB table: jobs and per-user rate counters
ENV_OUTPUTS_BUCKET = "GENART_OUTPUTS_BUCKET"
ENV_IMAGE_FUNCTION = "GENART_WEB_IMAGE_FUNCTION"  # name or ARN of the cartoonizer image Lambda
ENV_VIDEO_ENDPOINT = "GENART_WEB_VIDEO_ENDPOINT"  # the cartoonizer's async endpoint
ENV_VIDEO_INVOCATION_TIMEOUT_S = "GENART_WEB_VIDEO_INVOCATION_TIMEOUT_S"
ENV_DIFFUSION_ENDPOINT = "GENART_WEB_DIFFUSION_ENDPOINT"  # empty: Generate is off (the Diffusion endpoint is not async)
ENV_MAX_IMAGE_BYTES = "GENART_WEB_MAX_IMAGE_BYTES"
ENV_MAX_VIDEO_BYTES = "GENART_WEB_MAX_VIDEO_BYTES"
ENV_UPLOADS_PER_HOUR = "GENART_WEB_UPLOADS_PER_HOUR"
ENV_JOBS_PER_HOUR = "GENART_WEB_JOBS_PER_HOUR"
ENV_IMAGES_PER_HOUR = "GENART_WEB_IMAGES_PER_HOUR"  # generated images per user and hour
ENV_MAX_GENERATE_SIDE = "GENART_WEB_MAX_GENERATE_SIDE"
ENV_MAX_GENERATE_STEPS = "GENART_WEB_MAX_GENERATE_STEPS"
ENV_MAX_GENERATE_IMAGES = "GENART_WEB_MAX_GENERATE_IMAGES"
ENV_LINK_EXPIRY_S = "GENART_WEB_LINK_EXPIRY_S"  # presigned POST and GET links
ENV_JOB_TTL_DAYS = "GENART_WEB_JOB_TTL_DAYS"  # job records expire (DynamoDB TTL) with the outputs they point at
ENV_STALE_AFTER_S = "GENART_WEB_STALE_AFTER_S"  # an image job with no progress after this long is failed
ENV_LICENCE = "GENART_WEB_LICENCE"  # the cartoonizer model's licence line shown beside results
ENV_LOG_LEVEL = "GENART_LOG_LEVEL"

# Routes of the HTTP API; CloudFront sends /api/* to it, so the page calls them on its own origin.
API_PATH_PREFIX = "/api"
ROUTE_CREATE_UPLOAD = "POST /api/uploads"
ROUTE_CREATE_JOB = "POST /api/jobs"
ROUTE_LIST_JOBS = "GET /api/jobs"
ROUTE_GET_JOB = "GET /api/jobs/{id}"
ROUTES = (ROUTE_CREATE_UPLOAD, ROUTE_CREATE_JOB, ROUTE_LIST_JOBS, ROUTE_GET_JOB)

# The page's runtime settings, written next to index.html at deploy time (and by `make web-local`).
PAGE_CONFIG_FILE = "config.json"
STATIC_DIR = "runtime/web/static"

# Keys in the outputs bucket; <user> is the caller's Cognito `sub` claim, so every key is per user.
UPLOADS_PREFIX = "cartoonizer/inputs/web/"  # + <user>/<upload id><ext>  (under the cartoonizer's inputs prefix)
CARTOON_RESULTS_PREFIX = "cartoonizer/results/web/"  # + <user>/<job id><ext>
VIDEO_JOBS_PREFIX = "async/cartoonizer/in/web/"  # + <user>/<job id>.json  (async endpoint input)
GENERATE_JOBS_PREFIX = "async/diffusion/in/web/"  # + <user>/<job id>.json  (async endpoint input)

# DynamoDB: partition key USER (the sub), sort key SORT ("job#<id>" or "rate#<what>#<hour>"), TTL on EXPIRES_AT.
TABLE_PARTITION_KEY = "user"
TABLE_SORT_KEY = "sort"
TABLE_TTL_ATTRIBUTE = "expires_at"

# Job kinds, media and states the API reports.
JOB_KINDS = ("cartoonize", "generate")
JOB_STATES = ("queued", "warming", "running", "done", "failed")
IMAGE_CONTENT_TYPES = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp"}
VIDEO_CONTENT_TYPES = {"video/mp4": ".mp4", "video/quicktime": ".mov"}

# Appended by the web-api helper (names the stack and the local server also need).
ENV_GENERATE_SIZES = "GENART_WEB_GENERATE_SIZES"  # "512x512,768x768": sizes Generate offers (the endpoint's buckets)
API_HANDLER = "runtime.web.api.handler.handler"
# The API Lambda is a plain zip of runtime/ limited to these files (stdlib + boto3, nothing to bundle).
CODE_ASSET_DIR = "runtime"
CODE_ASSET_EXCLUDE = (
    "*",
    "!__init__.py",
    "!web",
    "!web/__init__.py",
    "!web/contract.py",
    "!web/settings.py",
    "!web/api",
    "!web/api/**",
    "!common",
    "!common/__init__.py",
    "!common/jsonlog.py",
    "!cartoonizer",
    "!cartoonizer/__init__.py",
    "!cartoonizer/contract.py",
    "**/__pycache__",
    "**/*.pyc",
)
# DynamoDB sort keys: SORT is JOB_SORT_PREFIX + job id, UPLOAD_SORT_PREFIX + upload id or RATE_SORT_PREFIX + ...
JOB_SORT_PREFIX = "job#"
UPLOAD_SORT_PREFIX = "upload#"
RATE_SORT_PREFIX = "rate#"
