"""Persistent torch.compile caches so a restarted container does not pay full compilation again."""

from __future__ import annotations

import logging
import os
import tarfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MEGA_CACHE_FILE = "mega_cache.bin"
# What instances share through S3: the whole cache directory (mega-cache, Inductor and Triton caches).
ARCHIVE_FILE = "compile_cache.tar.gz"
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


def device_architecture(device: str) -> str:
    """GPU architecture the compiled kernels are for ("sm_90" on an H100), or "cpu"."""
    import torch  # noqa: PLC0415

    if not device.startswith("cuda") or not torch.cuda.is_available():
        return "cpu"
    major, minor = torch.cuda.get_device_capability(device)
    return f"sm_{major}{minor}"


def s3_cache_location(s3_uri: str, *, device: str, variant: str) -> tuple[str, str]:
    """(bucket, key) of the shared cache archive: <uri>torch-<version>/<arch>/<variant>/compile_cache.tar.gz.

    The URI names the model (s3://<models>/diffusion-compile-cache/<model name>/) and variant the dtype, compile
    mode and warmed shapes, so an archive is only offered to the same model, torch build, GPU architecture and
    configuration that produced it.
    """
    import torch  # noqa: PLC0415

    bucket, _, prefix = s3_uri.removeprefix("s3://").partition("/")
    arch = device_architecture(device)
    key = f"{prefix}torch-{torch.__version__}/{arch}/{variant}/{ARCHIVE_FILE}"
    return bucket, key


def download_compile_cache(*, bucket: str, key: str, cache_dir: Path, client: Any = None) -> bool:
    """Unpack the shared archive into cache_dir unless this instance has a mega-cache already; True if unpacked.

    The archive holds the whole cache directory: the mega-cache plus Inductor's and Triton's on-disk caches
    (on CPU the compiled C++ kernels live only there). Every instance uses the same GENART_COMPILE_CACHE_DIR.
    """
    if (cache_dir / MEGA_CACHE_FILE).is_file():
        return False
    s3 = client or _s3_client()
    archive = cache_dir.parent / f".{cache_dir.name}.download.tar.gz"
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(archive))
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(cache_dir, filter="data")
    except Exception as exc:  # no cache yet (404/403), S3 unreachable or a broken archive: compile from scratch
        log.info("no shared compile cache at s3://%s/%s (%s); compiling from scratch", bucket, key, exc)
        return False
    finally:
        archive.unlink(missing_ok=True)
    log.info("unpacked compile cache s3://%s/%s into %s", bucket, key, cache_dir)
    return True


def upload_compile_cache(*, bucket: str, key: str, cache_dir: Path, client: Any = None) -> bool:
    """Archive cache_dir and upload it for the next instance; failures are logged, never raised."""
    if not (cache_dir / MEGA_CACHE_FILE).is_file():
        return False
    archive = cache_dir.parent / f".{cache_dir.name}.upload.tar.gz"
    try:
        with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
            for path in sorted(cache_dir.iterdir()):
                tar.add(path, arcname=path.name)
        (client or _s3_client()).upload_file(str(archive), bucket, key)
        size = archive.stat().st_size
    except Exception:
        log.warning("could not upload compile cache to s3://%s/%s", bucket, key, exc_info=True)
        return False
    finally:
        archive.unlink(missing_ok=True)
    log.info("uploaded compile cache s3://%s/%s (%d bytes)", bucket, key, size)
    return True


def _s3_client() -> Any:
    import boto3  # noqa: PLC0415

    return boto3.client("s3")
