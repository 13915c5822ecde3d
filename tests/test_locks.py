"""One hashed lock per runtime (locks.toml); the development environment runs the versions production runs."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

from scripts.locks import CONSTRAINTS, REPO_ROOT, RuntimeLock, load, normalize, parse_pins, unhashed

LOCKS, CPU = load()
BY_NAME = {lock.name: lock for lock in LOCKS}


def test_every_runtime_with_requirements_has_a_lock_entry() -> None:
    sources = {path.relative_to(REPO_ROOT) for path in (REPO_ROOT / "runtime").rglob("requirements.in")}
    assert sources == {lock.source.relative_to(REPO_ROOT) for lock in LOCKS}
    assert {"bot", "endpoint", "pipeline", "notify"} <= set(BY_NAME)


@pytest.mark.parametrize("lock", LOCKS, ids=lambda lock: lock.name)
def test_lock_is_complete_exact_and_hashed_for_its_platforms(lock: RuntimeLock) -> None:
    text = lock.path.read_text()
    # The header says what it was resolved for; editing locks.toml without `make lock` leaves it stale.
    assert text.splitlines()[0] == lock.header, f"{lock.path}: stale, run `make lock`"
    assert lock.python == "3.11"
    assert not unhashed(text), f"{lock.path}: pins without --hash"
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+!]*", version) for version in lock.pins().values())
    for name, version in lock.direct_pins().items():
        assert lock.pins().get(name) == version, f"{lock.path}: {name} is not the {version} requirements.in pins"


def test_bot_lock_is_resolved_for_both_bot_architectures() -> None:
    assert {p.split("-")[0] for p in BY_NAME["bot"].platforms} == {"x86_64", "aarch64"}
    assert all(p.startswith("aarch64") for p in BY_NAME["notify"].platforms)  # the notify Lambda is ARM_64


@pytest.mark.parametrize("lock", LOCKS, ids=lambda lock: lock.name)
def test_dev_constraints_pin_every_runtime_package_at_the_locked_version(lock: RuntimeLock) -> None:
    dev = parse_pins(CONSTRAINTS.read_text())
    wrong = {
        name: (version, dev.get(name))
        for name, version in lock.pins().items()
        if not CPU.drops(name) and dev.get(name) != version.split("+")[0]
    }
    assert not wrong, f"constraints.txt disagrees with {lock.path.relative_to(REPO_ROOT)} (locked, dev): {wrong}"


@pytest.mark.parametrize("lock", [lock for lock in LOCKS if lock.name != "notify"], ids=lambda lock: lock.name)
def test_tests_import_the_versions_production_runs(lock: RuntimeLock) -> None:
    installed = {}
    for name, version in lock.pins().items():
        if CPU.drops(name):
            continue
        installed[name] = metadata.version(name).split("+")[0]
        assert installed[name] == version, f"{name}: dev environment has {installed[name]}, {lock.name} locks {version}"
    if lock.name == "endpoint":
        assert {"accelerate", "uvloop", "httptools"} <= set(installed)


def test_cpu_override_swaps_torch_for_the_cpu_build_of_the_same_version() -> None:
    for name in ("endpoint", "pipeline"):
        lock = BY_NAME[name]
        cpu_text = CPU.apply(lock.path.read_text())
        pins = parse_pins(cpu_text)
        assert pins["torch"] == f"{lock.pins()['torch']}+cpu"
        assert not [p for p in pins if p.startswith(("nvidia-", "cuda-")) or p == "triton"]
        assert set(lock.pins()) - set(pins) == {p for p in lock.pins() if CPU.drops(p)}
        assert not unhashed(cpu_text)
    with pytest.raises(ValueError, match="is not the lock's torch"):
        CPU.apply("torch==2.12.0 \\\n    --hash=sha256:00\n")


def test_make_lock_regenerates_every_lock_with_uv() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(r"^lock: .*\n\t\$\(PY\) scripts/locks\.py$", makefile, re.MULTILINE)
    assert "uv" in parse_pins((REPO_ROOT / "requirements-dev.txt").read_text())
    assert normalize("uv") in parse_pins(CONSTRAINTS.read_text())


def test_lock_installs_require_hashes() -> None:
    for dockerfile in ("endpoint/Dockerfile", "pipeline/Dockerfile"):
        text = (REPO_ROOT / "runtime" / dockerfile).read_text()
        assert re.search(r"pip install .*--require-hashes --no-deps .*-r /tmp/requirements\.txt", text), dockerfile
    user_data = Path(REPO_ROOT / "infra" / "stacks" / "bot_user_data.py").read_text()
    assert "--require-hashes --no-deps -r" in user_data


def test_image_size_estimate_sums_the_platform_wheel_of_each_package() -> None:
    from scripts.image_sizes import wheel_sizes

    pylock = {
        "packages": [
            {"name": "torch", "wheels": [{"name": "torch-2.13.0-cp311-manylinux_2_28_x86_64.whl", "size": 500}]},
            {"name": "numpy", "wheels": [{"name": "numpy-2.4.6-cp311-manylinux_2_28_x86_64.whl", "size": 20}]},
        ]
    }
    assert wheel_sizes(pylock) == {"torch": 500, "numpy": 20}
    with pytest.raises(ValueError, match="sdist-only: no wheel"):
        wheel_sizes({"packages": [{"name": "sdist-only", "sdist": {"size": 1}}]})


def test_one_python_for_tests_images_lambdas_and_the_bot_host() -> None:
    import tomllib

    assert {lock.python for lock in LOCKS} == {"3.11"}
    assert re.search(r'python-version: "3\.11"', (REPO_ROOT / ".github" / "workflows" / "ci.yml").read_text())
    assert re.search(r"^PYTHON \?= python3\.11$", (REPO_ROOT / "Makefile").read_text(), re.MULTILINE)
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["mypy"]["python_version"] == "3.11"
    for dockerfile in ("endpoint/Dockerfile", "pipeline/Dockerfile"):
        base = re.search(r"^FROM (\S+)", (REPO_ROOT / "runtime" / dockerfile).read_text(), re.MULTILINE)
        assert base and base.group(1).startswith("python:3.11-"), dockerfile
    user_data = (REPO_ROOT / "infra" / "stacks" / "bot_user_data.py").read_text()
    assert "dnf install -y amazon-cloudwatch-agent python3.11 python3.11-pip" in user_data
    assert "Runtime.PYTHON_3_11" in (REPO_ROOT / "infra" / "stacks" / "pipeline_notifications.py").read_text()
