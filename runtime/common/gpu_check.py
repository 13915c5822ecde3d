"""Refuse to start on a GPU that torch cannot use, instead of quietly running on the CPU (stdlib only)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

DEV_DIR = Path("/dev")
DRIVER_VERSION_FILE = Path("/proc/driver/nvidia/version")
# NVIDIA's container runtime exposes no GPU for these values of NVIDIA_VISIBLE_DEVICES.
_NO_GPU_VALUES = frozenset({"", "void", "none"})
# Minimum Linux driver branch of each CUDA major.minor (NVIDIA, CUDA Toolkit Release Notes, "CUDA Toolkit and
# Corresponding Driver Versions"); used to name the driver a build needs in the message.
MIN_DRIVER = {(11, 8): 520, (12, 0): 525, (12, 2): 535, (12, 4): 550, (12, 6): 560, (12, 8): 570, (13, 0): 580}
_DRIVER_RE = re.compile(r"Kernel Module\s+(?:for\s+\S+\s+)?(\d+(?:\.\d+)+)")
FIX = (
    "fix: give the host a driver for this CUDA build (SageMaker endpoint: InferenceAmiVersion, see "
    "infra/components/gpu_hosts.py) or install a torch build for the host's driver; "
    "device=cpu runs on the CPU on purpose"
)


class GpuUnusableError(RuntimeError):
    """A GPU is present but torch cannot use it; str() is the one line to print before exiting."""


def gpu_present(*, environ: Mapping[str, str], dev_dir: Path = DEV_DIR) -> bool:
    """True when the container was given an NVIDIA GPU: device nodes, or NVIDIA_VISIBLE_DEVICES naming one."""
    visible = environ.get("NVIDIA_VISIBLE_DEVICES")
    if visible is not None and visible.strip().lower() not in _NO_GPU_VALUES:
        return True
    return any(dev_dir.glob("nvidia[0-9]*"))


def driver_version(path: Path = DRIVER_VERSION_FILE) -> str | None:
    """The loaded NVIDIA kernel driver's version (e.g. "470.256.02"), or None when the file is absent."""
    try:
        text = path.read_text()
    except OSError:
        return None
    match = _DRIVER_RE.search(text)
    return match.group(1) if match else text.strip().splitlines()[0] if text.strip() else None


def needed_driver(cuda_build: str | None) -> str:
    """Human words for the driver a CUDA build needs ("driver >= 580"), or "" when unknown."""
    if not cuda_build:
        return ""
    try:
        major, minor = (int(part) for part in cuda_build.split(".")[:2])
    except ValueError:
        return ""
    fitting = [driver for (cuda, driver) in MIN_DRIVER.items() if cuda <= (major, minor)]
    return f", needs driver >= {max(fitting)}" if fitting else ""


def check_gpu_usable(
    *,
    requested_device: str,
    environ: Mapping[str, str],
    cuda_available: Callable[[], bool],
    cuda_build: str | None,
    torch_version: str,
    dev_dir: Path = DEV_DIR,
    driver_file: Path = DRIVER_VERSION_FILE,
) -> None:
    """Raise GpuUnusableError when a GPU is present, CPU was not asked for, and torch cannot use the GPU."""
    if requested_device.strip().lower() == "cpu" or not gpu_present(environ=environ, dev_dir=dev_dir):
        return
    if cuda_available():
        return
    driver = driver_version(driver_file)
    driver_text = f"NVIDIA driver {driver}" if driver else f"NVIDIA driver unknown ({driver_file} absent)"
    build = f"CUDA {cuda_build}{needed_driver(cuda_build)}" if cuda_build else "a CPU-only build"
    raise GpuUnusableError(
        f"GPU present but torch cannot use it: {driver_text}; torch {torch_version} is {build}; {FIX}"
    )


def check_torch_gpu(*, requested_device: str, environ: Mapping[str, str]) -> None:
    """check_gpu_usable against the installed torch (imported here, so callers stay importable without it)."""
    import torch  # noqa: PLC0415

    check_gpu_usable(
        requested_device=requested_device,
        environ=environ,
        cuda_available=torch.cuda.is_available,
        cuda_build=torch.version.cuda,
        torch_version=torch.__version__,
    )
