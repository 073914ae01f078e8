"""Read a PyTorch ``torch.save`` state dict into numpy arrays, without torch.

Two on-disk formats exist and both are read:

* zip (torch >= 1.6 default): a zip archive ``<archive>/data.pkl`` (the pickled object, whose
  tensors refer to storages through pickle *persistent ids*
  ``('storage', storage_type, key, location, numel)``), the raw little-endian bytes of each
  storage in ``<archive>/data/<key>``, and ``<archive>/byteorder`` in newer files.
* legacy (torch < 1.6, or ``_use_new_zipfile_serialization=False``): five pickles in a row
  (magic number, protocol version, system info, the object, the list of storage keys), then each
  storage as an int64 element count followed by its raw bytes, in the order of that key list.

A tensor is pickled as ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``:
it becomes ``as_strided`` on the storage's flat array, copied (so views and transposes come out
as ordinary C-contiguous arrays). Unpickling only ever calls the few constructors listed in
``_ALLOWED``; any other global in the file is refused, so a checkpoint cannot run code.
"""
from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from typing import Any, BinaryIO

import numpy as np

try:  # ml_dtypes ships with jax
    import ml_dtypes

    _BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover
    _BFLOAT16 = None

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# torch storage class name -> numpy dtype (little-endian base type; byte order fixed later).
_STORAGE_DTYPES = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}
if _BFLOAT16 is not None:
    _STORAGE_DTYPES["BFloat16Storage"] = _BFLOAT16


class TorchCheckpointError(ValueError):
    """The file is not a torch state dict this reader understands."""


class _StorageType:
    """Stands for ``torch.<Name>Storage`` inside the pickle: only its dtype matters."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _Storage:
    """A flat storage: a 1-D numpy array filled in from the file."""

    def __init__(self, dtype: np.dtype, numel: int):
        self.dtype = dtype
        self.numel = numel
        self.array: np.ndarray | None = None


def _rebuild_tensor(storage: _Storage, offset: int, size, stride, *_ignored) -> "LazyTensor":
    return LazyTensor(storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _rebuild_parameter(data, *_ignored):
    return data


def _rebuild_from_type_v2(func, _new_type, args, _state):
    return func(*args)


class LazyTensor:
    """A tensor whose storage may not be read yet (legacy files put the data after the pickle)."""

    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def materialize(self) -> np.ndarray:
        flat = self.storage.array
        if flat is None:
            raise TorchCheckpointError("a tensor's storage is missing from the file")
        if any(s == 0 for s in self.size):
            return np.zeros(self.size, flat.dtype)
        last = self.offset + sum((n - 1) * st for n, st in zip(self.size, self.stride))
        if self.offset < 0 or min(self.stride, default=0) < 0 or last >= flat.size:
            raise TorchCheckpointError(
                f"a tensor of size {self.size} and stride {self.stride} at offset {self.offset} "
                f"does not fit in its storage of {flat.size} elements")
        item = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(flat[self.offset:], shape=self.size,
                                               strides=tuple(st * item for st in self.stride), writeable=False)
        return np.array(view, order="C")


class _Placeholder:
    """``torch.Tensor`` / ``torch.nn.Parameter`` named as a type in ``_rebuild_from_type_v2``."""


# The globals a tensor pickle needs, each mapped to a constructor of this module's own.
TENSOR_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Tensor"): _Placeholder,
    ("torch.nn.parameter", "Parameter"): _Placeholder,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class TensorUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` answers only ``allowed`` (module, name) pairs and torch's
    storage types; any other global goes to ``refuse``, which raises. Subclasses widen ``allowed``
    for other torch-saved formats (``genflow.pretrained.edm_pickle``)."""

    allowed: dict[tuple[str, str], Any] = TENSOR_GLOBALS

    def __init__(self, file: BinaryIO, storages: dict[str, _Storage]):
        super().__init__(file, encoding="utf-8")
        self.storages = storages

    def find_class(self, module: str, name: str):
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        self.refuse(module, name)

    def refuse(self, module: str, name: str):
        raise TorchCheckpointError(f"the checkpoint refers to {module}.{name}, which this torch-free reader does "
                                   "not load; it reads state dicts of tensors only")

    def persistent_load(self, pid):
        pid = tuple(pid)
        kind = pid[0].decode() if isinstance(pid[0], bytes) else pid[0]
        if kind != "storage":
            raise TorchCheckpointError(f"unsupported persistent id {kind!r} in the checkpoint")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise TorchCheckpointError(f"unsupported storage type {storage_type!r} in the checkpoint")
        key = str(key)
        if key not in self.storages:
            self.storages[key] = _Storage(storage_type.dtype, int(numel))
        storage = self.storages[key]
        view = pid[5] if len(pid) > 5 else None
        if view is not None:  # legacy storage views (torch < 0.4): (view_key, offset, size)
            raise TorchCheckpointError("storage views from torch < 0.4 are not supported; re-save the file with a "
                                       "newer torch")
        return storage


