"""The local pipeline run: same step scripts in order on CPU, ending in an ONNX generator the bot loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

from runtime.pipeline import local_run

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> local_run.LocalLayout:
    workdir = tmp_path_factory.mktemp("local-run")
    code = local_run.main(["--workdir", str(workdir), "--images", "12", "--kimg", "0.02", "--batch", "4"])
    assert code == 0
    return local_run.LocalLayout(workdir.resolve())


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_steps_hand_artifacts_over_like_the_pipeline(finished_run: local_run.LocalLayout) -> None:
    manifest = json.loads((finished_run.dataset / "manifest.json").read_text())
    assert (manifest["found"], manifest["written"], manifest["resolution"]) == (12, 12, 16)
    assert sorted(p.name for p in finished_run.checkpoints.glob("checkpoint-*.pt"))
    assert (finished_run.model / "config.json").is_file()
    with Image.open(finished_run.samples / "grid.png") as grid:
        assert grid.size == (4 * 16, 4 * 16)
    assert len(list((finished_run.samples / "images").glob("*.png"))) == 16
    notification = json.loads((finished_run.run / "notification.json").read_text())
    assert notification["model"] == str(finished_run.publish / "latest.onnx")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_published_generator_follows_the_onnx_contract(finished_run: local_run.LocalLayout) -> None:
    path = finished_run.publish / "latest.onnx"
    metadata = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert metadata["resolution"] == "16" and metadata["z_dim"] == "512"
    assert {"kimg", "created"} <= set(metadata)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    latents = np.random.default_rng(0).standard_normal((3, 512)).astype(np.float32)
    (images,) = session.run(["images"], {"latents": latents, "truncation": np.array([0.7], dtype=np.float32)})
    assert images.shape == (3, 3, 16, 16)
    assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bot_console_mode_loads_the_published_generator(finished_run: local_run.LocalLayout) -> None:
    out = finished_run.workdir / "bot-out"
    model = finished_run.publish / "latest.onnx"
    completed = subprocess.run(
        [*(sys.executable, "-m", "runtime.bot", "--console"), "--model", str(model), "--out", str(out)],
        input="$claim_waifu Asuka\n",
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    written = sorted(out.glob("*.png"))
    assert written, completed.stdout + completed.stderr


def test_synthetic_dataset_is_deterministic_per_seed(tmp_path: Path) -> None:
    first = local_run.draw_shapes_dataset(tmp_path / "a", count=3, seed=7)
    second = local_run.draw_shapes_dataset(tmp_path / "b", count=3, seed=7)
    other = local_run.draw_shapes_dataset(tmp_path / "c", count=3, seed=8)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert [p.read_bytes() for p in first] != [p.read_bytes() for p in other]
    with Image.open(first[0]) as image:
        assert image.size == (local_run.SOURCE_SIZE, local_run.SOURCE_SIZE) and image.mode == "RGB"


def test_a_failing_step_is_reported_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Resolution 3 is rejected by the dataset tool, so the first step fails and nothing else runs.
    code = local_run.main(["--workdir", str(tmp_path), "--images", "2", "--resolution", "3"])
    assert code == 1
    assert "step PrepareDataset failed with exit code 2" in capsys.readouterr().err
    assert not (tmp_path / "publish").exists()
