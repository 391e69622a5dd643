"""Read fairseq ``.pt`` checkpoints without fairseq, omegaconf, or arbitrary code execution.

fairseq checkpoints are pickles that hold ``omegaconf`` containers (``cfg``) or an ``argparse.Namespace``
(``args``) beside the tensors, so ``torch.load(weights_only=True)`` refuses them and
``weights_only=False`` would run whatever the pickle names. We load them with a restricted unpickler
(passed to ``torch.load`` as its ``pickle_module``) whose ``find_class`` allows only:
plain builtins and ``collections`` containers, torch's tensor rebuild functions (storages are resolved
by torch itself), numpy scalars/arrays, ``typing`` markers, and the ``omegaconf``/``argparse`` classes and
fairseq's ``Dictionary`` (the target letters in a fine-tuned checkpoint's ``task_state``),
which are replaced by inert stand-ins and turned into plain dicts/lists afterwards. Any other global
raises ``UnsafeCheckpointError`` before anything is built, so a crafted pickle executes nothing.
"""

from __future__ import annotations

import collections
import pickle
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch


class UnsafeCheckpointError(ValueError):
    """The checkpoint's pickle references something this loader will not build."""


class _Inert:
    """Stand-in for omegaconf / argparse objects: records state, runs nothing."""

    _kind = "object"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj._args = args
        obj._state = None
        return obj

    def __init__(self, *args, **kwargs):  # argparse.Namespace(**kw) via REDUCE
        if kwargs:
            self._state = dict(kwargs)

    def __setstate__(self, state):
        self._state = state

    def __setitem__(self, k, v):  # SETITEMS on a dict subclass stand-in
        if self._state is None:
            self._state = {}
        self._state.setdefault("__items__", {})[k] = v


def _stand_in(kind: str, name: str) -> type:
    return type(name, (_Inert,), {"_kind": kind})


_TYPING_MARKER = object()
_BUILTINS = {"dict", "list", "tuple", "set", "frozenset", "int", "float", "bool", "str", "bytes",
             "complex", "long", "object", "slice", "bytearray"}
_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
}
try:
    from numpy._core import multiarray as _multiarray
except ImportError:  # numpy < 2
    from numpy.core import multiarray as _multiarray
for _m in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_m, "scalar")] = _multiarray.scalar
    _ALLOWED[(_m, "_reconstruct")] = _multiarray._reconstruct


def _safe_reconstructor(cls, base, state):
    # copyreg._reconstructor, restricted to our stand-ins (how omegaconf objects are pickled at protocol < 2)
    if not (isinstance(cls, type) and issubclass(cls, _Inert)):
        raise UnsafeCheckpointError(f"refusing to reconstruct {cls!r}")
    return cls.__new__(cls)


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module in ("builtins", "__builtin__") and name in _BUILTINS:
            return {"long": int}.get(name) or getattr(__import__("builtins"), name)
        if (module, name) in _ALLOWED and _ALLOWED[(module, name)] is not None:
            return _ALLOWED[(module, name)]
        if module == "copyreg" and name == "_reconstructor":
            return _safe_reconstructor
        if module == "typing":
            return _TYPING_MARKER
        if module.startswith("omegaconf"):
            return _stand_in(name, name)
        if module == "argparse" and name == "Namespace":
            return _stand_in("Namespace", name)
        if (module, name) == ("fairseq.data.dictionary", "Dictionary"):  # task_state of fine-tuned checkpoints
            return _stand_in("Dictionary", name)
        if module.startswith("torch") and "Storage" in name:  # torch resolves storages itself
            return super().find_class(module, name)
        raise UnsafeCheckpointError(
            f"checkpoint references '{module}.{name}', which a fairseq checkpoint never needs; it was "
            "refused and nothing was executed. If this file is a genuine checkpoint, report the class."
        )


class _PickleModule(types.ModuleType):
    Unpickler = RestrictedUnpickler
    load = staticmethod(lambda f, **kw: RestrictedUnpickler(f, **kw).load())
    __name__ = "data2vec_restricted_pickle"


def to_plain(obj: Any) -> Any:
    """Replace stand-ins by plain data: DictConfig -> dict, ListConfig -> list, nodes -> value."""
    if isinstance(obj, _Inert):
        state = obj._state if isinstance(obj._state, dict) else {}
        kind = obj._kind
        if kind == "DictConfig":
            content = state.get("_content")
            return None if content is None or isinstance(content, str) else {k: to_plain(v) for k, v in content.items()}
        if kind == "ListConfig":
            content = state.get("_content")
            return None if content is None or isinstance(content, str) else [to_plain(v) for v in content]
        if kind in ("Namespace", "Dictionary"):
            return {k: to_plain(v) for k, v in state.items() if k != "__items__"}
        if kind.endswith("Node"):
            return to_plain(state.get("_val"))
        return None  # Metadata and other omegaconf internals
    if obj is _TYPING_MARKER:
        return None
    if isinstance(obj, dict):
        return type(obj)((k, to_plain(v)) for k, v in obj.items()) if isinstance(obj, collections.OrderedDict) else {
            k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj) if not hasattr(obj, "_fields") else obj
    return obj


def load_fairseq_checkpoint(path: str | Path) -> dict:
    """Load a fairseq checkpoint into plain data: ``cfg``/``args`` as dicts, ``model`` as a state dict
    (the EMA teacher stays nested under ``_ema`` or ``encoder._ema`` as fairseq saved it)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    mod = _PickleModule("data2vec_restricted_pickle")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, pickle_module=mod)
    except UnsafeCheckpointError:
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        raise ValueError(f"{path} is not a readable PyTorch/fairseq checkpoint: {e}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ValueError(f"{path} is not a fairseq checkpoint (no 'model' entry)")
    ckpt = to_plain(ckpt)
    if ckpt.get("cfg") is None and ckpt.get("args") is not None:
        ckpt["cfg"] = {"model": ckpt["args"], "task": ckpt["args"]}
    return ckpt
