"""A test-only writer of PyTorch's checkpoint format (``torch.save``, torch >= 1.6), without torch.

It writes what torch writes for a state dict: a zip archive with ``<archive>/data.pkl`` (a
protocol-2 pickle of an ``OrderedDict`` of ``torch._utils._rebuild_tensor_v2`` calls whose
storages are persistent ids ``('storage', torch.<Kind>Storage, key, 'cpu', numel)``),
``<archive>/data/<key>`` (one record per storage, its raw little-endian bytes),
``<archive>/byteorder`` and ``<archive>/version``. The pickle is emitted opcode by opcode,
since the standard pickler will not name ``torch`` globals where torch is not installed.

Tensors are views: a :class:`Storage` (the elements, of one torch dtype) and an offset, size
and stride in elements, so tests can share one storage between tensors, put them at offsets
and give them non-contiguous strides, as torch does for views (``w.T``, ``x[2:]``).
"""
from __future__ import annotations

import os
import pickle
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

# torch storage class -> the numpy dtype of its elements (bfloat16: the uint16 bit patterns).
KINDS = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
         "BFloat16Storage": "<u2", "LongStorage": "<i8", "IntStorage": "<i4",
         "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?"}
NUMPY_KINDS = {np.dtype(code): kind for kind, code in KINDS.items() if kind != "BFloat16Storage"}


@dataclass(eq=False)
class Storage:
    """One storage record: a 1-D array of its elements and its torch storage class."""

    data: np.ndarray
    kind: str

    def __post_init__(self) -> None:
        self.data = np.ascontiguousarray(self.data, KINDS[self.kind]).reshape(-1)


@dataclass(frozen=True)
class Tensor:
    """A tensor as torch pickles it: a view of a storage (offset, size, stride in elements)."""

    storage: Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def storage_of(values: np.ndarray) -> Storage:
    """A storage holding a numpy array's elements (C order), of the matching torch dtype."""
    return Storage(np.asarray(values).reshape(-1), NUMPY_KINDS[np.asarray(values).dtype])


def bfloat16_storage(values: np.ndarray) -> Storage:
    """A bfloat16 storage of float32 values, rounded to nearest even as torch casts them."""
    bits = np.ascontiguousarray(values, np.float32).reshape(-1).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return Storage(rounded.astype(np.uint16), "BFloat16Storage")


def contiguous(storage: Storage, shape: tuple[int, ...], offset: int = 0) -> Tensor:
    """A C-contiguous tensor of ``shape`` at ``offset`` in ``storage``."""
    strides, step = [], 1
    for n in reversed(shape):
        strides.insert(0, step)
        step *= n
    return Tensor(storage, offset, tuple(shape), tuple(strides))


def tensor(values: np.ndarray) -> Tensor:
    """A tensor with a storage of its own (``torch.from_numpy(values)``)."""
    return contiguous(storage_of(values), np.shape(values))


def transposed(values: np.ndarray) -> Tensor:
    """A 2-D array saved as the transposed view of its transpose (``t.T`` in torch): the
    storage holds ``values.T`` in C order and the tensor's strides are ``(1, rows)``."""
    rows, cols = values.shape
    return Tensor(storage_of(np.ascontiguousarray(values.T)), 0, (rows, cols), (1, rows))


def save(path: str | os.PathLike, tensors: Mapping[str, Tensor], archive: str = "archive",
         byteorder: str | None = "little") -> None:
    """Write ``tensors`` (name -> view) as torch.save writes a state dict."""
    keys: dict[int, str] = {}
    storages: list[Storage] = []
    for t in tensors.values():
        if id(t.storage) not in keys:
            keys[id(t.storage)] = str(len(storages))
            storages.append(t.storage)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{archive}/data.pkl", state_dict_pickle(tensors, keys))
        if byteorder is not None:
            zf.writestr(f"{archive}/byteorder", byteorder)
        for storage in storages:
            zf.writestr(f"{archive}/data/{keys[id(storage)]}", storage.data.tobytes())
        zf.writestr(f"{archive}/version", "3\n")


def state_dict_pickle(tensors: Mapping[str, Tensor], keys: Mapping[int, str]) -> bytes:
    """The protocol-2 pickle torch writes for an ``OrderedDict`` of tensors."""
    out = [pickle.PROTO + b"\x02", _global("collections", "OrderedDict"), pickle.EMPTY_TUPLE,
           pickle.REDUCE, pickle.MARK]
    for name, t in tensors.items():
        out += [_str(name), _global("torch._utils", "_rebuild_tensor_v2"), pickle.MARK,
                pickle.MARK, _str("storage"), _global("torch", t.storage.kind),
                _str(keys[id(t.storage)]), _str("cpu"), _int(t.storage.data.size), pickle.TUPLE,
                pickle.BINPERSID, _int(t.offset), _ints(t.size), _ints(t.stride),
                pickle.NEWFALSE, _global("collections", "OrderedDict"), pickle.EMPTY_TUPLE,
                pickle.REDUCE, pickle.TUPLE, pickle.REDUCE]
    out += [pickle.SETITEMS, pickle.STOP]
    return b"".join(out)


def _global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode("ascii")


def _str(value: str) -> bytes:
    data = value.encode("utf-8")
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def _int(value: int) -> bytes:
    if -2 ** 31 <= value < 2 ** 31:
        return pickle.BININT + struct.pack("<i", value)
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return pickle.LONG1 + bytes([len(data)]) + data


def _ints(values: tuple[int, ...]) -> bytes:
    return pickle.MARK + b"".join(_int(v) for v in values) + pickle.TUPLE


def bfloat16_round(values: np.ndarray) -> np.ndarray:
    """float32 values rounded to bfloat16 as torch rounds them, back as float32."""
    bits = bfloat16_storage(values).data.astype(np.uint32) << 16
    return bits.view(np.float32).reshape(np.shape(values))


PACKED_KINDS = {"float32": "FloatStorage", "float16": "HalfStorage", "bfloat16": "BFloat16Storage"}


def packed(state: Mapping[str, np.ndarray], dtype: str = "float32") -> dict[str, Tensor]:
    """A state dict as views of one shared storage of ``dtype`` (float32, float16, bfloat16),
    one after the other at their offsets, the 2-D ones stored transposed and read back through
    a transposed view (strides ``(1, rows)``); tensors that are not floating point keep a
    storage of their own."""
    chunks, layout, offset = [], {}, 0
    for name, values in state.items():
        if values.dtype.kind != "f":
            continue
        stored = values.T if values.ndim == 2 else values
        chunks.append(np.ascontiguousarray(stored, np.float32).reshape(-1))
        layout[name] = offset
        offset += values.size
    flat = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    shared = bfloat16_storage(flat) if dtype == "bfloat16" else \
        Storage(flat.astype(dtype), PACKED_KINDS[dtype])
    tensors = {}
    for name, values in state.items():
        if name not in layout:
            tensors[name] = tensor(values)
        elif values.ndim == 2:
            rows = values.shape[0]
            tensors[name] = Tensor(shared, layout[name], values.shape, (1, rows))
        else:
            tensors[name] = contiguous(shared, values.shape, layout[name])
    return tensors
