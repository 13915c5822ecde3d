"""Entry point for `python -m bot` (EC2) and `python -m runtime.bot` (repository root)."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
