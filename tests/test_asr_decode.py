"""ASR decoding: Kneser-Ney ARPA estimation (normalisation, hand values, KenLM agreement), greedy and beam
CTC decoding (beam vs a brute-force sum over alignments; LM rescoring), and corpus-level WER/CER."""

from __future__ import annotations

import importlib.util
import itertools
import math

import pytest
import torch

from data2vec.asr.decode import BeamDecoder, greedy_decode, word_error_rate
from data2vec.asr.lm import ArpaLM, arpa_unigrams, estimate_arpa, estimate_kn, kn_discounts

# flashlight-text and jiwer are optional dependencies; the LM estimation and greedy tests need neither
needs_flashlight = pytest.mark.skipif(importlib.util.find_spec("flashlight") is None, reason="needs flashlight-text")
needs_jiwer = pytest.mark.skipif(importlib.util.find_spec("jiwer") is None, reason="needs jiwer")

FAIRSEQ_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "|", "A", "B"]  # blank = <s> (index 0)
LETTERS = ["<s>", "<pad>", "</s>", "<unk>", "|", *"ACDEGHMNOST"]
CORPUS = ["the cat sat on the mat", "the dog sat on the log", "a cat ate the rat", "the cat", "", "dog dog dog dog"]


def emissions(frames: list[dict[str, float]], tokens: list[str], eps: float = 1e-4) -> torch.Tensor:
    """[T, V] log-probabilities: each frame gives probabilities to a few tokens, ``eps`` to the rest."""
    p_TV = torch.full((len(frames), len(tokens)), eps, dtype=torch.float64)
    for t, frame in enumerate(frames):
        for tok, p in frame.items():
            p_TV[t, tokens.index(tok)] = p
    return (p_TV / p_TV.sum(-1, keepdim=True)).log().float()


def spell(labels: str, p: float = 0.9) -> list[dict[str, float]]:
    """One confident frame per space-separated label."""
    return [{tok: p} for tok in labels.split()]


# ---------------------------------------------------------------- language model


def test_kn_discounts_modified_plain_and_fallback():
    d = kn_discounts({1: 10, 2: 5, 3: 3, 4: 2})  # Y = 0.5
    assert d == pytest.approx((0.5, 2 - 3 * 0.5 * 3 / 5, 3 - 4 * 0.5 * 2 / 3))
    assert kn_discounts({1: 3, 2: 1}) == pytest.approx((0.6, 0.6, 0.6))  # t3 = 0: plain KN, D = Y
    assert kn_discounts({1: 3}) == (0.5, 1.0, 1.5)  # lmplz --discount_fallback


def test_bigram_matches_hand_computation(tmp_path):
    # <s> a b </s> / <s> b </s>. Bigrams (raw = adjusted): <s>a 1, ab 1, b</s> 2, <s>b 1 -> t1=3, t2=1, D=0.6.
    # Unigram continuation counts: a 1 ({<s>}), b 2 ({<s>, a}), </s> 1, <unk> 0 -> t1=2, t2=1, D=0.5.
    # gamma() = 3 * 0.5 / 4; p(w) = (a(w) - 0.5) / 4 + gamma() / 4 (uniform over a, b, </s>, <unk>).
    p_a, p_b, p_eos, p_unk = 0.21875, 0.46875, 0.21875, 0.09375
    lm = ArpaLM(estimate_arpa(["a b", "b"], tmp_path / "lm.arpa", order=2))
    for w, p in (("a", p_a), ("b", p_b), ("</s>", p_eos), ("<unk>", p_unk), ("zzz", p_unk)):
        assert 10 ** lm.logprob(w) == pytest.approx(p, abs=1e-6)
    p_a_bos = (1 - 0.6) / 2 + 0.6 * p_a  # context <s>: two followers, gamma = 2 * 0.6 / 2
    assert 10 ** lm.logprob("a", ("<s>",)) == pytest.approx(p_a_bos, abs=1e-6)
    p_eos_b = (2 - 0.6) / 2 + 0.3 * p_eos  # context b: one follower seen twice, gamma = 0.6 / 2
    assert 10 ** lm.logprob("</s>", ("<s>", "b")) == pytest.approx(p_eos_b, abs=1e-6)
    assert 10 ** lm.logprob("a", ("b",)) == pytest.approx(0.3 * p_a, abs=1e-6)  # unseen: backoff
    p_b_a = (1 - 0.6) / 1 + 0.6 * p_b
    ppl = (p_a_bos * p_b_a * p_eos_b * ((1 - 0.6) / 2 + 0.6 * p_b) * p_eos_b) ** (-1 / 5)
    assert lm.perplexity(["a b", "b"]) == pytest.approx(ppl, rel=1e-5)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_conditionals_sum_to_one(tmp_path, order):
    lm = ArpaLM(estimate_arpa(CORPUS, tmp_path / "lm.arpa", order=order))
    vocab = sorted(lm.vocab - {"<s>"})
    assert {"</s>", "<unk>", "cat"} <= set(vocab)
    contexts = [(), ("<s>",), ("the",), ("<s>", "the"), ("the", "cat"), ("cat", "the"), ("zzz",), ("on", "the"),
                ("dog", "dog", "dog"), ("sat", "cat"), ("<s>", "a", "cat")]  # fmt: skip
    for context in contexts:
        assert sum(10 ** lm.logprob(w, context) for w in vocab) == pytest.approx(1.0, abs=1e-4), context
    assert lm.logprob("<s>") == -99.0


