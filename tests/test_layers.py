"""The package's layers point one way (docs/architecture.md, "Layers").

Every ``import`` in ``src/data2vec`` counts, the ones inside functions included: a module may import from its
own layer or a lower one, never from a higher one, and the modules form no cycle (inside a layer either).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# lowest first; a module belongs to the most specific entry that is it or a package above it (so a modality's
# fine-tuning task, data2vec.modalities.<m>.finetune, is in the finetune layer, the rest of its package below)
LAYERS: tuple[tuple[str, ...], ...] = (
    ("data2vec.errors", "data2vec.config", "data2vec.safe_load", "data2vec.keys", "data2vec.asr"),  # foundation
    ("data2vec.layers",),  # generic blocks: Transformer, AltBlock, the v2 decoder, kept-token bookkeeping
    ("data2vec.core",),  # the method: student/teacher, EMA, targets, loss
    ("data2vec.data",),  # corpora, tokenizer, samplers, shards, v2 block masks
    ("data2vec.modalities",),  # per modality: encoders, masks, datasets and collators, the ModalitySpec
    ("data2vec.convert",),  # key tables and pure config/state mapping to and from HF, fairseq, BEiT
    ("data2vec.train", "data2vec.presets", "data2vec.pretrained"),  # run configs, checkpoints, loading, Trainer
    ("data2vec.finetune", "data2vec.modalities.audio.finetune", "data2vec.modalities.text.finetune",
     "data2vec.modalities.image.finetune"),  # tasks on the Trainer, fine-tuned models from other formats, evaluation
    ("data2vec.extract",),
    ("data2vec.cli",),
)


def module_names(src: Path = SRC) -> dict[str, Path]:
    out = {}
    for p in sorted((src / "data2vec").rglob("*.py")):
        parts = p.relative_to(src).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_pkg: bool, known: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            pkg = module.split(".") if is_pkg else module.split(".")[:-1]
            pkg = pkg[:len(pkg) - node.level + 1]
            base = ".".join(pkg + ([base] if base else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    out = []
    for n in names:
        while n not in known and "." in n:
            n = n.rsplit(".", 1)[0]
        if n in known and n != module and n != "data2vec":
            out.append(n)
    return out


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """module -> the data2vec modules it imports anywhere in its file."""
    mods = module_names(src)
    known = set(mods)
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        graph[name]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[name].update(_targets(node, name, path.name == "__init__.py", known))
    return dict(graph)


def layer_of(module: str, layers=LAYERS) -> int | None:
    """The layer of the longest entry that is ``module`` or a package above it (None: no entry)."""
    found = [(len(p), i) for i, prefixes in enumerate(layers) for p in prefixes
             if module == p or module.startswith(p + ".")]
    return max(found)[1] if found else None


def upward_imports(graph: dict[str, set[str]], layers=LAYERS) -> list[str]:
    return sorted(f"{a} (layer {layer_of(a, layers)}) imports {b} (layer {layer_of(b, layers)})"
                  for a, ts in graph.items() for b in ts if layer_of(a, layers) < layer_of(b, layers))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer():
    missing = [m for m in module_names() if m != "data2vec" and layer_of(m) is None]
    assert not missing, f"modules outside LAYERS (add them to tests/test_layers.py and docs/architecture.md): {missing}"


def test_no_upward_import():
    bad = upward_imports(import_graph())
    assert not bad, "imports against the layering (docs/architecture.md):\n" + "\n".join(bad)


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, f"import cycles: {found}"


def test_the_checks_catch_what_they_should(tmp_path):
    """The same checks on a small package with a cycle (inside a function) and an upward import."""
    pkg = tmp_path / "data2vec"
    (pkg / "core").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "core" / "__init__.py").write_text("")
    (pkg / "core" / "a.py").write_text("def f():\n    from data2vec.core import b\n")
    (pkg / "core" / "b.py").write_text("from . import a\n")
    (pkg / "cli.py").write_text("")
    (pkg / "errors.py").write_text("from data2vec.cli import x\n")
    graph = import_graph(tmp_path)
    assert graph["data2vec.core.a"] == {"data2vec.core.b"} and graph["data2vec.core.b"] == {"data2vec.core.a"}
    assert cycles(graph) == [["data2vec.core.a", "data2vec.core.b"]]
    assert upward_imports(graph) == ["data2vec.errors (layer 0) imports data2vec.cli (layer 9)"]


@pytest.mark.parametrize("module", ["data2vec.modalities.audio.dataset", "data2vec.layers.mask_info",
                                    "data2vec.finetune.interop", "data2vec.train.loop"])
def test_known_modules_are_found(module):
    assert module in import_graph()


def test_the_most_specific_entry_decides():
    assert layer_of("data2vec.modalities.image.finetune") == layer_of("data2vec.finetune.loop")
    assert layer_of("data2vec.modalities.image.dataset") == layer_of("data2vec.modalities")
    assert layer_of("data2vec.modalities") < layer_of("data2vec.finetune")
