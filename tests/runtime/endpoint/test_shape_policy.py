"""Shape policy: sizes are buckets, every accepted shape and path is warmed, and serving never compiles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from runtime.common.errors import ConfigError
from runtime.endpoint import pipeline_setup, worker
from runtime.endpoint.schedulers import SCHEDULER_NAMES
from runtime.endpoint.tiny_pipeline import build_random_pipeline
from runtime.endpoint.worker import BatchKey, DiffusionWorker, ImageSpec, warmup_plan

from .conftest import BASE_REQUEST, make_settings


def test_tiny_pipeline_has_the_real_vae_scale_factor() -> None:
    pipe = build_random_pipeline()
    assert pipe.vae_scale_factor == 8
    latents = pipe.prepare_latents(1, 4, 512, 512, torch.float32, "cpu", torch.Generator().manual_seed(0))
    assert tuple(latents.shape) == (1, 4, 64, 64)  # what real SD 1.5 makes of 512x512


def test_default_sizes_are_the_documented_buckets_and_any_is_for_uncompiled_servers() -> None:
    defaults = make_settings(GENART_MAX_SIDE="768", GENART_SIZES="")
    assert defaults.sizes == ((512, 512), (768, 768), (512, 768), (768, 512))
    assert make_settings(GENART_SIZES="64, 64x80").sizes == ((64, 64), (64, 80))
    assert make_settings(GENART_SIZES="any").sizes == ()
    with pytest.raises(ConfigError, match="GENART_COMPILE needs GENART_SIZES buckets"):
        make_settings(GENART_SIZES="any", GENART_COMPILE="1")
    with pytest.raises(ConfigError, match=r"GENART_SIZES 128x64: sides must be multiples of 8 in 64\.\."):
        make_settings(GENART_SIZES="128x64")
    with pytest.raises(ConfigError, match="GENART_WARMUP_BATCHES needs a batch size >= GENART_MAX_IMAGES"):
        make_settings(GENART_SIZES="64", GENART_COMPILE="1", GENART_WARMUP_BATCHES="1,2")


def test_compiled_warmup_covers_every_bucket_batch_guidance_path_and_scheduler() -> None:
    settings = make_settings(GENART_SIZES="64,64x80", GENART_COMPILE="1", GENART_WARMUP_BATCHES="1,2,4")
    plan = warmup_plan(settings)
    shapes = {(key.width, key.height, batch, key.guidance_scale > 1) for key, batch in plan}
    assert shapes == {(w, h, b, cfg) for w, h in ((64, 64), (64, 80)) for b in (1, 2, 4) for cfg in (True, False)}
    assert {key.scheduler for key, _ in plan} == set(SCHEDULER_NAMES)
    uncompiled = warmup_plan(make_settings())
    assert [(key.width, key.height, batch) for key, batch in uncompiled] == [(64, 64, 1)]


@pytest.mark.parametrize(("size", "field"), [((64, 72), "height"), ((72, 64), "width"), ((96, 96), "width")])
def test_a_size_outside_the_buckets_is_400_naming_the_allowed_sizes(
    start_app: Any, size: tuple[int, int], field: str
) -> None:
    client: TestClient = start_app(GENART_SIZES="64x64,64x80")
    response = client.post("/invocations", json={**BASE_REQUEST, "width": size[0], "height": size[1]})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "size_not_served"
    assert body["fields"][0]["field"] == field
    assert "allowed sizes: 64x64, 64x80" in body["message"]
    assert client.post("/invocations", json={**BASE_REQUEST, "width": 64, "height": 80}).status_code == 200
    assert client.get("/metrics").json()["batches"] == 1  # the refused requests cost no pipeline call


def test_after_warmup_no_scheduler_guidance_or_batch_size_compiles_anything(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    graphs: list[Any] = []

    def counting_backend(gm: torch.fx.GraphModule, _inputs: Any) -> Any:
        graphs.append(gm)
        return gm.forward

    def optimize(pipe: Any, settings: Any, *, device: str) -> Any:
        return pipeline_setup.optimize_pipeline(pipe, settings, device=device, backend=counting_backend)

    monkeypatch.setattr(worker, "optimize_pipeline", optimize)
    settings = make_settings(
        GENART_COMPILE="1",
        GENART_SIZES="64",
        GENART_WARMUP_BATCHES="1,2",
        GENART_MAX_IMAGES="2",
        GENART_COMPILE_CACHE_DIR=str(tmp_path),
    )
    diffusion = DiffusionWorker(device="cpu", settings=settings, factory=lambda _device: build_random_pipeline())
    try:
        _serve_everything_after_warmup(diffusion, graphs)
    finally:
        diffusion.shutdown()
        torch._dynamo.reset()


def _serve_everything_after_warmup(diffusion: DiffusionWorker, graphs: list[Any]) -> None:
    diffusion._load_and_warm()
    warmed = len(graphs)
    # UNet at 1, 2 (batch 1 with CFG, batch 2 without) and 4 latents, VAE decoder at 1 and 2.
    assert warmed == 5
    for name in SCHEDULER_NAMES:
        for guidance in (0.0, 1.0, 7.5):
            for count in (1, 2):
                specs = [ImageSpec(prompt="a cat", negative_prompt="", seed=i) for i in range(count)]
                assert len(diffusion.generate(BatchKey(2, 64, 64, guidance, name), specs).images) == count
    assert len(graphs) == warmed, "a request compiled a new graph after warm-up"
    deterministic = diffusion.generate(BatchKey(2, 64, 64, 7.5, "euler", True), [ImageSpec("a cat", "", 3)])
    assert len(graphs) == warmed  # deterministic requests run the eager modules
    assert deterministic.images[0].size == (64, 64)
