"""Names the Pipeline stack passes to the notify function (no imports)."""

from __future__ import annotations

ENV_TOPIC_ARN = "TOPIC_ARN"
ENV_LINK_EXPIRY_SECONDS = "LINK_EXPIRY_SECONDS"
# Optional: the function logs at INFO unless this says otherwise.
ENV_LOG_LEVEL = "GENART_LOG_LEVEL"
DEFAULT_LINK_EXPIRY_SECONDS = 6 * 3600
# The sample grid inside a run's samples prefix (runtime/pipeline/stylegan2/contract.py SAMPLE_GRID_FILE).
SAMPLE_GRID_FILE = "grid.png"

# The function's code asset: the repository's runtime/ folder cut down to the `runtime` package, lambdas/ and
# the stdlib-only shared modules (glob excludes, later patterns win), so the handler imports runtime.common.
CODE_ASSET_DIR = "runtime"
CODE_ASSET_EXCLUDE = (
    "*",
    "!__init__.py",
    "!lambdas",
    "!lambdas/**",
    "!common",
    "!common/**",
    "common/settings.py",
    "**/__pycache__",
    "**/*.pyc",
)
HANDLER = "runtime.lambdas.notify.handler.handler"
