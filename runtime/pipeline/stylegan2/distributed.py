"""Data-parallel helpers for torchrun: process group setup, gradient averaging, collective flags."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True, kw_only=True)
class DistEnv:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes files and logs."""
        return self.rank == 0


def init_distributed(*, device: str | None = None) -> DistEnv:
    """Join the torchrun process group if WORLD_SIZE > 1 and pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    chosen = torch.device("cuda", local_rank) if use_cuda else torch.device(device or "cpu")
    if use_cuda:
        torch.cuda.set_device(chosen)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=chosen if use_cuda else None)
    return DistEnv(rank=rank, world_size=world_size, device=chosen)


def shutdown(env: DistEnv) -> None:
    """Leave the process group."""
    if env.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def average_gradients(params: Iterable[torch.nn.Parameter], env: DistEnv) -> None:
    """All-reduce gradients as one flat buffer (the job of DDP's wrapper, done by hand).

    DistributedDataParallel cannot wrap the discriminator because R1 needs torch.autograd.grad with
    create_graph=True, and it would also trip on the requires_grad toggling between G and D phases.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    if env.world_size == 1:  # the NaN/Inf guard holds on one GPU (and the CPU) too
        for grad in grads:
            torch.nan_to_num_(grad, nan=0.0, posinf=1e5, neginf=-1e5)
        return
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= env.world_size
    torch.nan_to_num_(flat, nan=0.0, posinf=1e5, neginf=-1e5)
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def average_(tensor: torch.Tensor, env: DistEnv) -> None:
    """In-place mean of a tensor over ranks (keeps buffers such as w_avg identical everywhere)."""
    if env.world_size > 1:
        dist.all_reduce(tensor)
        tensor /= env.world_size


def any_rank(flag: bool, env: DistEnv) -> bool:
    """True if the flag is set on any rank, so every rank stops at the same step."""
    if env.world_size == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=env.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def gather(obj: Any, env: DistEnv) -> list[Any]:
    """Every rank's object, in rank order."""
    if env.world_size == 1:
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def check_in_sync(modules: dict[str, torch.nn.Module], env: DistEnv) -> None:
    """Raise if any parameter or buffer differs between ranks (cheap insurance, run at each snapshot)."""
    if env.world_size == 1:
        return
    for name, module in modules.items():
        tensors = [t.detach().float().flatten() for t in (*module.parameters(), *module.buffers())]
        flat = torch.cat(tensors)
        low, high = flat.clone(), flat.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        if not torch.equal(low, high):
            raise RuntimeError(f"{name} diverged between ranks (max difference {float((high - low).max()):.3g})")
