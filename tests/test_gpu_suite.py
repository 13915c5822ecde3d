"""bench/gpu_suite.sh stays runnable: valid bash, and every benchmark flag it passes still exists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "bench" / "gpu_suite.sh"


def test_suite_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(SUITE)], check=True)


@pytest.mark.parametrize("script", ["diffusion_bench.py", "stylegan2_bench.py", "cartoonizer_bench.py"])
def test_every_flag_the_suite_passes_is_accepted_by_the_benchmark(script: str) -> None:
    text = SUITE.read_text()
    used = {flag for line in text.splitlines() if f"bench/{script}" in line for flag in re.findall(r"--[a-z-]+", line)}
    # A continued command line carries more flags on the next line.
    for match in re.finditer(rf"bench/{re.escape(script)}[^\n]*\\\n([^\n]*)", text):
        used |= set(re.findall(r"--[a-z-]+", match.group(1)))
    assert used, script
    help_text = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--help"], check=True, capture_output=True, text=True
    ).stdout
    missing = sorted(flag for flag in used if flag not in help_text)
    assert missing == [], f"{script} no longer accepts {missing}"
