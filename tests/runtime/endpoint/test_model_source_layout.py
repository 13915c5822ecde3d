"""The seeded folder is one the server loads: the model sources' files land where pipeline_setup looks for them.

The server loads the folder offline with no diffusers `variant` (runtime/endpoint/pipeline_setup.py), so a source
stores a repository's fp16 variant files under the plain names. A tiny pipeline saved as an fp16 variant, renamed
by the same rule, must load with the server's loader.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch

from infra.model_sources import SOURCES, ModelSource
from runtime.endpoint.pipeline_setup import load_pipeline
from runtime.endpoint.tiny_pipeline import build_random_pipeline
from tests.runtime.endpoint.conftest import make_settings

# Weights and configs diffusers/transformers read for each component of a StableDiffusionPipeline folder.
EXPECTED = {
    "unet": {"config.json", "diffusion_pytorch_model.safetensors"},
    "vae": {"config.json", "diffusion_pytorch_model.safetensors"},
    "text_encoder": {"config.json", "model.safetensors"},
    "safety_checker": {"config.json", "model.safetensors"},
    "tokenizer": {"merges.txt", "vocab.json", "tokenizer_config.json", "special_tokens_map.json"},
    "scheduler": {"scheduler_config.json"},
    "feature_extractor": {"preprocessor_config.json"},
}


def stored_name(repository_path: str) -> str:
    """Where a repository file goes in the seeded folder: fp16 variant files under the plain name."""
    return repository_path.replace(".fp16.", ".")


def repository_path(source: ModelSource, url: str) -> str:
    return urlparse(url).path.split(f"/resolve/{source.revision}/", 1)[1]


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_component_the_pipeline_loads_is_seeded_under_its_plain_name(name: str) -> None:
    source = SOURCES[name]
    keys = [f.key for f in source.files]
    for seed_file in source.files:
        assert seed_file.key == stored_name(repository_path(source, seed_file.url)), seed_file.key
        assert urlparse(seed_file.url).scheme == "https"
    found: dict[str, set[str]] = {}
    for key in keys:
        folder, _, file_name = key.rpartition("/")
        found.setdefault(folder, set()).add(file_name)
    assert found == {"": {"model_index.json"}, **EXPECTED}
    assert keys[-1] == source.marker == "model_index.json"
    assert not [k for k in keys if ".fp16." in k or k.endswith((".bin", ".ckpt"))]


def test_a_folder_renamed_like_a_source_loads_with_the_servers_loader(tmp_path: Path) -> None:
    variant = tmp_path / "variant"
    pipe = build_random_pipeline(preset="tiny", seed=0).to(torch.float16)
    pipe.save_pretrained(variant, safe_serialization=True, variant="fp16")
    saved = [p.relative_to(variant).as_posix() for p in variant.rglob("*") if p.is_file()]
    assert any(".fp16." in p for p in saved)  # diffusers wrote variant names, as the repository has them
    seeded = tmp_path / "seeded"
    for path in saved:
        target = seeded / stored_name(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(variant / path, target)
    assert json.loads((seeded / "model_index.json").read_text())["_class_name"] == "StableDiffusionPipeline"
    settings = make_settings(SM_MODEL_DIR=str(seeded), GENART_SAFETY_CHECKER="0")
    loaded = load_pipeline(settings, dtype=torch.float16)
    assert loaded.unet.dtype == torch.float16
    original = dict(pipe.unet.state_dict())
    for key, value in loaded.unet.state_dict().items():
        assert torch.equal(value, original[key]), key
