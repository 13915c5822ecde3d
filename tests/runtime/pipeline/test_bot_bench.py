"""bench/bot_bench.py --compare upsample: four exports, lockstep worker processes, ratios to the previous export."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_tiny_comparison_measures_all_four_exports(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    command = [sys.executable, str(REPO / "bench" / "bot_bench.py"), "--tiny", "--rounds", "3", "--batches", "1,2"]
    command += ["--threads", "1", "--workdir", str(tmp_path / "models"), "--json", str(out)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO, timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    result = json.loads(out.read_text())
    assert {"date", "cpu", "command", "load_average"} <= set(result["header"])
    rows = result["rows"]
    assert [(r["batch"], r["variant"]) for r in rows] == [
        (batch, variant)
        for batch in (1, 2)
        for variant in ("bilinear/current", "bilinear/optimized", "transposed/current", "transposed/optimized")
    ]
    for row in rows:
        assert len(row["images_per_s_rounds"]) == 3 and row["images_per_s_median"] > 0
        assert row["cpu_s_per_image_median"] > 0 and row["page_faults_per_call_median"] >= 0
        assert row["peak_rss_mib"] > 0
        baseline = next(r for r in rows if r["batch"] == row["batch"] and r["variant"] == "bilinear/current")
        assert row["ratio_images_per_s"] == pytest.approx(
            row["images_per_s_median"] / baseline["images_per_s_median"], abs=1e-3
        )
    # the up-sampling path changes the multiply-adds; the graph form does not
    gmac = {r["variant"]: r["gmac_per_image"] for r in rows}
    assert gmac["bilinear/current"] == gmac["bilinear/optimized"] > gmac["transposed/optimized"]
    assert "up-sampling alone" in completed.stdout


def test_cached_exports_are_keyed_by_the_exporter_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model exported by an older exporter must not be reused: its cache path changes with any source file."""
    spec = importlib.util.spec_from_file_location("bot_bench", REPO / "bench" / "bot_bench.py")
    assert spec is not None and spec.loader is not None
    bot_bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bot_bench)
    assert all(source.is_file() for source in bot_bench.EXPORTER_SOURCES)  # the real list names existing files
    sources = [tmp_path / "a.py", tmp_path / "b.py"]
    for source in sources:
        source.write_text("x = 1\n")
    monkeypatch.setattr(bot_bench, "EXPORTER_SOURCES", tuple(sources))
    before = bot_bench.cached_model(tmp_path, "paper256")
    assert before.parent == tmp_path and before.name.startswith("paper256-") and before.suffix == ".onnx"
    assert bot_bench.cached_model(tmp_path, "paper256") == before
    sources[1].write_text("x = 2\n")
    assert bot_bench.cached_model(tmp_path, "paper256") != before
