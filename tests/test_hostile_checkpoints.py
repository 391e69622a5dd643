"""Hostile checkpoints: no entry point that reads a checkpoint ever runs code from it (issue "Hardening", 1).

Every payload below tries to create a sentinel file (a shell command, ``exec``/``eval``, a getattr chain, an
attribute path that reaches ``__globals__``/``__builtins__`` through a class the loader allows, numpy's
reconstruct with a foreign class, ...). Each is written as the pickle inside a zip checkpoint (what
``torch.save`` writes today) and as a legacy (pre-1.6) checkpoint, bare and nested in a fairseq-shaped dict,
and fed to every command and Python function that loads a checkpoint. Each must be refused with a message
that says so and names the cause, and the sentinel must never exist.
"""

from __future__ import annotations

import io
import pickle
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from data2vec import cli
from data2vec.finetune.interop import finetuned_from_fairseq
from data2vec.convert.fairseq_pickle import UnsafeCheckpointError, load_fairseq_checkpoint
from data2vec.convert.hf import read_hf_dir
from data2vec.errors import Data2VecError
from data2vec.finetune.inference import is_finetuned, load_finetuned
from data2vec.pretrained import load_pretrained
from data2vec.safe_load import safe_torch_load
from data2vec.train.checkpoint import load_checkpoint


# --- pickle bytes, opcode by opcode (protocol 2 unless stated) ----------------------------------------------
def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _call(func: bytes, *args: bytes) -> bytes:
    return func + b"(" + b"".join(args) + b"tR"


def _payloads(sentinel: Path) -> dict[str, bytes]:
    s = str(sentinel)
    touch = f"touch {s}"
    write = f"open({s!r}, 'w').close()"
    imp = _call(_global("builtins", "__import__"), _str("os"))
    return {
        "reduce_os_system": _call(_global("os", "system"), _str(touch)),
        "reduce_posix_system": _call(_global("posix", "system"), _str(touch)),
        "subprocess_popen": _call(_global("subprocess", "Popen"), b"(" + _str("touch") + _str(s) + b"t"),
        "builtins_exec": _call(_global("builtins", "exec"), _str(write)),
        "builtins_eval": _call(_global("builtins", "eval"), _str(f"__import__('os').system({touch!r})")),
        "python2_builtin_eval": _call(_global("__builtin__", "eval"), _str(f"__import__('os').system({touch!r})")),
        "getattr_chain": _call(_call(_global("builtins", "getattr"), imp, _str("system")), _str(touch)),
        "newobj_popen": _global("subprocess", "Popen") + b"(" + _str("touch") + _str(s) + b"t\x85\x81",
        # attribute paths through classes the loader allows, towards __globals__ / __builtins__
        "dotted_dictconfig_globals": _call(_global("omegaconf.dictconfig", "DictConfig.__init__.__globals__.get"),
                                           _str("__builtins__")),
        "dotted_namespace_builtins": _call(_global("argparse", "Namespace.__init__.__globals__.get"),
                                           _str("__builtins__")),
        "dotted_ordereddict": _call(_global("collections", "OrderedDict.__init__.__class__"), _str("x")),
        "dotted_torch_storage": _call(_global("torch", "FloatStorage.__init__.__globals__.get"), _str("load")),
        "dotted_torch_prefix": _call(_global("torch.hub", "load"), _str("."), _str("x"), _str("local")),
        "typing_eval": _call(_global("typing", "_eval_type"), _str(write)),
        "omegaconf_prefix": _call(_global("omegaconf._utils", "_eval_type"), _str(write)),
        "numpy_reconstruct_foreign": _call(_global("numpy.core.multiarray", "_reconstruct"),
                                           _global("subprocess", "Popen"), b"K\x00\x85", _str("b")),
        "numpy_load_pickle": _call(_global("numpy", "load"), _str(s)),
        "copyreg_reconstructor": _call(_global("copyreg", "_reconstructor"), _global("subprocess", "Popen"),
                                       _global("builtins", "object"), b"N"),
        "type_marker_called": _call(_global("builtins", "dict"), _str(touch)),
        "defaultdict_factory": _call(_global("collections", "defaultdict"), _global("os", "system")),
        # protocol 4: STACK_GLOBAL resolves dotted names in a plain pickle.Unpickler
        "stack_global_dotted": (b"\x8c\x14omegaconf.dictconfig\x94\x8c\x1fDictConfig.__init__.__globals__\x94"
                                b"\x93\x94"),
    }


