"""Entry point for `python -m runtime.bot` (EC2 app dir and the repository root alike)."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
