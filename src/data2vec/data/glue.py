"""GLUE-format TSV files: the nine GLUE tasks' layouts, and a reader by header names for one's own files.

A task directory holds ``train.tsv``, a validation file (``dev.tsv``; MNLI ``dev_matched.tsv``, MNLI-mm
``dev_mismatched.tsv``) and optionally ``test.tsv`` (MNLI ``test_matched.tsv``). Each row becomes an
``Example(text_a, text_b or None, label string or None)``.

Layouts (``GLUE_TASKS``; columns found by header name unless the file has no header):
- CoLA: no header; columns source, label, original notation, sentence (its test file has ``index sentence``).
- SST-2: ``sentence label``. QNLI: ``index question sentence label``. RTE, WNLI: ``index sentence1 sentence2 label``.
- MRPC: ``Quality #1 ID #2 ID #1 String #2 String`` (the file starts with a byte-order mark).
- QQP: ``id qid1 qid2 question1 question2 is_duplicate``; a few rows of the official train file are broken
  (an embedded newline splits a question over two lines): rows with the wrong number of columns are
  skipped and counted, as the HF and fairseq GLUE scripts drop them.
- STS-B: ``sentence1 sentence2 score`` among ten columns; a regression task (scores 0-5).
- MNLI: ``sentence1 sentence2 gold_label`` among 12 (train) or 16 (dev) columns.
Without a task name, ``read_tsv`` finds the columns by header name: a pair (``sentence1/sentence2``,
``question1/question2``, ``#1 String/#2 String``, ``question/sentence``) or a single ``sentence``/``text``,
and ``label``/``gold_label``/``is_duplicate``/``Quality``/``score`` (case-insensitive).

A file without the label column is unlabelled (GLUE's test sets): ``GlueFile.labelled`` is False.
Rows whose label is ``-`` or empty (no annotator consensus, as in SNLI) are skipped and counted.
Any other malformed row is an error naming the file and line. Fields are split on tabs only; quotes
are text (GLUE files are not CSV-quoted: ``csv.QUOTE_NONE``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Example:
    text_a: str
    text_b: str | None
    label: str | None  # the label as written; None in an unlabelled file
    line: int = 0  # 1-based line in its file (for error messages)


@dataclass(frozen=True)
class GlueFormat:
    name: str
    text_a: str | int  # header name, or column index in a file without header
    text_b: str | int | None
    label: str | int
    metric: str = "accuracy"  # GLUE's score for the task (a key of finetune.metrics' dicts)
    regression: bool = False
    header: bool = True
    columns: int = 0  # files without header: columns per row
    dev: str = "dev.tsv"
    test: str = "test.tsv"
    skip_malformed: bool = False  # rows with the wrong number of columns are skipped (counted), not errors


GLUE_TASKS = {f.name: f for f in (
    GlueFormat("cola", 3, None, 1, metric="mcc", header=False, columns=4),
    GlueFormat("sst-2", "sentence", None, "label"),
    GlueFormat("mrpc", "#1 String", "#2 String", "Quality", metric="f1"),
    GlueFormat("qqp", "question1", "question2", "is_duplicate", metric="f1", skip_malformed=True),
    GlueFormat("sts-b", "sentence1", "sentence2", "score", metric="pearson_spearman", regression=True),
    GlueFormat("mnli", "sentence1", "sentence2", "gold_label", dev="dev_matched.tsv", test="test_matched.tsv"),
    GlueFormat("mnli-mm", "sentence1", "sentence2", "gold_label", dev="dev_mismatched.tsv",
               test="test_mismatched.tsv"),
    GlueFormat("qnli", "question", "sentence", "label"),
    GlueFormat("rte", "sentence1", "sentence2", "label"),
    GlueFormat("wnli", "sentence1", "sentence2", "label"),
)}

_PAIRS = (("sentence1", "sentence2"), ("question1", "question2"), ("#1 string", "#2 string"), ("question", "sentence"))
_SINGLES = ("sentence", "text")
_LABELS = ("label", "gold_label", "is_duplicate", "quality", "score")
_NO_LABEL = ("", "-")


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def get_format(name: str) -> GlueFormat | None:
    """The layout of a GLUE task (``sst-2``, ``SST-2``, ``sst2`` ...); ``""`` = None (columns by header name)."""
    if not name:
        return None
    for f in GLUE_TASKS.values():
        if _key(f.name) == _key(name):
            return f
    raise ValueError(f"unknown GLUE task {name!r}; known: {', '.join(GLUE_TASKS)} (or \"\" to find the "
                     "columns by header name)")


def split_file(fmt: GlueFormat | None, split: str) -> str:
    """File name of ``split`` (train / valid / test) in a task directory."""
    if split == "train":
        return "train.tsv"
    if split == "valid":
        return fmt.dev if fmt else "dev.tsv"
    if split == "test":
        return fmt.test if fmt else "test.tsv"
    return split if split.endswith(".tsv") else f"{split}.tsv"


@dataclass
class GlueFile:
    path: Path
    examples: list[Example]
    labelled: bool
    malformed: int = 0  # rows skipped for a wrong number of columns (QQP)
    no_label: int = 0  # rows skipped for a label of "-" or ""

    def describe(self) -> str:
        skipped = [f"{n} {what}" for n, what in ((self.malformed, "malformed rows"),
                                                   (self.no_label, "rows without a gold label")) if n]
        return (f"{self.path.name}: {len(self.examples):,} examples{'' if self.labelled else ' (unlabelled)'}"
                + (f", skipped {' and '.join(skipped)}" if skipped else ""))


def _lines(path: Path):
    """(1-based line number, fields) of the non-empty lines; split on \\n only (a stray \\r is text)."""
    with open(path, "rb") as f:
        for i, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\n").rstrip("\r")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{i}: not UTF-8 ({e.reason})") from None
            if i == 1:
                line = line.lstrip("\ufeff")
            if line.strip():
                yield i, line.split("\t")


def _columns(path: Path, header: list[str], fmt: GlueFormat | None) -> tuple[int, int | None, int | None]:
    """Indices of text_a, text_b, label (None: no such column) in ``header``."""
    low = [h.strip().lower() for h in header]

    def find(name):
        return low.index(name.lower()) if name is not None and name.lower() in low else None

    if fmt is not None:
        a, b, label = find(fmt.text_a), find(fmt.text_b), find(fmt.label)
        if a is None or (fmt.text_b is not None and b is None):
            wanted = [n for n in (fmt.text_a, fmt.text_b) if n is not None]
            raise ValueError(f"{path}: the header {header} lacks the {fmt.name} column(s) {wanted}")
        return a, b, label
    label = next((find(n) for n in _LABELS if find(n) is not None), None)
    for x, y in _PAIRS:
        if find(x) is not None and find(y) is not None:
            return find(x), find(y), label
    for x in _SINGLES + ("sentence1", "question1", "question"):
        if find(x) is not None:
            return find(x), None, label
    raise ValueError(f"{path}: no text column in the header {header}; name it `sentence` (one text) or "
                     "`sentence1` + `sentence2` (a pair), the label column `label`, or set data.glue_task "
                     f"to one of {', '.join(GLUE_TASKS)}")


def read_tsv(path: str | Path, fmt: GlueFormat | None = None) -> GlueFile:
    """Examples of one GLUE-format file (``fmt`` None: columns by header name)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    lines = _lines(path)
    first = next(lines, None)
    if first is None:
        raise ValueError(f"{path} is empty")
    headerless = fmt is not None and not fmt.header
    if headerless and "sentence" not in [h.strip().lower() for h in first[1]]:
        a, b, label, ncol = fmt.text_a, fmt.text_b, fmt.label, fmt.columns
        rows = _chain(first, lines)
        header = None
    else:  # CoLA's test file has a header (index, sentence): read it by name
        header = first[1]
        a, b, label = _columns(path, header, None if headerless else fmt)
        ncol = len(header)
        rows = lines
    out = GlueFile(path, [], labelled=label is not None)
    for i, fields in rows:
        if len(fields) != ncol:
            if fmt is not None and fmt.skip_malformed:
                out.malformed += 1
                continue
            expect = f"the header's {ncol}" if header else f"{ncol} ({fmt.name})"
            raise ValueError(f"{path}:{i}: {len(fields)} tab-separated columns, expected {expect}")
        y = None
        if label is not None:
            y = fields[label].strip()
            if y in _NO_LABEL:
                out.no_label += 1
                continue
        out.examples.append(Example(fields[a].strip(), None if b is None else fields[b].strip(), y, i))
    if not out.examples:
        raise ValueError(f"{path} holds no examples")
    return out


def _chain(first, rest):
    yield first
    yield from rest


def label_vocabulary(labels) -> tuple[str, ...]:
    """Class names in class-id order: sorted, numerically when all are integers (``0``/``1`` stay 0/1)."""
    names = set(labels)
    if all(_is_int(n) for n in names):
        return tuple(sorted(names, key=int))
    return tuple(sorted(names))


def _is_int(s: str) -> bool:
    try:
        int(s)
        return True
    except ValueError:
        return False