def test_arpa_file_is_well_formed_and_deterministic(tmp_path):
    path = estimate_arpa(CORPUS, tmp_path / "a.arpa", order=3)
    text = path.read_text()
    assert text == estimate_arpa(CORPUS[::-1], tmp_path / "b.arpa", order=3).read_text()
    probs, backoffs = estimate_kn(CORPUS, 3)
    for n, p in enumerate(probs, 1):
        assert f"ngram {n}={len(p) + (n == 1)}" in text  # + the <s> unigram
    assert text.rstrip().endswith("\\end\\")
    # a backoff weight on exactly the n-grams that are the context of a longer one
    assert set(backoffs) == {g[:-1] for p in probs[1:] for g in p}
    assert arpa_unigrams(path) == sorted(arpa_unigrams(path)) and "<s>" in arpa_unigrams(path)


@needs_flashlight
@pytest.mark.parametrize("order", [2, 3])
def test_kenlm_agrees_with_arpa_reader(tmp_path, order):
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import Dictionary

    path = estimate_arpa(CORPUS, tmp_path / "lm.arpa", order=order)
    lm = ArpaLM(path)
    words = sorted(lm.vocab)
    word_dict = Dictionary(words)
    word_dict.set_default_index(word_dict.get_index("<unk>"))
    kenlm = KenLM(str(path), word_dict)
    for sentence in [*CORPUS, "the rat sat on a dog", "unseen words here"]:
        state, context, total = kenlm.start(False), ("<s>",), 0.0
        for w in sentence.split():
            state, score = kenlm.score(state, word_dict.get_index(w) if w in lm.vocab else word_dict.get_index("<unk>"))
            assert score == pytest.approx(lm.logprob(w, context), abs=1e-5)
            context, total = context + (w,), total + score
        state, score = kenlm.finish(state)
        assert total + score == pytest.approx(lm.sentence_logprob(sentence), abs=1e-4)


# ---------------------------------------------------------------- greedy


def test_greedy_collapses_repeats_drops_blanks_and_specials():
    tokens = ["<s>", "<pad>", "</s>", "<unk>", "|", *"ACDGOT'"]
    rows = [
        "C A A <s> A T | D O G",  # a blank separates the repeated A
        "| | C A T T | | D O G ' |",  # leading, doubled and trailing boundaries
        "A <pad> A </s> <unk> T",  # a non-blank special separates repeats but is not written
        "D O G | C A T",  # decoded up to its length only
    ]
    frames = [spell(r) for r in rows]
    T = max(map(len, frames))
    logits_BTV = torch.stack([emissions(f + [{"<s>": 0.9}] * (T - len(f)), tokens) for f in frames])
    assert greedy_decode(logits_BTV, [10, 13, 6, 3], tokens) == ["CAAT DOG", "CAT DOG'", "AAT", "DOG"]
    assert greedy_decode(logits_BTV[:1], torch.tensor([0]), tokens) == [""]
    hf_tokens = ["<pad>", "<s>", *tokens[2:]]  # HF names the blank <pad>; <s> is then a plain special
    assert greedy_decode(logits_BTV[2:3], None, hf_tokens) == ["AAT"]


# ---------------------------------------------------------------- beam search without LM


def brute_force_best(log_probs_TV: torch.Tensor, tokens: list[str]) -> tuple[str, float, float]:
    """Text of the most probable collapsed label sequence (summing over all its frame paths), its
    probability and that of the runner-up."""
    T, V = log_probs_TV.shape
    prob: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(V), repeat=T):
        labels = tuple(i for i, _ in itertools.groupby(path) if i != 0)
        prob[labels] = prob.get(labels, 0.0) + math.exp(sum(log_probs_TV[t, i].item() for t, i in enumerate(path)))
    first, second = sorted(prob, key=prob.get, reverse=True)[:2]
    text = " ".join("".join(" " if tokens[i] == "|" else tokens[i] for i in first).split())
    return text, prob[first], prob[second]