class _PlainUnpickler(pickle.Unpickler):
    """For the header and key-list pickles of a legacy file: plain values only, no global at all
    (a plain ``pickle.load`` there would let the file run code before the magic number is checked)."""

    def find_class(self, module: str, name: str):
        raise TorchCheckpointError(f"the checkpoint's header refers to {module}.{name}; a torch header holds plain "
                                   "values only, so the file is not a torch checkpoint")

    def persistent_load(self, pid):
        raise TorchCheckpointError("the checkpoint's header holds a persistent id; it is not a torch checkpoint")


def _plain_load(f: BinaryIO) -> Any:
    return _PlainUnpickler(f, encoding="utf-8").load()


def _materialize(obj: Any) -> Any:
    if isinstance(obj, LazyTensor):
        return obj.materialize()
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, _materialize(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _materialize(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_materialize(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialize(v) for v in obj)
    return obj


def _load_zip(path: str) -> Any:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if not pkl:
            raise TorchCheckpointError(f"{path} is a zip file but holds no <archive>/data.pkl; it is not a torch "
                                       "checkpoint")
        archive = pkl[0].split("/")[0]
        order = "little"
        if f"{archive}/byteorder" in names:
            order = z.read(f"{archive}/byteorder").decode().strip()
        storages: dict[str, _Storage] = {}
        obj = TensorUnpickler(io.BytesIO(z.read(pkl[0])), storages).load()
        for key, st in storages.items():
            raw = z.read(f"{archive}/data/{key}")
            dtype = st.dtype.newbyteorder("<" if order == "little" else ">")
            st.array = np.frombuffer(raw, dtype=dtype).astype(st.dtype.newbyteorder("="))
            if st.array.size < st.numel:
                raise TorchCheckpointError(f"storage {key} in {path} holds {st.array.size} elements, not {st.numel}")
    return _materialize(obj)


def _load_legacy(path: str) -> Any:
    with open(path, "rb") as f:
        return load_legacy_stream(f, path)


def load_legacy_stream(f: BinaryIO, name: str) -> Any:
    """The object of a legacy-format ``torch.save`` stream, its tensors as numpy arrays (a storage
    saved on its own comes back as a storage whose ``array`` is filled). ``name`` is for messages."""
    try:
        magic = _plain_load(f)
    except TorchCheckpointError:  # a global in the header: say which, not "bad magic number"
        raise
    except Exception:
        magic = None
    if magic != _LEGACY_MAGIC:
        raise TorchCheckpointError(f"{name} is neither a zip nor a legacy torch checkpoint (bad magic number)")
    protocol = _plain_load(f)
    if protocol != _LEGACY_PROTOCOL:
        raise TorchCheckpointError(f"{name}: unsupported legacy torch protocol version {protocol}")
    sys_info = _plain_load(f)
    little = sys_info.get("little_endian", True) if isinstance(sys_info, dict) else True
    storages: dict[str, _Storage] = {}
    obj = TensorUnpickler(f, storages).load()
    keys = _plain_load(f)
    for key in keys:
        st = storages[str(key)]
        (numel,) = struct.unpack("<q" if little else ">q", f.read(8))
        dtype = st.dtype.newbyteorder("<" if little else ">")
        raw = f.read(numel * dtype.itemsize)
        if len(raw) != numel * dtype.itemsize:
            raise TorchCheckpointError(f"{name} ends inside storage {key}; the file is truncated")
        st.array = np.frombuffer(raw, dtype=dtype).astype(st.dtype.newbyteorder("="))
    return _materialize(obj)


def load_torch_checkpoint(path: str) -> Any:
    """Unpickle a ``torch.save`` file with every tensor as a numpy array (C-contiguous, the
    tensor's dtype: float64/32/16, bfloat16 via ml_dtypes, int64/32/16/8, uint8, bool).

    Args: path: a ``.pth``/``.pt`` file written by ``torch.save`` (zip or legacy format).
    Returns: the saved object, usually an ``OrderedDict`` name -> array."""
    if zipfile.is_zipfile(path):
        return _load_zip(path)
    return _load_legacy(path)
