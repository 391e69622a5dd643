"""Text corpora: byte-level BPE tokenizer, a binarized corpus and its blocks (the masking collator is
``data2vec.modalities.text.collator``).

A prepared text directory (``data2vec prepare text``) holds ``vocab.json`` + ``merges.txt`` (RoBERTa
format: official RoBERTa/data2vec vocabularies load the same way) and ``{split}.npz`` with the token
stream (each sentence ends with ``</s>``) and the sentence and document boundaries. Tokenization
happens once; training memory-maps the token stream (``mmap_npz_member``: never loaded whole, its pages
shared by loader workers) and loads the boundaries.

Blocks (fairseq ``TokenBlockDataset``, ``tokens_per_sample - 1`` tokens, then ``<s>`` prepended):
``complete_doc`` packs whole sentences and never crosses a document boundary; ``none`` cuts the
stream into equal blocks. A sentence longer than a block is split.

Bad data: ``read_text_file`` reads a user's text for ``prepare text``; a binary or empty file is skipped
and a line that is not UTF-8 is dropped, each reported by file (and line). The corpus arrays, the
tokenizer files and ``corpus.json`` are checked when loaded; a damaged one is an error that names it and
says how to re-create it (there is nothing to skip in a single token stream).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from data2vec.errors import Data2VecError

SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


class Tokenizer:
    """Byte-level BPE (GPT-2/RoBERTa style) with RoBERTa's special ids: <s>=0, <pad>=1, </s>=2, <unk>=3.

    ``vocab.json`` + ``merges.txt`` with the special tokens inside (ours, or HF RoBERTa's) give ids
    directly. With a fairseq ``dict.txt`` beside GPT-2's ``vocab.json``/``merges.txt`` (official
    RoBERTa/data2vec text checkpoints), BPE ids are mapped through the dictionary as fairseq does:
    its line ``k`` holds a GPT-2 id and becomes id ``4 + k``; ``<mask>`` is appended last.
    """

    def __init__(self, directory: str | Path):
        from tokenizers import ByteLevelBPETokenizer

        d = Path(directory)
        vocab, merges = d / "vocab.json", d / "merges.txt"
        if not vocab.is_file() or not merges.is_file():
            raise ValueError(f"{d} has no vocab.json + merges.txt (make them with `data2vec prepare text`)")
        try:
            self.bpe = ByteLevelBPETokenizer(str(vocab), str(merges))
        except Exception as e:  # noqa: BLE001 - tokenizers raises a bare Exception on a bad file
            raise Data2VecError(f"cannot read the tokenizer {vocab} + {merges}: {str(e)[:200]}; re-create them "
                                "with `data2vec prepare text` (or copy them again)") from None
        self.to_fairseq: np.ndarray | None = None
        if (d / "dict.txt").is_file():
            self._init_fairseq_dict(d / "dict.txt")
            return
        ids = {s: self.bpe.token_to_id(s) for s in SPECIALS}
        missing = [s for s, i in ids.items() if i is None]
        if missing:
            raise ValueError(f"{vocab} lacks special tokens {missing} (and there is no fairseq dict.txt beside it)")
        self.bos, self.pad, self.eos, self.unk, self.mask = (ids[s] for s in SPECIALS)
        if self.pad != 1:
            raise ValueError(f"<pad> must have id 1 (RoBERTa/fairseq layout), {vocab} has {self.pad}")
        self.vocab_size = self.bpe.get_vocab_size()
        self.special_ids = frozenset(ids.values())

    def _init_fairseq_dict(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            line = path.read_bytes()[: e.start].count(b"\n") + 1
            raise Data2VecError(f"{path}:{line}: not UTF-8 text; a fairseq dict.txt is UTF-8 (copy it again)") from None
        symbols = [line.split(" ")[0] for line in text.splitlines() if line.strip()]
        self.bos, self.pad, self.eos, self.unk = 0, 1, 2, 3
        self.mask = 4 + len(symbols)
        self.vocab_size = self.mask + 1
        self.special_ids = frozenset({0, 1, 2, 3, self.mask})
        self.to_fairseq = np.full(self.bpe.get_vocab_size(), self.unk, dtype=np.int64)
        self.from_fairseq = {}
        for k, sym in enumerate(symbols):
            if sym.isdigit() and int(sym) < len(self.to_fairseq):
                self.to_fairseq[int(sym)] = 4 + k
                self.from_fairseq[4 + k] = int(sym)

    def encode(self, text: str) -> list[int]:
        ids = self.bpe.encode(text).ids
        return ids if self.to_fairseq is None else self.to_fairseq[ids].tolist()

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        out = [e.ids for e in self.bpe.encode_batch(texts)]
        return out if self.to_fairseq is None else [self.to_fairseq[i].tolist() for i in out]

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids]
        if self.to_fairseq is not None:
            ids = [self.from_fairseq[i] for i in ids if i in self.from_fairseq]
        return self.bpe.decode(ids)

    @staticmethod
    def train(sentences, out_dir: str | Path, vocab_size: int = 8000) -> "Tokenizer":
        from tokenizers import ByteLevelBPETokenizer

        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator(sentences, vocab_size=vocab_size, min_frequency=2, special_tokens=list(SPECIALS),
                                show_progress=False)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        bpe.save_model(str(out_dir))
        return Tokenizer(out_dir)


def binarize(documents: list[list[str]], tok: Tokenizer) -> dict[str, np.ndarray]:
    """Documents (lists of sentences) -> token stream with ``</s>`` after each sentence, plus boundaries."""
    encoded = tok.encode_batch([s for doc in documents for s in doc])
    lengths = np.fromiter((len(e) + 1 for e in encoded), dtype=np.int64, count=len(encoded))
    tokens = np.empty(int(lengths.sum()), dtype=np.int32)
    pos = 0
    for e in encoded:
        n = len(e)
        tokens[pos:pos + n] = e
        tokens[pos + n] = tok.eos
        pos += n + 1
    sent_ends = np.cumsum(lengths)
    doc_sizes = np.fromiter((len(d) for d in documents), dtype=np.int64, count=len(documents))
    doc_ends = sent_ends[np.cumsum(doc_sizes) - 1] if len(documents) else np.zeros(0, np.int64)
    return {"tokens": tokens, "sent_ends": sent_ends, "doc_ends": doc_ends}


def make_blocks(sent_ends: np.ndarray, doc_ends: np.ndarray, block: int, break_mode: str) -> np.ndarray:
    """[N, 2] (start, end) token ranges of at most ``block`` tokens."""
    if block < 1:
        raise ValueError("tokens_per_sample must be at least 2")
    total = int(sent_ends[-1]) if len(sent_ends) else 0
    if break_mode == "none":
        starts = np.arange(0, total, block)
        return np.stack([starts, np.minimum(starts + block, total)], 1)
    if break_mode != "complete_doc":
        raise ValueError(f"break_mode must be 'complete_doc' or 'none', got {break_mode!r}")
    doc_end_set = set(doc_ends.tolist())
    out, start, prev = [], 0, 0
    for end in sent_ends.tolist():
        if end - start > block and prev > start:  # the sentence does not fit: close the block before it
            out.append((start, prev))
            start = prev
        while end - start > block:  # a single sentence longer than a block
            out.append((start, start + block))
            start += block
        prev = end
        if end in doc_end_set:
            if end > start:
                out.append((start, end))
            start = end
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def mmap_npz_member(npz_path: str | Path, name: str) -> np.memmap | None:
    """Array ``name`` of an ``.npz`` memory-mapped in place (read-only), or None when it cannot be (a
    compressed member, e.g. from ``np.savez_compressed``; an object array).

    ``np.savez`` stores each array as an uncompressed ``.npy`` inside the zip, so its bytes sit at a fixed
    offset of the file: after the member's local zip header (30 bytes, the name, the extra field) and the
    ``.npy`` header. The pages are read on demand and shared by every process that maps the file."""
    import struct
    import zipfile

    with zipfile.ZipFile(npz_path) as zf:
        try:
            info = zf.getinfo(f"{name}.npy")
        except KeyError:
            return None
        if info.compress_type != zipfile.ZIP_STORED:
            return None
    with open(npz_path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if local[:4] != b"PK\x03\x04":
            return None
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        f.seek(start)
        version = np.lib.format.read_magic(f)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            return None
        shape, fortran, dtype = read_header(f)
        if dtype.hasobject or len(shape) != 1:
            return None
        offset = f.tell()
    if offset + dtype.itemsize * (shape[0] if shape else 1) > start + info.file_size:
        return None
    return np.memmap(npz_path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def load_corpus(npz_path: str | Path, vocab_size: int | None = None, *, mmap: bool = True) -> dict[str, np.ndarray]:
    """The arrays of a ``{split}.npz`` (see ``binarize``), checked: sentence ends increase up to the stream's
    end, document ends are sentence ends, token ids are below ``vocab_size`` (when given).

    With ``mmap`` the token stream is memory-mapped (``mmap_npz_member``), not read into memory: a corpus
    larger than memory trains, and loader workers share its pages.

    Raises:
        Data2VecError: the file is missing, damaged (empty, truncated, not an .npz) or inconsistent.
    """
    fix = "re-create it with `data2vec prepare text --out DIR` (damaged, partly copied, or from another tokenizer?)"
    try:
        with np.load(npz_path) as data:  # allow_pickle=False: arrays only
            arrays = {k: np.asarray(data[k]) for k in ("sent_ends", "doc_ends")}
            tokens = mmap_npz_member(npz_path, "tokens") if mmap else None
            arrays["tokens"] = np.asarray(data["tokens"]) if tokens is None else tokens
    except Exception as e:  # noqa: BLE001 - np.load raises OSError, EOFError, ValueError, BadZipFile, KeyError, ...
        raise Data2VecError(f"cannot read the token corpus {npz_path} ({type(e).__name__}: {str(e)[:120]}): "
                            f"{fix}") from None
    tokens, sent_ends, doc_ends = arrays["tokens"], arrays["sent_ends"], arrays["doc_ends"]
    problem = None
    if any(a.ndim != 1 or a.dtype.kind not in "iu" for a in arrays.values()):
        problem = "its arrays are not 1-D integer arrays"
    elif len(sent_ends) and (sent_ends[0] < 1 or np.any(np.diff(sent_ends) < 1) or sent_ends[-1] != len(tokens)):
        problem = "its sentence ends do not increase up to the end of the token stream"
    elif not np.isin(doc_ends, sent_ends).all():
        problem = "its document ends are not sentence ends"
    elif len(tokens) and (tokens.min() < 0 or (vocab_size is not None and tokens.max() >= vocab_size)):
        problem = f"it holds token ids outside the vocabulary (0..{(vocab_size or 1) - 1})"
    if problem:
        raise Data2VecError(f"{npz_path}: {problem}: {fix}")
    return arrays


class TextBlockDataset(torch.utils.data.Dataset):
    def __init__(self, npz_path: str | Path, *, tokens_per_sample: int, break_mode: str, bos: int,
                 vocab_size: int | None = None):
        data = load_corpus(npz_path, vocab_size)
        self.tokens = data["tokens"]
        self.blocks = make_blocks(data["sent_ends"], data["doc_ends"], tokens_per_sample - 1, break_mode)
        if len(self.blocks) == 0:
            raise ValueError(f"{npz_path} holds no text")
        self.bos = bos
        self.sizes = (self.blocks[:, 1] - self.blocks[:, 0] + 1).astype(np.int64)
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> dict:
        s, e = self.blocks[index]
        toks = np.concatenate([[self.bos], np.asarray(self.tokens[s:e], dtype=np.int64)])
        return {"id": index, "epoch": self.epoch, "tokens": toks}


def read_corpus_info(directory: str | Path) -> dict:
    p = Path(directory) / "corpus.json"
    if not p.is_file():
        return {}
    try:
        info = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise Data2VecError(f"{p} is not valid JSON ({e}): re-create the directory with `data2vec prepare text`, "
                            "or delete corpus.json") from None
    if not isinstance(info, dict):
        raise Data2VecError(f"{p} is not a JSON object: re-create the directory with `data2vec prepare text`")
    return info


# bytes that plain text never holds (NUL aside, which alone marks a file as binary): C0 controls but
# tab, newline, vertical tab, form feed, carriage return and escape; and DEL
_CONTROL_BYTES = bytes([*range(0, 9), *range(14, 27), *range(28, 32), 127])
BINARY_FRACTION = 0.1  # a file with more undecodable or control bytes than this is binary, not text


def read_text_file(path: str | Path) -> tuple[list[str], list[tuple[str, str]]]:
    """The lines of a UTF-8 text file, and what was skipped as (file, reason) pairs.

    An empty or binary file (a NUL byte, or more than ``BINARY_FRACTION`` of its bytes undecodable or
    control characters) gives no lines; in a text file, lines that are not UTF-8 are dropped and named.

    Raises:
        Data2VecError: the file cannot be read at all.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise Data2VecError(f"cannot read {path}: {e.strerror or e}") from None
    if not raw.strip():
        return [], [(str(path), "empty: no text in it")]
    fix = "pass plain UTF-8 text, one sentence or paragraph per line (convert with `iconv -t utf-8`)"
    if b"\x00" in raw:
        return [], [(str(path), f"binary: it holds NUL bytes, it is not UTF-8 text (UTF-16? a binary file?); {fix}")]
    text = raw.decode("utf-8", errors="replace")
    odd = text.count("\ufffd") + len(raw) - len(raw.translate(None, _CONTROL_BYTES))
    if odd > BINARY_FRACTION * len(raw):
        return [], [(str(path), f"binary: {odd / len(raw):.0%} of its bytes are not text; {fix}")]
    try:
        return raw.decode("utf-8").splitlines(), []
    except UnicodeDecodeError:
        pass
    lines, bad = [], []
    for n, line in enumerate(raw.splitlines(), start=1):
        try:
            lines += line.decode("utf-8").splitlines() or [""]
        except UnicodeDecodeError:
            bad.append(n)
    shown = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
    return lines, [(str(path), f"not UTF-8: {len(bad)} line(s) skipped (line {shown}); {fix}")]
