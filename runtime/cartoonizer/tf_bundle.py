"""TensorFlow checkpoint bundles (`.index` SSTable + `.data-00000-of-00001`) read and written without TensorFlow.

The index is a LevelDB-format table: key "" holds a BundleHeaderProto, every other key is a tensor name whose
value is a BundleEntryProto (dtype, shape, shard_id, offset, size, masked crc32c of the bytes). The writer is
the inverse, so tests can build bundles with random weights; it writes one shard, uncompressed, like TF does.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from ..common.errors import InputError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48
BLOCK_TRAILER_BYTES = 5
NO_COMPRESSION = 0
_RESTART_INTERVAL = 16
_BLOCK_TARGET_BYTES = 4096
_CRC_MASK_DELTA = 0xA282EAD8
_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected

# tensorflow/core/framework/types.proto DataType -> NumPy (little-endian, as TF writes them on x86 and ARM).
DTYPES: dict[int, np.dtype[np.generic]] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    19: np.dtype("<f2"),  # DT_HALF
}
DTYPE_CODES = {dtype: code for code, dtype in DTYPES.items()}


class CheckpointError(InputError):
    """The checkpoint bundle is missing, truncated, corrupt or uses a feature this reader does not support."""

    code = "bad_checkpoint"


# ---------------------------------------------------------------- CRC-32C (vectorized over chunks with NumPy)


def _byte_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_POLY), table >> 1).astype(np.uint32)
    return table


_TABLE = _byte_table()


def _raw_crc(chunks: np.ndarray, state: np.ndarray) -> np.ndarray:
    """Run the byte-wise CRC register over each row of chunks (uint8 [K, L]) from the given states."""
    for column in range(chunks.shape[1]):
        state = _TABLE[(state ^ chunks[:, column]) & 0xFF] ^ (state >> 8)
    return state


def _shift_tables(length: int) -> np.ndarray:
    """Four 256-entry tables applying "feed `length` zero bytes" to a register, one per register byte."""
    basis = (np.uint32(1) << np.arange(32, dtype=np.uint32)).astype(np.uint32)
    zeros = np.zeros((32, length), dtype=np.uint8)
    columns = _raw_crc(zeros, basis)  # the linear map's image of each bit
    values = np.arange(256, dtype=np.uint32)
    tables = np.zeros((4, 256), dtype=np.uint32)
    for byte in range(4):
        for bit in range(8):
            tables[byte] ^= np.where((values >> bit) & 1, columns[8 * byte + bit], np.uint32(0)).astype(np.uint32)
    return tables


def crc32c(data: bytes | memoryview) -> int:
    """CRC-32C of data; the register update is linear, so fixed-size chunks run side by side and are then folded."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    chunk = 1024
    whole = len(buffer) // chunk * chunk
    state = 0xFFFFFFFF
    if whole:
        partial = _raw_crc(buffer[:whole].reshape(-1, chunk), np.zeros(whole // chunk, dtype=np.uint32))
        tables = _shift_tables(chunk)
        for value in partial.tolist():
            state = (
                int(tables[0][state & 0xFF])
                ^ int(tables[1][(state >> 8) & 0xFF])
                ^ int(tables[2][(state >> 16) & 0xFF])
                ^ int(tables[3][state >> 24])
                ^ value
            )
    tail = _raw_crc(buffer[whole:].reshape(1, -1), np.array([state], dtype=np.uint32))
    return int(tail[0]) ^ 0xFFFFFFFF


def mask_crc(crc: int) -> int:
    """LevelDB/TF masked CRC (stored CRCs are masked so CRCs of CRCs stay useful)."""
    return (((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & 0xFFFFFFFF


# ---------------------------------------------------------------- varints and a minimal protobuf wire codec


def encode_varint(value: int) -> bytes:
    """Protobuf/LevelDB base-128 varint of a non-negative integer (negative int64 as two's complement)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes | memoryview, position: int) -> tuple[int, int]:
    """Return (value, next position); CheckpointError when the varint runs past the end or over 64 bits."""
    result = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise CheckpointError("truncated or malformed varint in the checkpoint index")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, position


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def proto_fields(data: bytes | memoryview) -> Iterator[tuple[int, int | bytes]]:
    """Yield (field number, value) of a serialized message: varints as int, fixed32/64 as int, bytes as bytes."""
    position = 0
    while position < len(data):
        key, position = decode_varint(data, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, position = decode_varint(data, position)
            yield number, value
        elif wire == 1:
            yield number, struct.unpack_from("<Q", data, position)[0]
            position += 8
        elif wire == 2:
            length, position = decode_varint(data, position)
            if position + length > len(data):
                raise CheckpointError("truncated length-delimited field in the checkpoint index")
            yield number, bytes(data[position : position + length])
            position += length
        elif wire == 5:
            yield number, struct.unpack_from("<I", data, position)[0]
            position += 4
        else:
            raise CheckpointError(f"unsupported protobuf wire type {wire} in the checkpoint index")


def _field_varint(number: int, value: int) -> bytes:
    return encode_varint(number << 3) + encode_varint(value)


def _field_bytes(number: int, value: bytes) -> bytes:
    return encode_varint(number << 3 | 2) + encode_varint(len(value)) + value


def _field_fixed32(number: int, value: int) -> bytes:
    return encode_varint(number << 3 | 5) + struct.pack("<I", value)


# ---------------------------------------------------------------- BundleEntryProto / BundleHeaderProto


@dataclasses.dataclass(frozen=True)
class BundleEntry:
    """One tensor of a bundle: where its bytes are in which shard, and their masked CRC-32C."""

    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int
    sliced: bool = False

    @classmethod
    def parse(cls, data: bytes) -> BundleEntry:
        """Decode a serialized BundleEntryProto (fields 1 dtype, 2 shape, 3 shard_id, 4 offset, 5 size, 6 crc32c)."""
        values: dict[str, int] = {"dtype": 0, "shard_id": 0, "offset": 0, "size": 0, "crc32c": 0}
        shape: list[int] = []
        sliced = False
        names = {1: "dtype", 3: "shard_id", 4: "offset", 5: "size", 6: "crc32c"}
        for number, value in proto_fields(data):
            if number == 2 and isinstance(value, bytes):
                for dim_number, dim in proto_fields(value):
                    if dim_number == 2 and isinstance(dim, bytes):  # TensorShapeProto.dim
                        size = next((v for n, v in proto_fields(dim) if n == 1 and isinstance(v, int)), 0)
                        shape.append(_signed64(size))
            elif number == 7:
                sliced = True
            elif number in names and isinstance(value, int):
                values[names[number]] = value
        return cls(shape=tuple(shape), sliced=sliced, **values)

    def serialize(self) -> bytes:
        """Encode as a BundleEntryProto."""
        dims = b"".join(_field_bytes(2, _field_varint(1, size)) for size in self.shape)
        out = _field_varint(1, self.dtype) + _field_bytes(2, dims)
        if self.shard_id:
            out += _field_varint(3, self.shard_id)
        if self.offset:
            out += _field_varint(4, self.offset)
        if self.size:
            out += _field_varint(5, self.size)
        return out + _field_fixed32(6, self.crc32c)


def _header(num_shards: int = 1) -> bytes:
    version = _field_varint(1, 1)  # VersionDef.producer
    return _field_varint(1, num_shards) + _field_bytes(3, version)  # endianness LITTLE (0) is the default


# ---------------------------------------------------------------- SSTable


def _read_handle(data: bytes | memoryview, position: int) -> tuple[int, int, int]:
    offset, position = decode_varint(data, position)
    size, position = decode_varint(data, position)
    return offset, size, position


def _read_block(table: bytes, offset: int, size: int) -> bytes:
    end = offset + size
    if end + BLOCK_TRAILER_BYTES > len(table):
        raise CheckpointError("checkpoint index is truncated (a block runs past the end)")
    contents, kind = table[offset:end], table[end]
    (stored,) = struct.unpack_from("<I", table, end + 1)
    if mask_crc(crc32c(table[offset : end + 1])) != stored:
        raise CheckpointError("checkpoint index is corrupt (block checksum mismatch)")
    if kind != NO_COMPRESSION:
        raise CheckpointError(f"checkpoint index block uses compression type {kind}; only uncompressed is supported")
    return contents


def _block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise CheckpointError("checkpoint index block is too short")
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * restarts
    if limit < 0:
        raise CheckpointError("checkpoint index block has a bad restart array")
    position, key = 0, b""
    while position < limit:
        shared, position = decode_varint(block, position)
        unshared, position = decode_varint(block, position)
        value_length, position = decode_varint(block, position)
        if shared > len(key) or position + unshared + value_length > limit:
            raise CheckpointError("checkpoint index block entry is malformed")
        key = key[:shared] + block[position : position + unshared]
        position += unshared
        yield key, block[position : position + value_length]
        position += value_length


def read_table(table: bytes) -> dict[bytes, bytes]:
    """Every key/value of an uncompressed LevelDB-format table, checksums verified."""
    if len(table) < FOOTER_BYTES:
        raise CheckpointError("checkpoint index is too short to be a TensorFlow bundle index")
    footer = table[-FOOTER_BYTES:]
    (magic,) = struct.unpack_from("<Q", footer, FOOTER_BYTES - 8)
    if magic != TABLE_MAGIC:
        raise CheckpointError("not a TensorFlow bundle index (bad table magic)")
    _meta_offset, _meta_size, position = _read_handle(footer, 0)
    index_offset, index_size, _ = _read_handle(footer, position)
    entries: dict[bytes, bytes] = {}
    for _last_key, handle in _block_entries(_read_block(table, index_offset, index_size)):
        offset, size, _ = _read_handle(handle, 0)
        entries.update(_block_entries(_read_block(table, offset, size)))
    return entries


def _finish_block(entries: list[tuple[bytes, bytes]]) -> bytes:
    out, restarts, previous = bytearray(), [], b""
    for index, (key, value) in enumerate(entries):
        shared = 0
        if index % _RESTART_INTERVAL == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                shared += 1
        out += encode_varint(shared) + encode_varint(len(key) - shared) + encode_varint(len(value))
        out += key[shared:] + value
        previous = key
    restarts = restarts or [0]
    out += b"".join(struct.pack("<I", r) for r in restarts) + struct.pack("<I", len(restarts))
    return bytes(out)


def write_table(entries: Mapping[bytes, bytes]) -> bytes:
    """A LevelDB-format table of the entries (sorted by key), uncompressed, with block checksums and footer."""
    out = bytearray()

    def append_block(contents: bytes) -> bytes:
        handle = encode_varint(len(out)) + encode_varint(len(contents))
        out.extend(contents)
        out.append(NO_COMPRESSION)
        out.extend(struct.pack("<I", mask_crc(crc32c(contents + bytes([NO_COMPRESSION])))))
        return handle

    index: list[tuple[bytes, bytes]] = []
    pending: list[tuple[bytes, bytes]] = []
    pending_bytes = 0
    for key in sorted(entries):
        pending.append((key, entries[key]))
        pending_bytes += len(key) + len(entries[key])
        if pending_bytes >= _BLOCK_TARGET_BYTES:
            index.append((key, append_block(_finish_block(pending))))
            pending, pending_bytes = [], 0
    if pending:
        index.append((pending[-1][0], append_block(_finish_block(pending))))
    meta_handle = append_block(_finish_block([]))
    index_handle = append_block(_finish_block(index))
    footer = (meta_handle + index_handle).ljust(FOOTER_BYTES - 8, b"\0") + struct.pack("<Q", TABLE_MAGIC)
    return bytes(out + footer)


# ---------------------------------------------------------------- bundles


def resolve_prefix(checkpoint: Path) -> Path:
    """The bundle prefix (path without .index) from a directory, a prefix, or the .index file itself.

    In a directory, the `checkpoint` state file's model_checkpoint_path wins; otherwise there must be one .index.
    """
    if checkpoint.suffix == ".index" and checkpoint.is_file():
        return checkpoint.with_suffix("")
    if checkpoint.is_dir():
        state = checkpoint / "checkpoint"
        if state.is_file():
            for line in state.read_text(encoding="utf-8").splitlines():
                name, _, value = line.partition(":")
                if name.strip() == "model_checkpoint_path":
                    prefix = Path(value.strip().strip('"'))
                    prefix = prefix if prefix.is_absolute() else checkpoint / prefix
                    if prefix.with_name(prefix.name + ".index").is_file():
                        return prefix
                    # The state file often names the training machine's absolute path; look beside it instead.
                    local = checkpoint / prefix.name
                    if local.with_name(local.name + ".index").is_file():
                        return local
        indexes = sorted(checkpoint.glob("*.index"))
        if len(indexes) == 1:
            return indexes[0].with_suffix("")
        found = ", ".join(p.name for p in indexes) or "none"
        raise CheckpointError(f"--checkpoint {checkpoint}: expected exactly one *.index file, found {found}")
    if checkpoint.with_name(checkpoint.name + ".index").is_file():
        return checkpoint
    raise CheckpointError(f"--checkpoint {checkpoint}: no TensorFlow checkpoint (.index) found there")


def _data_path(prefix: Path, shard: int, shards: int) -> Path:
    return prefix.with_name(f"{prefix.name}.data-{shard:05d}-of-{shards:05d}")


def read_bundle(checkpoint: Path) -> dict[str, np.ndarray]:
    """All tensors of a bundle by name, each checked against its recorded size and CRC-32C."""
    prefix = resolve_prefix(checkpoint)
    table = read_table(prefix.with_name(prefix.name + ".index").read_bytes())
    header = table.pop(b"", None)
    if header is None:
        raise CheckpointError("checkpoint index has no bundle header")
    fields = dict(proto_fields(header))
    shards = int(fields.get(1, 1) or 1)
    if fields.get(2, 0):
        raise CheckpointError("checkpoint is big-endian; only little-endian bundles are supported")
    data: dict[int, bytes] = {}
    tensors: dict[str, np.ndarray] = {}
    for raw_name, raw_entry in table.items():
        name = raw_name.decode("utf-8")
        entry = BundleEntry.parse(raw_entry)
        if entry.sliced:
            raise CheckpointError(f"tensor {name!r} is stored in slices (partitioned variable); not supported")
        dtype = DTYPES.get(entry.dtype)
        if dtype is None:
            raise CheckpointError(f"tensor {name!r} has TF dtype {entry.dtype}, which this reader does not support")
        if entry.shard_id not in data:
            path = _data_path(prefix, entry.shard_id, shards)
            if not path.is_file():
                raise CheckpointError(f"checkpoint data file {path.name} is missing")
            data[entry.shard_id] = path.read_bytes()
        blob = data[entry.shard_id][entry.offset : entry.offset + entry.size]
        count = int(np.prod(entry.shape, dtype=np.int64))
        if len(blob) != entry.size or entry.size != count * dtype.itemsize:
            raise CheckpointError(f"tensor {name!r}: data file is truncated or the entry's size is inconsistent")
        if mask_crc(crc32c(blob)) != entry.crc32c:
            raise CheckpointError(f"tensor {name!r}: checksum mismatch (corrupt or incomplete download)")
        tensors[name] = np.frombuffer(blob, dtype=dtype).reshape(entry.shape).astype(dtype.newbyteorder("="))
    return tensors


def write_bundle(prefix: Path, tensors: Mapping[str, np.ndarray]) -> None:
    """Write tensors as a one-shard TF bundle: PREFIX.index and PREFIX.data-00000-of-00001."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    blob = bytearray()
    entries: dict[bytes, bytes] = {b"": _header()}
    for name in sorted(tensors):
        array = np.asarray(tensors[name], order="C")  # (ascontiguousarray would turn scalars into 1-d)
        dtype = array.dtype.newbyteorder("<") if array.dtype.itemsize > 1 else array.dtype
        code = DTYPE_CODES.get(np.dtype(dtype))
        if code is None:
            raise ValueError(f"tensor {name!r}: dtype {array.dtype} cannot be written")
        raw = array.astype(dtype).tobytes()
        entry = BundleEntry(code, tuple(array.shape), 0, len(blob), len(raw), mask_crc(crc32c(raw)))
        entries[name.encode("utf-8")] = entry.serialize()
        blob += raw
    _data_path(prefix, 0, 1).write_bytes(bytes(blob))
    prefix.with_name(prefix.name + ".index").write_bytes(write_table(entries))
