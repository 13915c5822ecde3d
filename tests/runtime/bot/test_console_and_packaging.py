"""Console mode end to end as deployed (`python -m runtime.bot` in the app dir), torch-free runtime, pinned deps."""

from __future__ import annotations

import ast
import fnmatch
import shutil
import subprocess
import sys
from pathlib import Path

from runtime.bot import contract

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "runtime" / "bot"


def _ignored(relative: str) -> bool:
    """CDK's glob ignore rule for one path: the last matching pattern wins; slash-free patterns match the name."""
    ignored = False
    for pattern in contract.CODE_ASSET_EXCLUDE:
        glob = pattern.removeprefix("!")
        target = relative.rsplit("/", 1)[-1] if "/" not in glob else relative
        if fnmatch.fnmatch(target, glob) or (glob.startswith("**/") and fnmatch.fnmatch(target, glob[3:])):
            ignored = not pattern.startswith("!")
    return ignored


def asset_files() -> list[str]:
    """Files of runtime/ the code asset keeps: CDK skips an ignored folder without looking inside it."""
    base = ROOT / contract.CODE_ASSET_DIR
    kept = []
    for path in sorted(base.rglob("*")):
        relative = path.relative_to(base).as_posix()
        parts = relative.split("/")
        ancestors = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if path.is_file() and not any(_ignored(candidate) for candidate in ancestors):
            kept.append(relative)
    return kept


def deploy_layout(tmp_path: Path) -> Path:
    """Lay out APP/runtime/... the way the EC2 user data unpacks the code asset."""
    app = tmp_path / "app"
    for relative in asset_files():
        target = app / contract.CODE_ASSET_DIR / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / contract.CODE_ASSET_DIR / relative, target)
    return app


def test_code_asset_holds_the_bot_and_common_packages_only() -> None:
    tops = {path.split("/")[0] for path in asset_files()}
    assert tops == {"__init__.py", "bot", "common"}
    assert "bot/requirements.txt" in asset_files()
    assert not [path for path in asset_files() if "__pycache__" in path or path.endswith(".pyc")]


def test_console_mode_end_to_end_without_torch(tmp_path: Path, tiny_generator_onnx: Path) -> None:
    app = deploy_layout(tmp_path)
    blocker = tmp_path / "no_torch"
    (blocker / "torch").mkdir(parents=True)
    (blocker / "torch" / "__init__.py").write_text("raise ImportError('the bot must not import torch')\n")
    out = tmp_path / "out"
    commands = "\n".join(
        [
            "$claim_waifu Asuka Langley",
            "$claim_waifu   asuka langley ",
            "$claim_waifu_truncation 1e999",
            "$claim_waifu_truncation 0.5",
            "$claim_waifu_grid 3",
            "$claim_waifu",
            "$no_such_command",
        ]
    )
    flags = ["--console", "--model", str(tiny_generator_onnx), "--out", str(out)]
    result = subprocess.run(
        [sys.executable, "-m", contract.ENTRY_MODULE, *flags],
        check=False,
        cwd=app,
        input=commands + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(blocker), "PATH": "/usr/bin:/bin", "GENART_LOG_LEVEL": "INFO"},
    )
    assert result.returncode == 0, result.stderr
    wrote = [Path(line.removeprefix("wrote ")) for line in result.stdout.splitlines() if line.startswith("wrote ")]
    assert [path.name for path in wrote[:2]] == ["001-waifu-asuka-langley.png", "002-waifu-asuka-langley.png"]
    assert len(wrote) == 5 and all(path.parent == out and path.is_file() for path in wrote)
    assert wrote[0].read_bytes() == wrote[1].read_bytes()
    assert "Truncation must be a finite number" in result.stdout
    assert "Unknown command `no_such_command`" in result.stdout
    assert '"message": "generator loaded"' in result.stderr  # JSON logs go to stderr in console mode


def test_runtime_source_never_imports_torch() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {name}" for name in names if name.split(".")[0] in {"torch", "torchvision"}]
    assert offenders == []


def test_full_import_graph_is_torch_free(tmp_path: Path) -> None:
    app = deploy_layout(tmp_path)
    probe = (
        "import sys, runtime.bot.cli, runtime.bot.discord_app, runtime.bot.console, runtime.bot.engine\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'torchvision'})\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], check=False, cwd=app, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_requirements_are_the_hashed_lock_without_torch() -> None:
    from scripts.locks import parse_pins, unhashed

    text = (PACKAGE / "requirements.txt").read_text()
    pins = parse_pins(text)
    assert not unhashed(text)
    assert {"discord-py", "onnxruntime", "numpy", "pillow", "boto3"} <= set(pins)
    assert not {"torch", "torchvision", "onnx"} & set(pins)
