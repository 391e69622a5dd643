"""Word n-gram language models: interpolated modified Kneser-Ney estimation written as ARPA, and a small
ARPA reader for scoring and perplexity.

There is no ``lmplz`` here, so :func:`estimate_arpa` follows KenLM's ``lmplz`` (Heafield et al. 2013,
"Scalable Modified Kneser-Ney Language Model Estimation"; Chen & Goodman 1998, section 3.5) without
pruning:

* Sentences are split on whitespace and padded as ``<s> w1 .. wk </s>``.
* Adjusted counts ``a(g)``: the raw count at the highest order, and for lower orders the number of distinct
  words seen to the left of ``g`` (continuation count). N-grams starting with ``<s>`` keep their raw count,
  because nothing can stand to their left.
* Discounts ``D1, D2, D3+`` per order from the count-of-counts ``t_k`` of the adjusted counts:
  ``Y = t1 / (t1 + 2 t2)``, ``D_k = k - (k + 1) Y t_{k+1} / t_k``. On tiny corpora, where some ``t_k`` is 0
  or a ``D_k`` falls outside ``(0, k]``, we fall back to plain KN (``D = Y`` for every count) when
  ``t1, t2 > 0``, and otherwise to lmplz's ``--discount_fallback`` defaults ``0.5 1 1.5``.
* Interpolation: ``p(w|h) = (a(hw) - D(a(hw))) / sum_x a(hx) + gamma(h) p(w|h')`` with
  ``gamma(h) = (D1 N1(h.) + D2 N2(h.) + D3 N3+(h.)) / sum_x a(hx)`` and ``h'`` the context without its
  first word. Unigrams interpolate with the uniform distribution over the vocabulary.

The unigram vocabulary is every word of the corpus plus ``</s>`` and ``<unk>``; ``<s>`` is listed with
probability ``-99`` (log10) as in lmplz and is never predicted. The ARPA file lists every n-gram of the
corpus with its interpolated log10 probability, and a log10 backoff weight ``log10 gamma(h)`` for every
n-gram that is the context of a higher-order one. Standard ARPA backoff then reproduces the interpolated
model exactly, so each conditional distribution sums to 1 (tested). KenLM (and flashlight's ``KenLM``)
load the file directly.
"""

from __future__ import annotations

import gzip
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)  # lmplz --discount_fallback defaults
Ngram = tuple[str, ...]


def count_ngrams(sentences: Iterable[str], order: int) -> list[Counter]:
    """Raw counts of every n-gram, n = 1..order, of the padded sentences; ``counts[n - 1][ngram]``."""
    counts = [Counter() for _ in range(order)]
    for sentence in sentences:
        toks = [BOS, *sentence.split(), EOS]
        for n in range(1, order + 1):
            counts[n - 1].update(tuple(toks[i : i + n]) for i in range(len(toks) - n + 1))
    return counts


def adjusted_counts(raw: list[Counter]) -> list[Counter]:
    """Kneser-Ney adjusted counts: raw counts at the highest order and for n-grams starting with ``<s>``,
    continuation counts (number of distinct left neighbours) otherwise."""
    adjusted = [Counter() for _ in raw]
    adjusted[-1] = Counter(raw[-1])
    for n in range(len(raw) - 1):
        left = Counter(g[1:] for g in raw[n + 1])  # each (n+2)-gram type adds one left neighbour
        adjusted[n] = Counter({g: c if g[0] == BOS else left[g] for g, c in raw[n].items()})
    return adjusted


def kn_discounts(count_of_counts: Mapping[int, int]) -> tuple[float, float, float]:
    """``(D1, D2, D3+)`` from ``t_k = count_of_counts[k]``, the number of n-grams with adjusted count k."""
    t1, t2, t3, t4 = (count_of_counts.get(k, 0) for k in (1, 2, 3, 4))
    if not (t1 and t2):
        return FALLBACK_DISCOUNTS
    y = t1 / (t1 + 2 * t2)
    if t3 and t4:
        d = (1 - 2 * y * t2 / t1, 2 - 3 * y * t3 / t2, 3 - 4 * y * t4 / t3)
        if all(0 < dk <= k for k, dk in enumerate(d, 1)):
            return d
    return (y, y, y)


