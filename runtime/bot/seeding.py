"""Stable name -> seed -> latent mapping shared by every machine and release.

Normalization (documented contract, never change it without a major version bump):
1. Unicode NFKC (full-width and compatibility characters fold to their plain forms),
2. casefold (language-independent lower-casing, e.g. "Straße" == "STRASSE"),
3. every run of Unicode whitespace becomes one ASCII space, leading/trailing whitespace is stripped.
The seed is the first 8 bytes (big-endian) of sha256(b"genart-waifu-v1:" + utf-8 of the normalized name).
Latents are numpy PCG64(seed).standard_normal(512, dtype=float32), one row per face.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata

import numpy as np
import numpy.typing as npt

Z_DIM = 512
SEED_DOMAIN = b"genart-waifu-v1:"
_WHITESPACE = re.compile(r"\s+")


def normalize_name(name: str) -> str:
    """Return the canonical form of a name: NFKC, casefold, collapsed whitespace, stripped."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    return _WHITESPACE.sub(" ", folded).strip()


def seed_for_name(name: str) -> int:
    """Return the 64-bit seed of a name (sha256 of the normalized name; never Python's hash())."""
    digest = hashlib.sha256(SEED_DOMAIN + normalize_name(name).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def random_seed() -> int:
    """Return a fresh 64-bit seed from the OS entropy pool."""
    return secrets.randbits(64)


def latents_for_seed(seed: int, *, z_dim: int = Z_DIM) -> npt.NDArray[np.float32]:
    """Return the [1, z_dim] float32 standard-normal latent of a seed (numpy PCG64, stable across releases)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    return rng.standard_normal(z_dim, dtype=np.float32).reshape(1, z_dim)


def latents_for_seeds(seeds: list[int], *, z_dim: int = Z_DIM) -> npt.NDArray[np.float32]:
    """Return the stacked [len(seeds), z_dim] latents of several seeds."""
    if not seeds:
        return np.zeros((0, z_dim), dtype=np.float32)
    return np.concatenate([latents_for_seed(seed, z_dim=z_dim) for seed in seeds], axis=0)
