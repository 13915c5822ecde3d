"""Every GPU image's CUDA build (from its lock) runs on the driver of the host the templates put it on."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import botocore
import pytest

from infra.components.gpu_hosts import (
    INFERENCE_AMI_DRIVERS,
    TRAINING_HOST_DRIVER,
    CudaVersion,
    HostDriver,
    inference_host_driver,
)
from scripts.locks import parse_pins
from tests.infra.synth import ENV_NAMES, REPO_ROOT, SynthesizedStack, opt_in_app, resources_of_type, synth_env

RUNTIME_DIR = REPO_ROOT / "runtime"
_GPU_INSTANCE = re.compile(r"ml\.(g|p)\d")
_CUDA_RUNTIME = re.compile(r"nvidia-cuda-runtime(-cu\d+)?")


def cuda_build(lock: Path) -> CudaVersion | None:
    """CUDA major.minor of the torch build a lock installs (its nvidia-cuda-runtime wheel), None without one."""
    versions = [v for name, v in parse_pins(lock.read_text()).items() if _CUDA_RUNTIME.fullmatch(name)]
    if not versions:
        return None
    major, minor = versions[0].split(".")[:2]
    return int(major), int(minor)


def image_locks(stack: SynthesizedStack) -> dict[str, Path]:
    """ECR repository name -> the lock its Dockerfile installs, from the stack's image assets."""
    outdir = Path(cdk.Stage.of(stack.stack).outdir)  # type: ignore[union-attr]
    manifest = json.loads((outdir / f"{stack.name}.assets.json").read_text())
    locks = {}
    for image in manifest.get("dockerImages", {}).values():
        dockerfile = (RUNTIME_DIR / image["source"]["dockerFile"]).read_text()
        copied = re.search(r"^COPY (\S+/requirements\.txt) ", dockerfile, re.MULTILINE)
        assert copied, f"{image['source']['dockerFile']} installs no runtime lock"
        for destination in image["destinations"].values():
            locks[destination["repositoryName"]] = RUNTIME_DIR / copied.group(1)
    return locks


def _repository(image_uri: Any) -> str:
    match = re.search(r"/([a-z0-9-]+/[a-z0-9-]+):", json.dumps(image_uri))
    assert match, image_uri
    return match.group(1)


def gpu_variants(stack: SynthesizedStack) -> list[tuple[str, str, str | None]]:
    """(repository, instance type, InferenceAmiVersion) of every GPU production variant of the stack."""
    resources = stack.json.get("Resources", {})
    found = []
    for config in resources_of_type(stack.json, "AWS::SageMaker::EndpointConfig").values():
        for variant in config["Properties"]["ProductionVariants"]:
            if not _GPU_INSTANCE.match(variant.get("InstanceType", "")):
                continue
            model = resources[variant["ModelName"]["Fn::GetAtt"][0]]["Properties"]
            found.append((_repository(model["PrimaryContainer"]["Image"]), variant["InstanceType"],
                          variant.get("InferenceAmiVersion")))  # fmt: skip
    return found


def _stacks() -> list[SynthesizedStack]:
    return [s for env in ENV_NAMES for s in synth_env(env).by_name.values()] + list(opt_in_app().by_name.values())


def test_every_gpu_variant_sets_an_ami_whose_driver_runs_its_images_cuda_build() -> None:
    checked = 0
    for stack in _stacks():
        locks = image_locks(stack)
        for repository, instance_type, ami in gpu_variants(stack):
            assert ami is not None, f"{stack.name}: GPU variant ({instance_type}) sets no InferenceAmiVersion"
            cuda = cuda_build(locks[repository])
            host = inference_host_driver(ami)
            assert cuda is None or host.runs(cuda), (
                f"{stack.name}: image {repository} is a CUDA {cuda[0]}.{cuda[1]} build ({locks[repository].name} of "
                f"{locks[repository].parent.name}) but {ami} runs driver {host.driver}, at most CUDA "
                f"{host.max_cuda[0]}.{host.max_cuda[1]}"
            )
            checked += 1
    assert checked >= len(ENV_NAMES) + 1  # the Diffusion endpoint of every env and the real-time opt-in


def test_the_pairing_fails_for_a_host_too_old_for_the_endpoint_image() -> None:
    lock = RUNTIME_DIR / "endpoint" / "requirements.txt"
    cuda = cuda_build(lock)
    assert cuda == (13, 0)  # torch 2.13 from PyPI
    assert not inference_host_driver(None).runs(cuda)  # SageMaker's default driver 470 on ml.g5
    assert not inference_host_driver("al2-ami-sagemaker-inference-gpu-3-1").runs(cuda)
    assert inference_host_driver("al2023-ami-sagemaker-inference-gpu-4-1").runs(cuda)


def test_training_images_run_on_the_training_hosts_or_check_the_driver_at_start() -> None:
    stack = synth_env(ENV_NAMES[0]).by_name[f"GenArt-{ENV_NAMES[0]}-Pipeline"]
    (lock,) = set(image_locks(stack).values())
    cuda = cuda_build(lock)
    assert cuda is not None
    if TRAINING_HOST_DRIVER is not None:
        assert TRAINING_HOST_DRIVER.runs(cuda)
    # AWS publishes no training-host driver: the `train` entry point must check the GPU before it trains.
    dockerfile = (RUNTIME_DIR / "pipeline" / "Dockerfile").read_text()
    assert "exec python -m runtime.pipeline.container.sagemaker_train" in dockerfile
    source = (RUNTIME_DIR / "pipeline" / "container" / "sagemaker_train.py").read_text()
    assert source.index("check_torch_gpu(") < source.index("os.execvp(")


def _botocore_ami_doc() -> tuple[list[str], str]:
    model_dir = Path(botocore.__file__).parent / "data" / "sagemaker"
    (path,) = [p for p in model_dir.glob("*/service-2.json*")]
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    shapes = json.loads(raw)["shapes"]
    doc = shapes["ProductionVariant"]["members"]["InferenceAmiVersion"]["documentation"]
    return shapes["ProductionVariantInferenceAmiVersion"]["enum"], re.sub(r"<[^>]+>", " ", doc)


def test_the_ami_table_matches_the_production_variant_api_reference() -> None:
    values, doc = _botocore_ami_doc()
    assert {v for v in values if "-gpu-" in v} == set(INFERENCE_AMI_DRIVERS)  # a new AMI version gets a row
    for ami, host in INFERENCE_AMI_DRIVERS.items():
        section = re.search(re.escape(ami) + r"\s+Accelerator: GPU\s+NVIDIA driver version: (\d+)\S*\s+CUDA"
                            r"(?: driver)? version: (\d+)\.(\d+)", doc)  # fmt: skip
        assert section, f"{ami} not described in botocore's ProductionVariant.InferenceAmiVersion"
        assert host == HostDriver(driver=int(section[1]), max_cuda=(int(section[2]), int(section[3]))), ami


@pytest.mark.parametrize("ami", sorted(INFERENCE_AMI_DRIVERS))
def test_config_accepts_every_known_ami_and_rejects_others(ami: str) -> None:
    from infra.config import ConfigError, load_config

    config = load_config({"x": {"diffusion": {"inference_ami_version": ami}}}, "x")
    assert config.diffusion.inference_ami_version == ami
    with pytest.raises(ConfigError, match=r"envs\.x\.diffusion\.inference_ami_version"):
        load_config({"x": {"diffusion": {"inference_ami_version": "al2-ami-sagemaker-inference-gpu-9"}}}, "x")
