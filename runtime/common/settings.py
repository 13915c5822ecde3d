"""Environment settings with pydantic-settings: one base class, errors that name the environment variable.

Needs pydantic-settings (the bot and the endpoint ship it); the notify Lambda and the pipeline steps never import it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, Self

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import ConfigError

_ENVIRONMENT: ContextVar[Mapping[str, str] | None] = ContextVar("genart_settings_environment", default=None)
_BOOLEAN_WORDS = "0/1/true/false"


class _MappingEnvSource(EnvSettingsSource):
    """The env source, reading a given mapping instead of os.environ; blank values count as unset."""

    def __init__(self, settings_cls: type[BaseSettings], environment: Mapping[str, str]) -> None:
        self._environment = {key: value for key, value in environment.items() if value.strip()}
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return dict(self._environment)


def describe(error: ErrorDetails) -> str:
    """One line naming the variable and what is wrong, e.g. `GENART_MAX_BATCH must be >= 1, got 0`."""
    name = ".".join(str(part) for part in error["loc"]) or "environment"
    context: dict[str, Any] = dict(error.get("ctx") or {})
    got = error.get("input")
    kind = error["type"]
    reasons: dict[str, Callable[[], str]] = {
        "greater_than_equal": lambda: f"must be >= {context.get('ge')}",
        "greater_than": lambda: f"must be > {context.get('gt')}",
        "less_than_equal": lambda: f"must be <= {context.get('le')}",
        "less_than": lambda: f"must be < {context.get('lt')}",
        "multiple_of": lambda: f"must be a multiple of {context.get('multiple_of')}",
        "int_parsing": lambda: "must be an integer",
        "int_from_float": lambda: "must be an integer",
        "float_parsing": lambda: "must be a number",
        "finite_number": lambda: "must be a finite number",
        "bool_parsing": lambda: f"must be {_BOOLEAN_WORDS}",
        "literal_error": lambda: f"must be one of {context.get('expected')}",
        "missing": lambda: "must be set",
        "value_error": lambda: str(context.get("error", error["msg"])),
    }
    fallback = error["msg"][:1].lower() + error["msg"][1:]
    reason = reasons[kind]() if kind in reasons else fallback
    return f"{name} is required" if kind == "missing" else f"{name} {reason}, got {got!r}"


class EnvSettings(BaseSettings):
    """Base of each runtime's settings: fields name their variable with validation_alias; frozen once read."""

    model_config = SettingsConfigDict(
        case_sensitive=True, extra="ignore", frozen=True, populate_by_name=True, str_strip_whitespace=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments first, then the environment given to from_env (no .env files, no secrets dir)."""
        environment = _ENVIRONMENT.get()
        return (init_settings, _MappingEnvSource(settings_cls, os.environ if environment is None else environment))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """Read the settings from env (os.environ when None); ConfigError names every bad variable."""
        token = _ENVIRONMENT.set(os.environ if env is None else env)
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise ConfigError("; ".join(describe(error) for error in exc.errors())) from None
        finally:
            _ENVIRONMENT.reset(token)
