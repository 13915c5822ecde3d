"""Validation of user-supplied command arguments (names, truncation psi, grid size) with friendly errors."""

from __future__ import annotations

import math
import re
import shlex
import unicodedata

from .errors import InputError
from .seeding import normalize_name

MAX_NAME_CHARS = 100
PSI_MIN = 0.0
PSI_MAX = 2.0
DEFAULT_PSI = 0.7
GRID_MIN = 1
GRID_MAX = 16
DEFAULT_GRID = 4
_QUOTES = "\"'`“”‘’«»„"
_OPENING_QUOTES = '"“«„'  # a name that starts with one of these must end with a quote too
_MARKDOWN = re.compile(r"([\\*_~|`>#\[\]()])")


def _strip_controls(text: str) -> str:
    return "".join(ch for ch in text if unicodedata.category(ch) not in {"Cc", "Cf"} or ch in "\t\n ")


def clean_name(raw: str | None) -> str | None:
    """Return the display form of a name (controls removed, one pair of surrounding quotes dropped), None if empty."""
    if raw is None:
        return None
    text = " ".join(_strip_controls(raw).split())
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    elif text and text[0] in _OPENING_QUOTES:
        raise InputError(f"The name starts with {text[0]} but has no closing quote: close it or leave it out.")
    if not normalize_name(text):
        return None
    if len(text) > MAX_NAME_CHARS:
        raise InputError(f"That name is too long: keep it to {MAX_NAME_CHARS} characters.")
    return text


def escape_markdown(text: str) -> str:
    """Escape Discord markdown so a name is shown literally."""
    return _MARKDOWN.sub(r"\\\1", text)


def parse_psi(raw: str | float | None) -> float:
    """Return a validated truncation psi; missing means the default."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return DEFAULT_PSI
    if isinstance(raw, str):
        text = raw.strip().strip(_QUOTES).strip()
        if re.fullmatch(r"[+-]?\d+,\d+", text):
            text = text.replace(",", ".")
        try:
            value = float(text)
        except ValueError:
            raise InputError(f"Truncation must be a number between {PSI_MIN:g} and {PSI_MAX:g}, e.g. `0.7`.") from None
    else:
        value = float(raw)
    if not math.isfinite(value):
        raise InputError(f"Truncation must be a finite number between {PSI_MIN:g} and {PSI_MAX:g}.")
    if not PSI_MIN <= value <= PSI_MAX:
        raise InputError(
            f"Truncation {value:g} is out of range: use {PSI_MIN:g} (average face) to {PSI_MAX:g} "
            "(wild); 0.5-1.0 looks best."
        )
    return value


def parse_count(raw: str | int | None) -> int:
    """Return a validated number of faces for a grid."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return DEFAULT_GRID
    try:
        value = int(raw.strip()) if isinstance(raw, str) else int(raw)
    except ValueError:
        raise InputError(f"The number of faces must be a whole number from {GRID_MIN} to {GRID_MAX}.") from None
    if not GRID_MIN <= value <= GRID_MAX:
        raise InputError(f"The number of faces must be from {GRID_MIN} to {GRID_MAX}.")
    return value


def slug(text: str, *, fallback: str) -> str:
    """Return a short ASCII filename fragment for a name."""
    ascii_only = unicodedata.normalize("NFKD", normalize_name(text)).encode("ascii", "ignore").decode("ascii")
    cleaned = re.sub(r"[^a-z0-9]+", "-", ascii_only).strip("-")[:40]
    return cleaned or fallback


def split_arguments(text: str, *, usage: str, most: int) -> list[str]:
    """Split prefix/console arguments like a shell (quotes group words); unterminated quotes are an error."""
    try:
        parts = shlex.split(text)
    except ValueError:
        raise InputError(
            f"Unterminated quote in `{text[:40]}`: close the quote or leave it out. Usage: {usage}"
        ) from None
    if len(parts) > most:
        raise InputError(f"Too many arguments. Usage: {usage}")
    return parts