@needs_flashlight
@pytest.mark.parametrize(
    "frames, differ",
    [
        ([{"<s>": 0.6, "A": 0.4}] * 2, True),  # greedy "", but P("A") = 0.64 > P("") = 0.36
        ([{"<s>": 0.55, "A": 0.45}] * 2 + [{"B": 0.6, "<s>": 0.4}], True),  # greedy "B", best "AB"
        ([{"A": 0.7, "|": 0.1, "<s>": 0.2}, {"|": 0.8, "B": 0.1}, {"B": 0.8, "<s>": 0.1}], False),
        ([{"A": 0.7, "<s>": 0.3}, {"<s>": 0.5, "B": 0.4}, {"A": 0.8}], False),
    ],
)
def test_beam_without_lm_sums_over_alignments(frames, differ):
    log_probs_TV = emissions(frames, FAIRSEQ_TOKENS)
    best, p_best, p_second = brute_force_best(log_probs_TV, FAIRSEQ_TOKENS)
    greedy = greedy_decode(log_probs_TV[None], None, FAIRSEQ_TOKENS)[0]
    assert (greedy != best) == differ and p_best > p_second + 0.01
    assert BeamDecoder(FAIRSEQ_TOKENS, beam_size=20).decode(log_probs_TV[None]) == [best]
    # max-merging (log_add=False) is a Viterbi search: it returns the best single path, i.e. greedy
    assert BeamDecoder(FAIRSEQ_TOKENS, log_add=False).decode(log_probs_TV[None]) == [greedy]


@needs_flashlight
def test_beam_batch_uses_lengths_and_accepts_logits():
    rows = [spell("C A T | D O G |"), spell("D O G |")]
    x_BTV = torch.stack([emissions(rows[0], LETTERS), emissions(rows[1] + [{"A": 0.9}] * 4, LETTERS)])
    decoder = BeamDecoder(LETTERS)
    assert decoder.decode(x_BTV * 3.0 + 1.0, torch.tensor([8, 4])) == ["CAT DOG", "DOG"]  # logits: any scale
    assert decoder.decode(x_BTV, [0, 4]) == ["", "DOG"]
    with pytest.raises(ValueError):
        decoder.decode(x_BTV[..., :-1])


# ---------------------------------------------------------------- beam search with a word LM


@pytest.fixture
def lm_path(tmp_path):
    sentences = ["the cat sat on the mat", "the cat ate", "a cat sat", "the dog sat on the cat", "the cat"]
    return estimate_arpa([s.upper() for s in sentences], tmp_path / "lm.arpa", order=3)


def the_ca_d_or_t() -> torch.Tensor:
    """"THE CA?" where the last letter sounds slightly more like D than T: [1, T, V]."""
    frames = spell("T H E | C A") + [{"D": 0.55, "T": 0.44}, {"|": 0.9}]
    return emissions(frames, LETTERS)[None]


@needs_flashlight
def test_lm_picks_the_in_lm_word_and_lm_weight_zero_the_acoustic_one(lm_path):
    lexicon = [*arpa_unigrams(lm_path), "CAD"]  # CAD is in the lexicon but not in the LM (scored as <unk>)
    assert greedy_decode(the_ca_d_or_t(), None, LETTERS) == ["THE CAD"]
    assert BeamDecoder(LETTERS, lm_path=lm_path, lexicon_words=lexicon).decode(the_ca_d_or_t()) == ["THE CAT"]
    no_lm = BeamDecoder(LETTERS, lm_path=lm_path, lm_weight=0.0, lexicon_words=lexicon)
    assert no_lm.decode(the_ca_d_or_t()) == ["THE CAD"]


@needs_flashlight
def test_default_lexicon_is_the_lm_vocabulary(lm_path):
    decoder = BeamDecoder(LETTERS, lm_path=lm_path, lm_weight=0.0)
    assert decoder.num_skipped_words == 0  # "A" and every LM word is spelled with LETTERS
    assert decoder.decode(the_ca_d_or_t()) == ["THE CAT"]  # CAD cannot be written
    frames = spell("T H E | C A T | S A T | O N | T H E | M A T |")
    assert decoder.decode(emissions(frames, LETTERS)[None]) == ["THE CAT SAT ON THE MAT"]


@needs_flashlight
def test_lexicon_without_lm_and_skipped_words():
    decoder = BeamDecoder(LETTERS, lexicon_words=["THE", "CAT", "cat", "C-T", "THE"])
    assert decoder.num_skipped_words == 2  # lowercase and "-" are not letters of LETTERS
    assert decoder.decode(the_ca_d_or_t()) == ["THE CAT"]
    with pytest.raises(ValueError, match="no lexicon word"):
        BeamDecoder(LETTERS, lexicon_words=["cat"])


# ---------------------------------------------------------------- error rates


@needs_jiwer
def test_word_error_rate_is_corpus_level():
    out = word_error_rate(["the cat sat"], ["the cat sit on"])  # 1 substitution + 1 insertion
    assert out == {"wer": pytest.approx(2 / 3), "cer": pytest.approx(4 / 11), "words": 3, "chars": 11}
    # total edits / total reference words: (2 + 2) / (3 + 2) = 0.8, not the mean of 2/3 and 1.0
    out = word_error_rate(["the cat sat", "a  dog "], ["the cat sit on", ""])
    assert out["wer"] == pytest.approx(4 / 5) and out["words"] == 5 and out["chars"] == 11 + 5
    assert out["cer"] == pytest.approx((4 + 5) / 16)
    assert word_error_rate(["a b"], ["a b"])["wer"] == 0.0
    with pytest.raises(ValueError):
        word_error_rate(["a"], [])
