"""Letter vocabulary for CTC, compatible with fairseq's ``dict.ltr.txt`` and HF's CTC ``vocab.json``.

fairseq (``fairseq.data.Dictionary``): indices 0-3 are ``<s>``, ``<pad>``, ``</s>``, ``<unk>``, then the
symbols of ``dict.ltr.txt`` in file order (one ``SYMBOL COUNT`` per line; ``|`` is the word boundary).
The CTC blank is index 0 (``Wav2VecCtc``: ``blank_idx = dictionary.bos()``). HF's converted
``vocab.json`` keeps the same indices but names index 0 ``<pad>`` (its ``pad_token_id`` is the blank)
and index 1 ``<s>``. Here index 0 is the blank whatever its name.

Labels (``.ltr`` files, fairseq ``libri_labels.py``): one line per manifest entry, letters separated by
spaces, ``|`` after every word: ``H E L L O | W O R L D |``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # fairseq order; index 0 is the CTC blank
BLANK, PAD, EOS, UNK = 0, 1, 2, 3
WORD_SEP = "|"


class LetterDictionary:
    def __init__(self, symbols: list[str], counts: list[int] | None = None):
        """``symbols``: the letters in index order after the four specials."""
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"duplicate symbols in the letter dictionary: {symbols}")
        if any(s in SPECIALS for s in symbols):
            raise ValueError(f"the letter dictionary must not list the specials {SPECIALS}")
        self.tokens = list(SPECIALS) + list(symbols)
        self.counts = list(counts) if counts is not None else [1] * len(symbols)
        self.index = {s: i for i, s in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other) -> bool:
        return isinstance(other, LetterDictionary) and self.tokens == other.tokens

    @property
    def blank(self) -> int:
        return BLANK

    @classmethod
    def load(cls, path: str | Path) -> "LetterDictionary":
        """Read a fairseq ``dict.ltr.txt`` (``SYMBOL COUNT`` per line; a trailing ``#fairseq:overwrite`` is allowed)."""
        symbols, counts = [], []
        for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            parts = line.rstrip().split(" ")
            if parts and parts[-1] == "#fairseq:overwrite":
                parts = parts[:-1]
            if not parts or parts == [""]:
                continue
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise ValueError(f"{path}:{n}: expected 'SYMBOL COUNT', got {line!r}")
            if parts[0] in SPECIALS:
                continue
            symbols.append(parts[0])
            counts.append(int(parts[1]))
        if WORD_SEP not in symbols:
            raise ValueError(f"{path} has no word boundary symbol {WORD_SEP!r}; is it a letter dictionary?")
        return cls(symbols, counts)

    @classmethod
    def from_labels(cls, lines) -> "LetterDictionary":
        """Build from ``.ltr`` lines: symbols by descending count, ties alphabetically (fairseq's order)."""
        c = Counter(tok for line in lines for tok in line.split())
        items = sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))
        return cls([s for s, _ in items], [n for _, n in items])

    def save(self, path: str | Path) -> None:
        Path(path).write_text("".join(f"{s} {n}\n" for s, n in zip(self.tokens[4:], self.counts)), encoding="utf-8")

    def hf_vocab(self) -> dict[str, int]:
        """HF ``vocab.json``: the same indices, index 0 named ``<pad>`` (the blank) and 1 ``<s>``."""
        names = ["<pad>", "<s>"] + self.tokens[2:]
        return {s: i for i, s in enumerate(names)}

    @classmethod
    def from_hf_vocab(cls, vocab: dict[str, int] | str | Path) -> "LetterDictionary":
        if not isinstance(vocab, dict):
            vocab = json.loads(Path(vocab).read_text())
        names = [s for s, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
        if sorted(vocab.values()) != list(range(len(vocab))) or names[:4] != ["<pad>", "<s>", "</s>", "<unk>"]:
            raise ValueError("HF CTC vocab.json must number <pad> <s> </s> <unk> 0-3 and the letters 4.. without gaps")
        return cls(names[4:])

    def encode(self, ltr_line: str) -> list[int]:
        """Letters of one ``.ltr`` line -> indices (unknown symbols -> ``<unk>``)."""
        return [self.index.get(tok, UNK) for tok in ltr_line.split()]

    def decode(self, ids) -> str:
        """Indices -> words (specials dropped, ``|`` -> space)."""
        s = "".join(self.tokens[i] for i in ids if i >= len(SPECIALS))
        return " ".join(s.replace(WORD_SEP, " ").split())


def words_to_letters(words: str) -> str:
    """``HELLO WORLD`` -> ``H E L L O | W O R L D |`` (fairseq ``libri_labels.py``)."""
    return " ".join(" ".join(w) + " |" for w in words.split())
