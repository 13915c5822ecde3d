"""Names the Pipeline stack passes to the notify function (no imports)."""

from __future__ import annotations

ENV_TOPIC_ARN = "TOPIC_ARN"
ENV_LINK_EXPIRY_SECONDS = "LINK_EXPIRY_SECONDS"
DEFAULT_LINK_EXPIRY_SECONDS = 6 * 3600
# The sample grid inside a run's samples prefix (runtime/pipeline/stylegan2/contract.py SAMPLE_GRID_FILE).
SAMPLE_GRID_FILE = "grid.png"
