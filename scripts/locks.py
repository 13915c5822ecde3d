"""Runtime locks (locks.toml): `make lock` compiles them with uv; the tests and the CI smoke runs read them.

python scripts/locks.py                 # regenerate every runtime's requirements.txt
python scripts/locks.py --only bot      # one runtime
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG = REPO_ROOT / "locks.toml"
CONSTRAINTS = REPO_ROOT / "constraints.txt"
LOCK_NAME = "requirements.txt"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
_HEADER = "# python {python}; platforms: {platforms}"


def normalize(name: str) -> str:
    """PEP 503 normal form of a distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class RuntimeLock:
    """One runtime's requirements.in and the lock `make lock` writes beside it."""

    name: str
    source: Path
    platforms: tuple[str, ...]
    python: str

    @property
    def path(self) -> Path:
        """The lock file: requirements.txt beside requirements.in."""
        return self.source.with_name(LOCK_NAME)

    @property
    def header(self) -> str:
        """First line of the lock: what it was resolved for (a test compares it with locks.toml)."""
        return _HEADER.format(python=self.python, platforms=", ".join(self.platforms))

    def pins(self) -> dict[str, str]:
        """Normalized name -> exact version of every package in the lock."""
        return parse_pins(self.path.read_text())

    def direct_pins(self) -> dict[str, str]:
        """The pins of requirements.in (direct dependencies)."""
        return parse_pins(self.source.read_text())


@dataclass(frozen=True)
class CpuOverride:
    """How CI installs a GPU image's lock on a CPU machine: GPU-only packages dropped, torch's CPU build."""

    requirement: str
    hash: str
    drop: tuple[str, ...]

    def drops(self, name: str) -> bool:
        """True for a GPU-only package the CPU set leaves out."""
        return any(fnmatch.fnmatch(normalize(name), pattern) for pattern in self.drop)

    def apply(self, lock_text: str) -> str:
        """The lock with torch swapped for the CPU build of the same version (hashes kept for all else)."""
        cpu_name, cpu_version = self.requirement.split("==")
        kept: list[str] = []
        skipping = False
        for line in lock_text.splitlines():
            pin = _PIN.match(line)
            if pin:
                name, version = normalize(pin[1]), pin[2]
                skipping = self.drops(name) or name == normalize(cpu_name)
                if name == normalize(cpu_name) and version != cpu_version.split("+")[0]:
                    raise ValueError(f"cpu_override: {self.requirement} is not the lock's {name}=={version}")
            elif not line.startswith((" ", "\t")):
                skipping = False
            if not skipping:
                kept.append(line)
        return "\n".join([*kept, f"{self.requirement} --hash={self.hash}", ""])


def load(config: Path = CONFIG) -> tuple[list[RuntimeLock], CpuOverride]:
    """Every runtime lock and the CPU override from locks.toml."""
    data = tomllib.loads(config.read_text())
    python = str(data["python"])
    locks = [
        RuntimeLock(
            name=str(entry["name"]),
            source=config.parent / str(entry["source"]),
            platforms=tuple(str(p) for p in entry["platforms"]),
            python=python,
        )
        for entry in data["locks"]
    ]
    override = data["cpu_override"]
    cpu = CpuOverride(
        requirement=str(override["requirement"]), hash=str(override["hash"]), drop=tuple(override["drop"])
    )
    return locks, cpu


def parse_pins(text: str) -> dict[str, str]:
    """Normalized name -> version of every `name==version` line (extras and markers ignored)."""
    pins: dict[str, str] = {}
    for line in text.splitlines():
        match = _PIN.match(re.sub(r"\[[^\]]*\]", "", line.strip()))
        if match:
            pins[normalize(match[1])] = match[2].rstrip(" \\;")
    return pins


def unhashed(text: str) -> list[str]:
    """Pins of a lock that carry no --hash (a lock installed with --require-hashes has none)."""
    missing: list[str] = []
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
    for block in blocks:
        match = _PIN.match(block)
        if match and "--hash=sha256:" not in block:
            missing.append(match[1])
    return missing


def _uv() -> list[str]:
    return [sys.executable, "-m", "uv"]


def compile_lock(lock: RuntimeLock) -> str:
    """Resolve lock.source for each platform; the resolutions must agree (one lock per runtime)."""
    bodies: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for platform in lock.platforms:
            out = Path(tmp) / f"{platform}.txt"
            command = [
                *_uv(), "pip", "compile", "--quiet", "--generate-hashes", "--no-header",
                "--annotation-style", "line", "--python-version", lock.python, "--python-platform", platform,
                "--constraints", str(CONSTRAINTS.relative_to(REPO_ROOT)),
                str(lock.source.relative_to(REPO_ROOT)), "--output-file", str(out),
            ]  # fmt: skip
            subprocess.run(command, check=True, cwd=REPO_ROOT)
            bodies[platform] = out.read_text()
    first, *others = lock.platforms
    for platform in others:
        if parse_pins(bodies[platform]) != parse_pins(bodies[first]):
            raise SystemExit(f"{lock.name}: resolves differently for {first} and {platform}; split the lock")
    return f"{lock.header}\n# generated by `make lock` (scripts/locks.py, uv) from {lock.source.name}\n{bodies[first]}"


def main(argv: Sequence[str] | None = None) -> int:
    """Regenerate the locks named (all by default)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", help="runtime name from locks.toml (repeatable)")
    args = parser.parse_args(argv)
    locks, _ = load()
    unknown = set(args.only or ()) - {lock.name for lock in locks}
    if unknown:
        parser.error(f"unknown runtime(s) {sorted(unknown)}; locks.toml has {[lock.name for lock in locks]}")
    for lock in locks:
        if args.only and lock.name not in args.only:
            continue
        lock.path.write_text(compile_lock(lock))
        print(f"{lock.name}: {len(lock.pins())} packages -> {lock.path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
