"""The fixed list of selectable samplers, each built from the model's own scheduler config."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import diffusers

# diffusers scheduler classes are untyped; handle them as Any.
_d: Any = diffusers
SchedulerMixin: TypeAlias = Any

_FACTORIES: dict[str, Callable[[Mapping[str, Any]], SchedulerMixin]] = {
    "pndm": lambda cfg: _d.PNDMScheduler.from_config(cfg, skip_prk_steps=True),
    "ddim": _d.DDIMScheduler.from_config,
    "euler": _d.EulerDiscreteScheduler.from_config,
    "euler_a": _d.EulerAncestralDiscreteScheduler.from_config,
    "dpmpp_2m": lambda cfg: _d.DPMSolverMultistepScheduler.from_config(
        cfg, algorithm_type="dpmsolver++", solver_order=2
    ),
    "dpmpp_2m_karras": lambda cfg: _d.DPMSolverMultistepScheduler.from_config(
        cfg, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True
    ),
    "lms": _d.LMSDiscreteScheduler.from_config,
    "unipc": _d.UniPCMultistepScheduler.from_config,
}

SCHEDULER_NAMES: tuple[str, ...] = ("default", *_FACTORIES)


def build_schedulers(default: SchedulerMixin) -> dict[str, SchedulerMixin]:
    """Return one scheduler instance per selectable name; "default" is the model's own scheduler."""
    config = default.config
    schedulers: dict[str, SchedulerMixin] = {"default": default}
    for name, factory in _FACTORIES.items():
        schedulers[name] = factory(config)
    return schedulers
