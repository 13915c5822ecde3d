"""Metric definitions parse the training log line, and the module stays importable without torch."""

from __future__ import annotations

import re
import subprocess
import sys

from runtime.pipeline.stylegan2.metrics import METRIC_DEFINITIONS, format_metrics

from .conftest import REPO


def test_definitions_parse_every_value() -> None:
    line = format_metrics(kimg=12.5, loss_g=-0.75, loss_d=1e-7, r1=0.03125, sec_per_kimg=3.5, pl=0.25, augment_p=0.125)
    assert line.startswith("[metrics] kimg=12.500 loss_G=")
    parsed = {d["Name"]: float(re.search(d["Regex"], f"2026-01-01 {line}").group(1)) for d in METRIC_DEFINITIONS}  # type: ignore[union-attr]
    assert parsed == {
        "kimg": 12.5,
        "loss_G": -0.75,
        "loss_D": 0.0,
        "r1": 0.03125,
        "sec_per_kimg": 3.5,
        "pl": 0.25,
        "augment_p": 0.125,
    }
    assert all(re.search(d["Regex"], "tick step 3 kimg 0.1/2.0") is None for d in METRIC_DEFINITIONS)


def test_metrics_module_does_not_import_torch() -> None:
    code = (
        "import sys, runtime.pipeline.stylegan2.metrics as m; assert m.METRIC_DEFINITIONS; "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, env={"PYTHONPATH": str(REPO)})
