"""Typed configuration: nested dataclasses <-> plain dicts, YAML/JSON files and ``--set a.b=v`` overrides.

Configs are small ``kw_only`` dataclasses, one per component. Field names that exist
in fairseq keep fairseq's spelling. A resolved config is plain JSON: it is written to the run
directory and into every checkpoint, and ``from_dict`` rebuilds the dataclasses from it.

Overrides are parsed with ``ast.literal_eval`` (never ``eval``/``exec``) and type-checked against
the field's annotation; an unknown key or a value of the wrong type is a ``Data2VecError`` (a ``ValueError``)
that names the key and what it expected.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Union

from data2vec.errors import Data2VecError

# Old modality names that still load (configs, checkpoints and shard indexes written before the rename) -> the name
MODALITY_ALIASES = {"vision": "image"}


def modality_name(name: Any) -> Any:
    """The current name of modality ``name`` (``vision`` -> ``image``); any other value is returned as it is, for
    ``get_modality`` to accept or refuse."""
    return MODALITY_ALIASES.get(name, name) if isinstance(name, str) else name


def to_dict(cfg: Any) -> Any:
    """Dataclass (nested) -> plain dict of JSON types (tuples become lists)."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp`` and convert JSON forms (list -> tuple, int -> float)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, key)
            except ValueError as e:
                errors.append(str(e))
        raise Data2VecError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise Data2VecError(f"{key}: expected one of {list(typing.get_args(tp))}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise Data2VecError(f"{key}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if origin is tuple and args:
            if len(args) != len(value):
                raise Data2VecError(f"{key}: expected {len(args)} values, got {len(value)}")
            return tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        elem = args[0] if args else Any
        return [coerce(v, elem, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise Data2VecError(f"{key}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, prefix=key + ".")
    if tp is bool:
        if not isinstance(value, bool):
            raise Data2VecError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Data2VecError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise Data2VecError(f"{key}: expected an integer, got {value!r}")
        return int(value)
    if tp is str:
        if not isinstance(value, str):
            hint = (f"; on the command line quote it as a string: --set '{key}=\"{value}\"'"
                    if isinstance(value, (list, tuple, int, float)) else "")
            raise Data2VecError(f"{key}: expected a string, got {value!r}{hint}")
        return value
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise Data2VecError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    raise Data2VecError(f"{key}: unsupported annotation {tp}")


def renamed(cls, data: dict, prefix: str = "") -> dict:
    """``data`` with the old field names of ``cls`` (its ``RENAMED``: old -> new) replaced by the new ones, so
    config files, ``--set`` overrides and checkpoints written before a rename still read."""
    table = getattr(cls, "RENAMED", None)
    if not table or not any(k in table for k in data):
        return data
    out = {}
    for k, v in data.items():
        new = table.get(k, k)
        if new in out and out[new] != v:
            raise Data2VecError(f"{prefix}{k} is the old name of {prefix}{new}; give one of them, not both")
        out[new] = v
    return out


def from_dict(cls, data: dict, prefix: str = ""):
    """Build dataclass ``cls`` from a (possibly partial) dict; unknown keys are errors."""
    if not isinstance(data, dict):
        raise Data2VecError(f"{prefix.rstrip('.') or 'config'}: expected a mapping for {cls.__name__}, got {data!r}")
    data = renamed(cls, data, prefix)
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    required = sorted(f.name for f in dataclasses.fields(cls) if f.init and f.default is dataclasses.MISSING
                      and f.default_factory is dataclasses.MISSING and f.name not in data)
    if required:
        raise Data2VecError(f"config is missing {', '.join(prefix + r for r in required)}")
    unknown = sorted(set(data) - names)
    if unknown:
        raise Data2VecError(
            f"unknown config key(s) {', '.join(prefix + u for u in unknown)}; "
            f"valid keys under '{prefix.rstrip('.') or 'top level'}': {', '.join(sorted(names))}"
        )
    kwargs = {k: coerce(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def merge(cfg, data: dict, prefix: str = ""):
    """Return a copy of dataclass ``cfg`` with the (nested) values of ``data`` applied."""
    hints = _hints(type(cfg))
    names = {f.name for f in dataclasses.fields(cfg)}
    data = renamed(type(cfg), data, prefix)
    changes = {}
    for k, v in data.items():
        if k not in names:
            raise Data2VecError(
                f"unknown config key '{prefix + k}'; valid keys under "
                f"'{prefix.rstrip('.') or 'top level'}': {', '.join(sorted(names))}"
            )
        cur = getattr(cfg, k)
        if dataclasses.is_dataclass(cur) and isinstance(v, dict):
            changes[k] = merge(cur, v, prefix + k + ".")
        elif dataclasses.is_dataclass(cur):  # a section typed Any (per modality) still takes only a mapping
            raise Data2VecError(f"{prefix + k}: expected a mapping for {type(cur).__name__}, got {v!r}")
        else:
            changes[k] = coerce(v, hints[k], prefix + k)
    return dataclasses.replace(cfg, **changes)


def parse_override(item: str) -> dict:
    """``"optim.lr=1e-3"`` -> ``{"optim": {"lr": 0.001}}``. Values are Python/JSON literals;
    anything that is not a literal is taken as a string (so ``--set data.path=/x`` works)."""
    if "=" not in item:
        raise Data2VecError(f"override '{item}' must look like key.sub=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not p.isidentifier() for p in key.split(".")):
        raise Data2VecError(f"override '{item}': '{key}' is not a dotted config key")
    lowered = {"true": True, "false": False, "null": None, "none": None}
    if raw.strip().lower() in lowered:
        value = lowered[raw.strip().lower()]
    else:
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
    out: dict = {}
    node = out
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def yaml_load(text: str):
    """``yaml.safe_load`` that also reads ``5e-4`` (no decimal point) as a number, as YAML 1.2 and JSON do;
    PyYAML follows YAML 1.1 and would give the string '5e-4'."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
                   r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
        list("-+0123456789."))
    return yaml.load(text, Loader=Loader)


def load_file(path: str | Path) -> dict:
    """Read a YAML or JSON override file into a dict (a malformed file is one line naming where it breaks)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise Data2VecError(f"config file {path} does not exist")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise Data2VecError(f"cannot read config file {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else (yaml_load(text) or {})
    except json.JSONDecodeError as e:
        raise Data2VecError(f"config file {path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") \
            from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise Data2VecError(f"config file {path} is not valid YAML: {what}{where}") from None
    if not isinstance(data, dict):
        raise Data2VecError(f"config file {path} must hold a mapping at the top level")
    return data
