"""Read fairseq ``.pt`` checkpoints without fairseq, omegaconf, or any code from the file.

fairseq checkpoints are pickles that hold ``omegaconf`` containers (``cfg``) or an ``argparse.Namespace``
(``args``) beside the tensors. They are read by :func:`data2vec.safe_load.safe_torch_load` (PyTorch's
weights_only unpickler with an exact-name allowlist of inert stand-ins); :func:`to_plain` then turns the
stand-ins into plain dicts and lists.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

from data2vec.errors import Data2VecError
from data2vec.safe_load import UnsafeCheckpointError, _Inert, _Marker, safe_torch_load

__all__ = ["UnsafeCheckpointError", "fairseq_plain", "load_fairseq_checkpoint", "safe_torch_load", "to_plain"]


def to_plain(obj: Any) -> Any:
    """Replace stand-ins by plain data: DictConfig -> dict, ListConfig -> list, nodes -> value."""
    if isinstance(obj, _Inert):
        state = obj._state if isinstance(obj._state, dict) else {}
        kind = obj._kind
        if kind in ("DictConfig", "ListConfig"):
            content = state.get("_content")
            if content is None or isinstance(content, str):
                return None
            if kind == "DictConfig":
                return {k: to_plain(v) for k, v in content.items()} if isinstance(content, dict) else None
            return [to_plain(v) for v in content] if isinstance(content, list) else None
        if kind in ("Namespace", "Dictionary"):
            return {k: to_plain(v) for k, v in state.items()}
        if kind == "Node":
            return to_plain(state.get("_val"))
        return None  # metadata
    if isinstance(obj, _Marker):
        return None
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, to_plain(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj)
    return obj


def fairseq_plain(path: Path, raw: Any) -> dict:
    """The plain-data form of a fairseq checkpoint already read by :func:`safe_torch_load`."""
    if not isinstance(raw, dict) or "model" not in raw:
        raise Data2VecError(f"{path} is neither a data2vec nor a fairseq checkpoint (no 'model' entry)")
    ckpt = to_plain(raw)
    if ckpt.get("cfg") is None and isinstance(ckpt.get("args"), dict):
        ckpt["cfg"] = {"model": ckpt["args"], "task": ckpt["args"]}
    return ckpt


def load_fairseq_checkpoint(path: str | Path) -> dict:
    """Load a fairseq checkpoint into plain data: ``cfg``/``args`` as dicts, ``model`` as a state dict
    (the EMA teacher stays nested under ``_ema`` or ``encoder._ema`` as fairseq saved it)."""
    path = Path(path)
    return fairseq_plain(path, safe_torch_load(path))
