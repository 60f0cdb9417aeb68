"""tf.train.Example records and TFRecord files, without TensorFlow.

The prepare job writes what ``tf.data.TFRecordDataset`` reads, but must not need TensorFlow
(Spark executors rarely have it). Both formats are small and stable:

* ``tf.train.Example`` is a protocol buffer::

      Example  { Features features = 1; }
      Features { map<string, Feature> feature = 1; }    // entries: {string key = 1; Feature value = 2;}
      Feature  { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
                              Int64List int64_list = 3; } }
      Int64List { repeated int64 value = 1 [packed = true]; }

  :func:`encode_examples` writes the wire format for int64 features directly, with the map
  entries in sorted key order: byte for byte what ``SerializeToString(deterministic=True)``
  gives (the non-deterministic default only orders the map entries differently; every
  parser reads both the same).

* A TFRecord file is a sequence of records, each framed as::

      uint64 length (little endian) | uint32 masked crc32c(length) | data | uint32 masked crc32c(data)

  optionally inside one gzip (``compression_type="GZIP"``) stream.

Values are encoded for a whole batch at once with numpy (varints of an (n, k) array); only
the assembly of each record is a Python loop.
"""
from __future__ import annotations

import gzip
import io
import struct
from typing import BinaryIO, Iterable, Iterator, Mapping, Sequence

import numpy as np

try:  # the C implementation (the `crc32c` package); it is a dependency of reviewlake
    from crc32c import crc32c as _crc32c
except ImportError:  # pragma: no cover - only without the package
    _crc32c = None

_MASK_DELTA = 0xA282EAD8
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
COMPRESSIONS = ("none", "gzip")
GZIP_LEVEL = 6  # zlib's default, as TensorFlow's ZLIB/GZIP writer uses


# --------------------------------------------------------------------------- protobuf


def varint(value: int) -> bytes:
    """Protocol buffer base-128 varint of one int (negative int64 as 10 bytes)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varints(values: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Varints of every element of a 2-D integer array, row after row.

    Returns the concatenated bytes and the number of bytes of each row.
    """
    v = np.ascontiguousarray(values).astype(np.int64, copy=False).view(np.uint64)
    if v.ndim != 2:
        raise ValueError("varints expects a 2-D array")
    nbytes = np.ones(v.shape, dtype=np.int64)
    for shift in range(7, 64, 7):
        more = (v >> np.uint64(shift)) != 0
        if not more.any():
            break
        nbytes += more
    width = int(nbytes.max()) if v.size else 1
    out = np.empty(v.shape + (width,), dtype=np.uint8)
    for j in range(width):
        byte = ((v >> np.uint64(7 * j)) & np.uint64(0x7F)).astype(np.uint8)
        out[..., j] = byte | ((nbytes > j + 1).astype(np.uint8) << 7)
    if width == 1:
        flat = out.reshape(-1)
    else:
        flat = out[np.arange(width) < nbytes[..., None]]
    return flat.tobytes(), nbytes.sum(axis=1)


def _entry_prefix(key: bytes, payload_len: int) -> bytes:
    """Everything of one map entry (key -> Feature{int64_list}) before the packed values."""
    # Int64List.value, packed (an empty list has no field at all)
    int64_list = b"\x0a" + varint(payload_len) if payload_len else b""
    feature_len = len(int64_list) + payload_len
    feature = b"\x1a" + varint(feature_len)                      # Feature.int64_list
    value_len = len(feature) + feature_len
    body = b"\x0a" + varint(len(key)) + key + b"\x12" + varint(value_len)  # key, value
    entry_len = len(body) + value_len
    return b"\x0a" + varint(entry_len) + body + feature + int64_list      # Features.feature


def encode_examples(features: Mapping[str, np.ndarray]) -> list[bytes]:
    """Serialized tf.train.Example records, one per row, of int64 features.

    ``features`` maps a feature name to an (n, k) integer array (k values per record, the same
    for every record of a batch; a 1-D array means one value per record). An empty feature
    (k = 0) is written as an empty Int64List, as protobuf does.
    """
    names = sorted(features)
    if not names:
        raise ValueError("no features")
    arrays = []
    for name in names:
        a = np.asarray(features[name])
        arrays.append(a.reshape(-1, 1) if a.ndim == 1 else a)
    n = arrays[0].shape[0]
    if any(a.shape[0] != n for a in arrays):
        raise ValueError("every feature needs the same number of records")
    columns = []  # per feature: (key, flat varint bytes, row offsets)
    for name, a in zip(names, arrays):
        if a.shape[1] == 0:
            flat, lens = b"", np.zeros(n, dtype=np.int64)
        else:
            flat, lens = varints(a)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        columns.append((name.encode("utf-8"), flat, offsets.tolist(), lens.tolist()))

    prefix_cache: dict[tuple[bytes, int], bytes] = {}
    out: list[bytes] = []
    append = out.append
    for i in range(n):
        parts = []
        size = 0
        for key, flat, offsets, lens in columns:
            plen = lens[i]
            prefix = prefix_cache.get((key, plen))
            if prefix is None:
                prefix = prefix_cache[(key, plen)] = _entry_prefix(key, plen)
            parts.append(prefix)
            parts.append(flat[offsets[i]:offsets[i + 1]])
            size += len(prefix) + plen
        append(b"\x0a" + varint(size) + b"".join(parts))
    return out


