"""Training-side access to the dataset tool's output: a memory-mapped uint8 array sampled with a seeded generator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .dataset_tool import IMAGES_FILE, MANIFEST_FILE


def find_dataset_dir(root: Path) -> Path:
    """The folder holding images.npy: root itself or the shallowest folder below it (SageMaker channels may nest)."""
    if (root / IMAGES_FILE).is_file():
        return root
    candidates = sorted(root.rglob(IMAGES_FILE), key=lambda p: (len(p.parts), str(p)))
    if not candidates:
        raise FileNotFoundError(f"no {IMAGES_FILE} under {root}; run stylegan2.dataset_tool first")
    return candidates[0].parent


class ImageDataset:
    """uint8 images [N, 3, R, R] loaded with mmap; batches are drawn with replacement from a seeded generator."""

    def __init__(self, root: Path) -> None:
        self.directory = find_dataset_dir(root)
        manifest_path = self.directory / MANIFEST_FILE
        self.manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        self.images = np.load(self.directory / IMAGES_FILE, mmap_mode="r")
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"{self.directory / IMAGES_FILE} must be uint8 [N, 3, R, R], got {self.images.shape}")
        if self.images.shape[2] != self.images.shape[3] or len(self.images) == 0:
            raise ValueError(f"{self.directory / IMAGES_FILE} must hold square images, got {self.images.shape}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def resolution(self) -> int:
        """Side length of the stored images."""
        return int(self.images.shape[2])

    def sample(self, batch: int, *, generator: torch.Generator, mirror: bool) -> torch.Tensor:
        """A uint8 batch [batch, 3, R, R]; with mirror, each image is flipped left-right with probability 1/2."""
        indices = torch.randint(len(self), (batch,), generator=generator).numpy()
        # Sorted indices read the memory map front to back; the order inside a batch does not matter.
        images = torch.from_numpy(np.ascontiguousarray(self.images[np.sort(indices)]))
        if mirror:
            flip = torch.rand(batch, generator=generator) < 0.5
            images = torch.where(flip[:, None, None, None], images.flip(3), images)
        return images
