"""TF checkpoint bundles read without TensorFlow, and the converter from a synthetic bundle to model + manifest."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from runtime.cartoonizer import reference
from runtime.cartoonizer.convert import convert, main
from runtime.cartoonizer.model_store import LICENCE, load_model_info
from runtime.cartoonizer.tf_bundle import (
    CheckpointError,
    crc32c,
    mask_crc,
    read_bundle,
    read_table,
    resolve_prefix,
    write_bundle,
    write_table,
)
from runtime.common.hashing import sha256_of


def test_crc32c_known_values() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    data = bytes(range(256)) * 40  # several 1 KiB chunks plus a tail
    bitwise = 0xFFFFFFFF
    for byte in data:
        bitwise ^= byte
        for _ in range(8):
            bitwise = (bitwise >> 1) ^ 0x82F63B78 if bitwise & 1 else bitwise >> 1
    assert crc32c(data) == bitwise ^ 0xFFFFFFFF


def test_table_round_trip_across_many_blocks_and_shared_prefixes() -> None:
    entries = {
        f"generator/block_{i:03d}/conv{j}/weights".encode(): bytes([i % 256]) * (i % 50)
        for i in range(300)
        for j in (1, 2)
    }
    entries[b""] = b"header"
    assert read_table(write_table(entries)) == entries


def test_bundle_round_trip_keeps_dtypes_shapes_and_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tensors = {
        "a/weights": rng.standard_normal((3, 3, 2, 4)).astype(np.float32),
        "a/biases": rng.standard_normal(4).astype(np.float32),
        "global_step": np.array(33999, dtype=np.int64),
        "half": rng.standard_normal((2, 2)).astype(np.float16),
    }
    write_bundle(tmp_path / "model-1", tensors)
    loaded = read_bundle(tmp_path)
    assert loaded.keys() == tensors.keys()
    for name, value in tensors.items():
        assert loaded[name].dtype == value.dtype and loaded[name].shape == value.shape
        np.testing.assert_array_equal(loaded[name], value)


def test_corrupt_data_and_index_are_reported(tmp_path: Path) -> None:
    write_bundle(tmp_path / "model-1", {"w": np.arange(10, dtype=np.float32)})
    data = tmp_path / "model-1.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[5] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        read_bundle(tmp_path)
    index = tmp_path / "model-1.index"
    index.write_bytes(index.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=r"magic|short"):
        read_bundle(tmp_path)


def test_block_checksums_are_verified() -> None:
    table = bytearray(write_table({b"": b"h", b"k": b"value"}))
    table[3] ^= 0x01
    with pytest.raises(CheckpointError, match="block checksum"):
        read_table(bytes(table))
    assert mask_crc(0) != 0


def test_checkpoint_state_file_naming_a_foreign_absolute_path_is_followed_here(tmp_path: Path) -> None:
    write_bundle(tmp_path / "model-33999", {"w": np.zeros(1, np.float32)})
    write_bundle(tmp_path / "model-1", {"w": np.zeros(1, np.float32)})
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "/home/someone/train/model-33999"\n')
    assert resolve_prefix(tmp_path) == tmp_path / "model-33999"


def _synthetic_checkpoint(folder: Path, weights: dict[str, np.ndarray], *, scope: str = "generator") -> Path:
    tensors = {name.replace("generator/", f"{scope}/", 1): value for name, value in weights.items()}
    # What a training checkpoint also holds: optimizer slots, a discriminator, the step counter.
    tensors.update({f"{name}/Adam": np.zeros_like(value) for name, value in list(tensors.items())[:4]})
    tensors["discriminator/Conv/weights"] = np.zeros((3, 3, 3, 8), np.float32)
    tensors["global_step"] = np.array(33999, np.int64)
    write_bundle(folder / "model-33999", tensors)
    (folder / "checkpoint").write_text('model_checkpoint_path: "model-33999"\n')
    return folder


def test_converter_writes_model_and_manifest_that_match_the_reference(
    tmp_path: Path, tf_weights: dict[str, np.ndarray]
) -> None:
    folder = _synthetic_checkpoint(tmp_path / "ckpt", tf_weights)
    out = convert(folder, tmp_path / "models" / "whitebox" / "model.onnx")
    manifest = json.loads((out.parent / "manifest.json").read_text())
    assert manifest["sha256"] == sha256_of(out)
    assert manifest["licence"] == LICENCE == "CC BY-NC-SA 4.0"
    assert "non-commercial" in manifest["notice"].lower()
    assert manifest["name"] == "whitebox" and "model-33999" in manifest["source"]
    assert load_model_info(out.parent).licence == LICENCE
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32)
    got = session.run(None, {"images": x.transpose(0, 3, 1, 2)})[0].transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got, reference.cartoonize(x, tf_weights), atol=2e-5)


def test_converter_accepts_another_outer_scope(tmp_path: Path, tf_weights: dict[str, np.ndarray]) -> None:
    folder = _synthetic_checkpoint(tmp_path / "ckpt", tf_weights, scope="model/generator")
    assert convert(folder, tmp_path / "model.onnx").is_file()


def test_converter_names_missing_and_misshaped_tensors(tmp_path: Path, tf_weights: dict[str, np.ndarray]) -> None:
    broken = dict(tf_weights)
    del broken["generator/Conv_9/biases"]
    broken["generator/Conv_2/weights"] = np.zeros((3, 3, 32, 65), np.float32)
    folder = _synthetic_checkpoint(tmp_path / "ckpt", broken)
    with pytest.raises(CheckpointError) as raised:
        convert(folder, tmp_path / "model.onnx")
    assert "generator/Conv_9/biases: missing" in str(raised.value)
    assert "generator/Conv_2/weights: shape (3, 3, 32, 65), expected (3, 3, 32, 64)" in str(raised.value)


def test_converter_cli_exits_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--checkpoint", str(tmp_path), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "expected exactly one *.index file, found none" in capsys.readouterr().err


def test_manifest_mismatch_refuses_to_load(tmp_path: Path, tf_weights: dict[str, np.ndarray]) -> None:
    from runtime.common.errors import ConfigError

    out = convert(_synthetic_checkpoint(tmp_path / "ckpt", tf_weights), tmp_path / "m" / "model.onnx")
    with out.open("ab") as handle:
        handle.write(struct.pack("<I", 1))
    with pytest.raises(ConfigError, match="sha256"):
        load_model_info(out)
