"""The NVIDIA driver SageMaker GPU hosts run, and the newest CUDA build each driver runs (images must not be newer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CudaVersion = tuple[int, int]


@dataclass(frozen=True)
class HostDriver:
    """An NVIDIA driver branch and the newest CUDA major.minor it runs without compatibility packages."""

    driver: int
    max_cuda: CudaVersion

    def runs(self, cuda: CudaVersion) -> bool:
        """True when a build for `cuda` runs on this driver."""
        return cuda <= self.max_cuda


# Source: SageMaker API Reference, ProductionVariant, InferenceAmiVersion ("NVIDIA driver version", "CUDA version"
# of each AMI version); the same text ships in botocore's sagemaker service model, and tests/test_gpu_pairing.py
# fails when this table and the installed botocore disagree.
InferenceAmiVersion = Literal[
    "al2-ami-sagemaker-inference-gpu-2",
    "al2-ami-sagemaker-inference-gpu-2-1",
    "al2-ami-sagemaker-inference-gpu-3-1",
    "al2023-ami-sagemaker-inference-gpu-4-1",
]
INFERENCE_AMI_DRIVERS: dict[str, HostDriver] = {
    "al2-ami-sagemaker-inference-gpu-2": HostDriver(driver=535, max_cuda=(12, 2)),
    "al2-ami-sagemaker-inference-gpu-2-1": HostDriver(driver=535, max_cuda=(12, 2)),
    "al2-ami-sagemaker-inference-gpu-3-1": HostDriver(driver=550, max_cuda=(12, 4)),
    "al2023-ami-sagemaker-inference-gpu-4-1": HostDriver(driver=580, max_cuda=(13, 0)),
}
# Without an InferenceAmiVersion, real-time and asynchronous ml.g4dn/ml.g5/ml.p4d hosts run driver 470 (CUDA 11.4):
# SageMaker Developer Guide, "Best practices to minimize interruptions during GPU driver upgrades".
DEFAULT_INFERENCE_DRIVER = HostDriver(driver=470, max_cuda=(11, 4))
# The AMI our GPU images are built for: torch 2.13's PyPI wheels are CUDA 13.0 builds (driver >= 580).
GPU_INFERENCE_AMI_VERSION: InferenceAmiVersion = "al2023-ami-sagemaker-inference-gpu-4-1"

# SageMaker training hosts: AWS publishes no driver version for them (the GPU-driver page above covers inference
# only) and CreateTrainingJob has no AMI selection (no AMI member in botocore's sagemaker model). None means
# "unknown": the training entry point logs the host's driver and refuses to start on a GPU torch cannot use
# (runtime/common/gpu_check.py), so a mismatch fails in the first minute instead of after MaxRuntime.
TRAINING_HOST_DRIVER: HostDriver | None = None


def inference_host_driver(ami_version: str | None) -> HostDriver:
    """The driver an inference variant gets: its AMI version's, or SageMaker's default without one."""
    if ami_version is None:
        return DEFAULT_INFERENCE_DRIVER
    if ami_version not in INFERENCE_AMI_DRIVERS:
        known = sorted(INFERENCE_AMI_DRIVERS)
        raise ValueError(f"inference_ami_version: unknown GPU AMI version {ami_version!r}; known: {known}")
    return INFERENCE_AMI_DRIVERS[ami_version]
