"""The fixed list of selectable samplers, each built from the model's own scheduler config."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

_FACTORIES: dict[str, Callable[[Mapping[str, Any]], SchedulerMixin]] = {
    "pndm": lambda cfg: PNDMScheduler.from_config(cfg, skip_prk_steps=True),
    "ddim": lambda cfg: DDIMScheduler.from_config(cfg),
    "euler": lambda cfg: EulerDiscreteScheduler.from_config(cfg),
    "euler_a": lambda cfg: EulerAncestralDiscreteScheduler.from_config(cfg),
    "dpmpp_2m": lambda cfg: DPMSolverMultistepScheduler.from_config(cfg, algorithm_type="dpmsolver++", solver_order=2),
    "dpmpp_2m_karras": lambda cfg: DPMSolverMultistepScheduler.from_config(
        cfg, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True
    ),
    "lms": lambda cfg: LMSDiscreteScheduler.from_config(cfg),
    "unipc": lambda cfg: UniPCMultistepScheduler.from_config(cfg),
}

SCHEDULER_NAMES: tuple[str, ...] = ("default", *_FACTORIES)


def build_schedulers(default: SchedulerMixin) -> dict[str, SchedulerMixin]:
    """Return one scheduler instance per selectable name; "default" is the model's own scheduler."""
    config = default.config
    schedulers: dict[str, SchedulerMixin] = {"default": default}
    for name, factory in _FACTORIES.items():
        schedulers[name] = factory(config)
    return schedulers
