"""Load ``.pt`` files through PyTorch's own ``weights_only`` unpickler: no code from a file ever runs.

Every ``.pt`` / ``.pth`` / ``.bin`` that data2vec reads (our checkpoints, fairseq and BEiT checkpoints,
``pytorch_model.bin``) goes through :func:`safe_torch_load`. It calls ``torch.load(weights_only=True)`` and
extends torch's allowlist for the duration of one load (``torch.serialization.safe_globals``) by exact full
names only:

- the omegaconf classes fairseq pickles (``DictConfig``, ``ListConfig``, their metadata and value nodes),
  ``argparse.Namespace`` and fairseq's ``Dictionary`` (the letters in a fine-tuned ``task_state``) map to
  inert stand-ins that only record their pickled state (``data2vec.convert.fairseq_pickle.to_plain`` turns
  them into plain dicts/lists);
- the types that omegaconf metadata names (``builtins.dict``, ``typing.Any``, ...) map to inert markers,
  never to the real types, so nothing callable reaches the unpickler by those names;
- ``collections.defaultdict`` maps to a function that returns an empty plain ``dict``;
- numpy arrays, scalars and dtypes (training state of some checkpoints).

Every other global, and every dotted name (``DictConfig.__init__``), is refused by torch before anything
is built; the refusal raises :class:`UnsafeCheckpointError` naming the global, so a user never reads
"corrupt file" for a file that was refused. To load a *trusted* legacy pickle that needs more, read it with
``torch.load(path, weights_only=False)`` yourself and save its tensors (README, "Safety").
"""

from __future__ import annotations

import os
import pickle
import pickletools
import re
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data2vec.errors import Data2VecError


class UnsafeCheckpointError(Data2VecError):
    """The checkpoint's pickle references something this loader will not build: nothing was executed."""


class _Inert:
    """Stand-in for omegaconf / argparse / fairseq objects: records pickled state, runs nothing."""

    _kind = "object"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj._state = None
        return obj

    def __init__(self, *args, **kwargs):  # REDUCE(cls, args): keep only keyword-free positional data
        pass

    def __setstate__(self, state):
        self._state = state


class _Marker:
    """What a type name inside omegaconf metadata (``builtins.dict``, ``typing.Any``) becomes: not callable."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self):
        return f"<type name {self.name}>"

    def __call__(self, *args, **kwargs):
        raise UnsafeCheckpointError(f"the pickle calls {self.name}")


def _plain_dict(*_args) -> dict:
    """``collections.defaultdict(factory)`` -> a plain dict (the factory is a marker, never called)."""
    return {}


def _reconstructor(cls, base, state):
    """``copyreg._reconstructor`` (objects pickled at protocol 0/1), restricted to our stand-ins."""
    if not (isinstance(cls, type) and issubclass(cls, _Inert)):
        raise UnsafeCheckpointError(f"refusing to reconstruct {cls!r}")
    return cls.__new__(cls)


_OMEGACONF = {
    "omegaconf.dictconfig.DictConfig": "DictConfig",
    "omegaconf.listconfig.ListConfig": "ListConfig",
    "omegaconf.base.ContainerMetadata": "Metadata",
    "omegaconf.base.Metadata": "Metadata",
    **{f"omegaconf.nodes.{n}": "Node" for n in (
        "AnyNode", "StringNode", "IntegerNode", "FloatNode", "BooleanNode", "BytesNode", "PathNode")},
    "argparse.Namespace": "Namespace",
    "fairseq.data.dictionary.Dictionary": "Dictionary",
}
_TYPE_NAMES = [f"builtins.{n}" for n in ("dict", "list", "tuple", "set", "int", "float", "bool", "str", "bytes",
                                          "object", "NoneType")] + ["typing.Any"]


def _numpy_globals() -> list[tuple[Any, str]]:
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    out: list[tuple[Any, str]] = [(np.ndarray, "numpy.ndarray"), (np.dtype, "numpy.dtype")]
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out += [(multiarray._reconstruct, f"{mod}._reconstruct"), (multiarray.scalar, f"{mod}.scalar")]
    dtypes = getattr(np, "dtypes", None)
    for name in dir(dtypes) if dtypes is not None else ():
        cls = getattr(dtypes, name)
        if isinstance(cls, type) and issubclass(cls, np.dtype):
            out.append((cls, f"numpy.dtypes.{name}"))
    return out


def _allowed_globals() -> list[tuple[Any, str]]:
    """(object, exact full name) pairs that extend torch's weights_only allowlist for one load."""
    stand_ins = {kind: type(kind, (_Inert,), {"_kind": kind}) for kind in set(_OMEGACONF.values())}
    out = [(stand_ins[kind], name) for name, kind in _OMEGACONF.items()]
    out += [(_Marker(name), name) for name in _TYPE_NAMES]
    out += [(_plain_dict, "collections.defaultdict"), (_reconstructor, "copyreg._reconstructor")]
    return out + _numpy_globals()


