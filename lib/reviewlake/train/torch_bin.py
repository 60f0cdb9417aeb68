"""PyTorch checkpoints (``torch.save``, ``pytorch_model.bin``) as numpy arrays, without torch.

The format of torch >= 1.6 is a zip archive whose records sit under one top-level folder
(``<archive>/``):

* ``data.pkl``: a pickle of the saved object. A tensor pickles as a call of
  ``torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
  backward_hooks[, metadata])``; its storage is a persistent id
  ``('storage', <torch.FloatStorage, ...>, key, location, numel)``.
* ``data/<key>``: the raw bytes of one storage (``numel`` elements of its dtype); tensors that
  share a storage name the same key, each with its own offset, size and stride (in elements).
* ``byteorder`` (``little`` or ``big``; absent in older files, which are little-endian) and
  ``version``.

Unpickling runs code named by the pickle, so the unpickler here resolves only the few names a
state dict needs (to stand-ins defined below, never to anything importable) and refuses every
other one. The older non-zip format (torch < 1.6) is refused with a one-line message.
"""
from __future__ import annotations

import os
import pickle
import struct
import zipfile
import zlib
from collections import OrderedDict
from typing import IO, Any, Callable

import numpy as np

from ..errors import UserError

# The pickled magic number that opens a legacy (torch < 1.6) checkpoint, protocol 2.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class Corrupt(Exception):
    """Raised inside the reader where the file breaks the format; reported as a UserError."""


class _Sealed:
    """The objects the unpickler hands out (stand-ins, storages): a pickle cannot change them
    (its BUILD opcode calls ``__setstate__``), so one file cannot alter the next one's load."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise Corrupt(f"a pickle that sets the state of a {type(self).__name__}")


class StorageType(_Sealed):
    """A torch storage class as the pickle names it (``torch.FloatStorage``): its dtype."""

    __slots__ = ("name", "dtype", "bfloat16")

    def __init__(self, name: str, dtype: str, bfloat16: bool = False):
        self.name = name
        self.dtype = np.dtype(dtype)
        self.bfloat16 = bfloat16        # stored as uint16 bits, read as float32


def _storage_types() -> dict[str, StorageType]:
    little = {"Float": "<f4", "Double": "<f8", "Half": "<f2", "BFloat16": "<u2", "Long": "<i8",
              "Int": "<i4", "Short": "<i2", "Char": "i1", "Byte": "u1", "Bool": "?"}
    types = {f"{kind}Storage": StorageType(f"torch.{kind}Storage", code, kind == "BFloat16")
             for kind, code in little.items()}
    types["UntypedStorage"] = StorageType("torch.UntypedStorage", "u1")
    return types


STORAGE_TYPES = _storage_types()


class Storage(_Sealed):
    """One storage record: its elements as a read-only 1-D array of the storage's dtype."""

    __slots__ = ("type", "array")

    def __init__(self, storage_type: StorageType, array: np.ndarray):
        self.type = storage_type
        self.array = array


class _Function(_Sealed):
    """A torch function the pickle may call, standing in for it here."""

    __slots__ = ("_function",)

    def __init__(self, function: Callable[..., np.ndarray]):
        self._function = function

    def __call__(self, *args: Any) -> np.ndarray:
        return self._function(*args)


def _rebuild_tensor(storage: Storage, offset: int, size: tuple, stride: tuple,
                    requires_grad: bool = False, backward_hooks: Any = None,
                    metadata: Any = None) -> np.ndarray:
    """``torch._utils._rebuild_tensor_v2``: the tensor as a contiguous numpy array (a copy)."""
    if not isinstance(storage, Storage):
        raise Corrupt("a tensor without a storage")
    shape, strides = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if len(shape) != len(strides) or not _is_int(offset) or offset < 0 \
            or min(shape + strides, default=0) < 0:
        raise Corrupt(f"a tensor of size {size}, stride {stride} at offset {offset}")
    if 0 in shape:
        values = np.empty(shape, storage.array.dtype)
    else:
        last = offset + sum((n - 1) * s for n, s in zip(shape, strides))
        if last >= storage.array.size:
            raise Corrupt(f"a tensor of size {shape}, stride {strides} at offset {offset} reaches "
                          f"past its storage of {storage.array.size} elements")
        item = storage.array.itemsize
        values = np.lib.stride_tricks.as_strided(
            storage.array[offset:], shape=shape, strides=tuple(s * item for s in strides),
            writeable=False).copy()
    return _bfloat16_to_float32(values) if storage.type.bfloat16 else values


def _rebuild_parameter(data: np.ndarray, requires_grad: bool = False,
                       backward_hooks: Any = None) -> np.ndarray:
    """``torch._utils._rebuild_parameter``: a ``Parameter`` is its tensor here."""
    if not isinstance(data, np.ndarray):
        raise Corrupt("a parameter without a tensor")
    return data


def _bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 is the high half of a float32: shift the 16 bits up, the low half zero."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple) or not all(_is_int(v) for v in value):
        raise Corrupt(f"a tensor {what} that is not a tuple of integers: {value!r:.80}")
    return value


