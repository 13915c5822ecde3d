"""The cartoonizer's job manifest and progress JSON, as the API writes and reads them.

The same names as runtime/cartoonizer/contract.py (a test keeps them equal): the API's zip carries runtime/web and
runtime/common only, not the cartoonizer.
"""

from __future__ import annotations

JOB_INPUT = "input"
JOB_OUTPUT = "output"
JOB_OPTIONS = "options"
PROGRESS_SUFFIX = ".progress.json"
PROGRESS_STATE = "state"
PROGRESS_FRAMES_DONE = "frames_done"
PROGRESS_FRAMES_TOTAL = "frames_total"
PROGRESS_ETA_S = "eta_s"
PROGRESS_ERROR = "error"


def progress_key(output_key: str) -> str:
    """Key of the progress JSON the cartoonizer writes next to an output."""
    return f"{output_key}{PROGRESS_SUFFIX}"
