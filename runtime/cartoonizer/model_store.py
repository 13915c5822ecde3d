"""The model file and its manifest (sha256, source, licence): written by the converter, checked when loaded."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..common.errors import ConfigError
from ..common.hashing import sha256_of
from . import contract

LICENCE = "CC BY-NC-SA 4.0"
LICENCE_URL = "https://creativecommons.org/licenses/by-nc-sa/4.0/"
SOURCE_URL = "https://github.com/SystemErrorWang/White-box-Cartoonization"
NOTICE = (
    "Non-commercial use only: cartoonized with the White-box Cartoonization model (Wang and Yu, CVPR 2020), "
    f"whose weights are licensed {LICENCE} ({LICENCE_URL})."
)


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """A model file on disk and what its manifest says (empty when it has none)."""

    path: Path
    manifest: dict[str, Any]

    @property
    def licence(self) -> str:
        """Licence of the weights as the manifest states it ("unknown" without a manifest)."""
        return str(self.manifest.get("licence", "unknown"))

    @property
    def notice(self) -> str:
        """The notice to show next to every result."""
        return str(self.manifest.get("notice", ""))

    def public(self) -> dict[str, Any]:
        """What a response says about the model: name, licence, notice."""
        return {
            "name": self.manifest.get("name", self.path.stem),
            "licence": self.licence,
            "notice": self.notice,
            "sha256": self.manifest.get("sha256"),
        }


def write_manifest(model_path: Path, *, name: str, source: str, extra: dict[str, Any] | None = None) -> Path:
    """Write manifest.json beside the model: sha256, size, source, licence and the non-commercial notice."""
    manifest = {
        "name": name,
        "file": model_path.name,
        "sha256": sha256_of(model_path),
        "bytes": model_path.stat().st_size,
        "source": source,
        "source_url": SOURCE_URL,
        "licence": LICENCE,
        "licence_url": LICENCE_URL,
        "notice": NOTICE,
        "created": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    path = model_path.with_name(contract.MANIFEST_FILE)
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path


def load_model_info(path: Path) -> ModelInfo:
    """The model at path (a file, or a folder holding model.onnx) with its manifest, sha256 checked."""
    model = path / contract.MODEL_FILE if path.is_dir() else path
    if not model.is_file():
        raise ConfigError(f"no cartoonizer model at {model}", field="model")
    manifest_path = model.with_name(contract.MANIFEST_FILE)
    manifest: dict[str, Any] = {}
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{manifest_path} is not valid JSON: {exc}", field="model") from None
        if manifest.get("file", model.name) == model.name and manifest.get("sha256"):
            actual = sha256_of(model)
            if actual != manifest["sha256"]:
                raise ConfigError(
                    f"{model} has sha256 {actual} but {manifest_path.name} records {manifest['sha256']}"
                    " (incomplete upload or mismatched files)",
                    field="model",
                )
    return ModelInfo(model, manifest)