def _fairseq_nested(payload: bytes) -> bytes:
    """{'cfg': DictConfig(state={'_content': {'model': PAYLOAD}}), 'model': {}}: the payload inside the cfg."""
    dictconfig = _global("omegaconf.dictconfig", "DictConfig") + b")\x81"  # NEWOBJ with no args
    state = b"}(" + _str("_content") + b"}(" + _str("model") + payload + b"uu"
    return b"}(" + _str("cfg") + dictconfig + state + b"b" + _str("model") + b"}u"


def _pickle(body: bytes, proto: int = 2) -> bytes:
    return bytes([0x80, proto]) + body + b"."


def _zip_checkpoint(path: Path, data_pkl: bytes) -> None:
    """A torch zip checkpoint whose data.pkl is ``data_pkl`` (the other records as torch.save writes them)."""
    buf = io.BytesIO()
    torch.save({"x": 1}, buf)
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, data_pkl if info.filename.endswith("/data.pkl") else src.read(info.filename))


def _legacy_checkpoint(path: Path, data_pkl: bytes) -> None:
    """The pre-1.6 format: magic number, protocol version and sys info pickles, then the object pickle."""
    head = b"".join(pickle.dumps(x, protocol=2) for x in (
        torch.serialization.MAGIC_NUMBER, torch.serialization.PROTOCOL_VERSION,
        {"protocol_version": torch.serialization.PROTOCOL_VERSION, "little_endian": sys.byteorder == "little",
         "type_sizes": {"short": 2, "int": 4, "long": 4}}))
    path.write_bytes(head + data_pkl + pickle.dumps([], protocol=2))


def _corpus(root: Path, sentinel: Path) -> list[Path]:
    files = []
    for name, body in _payloads(sentinel).items():
        proto = 4 if name.startswith("stack_global") else 2
        for shape, pkl in (("bare", _pickle(body, proto)), ("in_fairseq_cfg", _pickle(_fairseq_nested(body), proto))):
            for fmt, write in (("zip", _zip_checkpoint), ("legacy", _legacy_checkpoint)):
                p = root / f"{name}.{shape}.{fmt}.pt"
                write(p, pkl)
                files.append(p)
    return files


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    sentinel = root / "SENTINEL"
    return sentinel, _corpus(root, sentinel)


def _hf_dir(root: Path, bin_path: Path) -> Path:
    from transformers import Data2VecTextConfig

    d = root / f"hf_{bin_path.stem}"
    d.mkdir(exist_ok=True)
    Data2VecTextConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, max_position_embeddings=40, type_vocab_size=1).to_json_file(d / "config.json")
    (d / "pytorch_model.bin").write_bytes(bin_path.read_bytes())
    return d


PYTHON_ENTRY_POINTS = {
    "safe_torch_load": safe_torch_load,
    "load_fairseq_checkpoint": load_fairseq_checkpoint,
    "load_pretrained": load_pretrained,
    "load_finetuned": load_finetuned,
    "is_finetuned": is_finetuned,
    "finetuned_from_fairseq": finetuned_from_fairseq,
    "load_checkpoint": load_checkpoint,
}


@pytest.mark.parametrize("entry", sorted(PYTHON_ENTRY_POINTS))
def test_python_loaders_refuse_every_payload(entry, corpus, tmp_path):
    sentinel, files = corpus
    for f in files:
        with pytest.raises(UnsafeCheckpointError, match=r"refused, .*nothing from the file was executed"):
            PYTHON_ENTRY_POINTS[entry](f)
        assert not sentinel.exists(), f"{entry} ran code from {f.name}"


def test_hf_directory_with_hostile_pytorch_model_bin(corpus, tmp_path):
    sentinel, files = corpus
    for f in files[::4]:
        d = _hf_dir(tmp_path, f)
        for load in (read_hf_dir, load_pretrained):
            with pytest.raises(UnsafeCheckpointError, match="refused"):
                load(d)
        assert not sentinel.exists()


def _cli_commands(evil: Path, out: Path) -> dict[str, list[str]]:
    return {
        "convert": ["convert", str(evil), "--out", str(out / "c")],
        "export": ["export", str(evil), "--out", str(out / "e")],
        "extract": ["extract", str(evil), str(out / "x.wav"), "--out", str(out / "f.npy")],
        "evaluate asr": ["evaluate", "asr", str(evil), "--data", str(out), "--subset", "test"],
        "evaluate image": ["evaluate", "image-classification", str(evil), "--data", str(out), "--subset", "test"],
        "transcribe": ["transcribe", str(evil), str(out / "x.wav")],
        "finetune --init": ["finetune", "image-classification", "--init", str(evil), "--data", str(out),
                            "--out", str(out / "ft")],
        "pretrain --init": ["pretrain", "--init", str(evil), "--data", str(out), "--out", str(out / "pt")],
    }


