"""The local pipeline run: the entry points SageMaker calls, in the pipeline's order, on CPU; a good generator is
published and the bot loads it, a diverged one is held back by the quality gate with the reason."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

from runtime.pipeline import local_run
from runtime.pipeline.stylegan2.contract import TRAINING_HYPERPARAMETERS

REPO_ROOT = Path(__file__).resolve().parents[3]
TINY_RUN = ["--images", "12", "--kimg", "0.02", "--batch", "4"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> local_run.LocalLayout:
    workdir = tmp_path_factory.mktemp("local-run")
    assert local_run.main(["--workdir", str(workdir), *TINY_RUN]) == 0
    return local_run.LocalLayout(workdir.resolve())


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_steps_hand_artifacts_over_like_the_pipeline(finished_run: local_run.LocalLayout) -> None:
    # The input was one zip (the seed's Kaggle layout), unpacked by the dataset step.
    assert [p.name for p in finished_run.images.iterdir()] == ["shapes.zip"]
    manifest = json.loads((finished_run.dataset / "manifest.json").read_text())
    assert (manifest["found"], manifest["written"], manifest["resolution"]) == (12, 12, 16)
    # The image's `train` read hyperparameters.json (strings, the pipeline's names) from the emulated /opt/ml.
    opt_ml = finished_run.container("TrainStyleGAN2") / "opt" / "ml"
    written = json.loads((opt_ml / "input" / "config" / "hyperparameters.json").read_text())
    assert set(TRAINING_HYPERPARAMETERS) <= set(written) and all(isinstance(v, str) for v in written.values())
    assert sorted(p.name for p in finished_run.checkpoints.glob("checkpoint-*.pt"))  # synced to the prefix
    with tarfile.open(finished_run.model_archive) as archive:
        assert {"generator.pt", "config.json"} <= set(archive.getnames())
    # The export step got model.tar.gz itself (SageMaker does not unpack a processing input).
    model_input = finished_run.container("GenerateAndExport") / "opt/ml/processing/input/model"
    assert [p.name for p in model_input.iterdir()] == ["model.tar.gz"]
    with Image.open(finished_run.samples / "grid.png") as grid:
        assert grid.size == (4 * 16, 4 * 16)
    assert len(list((finished_run.samples / "images").glob("*.png"))) == 16
    quality = json.loads((finished_run.quality / "quality.json").read_text())
    assert quality["finite"] == 1 and quality["fid"] > 0 and quality["generated"] == 64


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_good_run_is_published_and_announced(finished_run: local_run.LocalLayout) -> None:
    assert finished_run.published.read_bytes() == (finished_run.samples / "generator.onnx").read_bytes()
    (message,) = sorted(finished_run.notifications.iterdir())
    assert message.name == "01-NotifyPublished.txt"
    text = message.read_text()
    assert "Status: Succeeded, generator published" in text and "Quality: FID " in text
    assert "Published generator: s3://genart-local-models/stylegan/latest.onnx (version " in text


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_published_generator_follows_the_onnx_contract(finished_run: local_run.LocalLayout) -> None:
    path = finished_run.published
    metadata = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert metadata["resolution"] == "16" and metadata["z_dim"] == "512"
    assert {"kimg", "created", "fid", "kid"} <= set(metadata)
    quality = json.loads((finished_run.quality / "quality.json").read_text())
    assert float(metadata["fid"]) == pytest.approx(quality["fid"], abs=1e-4)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    latents = np.random.default_rng(0).standard_normal((3, 512)).astype(np.float32)
    (images,) = session.run(["images"], {"latents": latents, "truncation": np.array([0.7], dtype=np.float32)})
    assert images.shape == (3, 3, 16, 16)
    assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bot_console_mode_loads_the_published_generator(finished_run: local_run.LocalLayout) -> None:
    out = finished_run.workdir / "bot-out"
    completed = subprocess.run(
        [
            *(sys.executable, "-m", "runtime.bot", "--console"),
            "--model",
            str(finished_run.published),
            "--out",
            str(out),
        ],
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


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_diverged_generator_is_not_published_and_the_message_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert local_run.main(["--workdir", str(tmp_path), *TINY_RUN, "--input-format", "tar", "--break-generator"]) == 0
    layout = local_run.LocalLayout(tmp_path.resolve())
    assert not layout.published.exists()
    assert not (layout.samples / "generator.onnx").exists()
    assert json.loads((layout.quality / "quality.json").read_text())["finite"] == 0
    (message,) = sorted(layout.notifications.iterdir())
    assert message.name == "01-NotifyNotPublished.txt"
    text = message.read_text()
    assert "Subject: GenArt StyleGAN2 run local trained but not published" in text
    assert "Why: the generated images are not finite (NaN or infinity): training diverged" in text
    assert "samples/grid.png?" in text  # the grid link, to see what went wrong
    assert "trained but not published: the generated images are not finite" in capsys.readouterr().out


def test_synthetic_dataset_is_deterministic_per_seed(tmp_path: Path) -> None:
    first = local_run.draw_shapes_dataset(tmp_path / "a", count=3, seed=7)
    second = local_run.draw_shapes_dataset(tmp_path / "b", count=3, seed=7)
    other = local_run.draw_shapes_dataset(tmp_path / "c", count=3, seed=8)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert [p.read_bytes() for p in first] != [p.read_bytes() for p in other]
    with Image.open(first[0]) as image:
        assert image.size == (local_run.SOURCE_SIZE, local_run.SOURCE_SIZE) and image.mode == "RGB"


def test_bad_parameters_fail_the_first_step_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Resolution 3 is refused by the validation step, before any job would start.
    code = local_run.main(["--workdir", str(tmp_path), "--images", "2", "--resolution", "3"])
    assert code == 1
    err = capsys.readouterr().err
    assert "step ValidateParameters failed: InputError: invalid pipeline parameters: Resolution must be" in err
    failure = (tmp_path / "notifications" / "failure.txt").read_text()
    assert "Failed step: ValidateParameters" in failure and "Failure reason: InputError: invalid pipeline" in failure
    assert not (tmp_path / "containers").exists()
    assert not local_run.LocalLayout(tmp_path).published.exists()


def test_batch_gpu_reaches_the_validation_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = local_run.main(["--workdir", str(tmp_path), "--images", "2", "--batch", "4", "--batch-gpu", "3"])
    assert code == 1
    assert "BatchGpu (3) must divide the batch per instance" in capsys.readouterr().err
    args = local_run.parse_args(["--workdir", str(tmp_path), "--batch-gpu", "2"])
    assert local_run.hyperparameters(args)["batch_gpu"] == "2"
    assert local_run.hyperparameters(local_run.parse_args(["--workdir", str(tmp_path)]))["batch_gpu"] == "0"
