"""FID and KID between two sets of image features (numpy only, so the scores need no SciPy in the image)."""

from __future__ import annotations

import numpy as np

# StyleGAN2-ADA's KID settings: the mean of 100 unbiased MMD estimates on subsets of at most 1000 images.
KID_SUBSETS = 100
KID_MAX_SUBSET = 1000


def _check(real: np.ndarray, fake: np.ndarray) -> None:
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features must be [N, D] with the same D, got {real.shape} and {fake.shape}")
    if min(len(real), len(fake)) < 2:
        raise ValueError(f"at least 2 images per set are needed, got {len(real)} real and {len(fake)} generated")


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative round-off eigenvalues clipped)."""
    values, vectors = np.linalg.eigh(matrix)
    root: np.ndarray = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    return root


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """FID: |mu_r - mu_f|^2 + tr(S_r) + tr(S_f) - 2 tr((S_r S_f)^1/2) of Gaussians fitted to the features."""
    _check(real, fake)
    real, fake = real.astype(np.float64), fake.astype(np.float64)
    mean_diff = real.mean(axis=0) - fake.mean(axis=0)
    cov_real = np.atleast_2d(np.cov(real, rowvar=False))
    cov_fake = np.atleast_2d(np.cov(fake, rowvar=False))
    # tr((S_r S_f)^1/2) = tr((R S_f R)^1/2) with R = S_r^1/2: a symmetric PSD matrix, so eigvalsh applies.
    root = _psd_sqrt(cov_real)
    middle = root @ cov_fake @ root
    trace_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum())
    distance = float(mean_diff @ mean_diff + np.trace(cov_real) + np.trace(cov_fake) - 2.0 * trace_sqrt)
    return max(distance, 0.0)


def kernel_inception_distance(
    real: np.ndarray,
    fake: np.ndarray,
    *,
    subsets: int = KID_SUBSETS,
    max_subset: int = KID_MAX_SUBSET,
    seed: int = 0,
) -> float:
    """KID: unbiased MMD^2 with the cubic polynomial kernel (x.y / D + 1)^3, averaged over random subsets."""
    _check(real, fake)
    real, fake = real.astype(np.float64), fake.astype(np.float64)
    dim = real.shape[1]
    size = min(len(real), len(fake), max_subset)
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(subsets):
        x = fake[rng.choice(len(fake), size, replace=False)]
        y = real[rng.choice(len(real), size, replace=False)]
        within = (x @ x.T / dim + 1) ** 3 + (y @ y.T / dim + 1) ** 3
        across = (x @ y.T / dim + 1) ** 3
        total += (within.sum() - np.diag(within).sum()) / (size - 1) - across.sum() * 2 / size
    return float(total / subsets / size)
