"""Checkpoint files: atomic writes, newest-first discovery with fallback, pruning, and generator loading."""

from __future__ import annotations

import os
import re
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import torch

from .config import ModelConfig
from .networks import Generator

# Format 2: transposed-conv up-sampling and blur-then-stride-2 down-sampling (StyleGAN2's operators). Format 1
# files (bilinear up-sampling, blur-decimate-then-conv down-sampling) still load as generators, on the legacy path.
CHECKPOINT_FORMAT = 2
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)\.pt$")
GENERATOR_FILE = "generator.pt"


def checkpoint_path(directory: Path, nimg: int) -> Path:
    """Checkpoint file for a given number of training images shown."""
    return directory / f"checkpoint-{nimg:012d}.pt"


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints in directory, oldest first (half-written .tmp files never match)."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def prune(directory: Path, *, keep: int) -> list[Path]:
    """Delete all but the newest `keep` checkpoints; returns what was removed."""
    removed = list_checkpoints(directory)[:-keep] if keep > 0 else []
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def load_state(path: Path) -> dict[str, Any]:
    """Load a checkpoint or generator file onto the CPU (tensors and plain containers only)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "G_ema" not in state or "model_config" not in state:
        raise ValueError(f"{path} is not a StyleGAN2 checkpoint of this project")
    return state


def resolve_model_file(source: Path, workdir: Path) -> Path:
    """Find the generator to load in a file, a folder (generator.pt or newest checkpoint) or a model.tar.gz."""
    if source.is_file() and source.name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(source) as archive:
            archive.extractall(workdir, filter="data")
        return resolve_model_file(workdir, workdir)
    if source.is_file():
        return source
    if source.is_dir():
        direct = source / GENERATOR_FILE
        if direct.is_file():
            return direct
        archives = sorted(source.glob("*.tar.gz"))
        if archives:
            return resolve_model_file(archives[0], Path(tempfile.mkdtemp(dir=workdir)))
        nested = sorted(source.rglob(GENERATOR_FILE), key=lambda p: len(p.parts))
        if nested:
            return nested[0]
        checkpoints = list_checkpoints(source)
        if checkpoints:
            return checkpoints[-1]
    raise FileNotFoundError(f"no generator.pt, checkpoint-*.pt or model.tar.gz found at {source}")


def load_generator(source: Path) -> tuple[Generator, dict[str, Any]]:
    """The EMA generator (eval mode, CPU) from any supported source, plus its checkpoint info (kimg, config)."""
    with tempfile.TemporaryDirectory() as workdir:
        path = resolve_model_file(Path(source), Path(workdir))
        state = load_state(path)
    config = dict(state["model_config"])
    if int(state.get("format", 1)) < CHECKPOINT_FORMAT:
        config["upsample"] = "bilinear"  # trained with the legacy up-sampling: render it the way it was trained
    cfg = ModelConfig.from_dict(config)
    generator = Generator(cfg)
    generator.load_state_dict(state["G_ema"])
    info = {"kimg": float(state.get("nimg", 0)) / 1000.0, "model_config": cfg.to_dict(), "file": str(path)}
    return generator.eval().requires_grad_(False), info
