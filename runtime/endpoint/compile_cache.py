"""Persistent torch.compile caches so a restarted container does not pay full compilation again."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

MEGA_CACHE_FILE = "mega_cache.bin"
MODEL_CACHE_SUBDIR = "compile_cache"


def configure_cache_env(cache_dir: Path) -> None:
    """Point Inductor's on-disk caches at cache_dir; call before torch compiles anything."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Assigned, not defaulted: importing torch in a parent process exports its own default cache dir.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir / "inductor")
    os.environ["TORCHINDUCTOR_FX_GRAPH_CACHE"] = "1"
    os.environ["TORCHINDUCTOR_AUTOGRAD_CACHE"] = "1"
    os.environ["TRITON_CACHE_DIR"] = str(cache_dir / "triton")
    try:
        import torch._inductor.config as inductor_config  # noqa: PLC0415

        inductor_config.fx_graph_cache = True
    except ImportError:  # pragma: no cover - torch builds without inductor
        log.warning("torch inductor unavailable; compile cache disabled")


def load_mega_cache(*, cache_dir: Path, model_dir: Path) -> Path | None:
    """Load a saved mega-cache (cache dir first, then one shipped in the model folder); return the file used."""
    import torch  # noqa: PLC0415

    loader = getattr(torch.compiler, "load_cache_artifacts", None)
    if loader is None:
        return None
    for candidate in (cache_dir / MEGA_CACHE_FILE, model_dir / MODEL_CACHE_SUBDIR / MEGA_CACHE_FILE):
        if candidate.is_file():
            try:
                loader(candidate.read_bytes())
            except Exception:  # a stale cache from another torch build is not fatal; compile from scratch
                log.warning("could not load compile cache %s; compiling from scratch", candidate, exc_info=True)
                continue
            log.info("loaded compile cache %s", candidate)
            return candidate
    return None


def save_mega_cache(cache_dir: Path) -> Path | None:
    """Save the compile artifacts of this process to cache_dir; return the file written."""
    import torch  # noqa: PLC0415

    saver = getattr(torch.compiler, "save_cache_artifacts", None)
    if saver is None:
        return None
    artifacts = saver()
    if not artifacts:
        return None
    data, _info = artifacts
    target = cache_dir / MEGA_CACHE_FILE
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
    except OSError:
        log.warning("could not write compile cache to %s", target, exc_info=True)
        return None
    log.info("saved compile cache %s (%d bytes)", target, len(data))
    return target
