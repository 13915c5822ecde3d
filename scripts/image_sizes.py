"""Each runtime's download size estimated from its lock: the sum of its wheels for the production platform.

    python -m scripts.image_sizes            # uv resolves the locks again as PEP 751 pylock files (needs PyPI)

uv's pylock output names the one wheel each package installs on the platform, with its size; nothing is downloaded.
Wheels are compressed: the installed size is larger (about 1.5-2x for the CUDA libraries).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from scripts.locks import CONSTRAINTS, REPO_ROOT, RuntimeLock, load

MIB = 1024 * 1024


def wheel_sizes(pylock: dict[str, object]) -> dict[str, int]:
    """Package name -> size in bytes of the wheel a pylock file installs (the first wheel listed)."""
    sizes: dict[str, int] = {}
    packages = pylock.get("packages", [])
    assert isinstance(packages, list)
    for package in packages:
        wheels = package.get("wheels") or []
        if not wheels or "size" not in wheels[0]:
            raise ValueError(f"{package.get('name')}: no wheel with a size in the pylock file")
        sizes[str(package["name"])] = int(wheels[0]["size"])
    return sizes


def resolve_sizes(lock: RuntimeLock, platform: str) -> dict[str, int]:
    """Resolve lock.source for platform with uv (pinned by the lock via constraints) and return the wheel sizes."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pylock.sizes.toml"
        subprocess.run(
            [sys.executable, "-m", "uv", "pip", "compile", "--quiet", "--python-version", lock.python,
             "--python-platform", platform, "--constraints", str(lock.path), "--constraints", str(CONSTRAINTS),
             str(lock.source), "--output-file", str(out)],
            check=True, cwd=REPO_ROOT,
        )  # fmt: skip
        return wheel_sizes(tomllib.loads(out.read_text()))


def main() -> int:
    """Print the estimated download size of every runtime lock, largest packages first."""
    locks, _ = load()
    for lock in locks:
        for platform in lock.platforms:
            sizes = resolve_sizes(lock, platform)
            top = sorted(sizes.items(), key=lambda item: -item[1])[:3]
            largest = ", ".join(f"{name} {size / MIB:.0f}" for name, size in top)
            print(
                f"{lock.name:9} {platform:24} {sum(sizes.values()) / MIB:8.0f} MiB in {len(sizes):3} wheels ({largest})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
