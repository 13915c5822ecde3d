"""A GPU that torch cannot use stops the endpoint and the training entry point at start, with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.common.gpu_check import GpuUnusableError, check_gpu_usable, driver_version, gpu_present

DRIVER_470 = (
    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  470.256.02  Thu May  2 14:37:44 UTC 2024\n"
    "GCC version:  gcc version 7.3.1 20180712 (Red Hat 7.3.1-17) (GCC)\n"
)


@pytest.fixture
def fake_gpu_host(tmp_path: Path) -> tuple[Path, Path]:
    """A /dev with NVIDIA device nodes and a /proc driver file of driver 470."""
    dev = tmp_path / "dev"
    dev.mkdir()
    for node in ("nvidia0", "nvidiactl", "nvidia-uvm"):
        (dev / node).touch()
    version = tmp_path / "version"
    version.write_text(DRIVER_470)
    return dev, version


def _check(dev: Path, version: Path, *, device: str = "auto", env: dict[str, str] | None = None, cuda: bool = False):
    check_gpu_usable(
        requested_device=device,
        environ=env or {},
        cuda_available=lambda: cuda,
        cuda_build="13.0",
        torch_version="2.13.0",
        dev_dir=dev,
        driver_file=version,
    )


def test_gpu_nodes_without_usable_cuda_fail_with_one_line_naming_driver_build_and_fix(fake_gpu_host) -> None:
    dev, version = fake_gpu_host
    with pytest.raises(GpuUnusableError) as error:
        _check(dev, version)
    message = str(error.value)
    assert "\n" not in message
    assert "NVIDIA driver 470.256.02" in message
    assert "torch 2.13.0 is CUDA 13.0, needs driver >= 580" in message
    assert "InferenceAmiVersion" in message and "device=cpu" in message


def test_cpu_only_when_asked_for_explicitly(fake_gpu_host) -> None:
    dev, version = fake_gpu_host
    _check(dev, version, device="cpu")  # explicit CPU: no error
    for device in ("auto", "cuda", "cuda:0"):
        with pytest.raises(GpuUnusableError):
            _check(dev, version, device=device)


def test_a_usable_gpu_or_no_gpu_at_all_passes(fake_gpu_host, tmp_path: Path) -> None:
    dev, version = fake_gpu_host
    _check(dev, version, cuda=True)
    empty = tmp_path / "empty-dev"
    empty.mkdir()
    (empty / "null").touch()
    _check(empty, version)  # a CPU machine with device=auto keeps running on the CPU


@pytest.mark.parametrize(
    ("value", "present"),
    [("all", True), ("0,1", True), ("GPU-1234", True), ("void", False), ("none", False), ("", False)],
)
def test_nvidia_visible_devices_counts_unless_void_none_or_empty(tmp_path: Path, value: str, present: bool) -> None:
    assert gpu_present(environ={"NVIDIA_VISIBLE_DEVICES": value}, dev_dir=tmp_path) is present


def test_control_nodes_alone_are_not_a_gpu(tmp_path: Path) -> None:
    (tmp_path / "nvidiactl").touch()
    assert not gpu_present(environ={}, dev_dir=tmp_path)
    (tmp_path / "nvidia0").touch()
    assert gpu_present(environ={}, dev_dir=tmp_path)


def test_driver_version_is_read_from_proc_and_absent_is_named(tmp_path: Path) -> None:
    version = tmp_path / "version"
    assert driver_version(version) is None
    version.write_text(DRIVER_470)
    assert driver_version(version) == "470.256.02"
    with pytest.raises(
        GpuUnusableError, match=r"driver unknown \(.*missing absent\); torch 2.13.0\+cpu is a CPU-only build"
    ):
        check_gpu_usable(
            requested_device="auto",
            environ={"NVIDIA_VISIBLE_DEVICES": "all"},
            cuda_available=lambda: False,
            cuda_build=None,
            torch_version="2.13.0+cpu",
            dev_dir=tmp_path,
            driver_file=tmp_path / "missing",
        )


def test_serve_exits_non_zero_at_start_on_an_unusable_gpu(monkeypatch, capsys) -> None:
    from runtime.endpoint import serve

    monkeypatch.setenv("NVIDIA_VISIBLE_DEVICES", "all")  # the CPU build of torch here cannot use it
    monkeypatch.delenv("GENART_DEVICE", raising=False)
    monkeypatch.setenv("GENART_COMPILE", "0")
    monkeypatch.setattr("uvicorn.Server.run", lambda _self: pytest.fail("serve must not start"))
    assert serve.main(["--tiny-random"]) == 4
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("serve: GPU present but torch cannot use it")


def test_training_entry_exits_non_zero_at_start_on_an_unusable_gpu(monkeypatch, tmp_path: Path, capsys) -> None:
    from runtime.pipeline.container import sagemaker_train

    config = tmp_path / "config"
    config.mkdir()
    (config / "hyperparameters.json").write_text(json.dumps({"kimg": "1"}))
    monkeypatch.setattr(sagemaker_train, "CONFIG_DIR", config)
    monkeypatch.setenv("NVIDIA_VISIBLE_DEVICES", "all")
    monkeypatch.setattr(sagemaker_train.os, "execvp", lambda *_: pytest.fail("training must not start"))
    with pytest.raises(SystemExit) as stop:
        sagemaker_train.main()
    assert stop.value.code == 4
    assert "train: GPU present but torch cannot use it" in capsys.readouterr().err
    (config / "hyperparameters.json").write_text(json.dumps({"kimg": "1", "device": "cpu"}))
    launched: list[list[str]] = []
    monkeypatch.setattr(sagemaker_train.os, "execvp", lambda _file, command: launched.append(command))
    sagemaker_train.main()  # device=cpu asked for explicitly: training starts on the CPU
    assert launched and "--device" in launched[0]
