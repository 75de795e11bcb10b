"""Reads a PyTorch state dict saved in the legacy (pre-1.6, non-zip) format with the
standard library's `pickle` and NumPy: no torch.

Called by `components.pretrained.convert` (``breastdx weights`` / ``make weights``). The
legacy file is a run of pickles: a magic number, the protocol version, system info, the
object itself (tensors point at storages through pickle's persistent ids), the list of
storage keys, then each storage's raw little-endian bytes after an int64 element count
(torch/serialization.py ``_legacy_load``, which this mirrors).
"""

from __future__ import annotations

import collections
import pickle
import struct
from typing import Any, BinaryIO

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

# torch's legacy storage classes -> NumPy dtypes
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name: str) -> None:
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    """A storage's dtype and size until its bytes are read after the main pickle."""

    def __init__(self, dtype: np.dtype, size: int) -> None:
        self.dtype, self.size = dtype, size
        self.data: np.ndarray = np.empty(0, dtype)


class _Tensor:
    """What ``torch._utils._rebuild_tensor_v2`` would build, resolved once storages are read."""

    def __init__(
        self, storage: Any, offset: int, size: tuple[int, ...], stride: tuple[int, ...]
    ) -> None:
        self.storage, self.offset, self.size, self.stride = (
            storage,
            offset,
            tuple(size),
            tuple(stride),
        )

    def to_numpy(self) -> np.ndarray:
        base, offset = self.storage
        data = base.data[offset + self.offset :]
        if not self.size:
            return data[:1].reshape(()).copy()
        item = data.dtype.itemsize
        return np.lib.stride_tricks.as_strided(
            data, self.size, [s * item for s in self.stride]
        ).copy()


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    return _Tensor(storage, storage_offset, size, stride)


class _Unpickler(pickle.Unpickler):
    def __init__(self, handle: BinaryIO, storages: dict[str, _Storage]) -> None:
        super().__init__(handle)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        # A state dict holds tensors in (ordered) dicts only; anything else is not one.
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a PyTorch state dict")

    def persistent_load(self, saved_id: Any) -> Any:
        kind, storage_type, key, _location, size, view = saved_id
        if kind != "storage":
            raise pickle.UnpicklingError(
                f"unexpected persistent id {kind!r} in a PyTorch state dict"
            )
        if key not in self._storages:
            self._storages[key] = _Storage(storage_type.dtype, int(size))
        offset = 0
        if view is not None:  # (view key, offset, view size): a slice of the root storage
            offset = int(view[1])
        return (self._storages[key], offset)


def load_state_dict(path: str) -> collections.OrderedDict[str, np.ndarray]:
    """The state dict of a legacy-format ``.pth`` file as NumPy arrays (PyTorch layout).

    Raises:
        ValueError: the file is not a legacy PyTorch file (a zip-format file says so).
    """
    with open(path, "rb") as handle:
        if handle.read(2) == b"PK":
            raise ValueError(
                f"{path}: a zip-format PyTorch file; this reader takes the legacy format only"
            )
        handle.seek(0)
        magic = pickle.load(handle)
        if magic != MAGIC_NUMBER:
            raise ValueError(f"{path}: not a PyTorch legacy file (magic number {magic!r})")
        version = pickle.load(handle)
        if version != PROTOCOL_VERSION:
            raise ValueError(
                f"{path}: PyTorch protocol version {version}, expected {PROTOCOL_VERSION}"
            )
        sys_info = pickle.load(handle)
        if not sys_info.get("little_endian", True):
            raise ValueError(f"{path}: saved on a big-endian machine; expected little-endian")
        storages: dict[str, _Storage] = {}
        state = _Unpickler(handle, storages).load()
        keys = pickle.load(handle)
        for key in keys:
            storage = storages[key]
            (count,) = struct.unpack("<q", handle.read(8))
            if count != storage.size:
                raise ValueError(
                    f"{path}: storage {key} holds {count} values, its header said {storage.size}"
                )
            raw = handle.read(count * storage.dtype.itemsize)
            if len(raw) != count * storage.dtype.itemsize:
                raise ValueError(f"{path}: file ends inside storage {key}")
            storage.data = np.frombuffer(raw, storage.dtype)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: holds a {type(state).__name__}, expected a state dict")
    return collections.OrderedDict(
        (name, value.to_numpy() if isinstance(value, _Tensor) else np.asarray(value))
        for name, value in state.items()
    )
