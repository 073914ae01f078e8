"""Read an EDM snapshot pickle (NVlabs/edm ``network-snapshot-*.pkl``, ``edm-*.pkl``) without torch
and without running any of the code it carries.

EDM's training loop writes ``pickle.dump(dict(ema=net, loss_fn=..., augment_pipe=...,
dataset_kwargs=...))``. Its modules are *persistent* classes (``torch_utils.persistence``): each
pickles as ``_reconstruct_persistent_obj(meta)`` with ``meta = dict(type='class', version,
module_src, class_name, state)``, where ``module_src`` is the source of the module that defined the
class (EDM itself ``exec``s it on load) and ``state`` is the torch module's ``__dict__``: its
``_parameters``, ``_buffers`` and ``_modules`` (OrderedDicts) and the recorded ``_init_args`` /
``_init_kwargs``. A parameter is ``torch._utils._rebuild_parameter(tensor, requires_grad, hooks)``,
a tensor ``_rebuild_tensor_v2(storage, offset, size, stride, ...)``, and a storage pickled outside
``torch.save`` is ``torch.storage._load_from_bytes(b)`` with ``b`` a legacy-format ``torch.save`` of
that storage alone. Containers (``torch.nn.ModuleDict``) pickle as a class plus a ``__dict__``;
numpy scalars among the constructor arguments (EDM passes ``np.sqrt(0.5)``) as
``numpy.core.multiarray.scalar(dtype, bytes)``.

``find_class`` is the one place a pickle can reach code, so the unpickler here answers only the
globals in ``EDM_GLOBALS``, each mapped to a small constructor of this module that builds plain
data: ``PersistentObject`` records (class name, state, constructor arguments; the source is kept as
text and never executed), numpy arrays for tensors, dicts for containers. Anything else is refused
with ``EDMPickleError`` naming the global, before it is called.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from genflow.metrics.torch_checkpoint import (TENSOR_GLOBALS, LazyTensor, TensorUnpickler, TorchCheckpointError,
                                              load_legacy_stream)


class EDMPickleError(ValueError):
    """The file is not an EDM snapshot this reader understands, or it refers to code."""


@dataclass
class PersistentObject:
    """One of EDM's persistent modules, as data: ``class_name`` (e.g. ``"SongUNet"``), its
    ``init_args``/``init_kwargs``, its ``params`` and ``buffers`` (name -> numpy array), its
    ``modules`` (name -> PersistentObject or TorchContainer, in definition order) and the
    ``plain`` attributes of its state. ``module_src`` is the embedded source, as text only."""

    class_name: str
    module_src: str
    state: dict[str, Any]

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args") or ())

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return dict(self.state.get("_init_kwargs") or {})

    @property
    def params(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in (self.state.get("_parameters") or {}).items() if v is not None}

    @property
    def buffers(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in (self.state.get("_buffers") or {}).items() if v is not None}

    @property
    def modules(self) -> dict[str, Any]:
        return dict(self.state.get("_modules") or {})


class TorchContainer:
    """A plain torch container module (``ModuleDict``, ``ModuleList``): its children in order.
    Pickled as NEWOBJ (``cls.__new__(cls)``) then BUILD (``__setstate__(module.__dict__)``)."""

    torch_class = "torch.nn.Module"

    def __init__(self, state: dict[str, Any] | None = None):
        self.state = dict(state or {})

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.state = dict(state) if isinstance(state, dict) else {}

    @property
    def modules(self) -> dict[str, Any]:
        return dict(self.state.get("_modules") or {})


def _container(torch_class: str) -> type:
    return type(torch_class.rsplit(".", 1)[-1], (TorchContainer,), {"torch_class": torch_class})


class _EasyDict(dict):
    """``dnnlib.EasyDict`` (a dict subclass), as a plain dict."""


def _reconstruct_persistent_obj(meta: dict) -> PersistentObject:
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
        raise EDMPickleError("a persistent object in the file is not of the kind EDM writes (type 'class' with a "
                             "class name); the file is not an EDM snapshot")
    return PersistentObject(meta["class_name"], str(meta.get("module_src", "")), dict(meta.get("state") or {}))


def _load_from_bytes(blob: bytes):
    """A storage pickled outside ``torch.save``: a legacy ``torch.save`` of it, read tensor-only."""
    if not isinstance(blob, (bytes, bytearray)):
        raise EDMPickleError("a tensor storage in the file is not stored as bytes; the file is not an EDM snapshot")
    return load_legacy_stream(io.BytesIO(bytes(blob)), "a tensor storage in the file")


def _rebuild_parameter_with_state(data, _requires_grad, _hooks, _state):
    return data


def _np_dtype(name, align=False, copy=False) -> np.dtype:
    dtype = np.dtype(name)
    if dtype.kind not in "biufc":  # numbers only: an object dtype would carry arbitrary objects
        raise EDMPickleError(f"the file holds a numpy value of dtype {dtype}; EDM's snapshots hold numbers only")
    return dtype


def _np_scalar(dtype: np.dtype, data: bytes):
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biufc" or not isinstance(data, (bytes, bytearray)):
        raise EDMPickleError("the file holds a numpy scalar that is not a number; EDM's snapshots hold numbers only")
    return np.frombuffer(bytes(data), dtype)[0].item()


EDM_GLOBALS: dict[tuple[str, str], Any] = {
    **TENSOR_GLOBALS,   # torch._utils._rebuild_tensor_v2, _rebuild_parameter, ..., collections.OrderedDict
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("torch.nn.modules.container", "ModuleDict"): _container("torch.nn.ModuleDict"),
    ("torch.nn.modules.container", "ModuleList"): _container("torch.nn.ModuleList"),
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("numpy", "dtype"): _np_dtype,
    ("numpy.core.multiarray", "scalar"): _np_scalar,
    ("numpy._core.multiarray", "scalar"): _np_scalar,
}


class _EDMUnpickler(TensorUnpickler):
    allowed = EDM_GLOBALS

    def __init__(self, file, path: str):
        super().__init__(file, {})
        self.path = path

    def refuse(self, module: str, name: str):
        raise EDMPickleError(f"{self.path} refers to {module}.{name}, which is not among the tensor and EDM-module "
                             "constructors an EDM snapshot needs, so it was refused unread and nothing in it was "
                             "run; import only EDM snapshot pickles (edm-*.pkl, network-snapshot-*.pkl)")

    def persistent_load(self, pid):
        raise EDMPickleError("the file holds a persistent id (a torch.save archive, not an EDM snapshot written by "
                             "pickle.dump); pass an EDM snapshot .pkl")


def _materialize(obj: Any) -> Any:
    """Tensors (LazyTensor) to numpy arrays, recursively through records and containers."""
    if isinstance(obj, LazyTensor):
        return obj.materialize()
    if isinstance(obj, (PersistentObject, TorchContainer)):
        obj.state = _materialize(obj.state)
        return obj
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, _materialize(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _materialize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v) for v in obj)
    return obj


def read_edm_pickle(path: str) -> dict[str, Any]:
    """The snapshot dict of an EDM pickle: ``"ema"`` (a ``PersistentObject``, e.g. ``EDMPrecond``
    whose ``modules["model"]`` is the ``SongUNet``), and ``"loss_fn"``, ``"augment_pipe"``,
    ``"dataset_kwargs"`` where present; tensors are float32 (etc.) numpy arrays in torch's layout.
    Raises ``EDMPickleError`` (one sentence) for anything else."""
    if not os.path.exists(path):
        raise EDMPickleError(f"{path} does not exist; pass the path of an EDM snapshot .pkl "
                             "(e.g. edm-cifar10-32x32-uncond-vp.pkl).")
    if os.path.isdir(path):
        raise EDMPickleError(f"{path} is a directory; pass an EDM snapshot .pkl file.")
    if zipfile.is_zipfile(path):
        raise EDMPickleError(f"{path} is a zip archive (a torch.save file or a data set), not an EDM snapshot "
                             "pickle; pass an edm-*.pkl or network-snapshot-*.pkl file.")
    with open(path, "rb") as f:
        try:
            data = _materialize(_EDMUnpickler(f, path).load())
        except EDMPickleError:
            raise
        except TorchCheckpointError as e:
            raise EDMPickleError(f"{path}: {e}.") from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
                UnicodeDecodeError, MemoryError, OverflowError) as e:
            raise EDMPickleError(f"{path} is not a readable pickle ({type(e).__name__}: {str(e)[:100]}); pass an EDM "
                                 "snapshot .pkl, re-downloading it if it was cut short.") from None
    if not isinstance(data, dict) or not isinstance(data.get("ema"), PersistentObject):
        what = f"a dict with keys {sorted(map(str, data))[:6]}" if isinstance(data, dict) else type(data).__name__
        raise EDMPickleError(f"{path} holds {what}, not an EDM snapshot (a dict whose 'ema' is an EDM network); "
                             "pass an edm-*.pkl or network-snapshot-*.pkl file.")
    return data