def decode_int64_example(data: bytes) -> dict[str, list[int]]:
    """Parse a serialized Example of int64 features (for tests and inspection, not speed)."""
    def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
        shift = result = 0
        while True:
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result, pos
            shift += 7

    def fields(buf: bytes) -> Iterator[tuple[int, int, bytes | int]]:
        pos = 0
        while pos < len(buf):
            tag, pos = read_varint(buf, pos)
            number, wire = tag >> 3, tag & 7
            if wire == 2:
                length, pos = read_varint(buf, pos)
                yield number, wire, buf[pos:pos + length]
                pos += length
            elif wire == 0:
                value, pos = read_varint(buf, pos)
                yield number, wire, value
            else:
                raise ValueError(f"unexpected wire type {wire}")

    out: dict[str, list[int]] = {}
    for _, _, features in fields(data):
        for _, _, entry in fields(features):
            key, values = None, []
            for number, _, value in fields(entry):
                if number == 1:
                    key = value.decode("utf-8")
                elif number == 2:
                    for kind, _, lst in fields(value):
                        if kind != 3:
                            raise ValueError("only int64_list features are supported")
                        for vnum, wire, packed in fields(lst):
                            if wire == 0:
                                values.append(packed)
                                continue
                            pos = 0
                            while pos < len(packed):
                                v, pos = read_varint(packed, pos)
                                values.append(v)
            out[key] = [v - (1 << 64) if v >= 1 << 63 else v for v in values]
    return out


# --------------------------------------------------------------------------- framing


def masked_crc32c(data: bytes) -> int:
    if _crc32c is None:  # pragma: no cover
        raise RuntimeError("the crc32c package is required to write TFRecords (pip install crc32c)")
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
    """One record as it appears in a TFRecord file."""
    header = _U64.pack(len(record))
    return b"".join((header, _U32.pack(masked_crc32c(header)), record,
                     _U32.pack(masked_crc32c(record))))


def frame_many(records: Sequence[bytes]) -> bytes:
    """Many records framed into one buffer (one join instead of a write per record)."""
    u32, crc = _U32.pack, masked_crc32c
    headers: dict[int, bytes] = {}  # records of a batch have few distinct lengths
    parts = []
    append = parts.append
    for record in records:
        size = len(record)
        header = headers.get(size)
        if header is None:
            header = headers[size] = _header(size)
        append(header)
        append(record)
        append(u32(crc(record)))
    return b"".join(parts)


def _header(size: int) -> bytes:
    length = _U64.pack(size)
    return length + _U32.pack(masked_crc32c(length))


class TFRecordWriter:
    """Write TFRecord framing to a binary stream (optionally gzip-compressed).

    ``TFRecordWriter(stream, compression="gzip")``; :meth:`write` one record,
    :meth:`write_many` a batch. Counts records and (uncompressed) bytes written. Closing the
    writer finishes the gzip stream; the underlying stream is closed only if ``owns_stream``.
    """

    def __init__(self, stream: BinaryIO, compression: str = "none", owns_stream: bool = False):
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        self._raw = stream
        self._owns = owns_stream
        # no name, mtime=0: the same records give the same bytes (reproducible outputs)
        self._out: BinaryIO = (gzip.GzipFile(filename="", fileobj=stream, mode="wb",
                                             compresslevel=GZIP_LEVEL,
                                             mtime=0) if compression == "gzip" else stream)
        self.records = 0
        self.bytes = 0

    @classmethod
    def open(cls, path: str, compression: str = "none") -> "TFRecordWriter":
        return cls(io.open(path, "wb", buffering=1 << 20), compression, owns_stream=True)

    def write(self, record: bytes) -> None:
        data = frame(record)
        self._out.write(data)
        self.records += 1
        self.bytes += len(data)

    def write_many(self, records: Sequence[bytes]) -> None:
        data = frame_many(records)
        self._out.write(data)
        self.records += len(records)
        self.bytes += len(data)

    def close(self) -> None:
        if self._out is not self._raw:
            self._out.close()
        if self._owns:
            self._raw.close()
        else:
            self._raw.flush()

    def __enter__(self) -> "TFRecordWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def suffix(compression: str) -> str:
    return ".tfrecord.gz" if compression == "gzip" else ".tfrecord"


def read_records(path_or_stream, compression: str = "none", check_crc: bool = True) -> Iterator[bytes]:
    """The records of a TFRecord file, checking both CRCs (raises ValueError on corruption)."""
    stream = open(path_or_stream, "rb") if isinstance(path_or_stream, (str, bytes)) or hasattr(
        path_or_stream, "__fspath__") else path_or_stream
    src = gzip.GzipFile(fileobj=stream, mode="rb") if compression == "gzip" else stream
    try:
        while True:
            header = src.read(12)
            if not header:
                return
            if len(header) < 12:
                raise ValueError("truncated record header")
            length = _U64.unpack(header[:8])[0]
            if check_crc and _U32.unpack(header[8:])[0] != masked_crc32c(header[:8]):
                raise ValueError("corrupt record length (crc mismatch)")
            data = src.read(length)
            footer = src.read(4)
            if len(data) < length or len(footer) < 4:
                raise ValueError("truncated record")
            if check_crc and _U32.unpack(footer)[0] != masked_crc32c(data):
                raise ValueError("corrupt record data (crc mismatch)")
            yield data
    finally:
        if src is not stream:
            src.close()
        if stream is not path_or_stream:
            stream.close()


def write_file(path: str, records: Iterable[bytes], compression: str = "none") -> int:
    """Write records to a local file; returns how many."""
    with TFRecordWriter.open(path, compression) as writer:
        for record in records:
            writer.write(record)
        return writer.records
