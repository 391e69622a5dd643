"""CTC decoding (greedy, and beam search with or without a word n-gram LM) and word/character error rates.

Vocabulary convention (fairseq ``dict.ltr.txt``, HF data2vec-audio CTC ``vocab.json``; see
``data2vec.asr.dictionary``): ``tokens[blank]`` is the CTC blank (``<s>`` in fairseq, ``<pad>`` in HF,
index 0 in both). The other specials ``<s> <pad> </s> <unk>`` are valid CTC labels (they separate repeats)
but are never written out. ``|`` is the word boundary; every other token is a letter (one character).
Text output is words separated by single spaces, with no leading or trailing space.

Decoders take logits or log-probabilities ``[B, T, V]`` and apply ``log_softmax`` themselves (it leaves
log-probabilities unchanged), plus ``lengths_B``: only the first ``lengths_B[b]`` frames of row ``b`` are
decoded.

Beam search mirrors fairseq ``examples/speech_recognition/w2l_decoder.py`` (``W2lKenLMDecoder``) on
flashlight-text's decoders:

* with an LM (``lm_path``, ARPA or KenLM binary): ``LexiconDecoder`` + ``KenLM`` + a ``Trie`` of the lexicon.
  Each word is spelled as its letters followed by ``|``; trie nodes carry the word's unigram LM score
  (after ``<s>``) smeared with ``SmearingMode.MAX``; ``log_add=False``; the word dictionary is the lexicon
  plus ``<unk>``. A word is only emitted once its closing ``|`` is decoded, so an utterance whose frames
  do not end in ``|`` loses its last word (fairseq-trained models emit it: labels end with ``|``). Hypothesis score = acoustic log-prob (natural log) + ``lm_weight`` * LM log10 score
  + ``word_score`` per word + ``sil_score`` per ``|`` (+ ``unk_score`` per out-of-lexicon word, -inf: never).
* with ``lexicon_words`` but no LM: the same lexicon-constrained search with flashlight's ``ZeroLM``.
* with neither: ``LexiconFreeDecoder`` + ``ZeroLM``, a prefix beam search over letters (``|`` is the
  silence token). By default it sums over alignments (``log_add=True``), so it finds the most probable
  collapsed label sequence rather than the most probable frame path (which greedy decoding returns).

flashlight-text and jiwer are optional dependencies, imported only by ``BeamDecoder`` and
``word_error_rate``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from data2vec.asr.dictionary import SPECIALS, WORD_SEP
from data2vec.asr.lm import UNK, arpa_unigrams


def _symbol_table(tokens: Sequence[str], blank: int) -> list[str]:
    """Text for each token index: letters as themselves, ``|`` as a space, blank and specials as ''."""
    return ["" if i == blank or t in SPECIALS else " " if t == WORD_SEP else t for i, t in enumerate(tokens)]


def _to_text(ids: Iterable[int], symbols: Sequence[str]) -> str:
    return " ".join("".join(symbols[i] for i in ids).split())


def _lengths(logits_BTV: torch.Tensor, lengths_B: torch.Tensor | Sequence[int] | None) -> list[int]:
    B, T, _ = logits_BTV.shape
    lengths = [T] * B if lengths_B is None else [int(n) for n in lengths_B]
    if len(lengths) != B or any(not 0 <= n <= T for n in lengths):
        raise ValueError(f"lengths_B must hold {B} values in [0, {T}], got {lengths}")
    return lengths


def greedy_decode(
    logits_BTV: torch.Tensor,
    lengths_B: torch.Tensor | Sequence[int] | None,
    tokens: Sequence[str],
    blank: int = 0,
) -> list[str]:
    """Best-path CTC decoding: argmax per frame, collapse repeats, drop blanks, then specials; ``|`` -> space.

    Args:
        logits_BTV: logits or log-probabilities (the argmax is the same).
        lengths_B: valid frames per row (None: all T).
        tokens: the vocabulary, ``len(tokens) == V``.
        blank: index of the CTC blank.
    """
    lengths = _lengths(logits_BTV, lengths_B)
    ids_BT = logits_BTV.argmax(-1).cpu()
    new_BT = torch.ones_like(ids_BT, dtype=torch.bool)
    new_BT[:, 1:] = ids_BT[:, 1:] != ids_BT[:, :-1]  # collapse repeats before dropping blanks
    keep_BT = new_BT & (ids_BT != blank) & (torch.arange(ids_BT.shape[1]) < torch.tensor(lengths)[:, None])
    symbols = _symbol_table(tokens, blank)
    return [_to_text(ids_BT[b][keep_BT[b]].tolist(), symbols) for b in range(len(lengths))]


class BeamDecoder:
    """CTC beam search with flashlight-text (see the module docstring for the three modes and the score).

    Args:
        tokens: the vocabulary (must contain ``|``).
        blank: index of the CTC blank.
        beam_size: hypotheses kept per frame.
        beam_threshold: hypotheses scoring more than this below the best are pruned.
        lm_path: ARPA (``.arpa``) or KenLM binary word LM; None for no LM.
        lm_weight: weight of the LM's log10 scores (ignored without an LM).
        word_score: added per emitted word (lexicon modes only).
        unk_score: added per out-of-lexicon word (lexicon modes only; -inf forbids them).
        sil_score: added per ``|`` token.
        lexicon_words: the words the search may output (lexicon modes). Default with an LM: the LM's
            unigrams except ``<s> </s> <unk>`` (needs an ARPA file). Words with characters that are not
            letters of ``tokens`` are skipped; their number is ``num_skipped_words``.
        log_add: merge hypotheses by log-sum-exp instead of max. Default: True for the lexicon-free
            search, False (fairseq's choice) with a lexicon.
    """

    def __init__(
        self,
        tokens: Sequence[str],
        blank: int = 0,
        beam_size: int = 50,
        beam_threshold: float = 25.0,
        lm_path: str | Path | None = None,
        lm_weight: float = 2.0,
        word_score: float = -1.0,
        unk_score: float = -math.inf,
        sil_score: float = 0.0,
        lexicon_words: Iterable[str] | None = None,
        log_add: bool | None = None,
    ):
        import flashlight.lib.text.decoder as fd

        if WORD_SEP not in tokens:
            raise ValueError(f"tokens have no word boundary {WORD_SEP!r}")
        self.tokens, self.blank, self.sil = list(tokens), blank, list(tokens).index(WORD_SEP)
        self.symbols = _symbol_table(tokens, blank)
        self.word_dict, self.num_skipped_words = None, 0
        if lm_path is None and lexicon_words is None:
            opts = fd.LexiconFreeDecoderOptions(
                beam_size=beam_size, beam_size_token=len(tokens), beam_threshold=beam_threshold, lm_weight=0.0,
                sil_score=sil_score, log_add=True if log_add is None else log_add,
                criterion_type=fd.CriterionType.CTC,
            )
            self.decoder = fd.LexiconFreeDecoder(opts, fd.ZeroLM(), self.sil, blank, [])
            return
        if lexicon_words is None:
            lexicon_words = [w for w in arpa_unigrams(lm_path) if w not in SPECIALS]
        words, self.num_skipped_words = self._spellable(lexicon_words)
        self.word_dict = self._word_dict(words)
        self.lm = fd.ZeroLM() if lm_path is None else self._kenlm(lm_path, self.word_dict)
        trie = self._trie(words)
        opts = fd.LexiconDecoderOptions(
            beam_size=beam_size, beam_size_token=len(tokens), beam_threshold=beam_threshold, lm_weight=lm_weight,
            word_score=word_score, unk_score=unk_score, sil_score=sil_score,
            log_add=False if log_add is None else log_add, criterion_type=fd.CriterionType.CTC,
        )
        unk = self.word_dict.get_index(UNK)
        self.decoder = fd.LexiconDecoder(opts, trie, self.lm, self.sil, blank, unk, [], False)

    def _spellable(self, lexicon_words: Iterable[str]) -> tuple[list[str], int]:
        """Unique words whose every character is a letter token, and how many other words were skipped."""
        letters = {t for i, t in enumerate(self.tokens) if self.symbols[i] == t}
        words, skipped = [], 0
        for w in dict.fromkeys(lexicon_words):
            if w and all(c in letters for c in w):
                words.append(w)
            elif w not in SPECIALS:
                skipped += 1
        if not words:
            raise ValueError(f"no lexicon word can be spelled with the letters {sorted(letters)} (case?)")
        return words, skipped

    @staticmethod
    def _word_dict(words: list[str]):
        from flashlight.lib.text.dictionary import Dictionary

        word_dict = Dictionary(words + [UNK])
        word_dict.set_default_index(word_dict.get_index(UNK))
        return word_dict

    @staticmethod
    def _kenlm(lm_path: str | Path, word_dict):
        from flashlight.lib.text.decoder.kenlm import KenLM

        return KenLM(str(lm_path), word_dict)

    def _trie(self, words: list[str]):
        """Lexicon trie over token indices (``W2lKenLMDecoder``): spelling = letters + ``|``, scored by the
        word's LM score after ``<s>``, smeared by max."""
        import flashlight.lib.text.decoder as fd

        index = {t: i for i, t in enumerate(self.tokens)}
        trie = fd.Trie(len(self.tokens), self.sil)
        start = self.lm.start(False)
        for w in words:
            word_idx = self.word_dict.get_index(w)
            trie.insert([index[c] for c in w] + [self.sil], word_idx, self.lm.score(start, word_idx)[1])
        trie.smear(fd.SmearingMode.MAX)
        return trie

    def decode(self, logits_BTV: torch.Tensor, lengths_B: torch.Tensor | Sequence[int] | None = None) -> list[str]:
        """Best hypothesis per row as text. ``logits_BTV``: logits or log-probabilities, V = len(tokens)."""
        if logits_BTV.shape[-1] != len(self.tokens):
            raise ValueError(f"expected {len(self.tokens)} classes, got {logits_BTV.shape[-1]}")
        lengths = _lengths(logits_BTV, lengths_B)
        # flashlight reads T x V float32 from a raw pointer: keep a contiguous CPU copy alive meanwhile
        emissions_BTV = torch.log_softmax(logits_BTV.detach().float(), -1).cpu().contiguous()
        V = emissions_BTV.shape[-1]
        texts = []
        for b, T in enumerate(lengths):
            ptr = emissions_BTV.data_ptr() + 4 * b * emissions_BTV.stride(0)
            results = self.decoder.decode(ptr, T, V) if T > 0 else []
            texts.append(self._text(results[0]) if results else "")
        return texts

    def _text(self, result) -> str:
        if self.word_dict is None:  # lexicon-free: CTC-collapse the token path
            ids = [i for i, _ in itertools.groupby(result.tokens) if i >= 0 and i != self.blank]
            return _to_text(ids, self.symbols)
        words = (self.word_dict.get_entry(i) for i in result.words if i >= 0)
        return " ".join(w for w in words if w not in SPECIALS)


def word_error_rate(refs: Sequence[str], hyps: Sequence[str]) -> dict[str, float]:
    """Corpus-level error rates with jiwer: total edits / total reference words (characters).

    Whitespace is normalised first; CER counts the spaces between words as characters (jiwer's default).
    Returns ``{"wer", "cer", "words": reference words, "chars": reference characters}``.
    """
    import jiwer

    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    refs = [" ".join(r.split()) for r in refs]
    hyps = [" ".join(h.split()) for h in hyps]
    words, chars = sum(len(r.split()) for r in refs), sum(len(r) for r in refs)
    if not refs or not words:
        raise ValueError("word_error_rate needs at least one non-empty reference")
    w, c = jiwer.process_words(refs, hyps), jiwer.process_characters(refs, hyps)
    wer = (w.substitutions + w.deletions + w.insertions) / words
    cer = (c.substitutions + c.deletions + c.insertions) / chars
    return {"wer": wer, "cer": cer, "words": words, "chars": chars}
