"""Settings of the web API Lambda, read from the contract's environment variables (stdlib only; errors name them)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from . import contract

T = TypeVar("T")

DEFAULT_LICENCE = "Cartoonizer model: White-box Cartoonization, CC BY-NC-SA 4.0 (non-commercial)"
# The Diffusion endpoint's default buckets (runtime/endpoint/settings.py DEFAULT_SIZES), kept if within the max side.
DEFAULT_GENERATE_SIZES = ((512, 512), (768, 768), (512, 768), (768, 512))
MAX_INVOCATION_TIMEOUT_S = 3600  # SageMaker's ceiling for InvocationTimeoutSeconds


class SettingsError(ValueError):
    """An environment variable is missing or unusable; the message names it."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class WebSettings:
    """Everything the API reads from its environment, validated once per container."""

    table: str
    outputs_bucket: str
    image_function: str
    video_endpoint: str
    diffusion_endpoint: str = ""
    video_invocation_timeout_s: int = MAX_INVOCATION_TIMEOUT_S
    max_image_bytes: int = 25_000_000
    max_video_bytes: int = 500_000_000
    uploads_per_hour: int = 30
    jobs_per_hour: int = 20
    images_per_hour: int = 40
    max_generate_side: int = 768
    max_generate_steps: int = 50
    max_generate_images: int = 4
    generate_sizes: tuple[tuple[int, int], ...] = ((512, 512), (768, 768), (512, 768), (768, 512))
    link_expiry_s: int = 3600
    job_ttl_days: int = 7
    stale_after_s: int = 300
    licence: str = DEFAULT_LICENCE
    log_level: str = "INFO"

    @property
    def generate_enabled(self) -> bool:
        """Generate needs an asynchronous Diffusion endpoint."""
        return bool(self.diffusion_endpoint)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WebSettings:
        """Read and check every variable; SettingsError names the first bad one."""
        env = {key: value for key, value in (os.environ if environ is None else environ).items() if value.strip()}

        def required(name: str) -> str:
            if name not in env:
                raise SettingsError(f"{name} is required")
            return env[name].strip()

        def integer(name: str, default: int, *, low: int, high: int | None = None) -> int:
            return _read(env, name, default, lambda text: _integer(name, text, low=low, high=high))

        max_side = integer(contract.ENV_MAX_GENERATE_SIDE, 768, low=64)
        if max_side % 8:
            raise SettingsError(f"{contract.ENV_MAX_GENERATE_SIDE} must be a multiple of 8, got {max_side}")
        default_sizes = tuple(size for size in DEFAULT_GENERATE_SIZES if max(size) <= max_side) or (
            (max_side, max_side),
        )
        sizes = _read(env, contract.ENV_GENERATE_SIZES, default_sizes, lambda text: _sizes(text, max_side=max_side))
        return cls(
            table=required(contract.ENV_TABLE),
            outputs_bucket=required(contract.ENV_OUTPUTS_BUCKET),
            image_function=required(contract.ENV_IMAGE_FUNCTION),
            video_endpoint=required(contract.ENV_VIDEO_ENDPOINT),
            diffusion_endpoint=env.get(contract.ENV_DIFFUSION_ENDPOINT, "").strip(),
            video_invocation_timeout_s=integer(
                contract.ENV_VIDEO_INVOCATION_TIMEOUT_S, MAX_INVOCATION_TIMEOUT_S, low=1, high=MAX_INVOCATION_TIMEOUT_S
            ),
            max_image_bytes=integer(contract.ENV_MAX_IMAGE_BYTES, 25_000_000, low=1),
            max_video_bytes=integer(contract.ENV_MAX_VIDEO_BYTES, 500_000_000, low=1),
            uploads_per_hour=integer(contract.ENV_UPLOADS_PER_HOUR, 30, low=1),
            jobs_per_hour=integer(contract.ENV_JOBS_PER_HOUR, 20, low=1),
            images_per_hour=integer(contract.ENV_IMAGES_PER_HOUR, 40, low=1),
            max_generate_side=max_side,
            max_generate_steps=integer(contract.ENV_MAX_GENERATE_STEPS, 50, low=1, high=500),
            max_generate_images=integer(contract.ENV_MAX_GENERATE_IMAGES, 4, low=1, high=16),
            generate_sizes=sizes,
            link_expiry_s=integer(contract.ENV_LINK_EXPIRY_S, 3600, low=60, high=7 * 24 * 3600),
            job_ttl_days=integer(contract.ENV_JOB_TTL_DAYS, 7, low=1),
            stale_after_s=integer(contract.ENV_STALE_AFTER_S, 300, low=1),
            licence=env.get(contract.ENV_LICENCE, DEFAULT_LICENCE).strip(),
            log_level=env.get(contract.ENV_LOG_LEVEL, "INFO").strip().upper(),
        )

    def page_config(self, *, auth_endpoint: str, client_id: str, local: bool = False) -> dict[str, Any]:
        """The page's config.json for these settings (contract.PAGE_CONFIG_FILE)."""
        return {
            "api_base": contract.API_PATH_PREFIX,
            "auth": {"endpoint": auth_endpoint, "client_id": client_id, "local": local},
            "limits": {
                "max_image_bytes": self.max_image_bytes,
                "max_video_bytes": self.max_video_bytes,
                "max_generate_side": self.max_generate_side,
                "max_generate_steps": self.max_generate_steps,
                "max_generate_images": self.max_generate_images,
                "generate_sizes": [list(size) for size in self.generate_sizes],
            },
            "generate_enabled": self.generate_enabled,
            "licence": self.licence,
        }


def _read(env: Mapping[str, str], name: str, default: T, parse: Callable[[str], T]) -> T:
    return parse(env[name].strip()) if name in env else default


def _integer(name: str, text: str, *, low: int, high: int | None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {text!r}") from None
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in {low}..{high}"
        raise SettingsError(f"{name} must be {bounds}, got {value}")
    return value


def _sizes(text: str, *, max_side: int) -> tuple[tuple[int, int], ...]:
    name = contract.ENV_GENERATE_SIZES
    sizes: list[tuple[int, int]] = []
    for part in (piece.strip().lower() for piece in text.split(",") if piece.strip()):
        width, sep, height = part.partition("x")
        if not (sep and width.isdigit() and height.isdigit()):
            raise SettingsError(f"{name} must list WIDTHxHEIGHT sizes (e.g. 512x512,768x768), got {part!r}")
        size = (int(width), int(height))
        if min(size) < 64 or max(size) > max_side or size[0] % 8 or size[1] % 8:
            raise SettingsError(
                f"{name}: {part} must have sides that are multiples of 8 in 64..{contract.ENV_MAX_GENERATE_SIDE}"
                f" ({max_side})"
            )
        sizes.append(size)
    if not sizes:
        raise SettingsError(f"{name} must list at least one WIDTHxHEIGHT size")
    return tuple(dict.fromkeys(sizes))
