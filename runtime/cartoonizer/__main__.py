"""`python -m runtime.cartoonizer INPUT OUTPUT`: see runtime/cartoonizer/cli.py."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
