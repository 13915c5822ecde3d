"""Quality gate pieces: FID/KID maths, the TorchScript extractor convention, scoring a generator, the decision."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import numpy as np
import pytest
import torch
from moto import mock_aws

from runtime.common.hashing import sha256_of
from runtime.pipeline.quality import upload_extractor
from runtime.pipeline.quality.extractor import (
    ExtractorError,
    check_extractor,
    features_of,
    load_extractor,
    tiny_extractor,
)
from runtime.pipeline.quality.gate import decide
from runtime.pipeline.quality.measure import measure_quality
from runtime.pipeline.quality.scores import frechet_distance, kernel_inception_distance
from runtime.pipeline.stylegan2.contract import FEATURE_EXTRACTOR_KEY, PUBLISH_ALWAYS, UNMEASURED_SCORE


@pytest.fixture(scope="module")
def extractor_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_extractor(tmp_path_factory.mktemp("extractor") / "extractor.pt")


def reference_fid(real: np.ndarray, fake: np.ndarray) -> float:
    """The textbook formula, tr((S1 S2)^1/2) from the (real, non-negative) eigenvalues of the non-symmetric S1 S2."""
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    trace_root = float(np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)).sum())
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2) - 2 * trace_root)


def test_fid_matches_the_textbook_formula_and_a_pure_shift() -> None:
    rng = np.random.default_rng(0)
    real = rng.standard_normal((200, 6)) @ rng.standard_normal((6, 6))
    fake = rng.standard_normal((150, 6)) * 1.5 + 0.3
    assert frechet_distance(real, fake) == pytest.approx(reference_fid(real, fake), rel=1e-6)
    # Same covariance, mean moved by c: FID is exactly |c|^2.
    shift = np.array([1.0, -2.0, 0.0, 0.5, 0.0, 0.0])
    assert frechet_distance(real, real + shift) == pytest.approx(float(shift @ shift), rel=1e-6)
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)


def test_kid_is_the_unbiased_cubic_kernel_mmd() -> None:
    rng = np.random.default_rng(1)
    real, fake = rng.standard_normal((30, 4)), rng.standard_normal((30, 4)) + 1.0

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return float((a @ b / 4 + 1) ** 3)

    n = 30
    xx = sum(k(fake[i], fake[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(real[i], real[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(fake[i], real[j]) for i in range(n) for j in range(n)) / (n * n)
    # One subset holding every sample is the plain unbiased estimate.
    assert kernel_inception_distance(real, fake, subsets=1) == pytest.approx(xx + yy - 2 * xy, rel=1e-9)
    same = kernel_inception_distance(real, rng.standard_normal((30, 4)))
    assert abs(same) < kernel_inception_distance(real, fake) / 5


def test_scores_need_two_samples_of_the_same_width() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="same D"):
        kernel_inception_distance(np.zeros((5, 3)), np.zeros((5, 4)))


def test_tiny_extractor_follows_the_inception_calling_convention(extractor_file: Path) -> None:
    assert check_extractor(extractor_file) == 64
    assert check_extractor(extractor_file.parent) == 64  # a processing input downloads it into a folder
    module = load_extractor(extractor_file)
    images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    assert features_of(module, images).shape == (3, 64)
    assert module(images).shape == (3, 10)  # without return_features: logits, like the Inception file
    again = tiny_extractor(extractor_file.parent / "again.pt")
    assert np.array_equal(features_of(load_extractor(again), images), features_of(module, images))  # seeded


def test_unusable_extractors_are_refused_with_the_reason(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not torchscript")
    with pytest.raises(ExtractorError, match="not a TorchScript feature extractor"):
        check_extractor(garbage)

    class Flat(torch.nn.Module):
        def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
            return img.float().flatten()

    flat = tmp_path / "flat" / "extractor.pt"
    flat.parent.mkdir()
    torch.jit.script(Flat()).save(str(flat))
    with pytest.raises(ExtractorError, match="expected \\[N, D\\]"):
        check_extractor(flat)
    with pytest.raises(ExtractorError, match="upload_extractor"):
        check_extractor(tmp_path / "missing")


def images_as_render(reference: np.ndarray) -> object:
    """A 'generator' that draws training images in order (latent row i -> reference image i)."""
    counter = {"next": 0}

    def render(latents: torch.Tensor) -> torch.Tensor:
        start = counter["next"]
        counter["next"] += len(latents)
        chosen = torch.from_numpy(reference[start : start + len(latents)].astype(np.float32))
        return chosen / 127.5 - 1.0

    return render


def test_a_generator_that_draws_the_training_set_scores_best(extractor_file: Path) -> None:
    rng = np.random.default_rng(2)
    reference = rng.integers(0, 256, (24, 3, 16, 16), dtype=np.uint8)
    faithful = measure_quality(
        render=images_as_render(reference),  # type: ignore[arg-type]
        z_dim=8,
        reference=reference,
        extractor_path=extractor_file,
        samples=24,
        batch=5,
    )
    collapsed = measure_quality(
        render=lambda latents: torch.zeros(len(latents), 3, 16, 16),
        z_dim=8,
        reference=reference,
        extractor_path=extractor_file,
        samples=24,
        batch=5,
    )
    assert faithful.finite == collapsed.finite == 1
    assert faithful.fid == pytest.approx(0.0, abs=1e-3)
    assert collapsed.fid > 1.0 and collapsed.kid > faithful.kid
    assert (faithful.generated, faithful.reference, faithful.feature_dim) == (24, 24, 64)
    assert faithful.extractor_sha256 == sha256_of(extractor_file)


def test_a_diverged_generator_is_reported_as_not_finite(extractor_file: Path) -> None:
    report = measure_quality(
        render=lambda latents: torch.full((len(latents), 3, 16, 16), float("nan")),
        z_dim=8,
        reference=np.zeros((4, 3, 16, 16), dtype=np.uint8),
        extractor_path=extractor_file,
        samples=8,
    )
    data = report.to_json()
    assert data["finite"] == 0 and data["fid"] == data["kid"] == UNMEASURED_SCORE
    assert "not finite" in report.note
    json.dumps(data, allow_nan=False)  # valid JSON for the ConditionStep's JsonGet


@pytest.mark.parametrize(
    ("quality", "max_fid", "publish", "reason"),
    [
        ({"finite": 1, "fid": 30.0}, PUBLISH_ALWAYS, True, "any score publishes"),
        ({"finite": 1, "fid": 30.0}, 40.0, True, "FID 30.00 is below MaxFid 40"),
        ({"finite": 1, "fid": 30.0}, 30.0, False, "FID 30.00 is not below MaxFid 30"),
        ({"finite": 0, "fid": UNMEASURED_SCORE}, PUBLISH_ALWAYS, False, "not finite"),
        ({"finite": 0, "fid": UNMEASURED_SCORE}, 1e12, False, "not finite"),
    ],
)
def test_gate_decision(quality: dict[str, float], max_fid: float, publish: bool, reason: str) -> None:
    decision = decide(quality, max_fid=max_fid)
    assert decision.publish is publish and reason in decision.reason


def test_upload_helper_checks_then_uploads_with_digest(
    extractor_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="models")
        assert upload_extractor.main(["--bucket", "models", "--file", str(extractor_file)], s3=s3) == 0
        head = s3.head_object(Bucket="models", Key=FEATURE_EXTRACTOR_KEY)
        assert head["Metadata"] == {
            "sha256": sha256_of(extractor_file),
            "feature-dim": "64",
            "source-name": "extractor.pt",
        }
        assert "uploaded extractor.pt to s3://models/stylegan/feature-extractor/extractor.pt" in capsys.readouterr().out

        garbage = tmp_path / "inception.pt"
        garbage.write_bytes(b"<html>not found</html>")
        assert upload_extractor.main(["--bucket", "models", "--file", str(garbage), "--key", "other.pt"], s3=s3) == 1
        assert "not a TorchScript feature extractor" in capsys.readouterr().err
        assert s3.list_objects_v2(Bucket="models", Prefix="other.pt")["KeyCount"] == 0
        assert upload_extractor.main(["--bucket", "models", "--tiny", "--key", "tiny.pt"], s3=s3) == 0
        assert s3.head_object(Bucket="models", Key="tiny.pt")["Metadata"]["feature-dim"] == "64"