# What find_class may resolve: module -> name -> the stand-in it resolves to.
ALLOWED_GLOBALS: dict[str, dict[str, Any]] = {
    "torch._utils": {"_rebuild_tensor_v2": _Function(_rebuild_tensor),
                     "_rebuild_parameter": _Function(_rebuild_parameter)},
    "collections": {"OrderedDict": OrderedDict},
    "torch": dict(STORAGE_TYPES),
    "torch.storage": {"UntypedStorage": STORAGE_TYPES["UntypedStorage"]},
}


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles ``data.pkl``: only ALLOWED_GLOBALS, storages read from the archive."""

    def __init__(self, file: IO[bytes], archive: zipfile.ZipFile, prefix: str, path: str):
        super().__init__(file)
        self._archive, self._prefix, self._path = archive, prefix, path
        self._storages: dict[str, Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        allowed = ALLOWED_GLOBALS.get(module, {})
        if name not in allowed:
            raise UserError(f"{self._path} refers to {module}.{name}, which a state dict does "
                            f"not need: refused (unpickling it could run code)")
        return allowed[name]

    def persistent_load(self, pid: Any) -> Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], StorageType) and isinstance(pid[2], str)
                and _is_int(pid[4])):
            raise Corrupt(f"an unknown persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel = pid
        if key not in self._storages:
            self._storages[key] = self._read_storage(storage_type, key, numel)
        return self._storages[key]

    def _read_storage(self, storage_type: StorageType, key: str, numel: int) -> Storage:
        record = f"{self._prefix}data/{key}"
        try:
            data = self._archive.read(record)
        except KeyError:
            raise Corrupt(f"no record {record}") from None
        if len(data) != numel * storage_type.dtype.itemsize:
            raise Corrupt(f"{record} holds {len(data)} bytes, not {numel} elements of "
                          f"{storage_type.name}")
        return Storage(storage_type, np.frombuffer(data, storage_type.dtype))


def load(path: str | os.PathLike) -> Any:
    """The object a ``torch.save`` zip checkpoint holds, its tensors as numpy arrays.

    Every failure is a one-line UserError naming the file: not a checkpoint, truncated or
    corrupt, the legacy format, big-endian, or a pickle that names anything a state dict does
    not need."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    if not head.startswith(b"PK"):
        raise UserError(_not_zip_message(path, head))
    try:
        with zipfile.ZipFile(path) as archive:
            return _load_archive(archive, path)
    except UserError:
        raise
    except (Corrupt, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError,
            pickle.UnpicklingError, struct.error, ValueError, TypeError, KeyError, IndexError,
            AttributeError, OverflowError, RecursionError, NotImplementedError) as e:
        detail = " ".join(str(e).split()) or type(e).__name__
        raise UserError(f"{path} is truncated or corrupt ({detail:.200}): fetch or save it "
                        f"again") from None


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A checkpoint that is a state dict (``pytorch_model.bin``): parameter name -> array."""
    state = load(path)
    if not isinstance(state, dict):
        raise UserError(f"{os.fspath(path)} holds a {type(state).__name__}, not a state dict "
                        f"(parameter name -> tensor)")
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, np.ndarray) \
                or value.dtype.kind not in "biuf":
            what = f"an array of {value.dtype}" if isinstance(value, np.ndarray) else \
                f"of type {type(value).__name__}"
            raise UserError(f"{os.fspath(path)} is not a state dict: {name!r:.80} is {what}, "
                            f"not a tensor")
    return dict(state)


def _not_zip_message(path: str, head: bytes) -> str:
    if _is_legacy(head):
        return (f"{path} is in PyTorch's legacy format (torch < 1.6): re-save it with a newer "
                f"torch (torch.save) or convert it to model.safetensors")
    return f"{path} is truncated or corrupt (not a torch.save zip archive): fetch or save it again"


def _is_legacy(head: bytes) -> bool:
    """A pickle (protocol 2+) whose first object is the legacy magic number."""
    magic = pickle.dumps(LEGACY_MAGIC, protocol=2)[2:-1]    # LONG1 10 <bytes>, no PROTO, STOP
    return head[:1] == pickle.PROTO and magic in head[:32]


def _load_archive(archive: zipfile.ZipFile, path: str) -> Any:
    prefix = _archive_prefix(archive)
    names = set(archive.namelist())
    if f"{prefix}byteorder" in names:
        order = archive.read(f"{prefix}byteorder").decode("ascii", "replace").strip()
        if order != "little":
            raise UserError(f"{path} was saved with byte order {order!r:.20}; only little-endian "
                            f"checkpoints are read: re-save it on a little-endian machine or "
                            f"convert it to model.safetensors")
    with archive.open(f"{prefix}data.pkl") as fh:
        return _StateDictUnpickler(fh, archive, prefix, path).load()


def _archive_prefix(archive: zipfile.ZipFile) -> str:
    """The top-level folder that holds ``data.pkl`` (``archive/``, or the file's stem)."""
    prefixes = [n[:-len("data.pkl")] for n in archive.namelist()
                if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(prefixes) != 1:
        raise Corrupt(f"{len(prefixes)} <archive>/data.pkl records, not one")
    return prefixes[0]