def test_cli_refuses_every_payload_with_one_line(corpus, tmp_path, capsys):
    sentinel, files = corpus
    for f in files:
        for name, argv in _cli_commands(f, tmp_path).items():
            assert cli.main(argv) == 2, f"{name} on {f.name}"
            err = capsys.readouterr().err.strip()
            assert "refused" in err and "Traceback" not in err and len(err.splitlines()) == 1, (name, f.name, err)
            assert not sentinel.exists(), f"`data2vec {name}` ran code from {f.name}"


def test_refusal_names_the_global(corpus):
    _, files = corpus
    by_name = {f.name: f for f in files}
    for stem, named in [("reduce_os_system", "os.system"), ("builtins_exec", "builtins.exec"),
                        ("dotted_dictconfig_globals", "omegaconf.dictconfig.DictConfig.__init__.__globals__.get"),
                        ("dotted_torch_storage", "torch.FloatStorage.__init__.__globals__.get"),
                        ("subprocess_popen", "subprocess.Popen")]:
        for fmt in ("zip", "legacy"):
            with pytest.raises(UnsafeCheckpointError, match=f"'{named}'"):
                safe_torch_load(by_name[f"{stem}.in_fairseq_cfg.{fmt}.pt"])
    with pytest.raises(UnsafeCheckpointError, match="opcode (SHORT_BINUNICODE|STACK_GLOBAL)"):
        safe_torch_load(by_name["stack_global_dotted.bare.zip.pt"])


def test_genuine_fairseq_content_still_loads(tmp_path):
    """What fairseq checkpoints legitimately hold keeps loading: numpy arrays/scalars, defaultdicts, Namespace."""
    import argparse
    import collections

    ns = argparse.Namespace(arch="data2vec_audio", lr=[5e-4])
    torch.save({"model": {"w": torch.arange(3.0)}, "args": ns, "cfg": None,
                "extra_state": {"best": np.float64(0.5), "arr": np.arange(4, dtype=np.int32),
                                "meters": collections.defaultdict(list, {"loss": [1.0]})}}, tmp_path / "ok.pt")
    ck = load_fairseq_checkpoint(tmp_path / "ok.pt")
    assert ck["cfg"]["model"] == {"arch": "data2vec_audio", "lr": [5e-4]}
    assert ck["extra_state"]["best"] == 0.5 and ck["extra_state"]["arr"].tolist() == [0, 1, 2, 3]
    assert ck["extra_state"]["meters"] == {"loss": [1.0]} and type(ck["extra_state"]["meters"]) is dict
    assert torch.equal(ck["model"]["w"], torch.arange(3.0))


@pytest.mark.parametrize("content,match", [(b"", "empty file"), (b"\x93NUMPY\x01\x00", "another kind of file"),
                                           (b"\x80\x02}q\x00(X\x05", "not a readable"), (b"PK\x03\x04broken", "not a readable")])
def test_damaged_files_are_not_called_attacks(tmp_path, content, match):
    (tmp_path / "bad.pt").write_bytes(content)
    with pytest.raises(Data2VecError, match=match) as e:
        safe_torch_load(tmp_path / "bad.pt")
    assert not isinstance(e.value, UnsafeCheckpointError)


def test_newer_format_version_is_refused_by_every_loader(tmp_path):
    torch.save({"format_version": 99, "config": {}, "model": {}}, tmp_path / "future.pt")
    for load in (load_checkpoint, load_pretrained, load_finetuned):
        with pytest.raises(Data2VecError, match="newer data2vec"):
            load(tmp_path / "future.pt")


# --- property-based fuzz: damaged checkpoints give our clean errors, nothing else ------------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _valid_bytes(legacy: bool) -> bytes:
    import argparse

    buf = io.BytesIO()
    torch.save({"model": {"w": torch.arange(6.0).view(2, 3)}, "args": argparse.Namespace(lr=[1e-3]),
                "extra_state": {"best": np.float64(0.5)}}, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


_VALID = {legacy: _valid_bytes(legacy) for legacy in (False, True)}


@st.composite
def _damaged(draw):
    data = bytearray(_VALID[draw(st.booleans())])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "overwrite"]))
        i = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[i] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[i:]
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        else:
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[i:i + len(chunk)] = chunk
        if not data:
            break
    return bytes(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=_damaged())
def test_fuzz_damaged_checkpoints_give_clean_errors(tmp_path, content):
    p = tmp_path / "fuzz.pt"
    p.write_bytes(content)
    for load in (safe_torch_load, load_fairseq_checkpoint, load_checkpoint):
        try:
            load(p)
        except ValueError as e:  # Data2VecError and the loaders' other one-line ValueErrors
            assert "\n" not in str(e) and str(p) in str(e)
