"""Generate step: grid + images from file/dir/model.tar.gz, ONNX verified before it is published."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from runtime.pipeline.quality.extractor import tiny_extractor
from runtime.pipeline.stylegan2 import generate
from runtime.pipeline.stylegan2.checkpoint import CHECKPOINT_FORMAT, GENERATOR_FILE, load_generator, save_atomic
from runtime.pipeline.stylegan2.export_onnx import OnnxMismatchError, random_generator


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SageMaker-style model folder holding generator.pt (as train.py writes it) for a tiny random generator."""
    folder = tmp_path_factory.mktemp("model")
    g = random_generator(resolution=16, seed=4)
    save_atomic(
        {"format": CHECKPOINT_FORMAT, "model_config": g.cfg.to_dict(), "nimg": 1500, "G_ema": g.state_dict()},
        folder / GENERATOR_FILE,
    )
    return folder


def test_writes_samples_and_publishes_verified_onnx(model_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(model_dir / GENERATOR_FILE, arcname=GENERATOR_FILE)
    out, publish = tmp_path / "samples", tmp_path / "publish"
    args = [
        "--checkpoint", str(archive), "--outdir", str(out), "--publish-dir", str(publish),
        "--num-images", "3", "--seed", "7", "--truncation", "0.5", "--grid", "3x2",
    ]  # fmt: skip
    assert generate.main(args) == 0  # the subprocess form is covered by the local-run test
    assert Image.open(out / "grid.png").size == (3 * 16, 2 * 16)
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"seed0007-0000{i}.png" for i in range(3)]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["onnx"]["verified"] is True and summary["onnx"]["max_abs_diff"] < 1e-3
    assert summary["kimg"] == 1.5 and summary["published"] == str(publish / "latest.onnx")
    assert (publish / "latest.onnx").read_bytes() == (out / "generator.onnx").read_bytes()

    # The published model reproduces the saved sample images from the same seed and truncation.
    latents = torch.randn(6, 512, generator=torch.Generator().manual_seed(7)).numpy()
    session = ort.InferenceSession(str(publish / "latest.onnx"), providers=["CPUExecutionProvider"])
    (images,) = session.run(["images"], {"latents": latents[:3], "truncation": np.array([0.5], dtype=np.float32)})
    first = np.asarray(Image.open(out / "images" / "seed0007-00000.png"), dtype=np.float32)
    rendered = (np.clip(images[0], -1, 1) + 1) * 127.5
    assert np.abs(rendered.transpose(1, 2, 0) - first).max() <= 1.0


def test_failed_verification_does_not_publish(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def mismatch(*_args: object, **_kwargs: object) -> float:
        raise OnnxMismatchError("ONNX output differs from PyTorch by 0.5")

    monkeypatch.setattr(generate, "verify_onnx", mismatch)
    out, publish = tmp_path / "samples", tmp_path / "publish"
    rc = generate.main(
        ["--checkpoint", str(model_dir), "--outdir", str(out), "--publish-dir", str(publish), "--num-images", "1"]
    )
    assert rc == 1
    assert not (publish / "latest.onnx").exists()
    assert json.loads((out / "summary.json").read_text())["onnx"]["verified"] is False
    assert "not publishing" in capsys.readouterr().err


def test_missing_checkpoint_fails(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert generate.main(["--checkpoint", str(tmp_path / "empty"), "--outdir", str(tmp_path / "o")]) == 1


def test_load_generator_accepts_training_checkpoints(model_dir: Path, tmp_path: Path) -> None:
    state = torch.load(model_dir / GENERATOR_FILE, weights_only=True)
    save_atomic({**state, "nimg": 4000}, tmp_path / "ck" / "checkpoint-000000004000.pt")
    save_atomic({**state, "nimg": 2000}, tmp_path / "ck" / "checkpoint-000000002000.pt")
    generator, info = load_generator(tmp_path / "ck")
    assert info["kimg"] == 4.0 and generator.resolution == 16


def test_grid_argument_is_validated() -> None:
    assert generate.parse_grid("4x3") == (4, 3)
    with pytest.raises(Exception, match="4x4"):
        generate.parse_grid("four")


def test_format_1_generators_render_on_the_legacy_upsampling_path(tmp_path: Path) -> None:
    g = random_generator(resolution=16, seed=5)
    save_atomic({"format": 1, "model_config": g.cfg.to_dict(), "nimg": 0, "G_ema": g.state_dict()}, tmp_path / "g.pt")
    loaded, _ = load_generator(tmp_path / "g.pt")
    assert loaded.cfg.upsample == "bilinear"
    save_atomic({"format": 2, "model_config": g.cfg.to_dict(), "nimg": 0, "G_ema": g.state_dict()}, tmp_path / "h.pt")
    assert load_generator(tmp_path / "h.pt")[0].cfg.upsample == "transposed"


def test_scores_against_the_training_set_and_records_the_score_in_the_onnx(
    model_dir: Path, tmp_path: Path, synthetic_dataset: Path
) -> None:
    extractor = tiny_extractor(tmp_path / "extractor" / "extractor.pt")
    out, quality_dir = tmp_path / "samples", tmp_path / "quality"
    args = [
        "--checkpoint", str(model_dir), "--outdir", str(out), "--publish-dir", "", "--num-images", "2",
        "--reference", str(synthetic_dataset), "--extractor", str(extractor.parent),
        "--quality-dir", str(quality_dir), "--quality-samples", "12", "--quality-batch", "5",
    ]  # fmt: skip
    assert generate.main(args) == 0
    quality = json.loads((quality_dir / "quality.json").read_text())
    assert quality["finite"] == 1 and quality["fid"] > 0 and (quality["generated"], quality["reference"]) == (12, 12)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["quality"] == quality and summary["published"] is None
    metadata = {p.key: p.value for p in onnx.load(str(out / "generator.onnx")).metadata_props}
    assert float(metadata["fid"]) == pytest.approx(quality["fid"], abs=1e-4)
    assert metadata["quality_samples"] == "12"


def test_a_diverged_generator_is_scored_as_not_finite_and_not_exported(
    model_dir: Path, tmp_path: Path, synthetic_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = torch.load(model_dir / GENERATOR_FILE, weights_only=True)
    weights = state["G_ema"]
    name = next(key for key in weights if key.endswith("weight") and "synthesis" in key)
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_atomic(state, tmp_path / "diverged" / GENERATOR_FILE)
    extractor = tiny_extractor(tmp_path / "extractor.pt")
    out = tmp_path / "samples"
    args = [
        "--checkpoint", str(tmp_path / "diverged"), "--outdir", str(out), "--publish-dir", str(tmp_path / "pub"),
        "--num-images", "1", "--reference", str(synthetic_dataset), "--extractor", str(extractor),
        "--quality-samples", "4",
    ]  # fmt: skip
    assert generate.main(args) == 0  # the step measured; the pipeline's quality gate decides
    quality = json.loads((out / "quality.json").read_text())
    assert quality["finite"] == 0
    assert not (out / "generator.onnx").exists() and not (tmp_path / "pub").exists()
    assert "not finite" in capsys.readouterr().err


def test_reference_and_extractor_go_together() -> None:
    with pytest.raises(SystemExit):
        generate.parse_args(["--reference", "data"])