def estimate_kn(sentences: Iterable[str], order: int = 3) -> tuple[list[dict[Ngram, float]], dict[Ngram, float]]:
    """Interpolated modified Kneser-Ney model.

    Returns:
        probs: per order n (index n - 1), n-gram -> interpolated probability p(w_n | w_1..w_{n-1}).
        backoffs: context n-gram -> interpolation weight gamma (the ARPA backoff weight, not in log).
    """
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    adjusted = adjusted_counts(count_ngrams(sentences, order))
    adjusted[0].pop((BOS,), None)  # <s> is only ever a context
    adjusted[0].setdefault((UNK,), 0)
    probs: list[dict[Ngram, float]] = []
    backoffs: dict[Ngram, float] = {}
    for n, counts in enumerate(adjusted, 1):
        d = (0.0, *kn_discounts(Counter(counts.values())))
        by_context: dict[Ngram, list[Ngram]] = defaultdict(list)
        for g in counts:
            by_context[g[:-1]].append(g)
        probs_n = {}
        for context, grams in by_context.items():
            total = sum(counts[g] for g in grams)
            gamma = sum(d[min(counts[g], 3)] for g in grams) / total
            for g in grams:
                lower = probs[-1][g[1:]] if n > 1 else 1.0 / len(counts)  # suffixes of seen n-grams are seen
                probs_n[g] = (counts[g] - d[min(counts[g], 3)]) / total + gamma * lower
            if n > 1:
                backoffs[context] = gamma
        probs.append(probs_n)
    return probs, backoffs


def write_arpa(probs: list[dict[Ngram, float]], backoffs: dict[Ngram, float], out: str | Path) -> Path:
    """Write an ARPA file, n-grams sorted within each order; ``<s>`` gets log10 probability -99."""
    out = Path(out)
    probs = [dict(p) for p in probs]
    probs[0][(BOS,)] = 0.0
    lines = ["", "\\data\\", *(f"ngram {n}={len(p)}" for n, p in enumerate(probs, 1))]
    for n, p in enumerate(probs, 1):
        lines += ["", f"\\{n}-grams:"]
        for g in sorted(p):
            logp = -99.0 if g == (BOS,) else math.log10(p[g])
            line = f"{logp:.6f}\t{' '.join(g)}"
            if g in backoffs:
                line += f"\t{math.log10(backoffs[g]):.6f}"
            lines.append(line)
    lines += ["", "\\end\\", ""]
    out.write_text("\n".join(lines), encoding="utf-8")
    return out


def estimate_arpa(sentences: Iterable[str], out: str | Path, order: int = 3) -> Path:
    """Estimate an interpolated modified Kneser-Ney word n-gram LM and write it to ``out`` in ARPA format."""
    return write_arpa(*estimate_kn(sentences, order), out)


def _open_text(path: str | Path):
    path = str(path)
    return gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, encoding="utf-8")


def _arpa_entries(path: str | Path, max_order: int | None = None) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(order, fields)`` for each n-gram line of an ARPA file (optionally stopping after an order)."""
    order = 0
    with _open_text(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("\\") and line.endswith("-grams:"):
                order = int(line[1:].split("-")[0])
                if max_order is not None and order > max_order:
                    return
            elif line == "\\end\\":
                return
            elif order and line:
                yield order, line.split()


def arpa_unigrams(path: str | Path) -> list[str]:
    """The words of an ARPA (or ``.arpa.gz``) file's unigram section, in file order; reads nothing further."""
    return [fields[1] for _, fields in _arpa_entries(path, max_order=1)]


class ArpaLM:
    """A small pure-Python ARPA back-off model (dicts in memory: meant for tests and small LMs).

    ``logprob(word, context)`` is the standard back-off lookup in log10: the longest listed n-gram ending
    in ``word``, plus the backoff weights of the longer contexts that were skipped. Words outside the
    unigram table are scored as ``<unk>``.
    """

    def __init__(self, path: str | Path):
        self.probs: dict[Ngram, float] = {}
        self.backoffs: dict[Ngram, float] = {}
        self.order = 0
        for n, fields in _arpa_entries(path):
            gram = tuple(fields[1 : 1 + n])
            self.probs[gram] = float(fields[0])
            if len(fields) > n + 1:
                self.backoffs[gram] = float(fields[n + 1])
            self.order = max(self.order, n)
        self.vocab = {g[0] for g in self.probs if len(g) == 1}

    def logprob(self, word: str, context: tuple[str, ...] = ()) -> float:
        """log10 p(word | context); ``context`` is the preceding words, oldest first (may start with ``<s>``)."""
        word = word if word in self.vocab else UNK
        context = tuple(w if w in self.vocab else UNK for w in context[max(len(context) - self.order + 1, 0) :])
        backoff = 0.0
        for i in range(len(context) + 1):
            prob = self.probs.get(context[i:] + (word,))
            if prob is not None:
                return backoff + prob
            backoff += self.backoffs.get(context[i:], 0.0)
        raise ValueError(f"{word!r} is not in the unigram table and there is no {UNK}")

    def sentence_logprob(self, sentence: str) -> float:
        """log10 probability of ``<s> sentence </s>`` (the ``</s>`` included)."""
        words = [*sentence.split(), EOS]
        return sum(self.logprob(w, (BOS, *words[:i])) for i, w in enumerate(words))

    def perplexity(self, sentences: Iterable[str]) -> float:
        """Corpus perplexity over words and ``</s>`` (KenLM's "perplexity including OOVs")."""
        total, num_tokens = 0.0, 0
        for sentence in sentences:
            total += self.sentence_logprob(sentence)
            num_tokens += len(sentence.split()) + 1
        return 10.0 ** (-total / max(num_tokens, 1))