_GLOBAL_IN_MESSAGE = re.compile(r"GLOBAL ([\w.<>]+)")
_OPCODE_NAMES = {op.code.encode("latin-1")[0]: op.name for op in pickletools.opcodes}


def _refusal(path: Path, err: BaseException) -> Data2VecError:
    """One line that says the file was refused and which global (or pickle construct) caused it."""
    msg = str(err)
    found = re.search(r"WeightsUnpickler error:\s*(.*?)\s*(?:\n\nCheck the documentation|$)", msg, re.S)
    detail = " ".join((found.group(1) if found else msg).split())
    name = _GLOBAL_IN_MESSAGE.search(detail)
    opcode = re.search(r"Unsupported operand (\d+)", detail)
    if name:
        full = name.group(1) if "." in name.group(1) else f"builtins.{name.group(1)}"  # torch strips 'builtins.'
        what = f"it references the global '{full}', which is not on the allowlist"
    elif opcode:
        op = _OPCODE_NAMES.get(int(opcode.group(1)))
        if op is None:  # not a pickle opcode at all: random bytes, not an attack
            return Data2VecError(f"{path} is not a PyTorch checkpoint (truncated, damaged or another kind of file)")
        what = f"its pickle uses the opcode {op}, which torch's weights_only loader does not run"
    else:
        what = f"its pickle does something a checkpoint never needs ({detail[:200]})"
    return UnsafeCheckpointError(
        f"{path}: refused, {what}; nothing from the file was executed. Load only files you trust; for a trusted "
        "legacy checkpoint see README 'Safety'.")


def safe_torch_load(path: str | Path, mmap: bool = False, map_location: Any = "cpu") -> Any:
    """``torch.load`` through PyTorch's weights_only unpickler, with the fairseq allowlist above.

    Raises :class:`UnsafeCheckpointError` for a refused global or pickle construct and
    :class:`Data2VecError` for a file that is not a PyTorch checkpoint at all (truncated, not a pickle)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    with open(path, "rb") as f:
        head = f.read(2)
    if not (head == b"PK" or head[:1] == b"\x80"):  # torch.save writes a zip archive or a protocol-2 pickle
        raise Data2VecError(f"{path} is not a PyTorch checkpoint (neither a zip archive nor a binary pickle: "
                            f"{'empty file' if not head else 'another kind of file'})")
    try:
        with torch.serialization.safe_globals(_allowed_globals()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # refused below if it matters
            return torch.load(path, map_location=map_location, weights_only=True,
                              mmap=mmap and zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "Weights only load failed" in msg or "Unsupported" in msg or "allowlist" in msg:
            raise _refusal(path, e) from None
        raise Data2VecError(f"{path} is not a readable PyTorch checkpoint ({msg.splitlines()[0][:200]})") from None
    except UnsafeCheckpointError as e:
        raise _refusal(path, e) from None
    except Exception as e:  # noqa: BLE001 - any failure inside torch.load on untrusted bytes is a file problem
        raise Data2VecError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:200] if str(e) else 'truncated or damaged'})") from None


def read_json(path: str | Path) -> Any:
    """A JSON file (``config.json``, ...), or one line naming the file when it is missing or damaged."""
    import json

    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise Data2VecError(f"{path} is not valid JSON ({e}); restore or regenerate it") from None


def safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a ``.safetensors`` header ({} if none), or one line naming the damaged file."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for damaged headers
        raise Data2VecError(f"{path} is not a readable safetensors file ({str(e).splitlines()[0][:200]}); "
                            "restore or regenerate it") from None


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux >= 4.7: /proc/self/status), so
    that no other thread ever sees a umask of 0; elsewhere by setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o077)  # the restrictive one, for the instant before it is restored
    os.umask(mask)
    return mask


def write_safetensors(state: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """``safetensors.torch.save_file`` into a temporary file beside ``path``, given the mode a plain ``open``
    would give (0o666 less the umask: safetensors writes owner-only 0o600 files, which the other users of a
    shared model directory cannot read), then renamed over ``path``: an interrupted write leaves the previous
    file, if any, as it was."""
    from safetensors.torch import save_file

    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        save_file(state, str(tmp), metadata=metadata)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file (no pickle involved), or one line naming the damaged file."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights at {path}")
    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for damaged headers/data
        raise Data2VecError(f"{path} is not a readable safetensors file ({str(e).splitlines()[0][:200]}); "
                            "restore or regenerate it") from None
