"""`train` entry point of the step image: SageMaker hyperparameters -> `python -m runtime.pipeline.stylegan2.train`.

The image's /usr/local/bin/train runs `python -m runtime.pipeline.container.sagemaker_train`.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...common.gpu_check import GpuUnusableError, check_torch_gpu, driver_version
from ..stylegan2.cli import configure_step_logging
from ..stylegan2.contract import ENV_OPT_ML, OPT_ML, step_module

LOG = logging.getLogger("stylegan2.train_entry")

# SageMaker's layout under /opt/ml; GENART_OPT_ML moves it (the local run emulates the container in a folder).
CONFIG_DIR = Path(OPT_ML) / "input" / "config"
TRAIN_CHANNEL = "train"
MASTER_PORT = 29500
# Flags this entry point sets from SageMaker's layout; a hyperparameter may not override them.
RESERVED_FLAGS = ("checkpoint-dir",)
# The seed's `data` and `outdir` hyperparameters: honoured when they point inside the channel / model folder
# (relative paths are taken relative to it), since SageMaker only downloads to and uploads from there.
PATH_FLAGS = ("data", "outdir")


def _unwrap(value: Any) -> str:
    """Some SDKs JSON-encode string values ('"paper256"'); unwrap them."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        value = json.loads(value)
    return str(value)


def hyperparameter_args(hyperparameters: Mapping[str, Any]) -> list[str]:
    """`--name value` pairs in a stable order; SDK-internal `sagemaker_*` keys and the path keys are dropped."""
    args: list[str] = []
    for name in sorted(hyperparameters):
        if name.startswith("sagemaker_"):
            continue
        flag = name.replace("_", "-")
        if flag in RESERVED_FLAGS:
            raise ValueError(f"hyperparameter {name!r} is set by the container from SageMaker's paths")
        if flag in PATH_FLAGS:
            continue
        args += [f"--{flag}", _unwrap(hyperparameters[name])]
    return args


def _inside(name: str, value: str, base: Path) -> str:
    path = Path(value) if Path(value).is_absolute() else base / value
    resolved = Path(os.path.normpath(path))
    if resolved != base and base not in resolved.parents:
        raise ValueError(f"hyperparameter {name!r}={value!r} must lie inside {base} (SageMaker's folder for it)")
    return str(resolved)


def opt_ml(environ: Mapping[str, str]) -> Path:
    """Root of the container layout: /opt/ml, or GENART_OPT_ML when set."""
    return Path(environ.get(ENV_OPT_ML) or OPT_ML)


def config_dir(environ: Mapping[str, str]) -> Path:
    """Where SageMaker writes hyperparameters.json and resourceconfig.json."""
    return opt_ml(environ) / "input" / "config" if environ.get(ENV_OPT_ML) else CONFIG_DIR


def path_args(environ: Mapping[str, str], hyperparameters: Mapping[str, Any] | None = None) -> list[str]:
    """Explicit data, model and checkpoint paths (BYO containers get no SM_* variables from the platform)."""
    root = opt_ml(environ)
    data = Path(environ.get("SM_CHANNEL_TRAIN", str(root / "input" / "data" / TRAIN_CHANNEL)))
    outdir = Path(environ.get("SM_MODEL_DIR", str(root / "model")))
    given = {k.replace("_", "-"): _unwrap(v) for k, v in (hyperparameters or {}).items()}
    data_arg = _inside("data", given["data"], data) if "data" in given else str(data)
    outdir_arg = _inside("outdir", given["outdir"], outdir) if "outdir" in given else str(outdir)
    return ["--data", data_arg, "--outdir", outdir_arg, "--checkpoint-dir", str(root / "checkpoints")]


def launch_command(
    args: Sequence[str], *, gpus: int, hosts: Sequence[str], current_host: str, python: str = sys.executable
) -> list[str]:
    """One process per GPU under torchrun when there is more than one GPU or host, else plain python."""
    module = ["-m", step_module("train"), *args]
    if len(hosts) <= 1 and gpus <= 1:
        return [python, *module]
    torchrun = ["torchrun", f"--nproc_per_node={max(gpus, 1)}"]
    if len(hosts) <= 1:
        return [*torchrun, "--standalone", *module]
    if current_host not in hosts:
        raise ValueError(f"current host {current_host!r} is not in the job's hosts {list(hosts)}")
    return [
        *torchrun,
        f"--nnodes={len(hosts)}",
        f"--node_rank={list(hosts).index(current_host)}",
        f"--master_addr={hosts[0]}",
        f"--master_port={MASTER_PORT}",
        *module,
    ]


def read_json(path: Path, default: dict[str, Any]) -> dict[str, Any]:
    """A SageMaker config file, or the default when running outside SageMaker."""
    if not path.exists():
        return default
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def gpu_count() -> int:
    """CUDA devices visible to this container."""
    import torch  # noqa: PLC0415 (only the training container needs torch, and only here)

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def requested_gpus(hyperparameters: Mapping[str, Any], visible: int) -> int:
    """GPUs to launch on: the `gpus` hyperparameter (at most the visible ones), else all visible."""
    if "gpus" not in hyperparameters:
        return visible
    wanted = int(_unwrap(hyperparameters["gpus"]))
    if wanted < 1 or (visible and wanted > visible):
        raise ValueError(f"hyperparameter 'gpus'={wanted} but {visible} GPU(s) are visible")
    return min(wanted, visible)


def main() -> None:
    """Build the training command from SageMaker's config files and exec it (signals reach it directly)."""
    configure_step_logging()
    config = config_dir(os.environ)
    hyperparameters = read_json(config / "hyperparameters.json", {})
    resources = read_json(config / "resourceconfig.json", {"hosts": ["algo-1"], "current_host": "algo-1"})
    args = [*path_args(os.environ, hyperparameters), *hyperparameter_args(hyperparameters)]
    # SageMaker publishes no driver version for training hosts: every run records the one it got.
    LOG.info(f"NVIDIA driver: {driver_version() or 'none'}", extra={"nvidia_driver": driver_version()})
    try:
        # Training on the CPU of a GPU host would run until MaxRuntime and leave no model: fail in the first minute.
        check_torch_gpu(requested_device=_unwrap(hyperparameters.get("device", "auto")), environ=os.environ)
    except GpuUnusableError as exc:
        print(f"train: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(4) from None
    gpus = requested_gpus(hyperparameters, gpu_count())
    command = launch_command(args, gpus=gpus, hosts=resources["hosts"], current_host=str(resources["current_host"]))
    LOG.info(f"launching {shlex.join(command)}", extra={"command": command})
    for handler in logging.getLogger().handlers:
        handler.flush()
    os.execvp(command[0], command)  # noqa: S606 (argument list, no shell)


if __name__ == "__main__":
    main()
