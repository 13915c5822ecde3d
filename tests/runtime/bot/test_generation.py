"""Generator mapping, deterministic names, micro-batching, busy queue, cooldown and a responsive event loop."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from runtime.bot.batcher import MicroBatcher, batch_limit
from runtime.bot.commands import Requester, WaifuService
from runtime.bot.errors import BusyError, ConfigError
from runtime.bot.generator import FaceGenerator, GeneratorHolder, SessionTuning, to_uint8_images
from runtime.bot.limits import Admission, Refusal, TokenBucket, busy_text
from runtime.bot.seeding import latents_for_seeds, seed_for_name

USER = Requester(user_id="42")


def make_service(
    generator: Any, *, admission: Admission | None = None, image_format: str = "png", **batcher_kwargs: Any
) -> tuple[WaifuService, MicroBatcher, ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=2)
    batcher = MicroBatcher(holder=GeneratorHolder(generator), executor=executor, **batcher_kwargs)
    service = WaifuService(
        batcher=batcher,
        executor=executor,
        admission=admission,
        image_format=image_format,  # type: ignore[arg-type]
    )
    return service, batcher, executor


def test_output_mapping_is_scaled_rounded_and_clipped() -> None:
    raw = np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0], dtype=np.float32).reshape(1, 1, 1, 6).repeat(3, axis=1)
    mapped = to_uint8_images(raw)
    assert mapped.shape == (1, 1, 6, 3) and mapped.dtype == np.uint8
    assert mapped[0, 0, :, 0].tolist() == [0, 0, 128, 191, 255, 255]


def test_generator_contract_and_tuned_equals_default(face_generator: FaceGenerator, tiny_generator_onnx: Path) -> None:
    latents = latents_for_seeds([1, 2])
    images = face_generator.generate(latents, 0.7)
    assert images.shape == (2, 16, 16, 3) and images.dtype == np.uint8
    assert face_generator.resolution == 16 and face_generator.z_dim == 512
    default = FaceGenerator(model_path=tiny_generator_onnx, tuning=SessionTuning(tuned=False))
    raw_tuned, raw_default = face_generator.generate_raw(latents, 0.7), default.generate_raw(latents, 0.7)
    np.testing.assert_allclose(raw_tuned, raw_default, atol=1e-4)
    assert not np.array_equal(images[0], images[1])


def test_bad_model_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(ConfigError, match="cannot load generator"):
        FaceGenerator(model_path=bad, tuning=SessionTuning())


@pytest.mark.parametrize(("z_dim", "message"), [("256", "256-wide latents"), ("wide", "unreadable metadata")])
def test_model_off_the_latent_contract_is_a_config_error(
    tiny_generator_onnx: Path, tmp_path: Path, z_dim: str, message: str
) -> None:
    import onnx  # only this test edits a model

    model = onnx.load(str(tiny_generator_onnx))
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, "z_dim": z_dim})
    edited = tmp_path / "edited.onnx"
    onnx.save(model, str(edited))
    with pytest.raises(ConfigError, match=message):
        FaceGenerator(model_path=edited, tuning=SessionTuning(intra_op_threads=1))


def test_same_name_gives_identical_bytes(face_generator: FaceGenerator) -> None:
    async def scenario() -> list[bytes]:
        service, batcher, executor = make_service(face_generator)
        replies = [
            await service.claim_waifu(USER, "Asuka Langley"),
            await service.claim_waifu(USER, "  asuka   LANGLEY"),
            await service.claim_waifu(USER, "Rei Ayanami"),
        ]
        await batcher.close()
        executor.shutdown()
        assert replies[0].text == "**Asuka Langley**"
        return [reply.files[0].data for reply in replies]

    first, again, other = asyncio.run(scenario())
    assert first == again
    assert first != other
    assert Image.open(io.BytesIO(first)).size == (16, 16)


def test_batching_path_equals_single_path(face_generator: FaceGenerator) -> None:
    names = [f"Pilot {i}" for i in range(6)]
    latents = latents_for_seeds([seed_for_name(name) for name in names])
    singles = np.concatenate([face_generator.generate(latents[i : i + 1], 0.7) for i in range(len(names))])

    async def scenario() -> tuple[list[npt.NDArray[np.uint8]], int]:
        _, batcher, executor = make_service(face_generator, batch_window_ms=200, max_batch=8)
        runs_before = face_generator.runs
        results = await asyncio.gather(*(batcher.generate(latents[i : i + 1], 0.7) for i in range(len(names))))
        runs = face_generator.runs - runs_before
        await batcher.close()
        executor.shutdown()
        return list(results), runs

    batched, runs = asyncio.run(scenario())
    assert runs == 1, "six concurrent requests inside the window must share one ONNX call"
    np.testing.assert_array_equal(np.concatenate(batched), singles)


def test_batches_split_by_psi_and_size(face_generator: FaceGenerator) -> None:
    latents = latents_for_seeds(list(range(5)))

    async def scenario() -> int:
        _, batcher, executor = make_service(face_generator, batch_window_ms=200, max_batch=3)
        before = face_generator.runs
        await asyncio.gather(
            *(batcher.generate(latents[i : i + 1], 0.5) for i in range(4)), batcher.generate(latents[4:5], 1.0)
        )
        await batcher.close()
        executor.shutdown()
        return face_generator.runs - before

    assert asyncio.run(scenario()) == 3  # psi 0.5: 3 + 1 images, psi 1.0: 1 image


def test_large_requests_are_split_into_calls_of_at_most_max_batch(face_generator: FaceGenerator) -> None:
    latents = latents_for_seeds(list(range(5)))
    singles = np.concatenate([face_generator.generate(latents[i : i + 1], 0.7) for i in range(5)])

    async def scenario() -> tuple[npt.NDArray[np.uint8], int, int]:
        _, batcher, executor = make_service(face_generator, max_batch=2)
        before = face_generator.runs
        images = await batcher.generate(latents, 0.7)
        await batcher.close()
        executor.shutdown()
        return images, face_generator.runs - before, batcher.max_batch

    images, runs, limit = asyncio.run(scenario())
    assert limit == 2
    assert runs == 3  # 2 + 2 + 1
    np.testing.assert_array_equal(images, singles)
    assert (batch_limit(16), batch_limit(256), batch_limit(512), batch_limit(1024)) == (8, 2, 1, 1)


class SlowGenerator:
    """Stands in for a big model: holds a worker thread for a while without touching the event loop."""

    def __init__(self, *, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0
        self.started = threading.Event()

    def generate(self, latents: npt.NDArray[np.float32], psi: float) -> npt.NDArray[np.uint8]:
        self.calls += 1
        self.started.set()
        time.sleep(self.seconds)
        return np.zeros((latents.shape[0], 8, 8, 3), dtype=np.uint8)


def test_full_queue_answers_busy_without_crashing() -> None:
    slow = SlowGenerator(seconds=0.3)

    async def scenario() -> list[str]:
        service, batcher, executor = make_service(slow, batch_window_ms=0, max_batch=1, max_queue=2, workers=1)
        tasks = [asyncio.create_task(service.claim_waifu(Requester(user_id=str(i)), f"n{i}")) for i in range(2)]
        await asyncio.sleep(0.05)
        busy = await service.claim_waifu(Requester(user_id="late"), "late")
        with pytest.raises(BusyError):
            await batcher.generate(latents_for_seeds([1]), 0.7)
        served = await asyncio.gather(*tasks)
        after = await service.claim_waifu(Requester(user_id="late"), "late")  # capacity is back
        await batcher.close()
        executor.shutdown()
        return [busy.text, *(reply.text for reply in served), after.text, str(len(after.files))]

    busy, first, second, after, files = asyncio.run(scenario())
    assert busy.startswith("I'm busy drawing other faces right now - please try again in ")
    assert first == "**n0**" and second == "**n1**"
    assert after == "**late**" and files == "1"


def test_cancelled_requests_are_not_generated() -> None:
    slow = SlowGenerator(seconds=0.2)

    async def scenario() -> tuple[int, int, int]:
        _, batcher, executor = make_service(slow, batch_window_ms=0, max_batch=1, workers=1)
        running = asyncio.create_task(batcher.generate(latents_for_seeds([1]), 0.7))
        await asyncio.sleep(0.05)
        abandoned = asyncio.create_task(batcher.generate(latents_for_seeds([2]), 0.7))
        kept = asyncio.create_task(batcher.generate(latents_for_seeds([3]), 0.7))
        await asyncio.sleep(0.01)
        abandoned.cancel()
        await asyncio.gather(running, kept)
        pending = batcher.pending_images
        await batcher.close()
        executor.shutdown()
        return slow.calls, pending, int(abandoned.cancelled())

    assert asyncio.run(scenario()) == (2, 0, 1)


def test_token_bucket_counts_images() -> None:
    now = [100.0]
    bucket = TokenBucket(seconds_per_image=5, burst=16, clock=lambda: now[0])
    assert bucket.wait_for("a", 16) == 0
    bucket.take("a", 16)  # a grid of 16 empties the bucket...
    assert bucket.wait_for("a", 1) == pytest.approx(5)
    assert bucket.wait_for("a", 16) == pytest.approx(80)  # ...and takes 16 x 5 s to earn back
    assert bucket.wait_for("b", 16) == 0  # other users are unaffected
    now[0] += 10
    assert bucket.level("a") == pytest.approx(2)
    bucket.refund("a", 4)
    assert bucket.level("a") == pytest.approx(6)
    assert TokenBucket(seconds_per_image=0, burst=16).wait_for("a", 16) == 0


def make_admission(*, spi: float = 1.0, seconds_per_image: float = 5.0, **kwargs: Any) -> Admission:
    options: dict[str, Any] = {"user_max_pending": 16, "max_queue": 32, "max_wait_s": 60.0, "workers": 1, **kwargs}
    bucket = TokenBucket(seconds_per_image=seconds_per_image, burst=16)
    return Admission(bucket=bucket, seconds_per_image=lambda: spi, **options)


def test_admission_bucket_pending_cap_and_global_wait() -> None:
    admission = make_admission()
    grid = admission.admit("a", 16)
    assert not isinstance(grid, Refusal)
    refused = admission.admit("a", 1)
    assert isinstance(refused, Refusal) and "already have 16 faces" in refused.text  # per-user pending cap
    admission.release(grid)
    refused = admission.admit("a", 1)
    assert isinstance(refused, Refusal) and refused.text.startswith("Easy there!") and "5 s" in refused.text
    assert not isinstance(admission.admit("op", 16, exempt=True), Refusal)  # operators skip the bucket only
    assert not isinstance(admission.admit("b", 16), Refusal)  # 32 pending images = 32 s expected wait
    busy = admission.admit("c", 4)
    assert isinstance(busy, Refusal) and busy.text == busy_text(busy.retry_after_s)
    assert busy.retry_after_s == pytest.approx(4)  # 4 images over the queue bound at 1 s per image
    assert admission.pending == 32


def test_admission_bounds_the_queue_by_expected_wait_and_keeps_room_for_newcomers() -> None:
    admission = make_admission(spi=3.0, seconds_per_image=0.0, max_wait_s=30.0, user_max_pending=64)
    first = admission.admit("a", 8)  # 24 s of work
    assert not isinstance(first, Refusal)
    more = admission.admit("a", 1)  # a user with work pending gets half the wait bound: 27 s > 15 s
    assert isinstance(more, Refusal) and more.retry_after_s == pytest.approx(12)
    newcomer = admission.admit("b", 2)  # 30 s: within the bound for someone with nothing pending
    assert not isinstance(newcomer, Refusal)
    late = admission.admit("c", 1)
    assert isinstance(late, Refusal) and late.retry_after_s == pytest.approx(3)
    admission.release(first, refund=True)
    admission.release(first)  # releasing twice is harmless
    assert admission.pending == 2


def test_cooldown_reply_and_operator_exemption(face_generator: FaceGenerator) -> None:
    async def scenario() -> list[str]:
        service, batcher, executor = make_service(face_generator, admission=make_admission(seconds_per_image=60))
        texts = [
            (await service.claim_waifu_grid(USER, "16")).text,
            (await service.claim_waifu(USER, "Asuka")).text,
            (await service.claim_waifu(Requester(user_id="7"), "Asuka")).text,
            (await service.claim_waifu_grid(Requester(user_id="op", is_operator=True), "16")).text,
            (await service.claim_waifu_grid(Requester(user_id="op", is_operator=True), "16")).text,
            (await service.claim_waifu_truncation(Requester(user_id="9"), "nan")).text,
            (await service.claim_waifu_grid(Requester(user_id="9"), "16")).text,
        ]
        await batcher.close()
        executor.shutdown()
        return texts

    texts = asyncio.run(scenario())
    assert texts[0].startswith("16 random waifus")
    assert texts[1] == "Easy there! You can claim another face in 60 s."
    assert texts[2] == "**Asuka**"
    assert texts[3].startswith("16 random waifus") and texts[4].startswith("16 random waifus")
    assert "finite" in texts[5]  # invalid input does not use up the bucket...
    assert texts[6].startswith("16 random waifus")  # ...so the next valid request is served


def test_event_loop_stays_responsive_during_generation() -> None:
    slow = SlowGenerator(seconds=0.5)

    async def scenario() -> float:
        service, batcher, executor = make_service(slow, batch_window_ms=0)
        worst, last = 0.0, time.monotonic()
        task = asyncio.create_task(service.claim_waifu_grid(USER, "4"))
        while not task.done():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            worst, last = max(worst, now - last), now
        reply = task.result()
        assert reply.files and slow.calls == 1
        await batcher.close()
        executor.shutdown()
        return worst

    assert asyncio.run(scenario()) < 0.2


def test_grid_and_jpeg_output(face_generator: FaceGenerator) -> None:
    async def scenario() -> bytes:
        service, batcher, executor = make_service(face_generator, image_format="jpeg")
        reply = await service.claim_waifu_grid(USER, "5", "0.5")
        bad = await service.claim_waifu_grid(USER, "99")
        assert "from 1 to 16" in bad.text and not bad.files
        await batcher.close()
        executor.shutdown()
        assert reply.files[0].filename.endswith(".jpg")
        return reply.files[0].data

    picture = Image.open(io.BytesIO(asyncio.run(scenario())))
    assert picture.format == "JPEG"
    assert picture.size == (3 * 16 + 2 * 2, 2 * 16 + 2)  # 5 faces -> 3x2 grid with 2 px padding


def test_closing_batcher_finishes_in_flight_and_rejects_new_work() -> None:
    slow = SlowGenerator(seconds=0.2)

    async def scenario() -> tuple[int, str]:
        service, batcher, executor = make_service(slow, batch_window_ms=0)
        in_flight = asyncio.create_task(batcher.generate(latents_for_seeds([1]), 0.7))
        await asyncio.sleep(0.05)
        closing = asyncio.create_task(batcher.close(deadline=asyncio.get_running_loop().time() + 5))
        await asyncio.sleep(0)
        rejected = await service.claim_waifu(USER, "late")
        images = await in_flight
        await closing
        executor.shutdown()
        return int(images.shape[0]), rejected.text

    count, text = asyncio.run(scenario())
    assert count == 1
    assert "restarting" in text


def test_reload_frees_the_old_model_before_loading_the_new_one(
    make_settings: Any, face_generator: FaceGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.bot import engine as engine_module
    from runtime.bot.engine import Engine

    loads: list[bool] = []
    real_open = engine_module.open_generator
    failures = [False, True]  # the first reload loads, the second gets a broken model

    def spying_open(path: Path, settings: Any) -> FaceGenerator:
        try:
            _ = engine.holder.current
        except RuntimeError:
            loads.append(False)
        else:
            loads.append(True)
        if failures and failures.pop(0):
            raise ConfigError("broken model")
        return real_open(path, settings)

    monkeypatch.setattr(engine_module, "open_generator", spying_open)
    operator = Requester(user_id="op", is_operator=True)

    async def scenario() -> list[str]:
        nonlocal engine
        engine = Engine(settings=make_settings(), generator=face_generator)
        served = [asyncio.create_task(engine.service.claim_waifu(Requester(user_id=str(i)), f"n{i}")) for i in range(8)]
        reloaded = await engine.service.reload_model(operator)
        failed = await engine.service.reload_model(operator)
        texts = [reply.text for reply in await asyncio.gather(*served)]
        after = await engine.service.claim_waifu(USER, "after")
        await engine.close()
        return [reloaded.text, failed.text, after.text, *texts]

    engine: Any = None
    reloaded, failed, after, *served = asyncio.run(scenario())
    assert loads == [False, False, False]  # every load (new, broken, restore) ran with no other model held
    assert reloaded.startswith("Model reloaded (16 px, kimg 0")
    assert failed.startswith("Reload failed; still using the previous model")
    assert after == "**after**" and served == [f"**n{i}**" for i in range(8)]
