"""Text data: BPE tokenizer, binarized corpus, blocks, token masking, collator, and a short pretraining run."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest
import torch

from conftest import set_args
from data2vec.cli import main
from data2vec.data.prepare_text import prepare_text
from data2vec.data.text import TextBlockDataset, Tokenizer, binarize, make_blocks
from data2vec.modalities.text.collator import TextCollator
from data2vec.modalities.text import TokenMaskConfig, mask_tokens


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("text")
    docs = tmp_path_factory.mktemp("src") / "docs.txt"
    rng = np.random.default_rng(0)
    words = "the cat dog sat ran on a mat log red blue big small fast slow and".split()
    paras = ["\n".join(" ".join(rng.choice(words, rng.integers(4, 12))).capitalize() + "."
                       for _ in range(rng.integers(1, 6))) for _ in range(300)]
    docs.write_text("\n\n".join(paras) + "\n")
    prepare_text(d, inputs=[str(docs)], vocab_size=300, valid_fraction=0.1)
    return d


def test_prepare_text_outputs(text_dir):
    info = json.loads((text_dir / "corpus.json").read_text())
    assert info["documents"]["train"] + info["documents"]["valid"] == 300
    tok = Tokenizer(text_dir)
    assert (tok.bos, tok.pad, tok.eos, tok.unk) == (0, 1, 2, 3) and tok.vocab_size == info["vocab_size"]
    assert tok.decode(tok.encode("The cat sat on a mat.")) == "The cat sat on a mat."
    arr = np.load(text_dir / "train.npz")
    assert len(arr["tokens"]) == info["train_tokens"] == arr["sent_ends"][-1] == arr["doc_ends"][-1]
    assert (arr["tokens"][arr["sent_ends"] - 1] == tok.eos).all()  # every sentence ends with </s>
    with pytest.raises(ValueError, match="other options"):
        prepare_text(text_dir, vocab_size=123)


def test_blocks_respect_documents_and_size():
    # sentences of lengths 3,4,5 | 2,9 | 6 (doc boundaries after 12 and 23)
    sent_ends = np.cumsum([3, 4, 5, 2, 9, 6])
    doc_ends = sent_ends[[2, 4, 5]]
    blocks = make_blocks(sent_ends, doc_ends, block=8, break_mode="complete_doc")
    assert blocks.tolist() == [[0, 7], [7, 12], [12, 14], [14, 22], [22, 23], [23, 29]]
    assert make_blocks(sent_ends, doc_ends, block=8, break_mode="none").tolist() == [[0, 8], [8, 16], [16, 24], [24, 29]]
    with pytest.raises(ValueError, match="break_mode"):
        make_blocks(sent_ends, doc_ends, block=8, break_mode="eos")


def test_binarize_boundaries():
    class Fake:
        eos = 2

        @staticmethod
        def encode_batch(sents):
            return [[10] * len(s.split()) for s in sents]

    out = binarize([["a b", "c"], ["d e f"]], Fake)
    assert out["tokens"].tolist() == [10, 10, 2, 10, 2, 10, 10, 10, 2]
    assert out["sent_ends"].tolist() == [3, 5, 9] and out["doc_ends"].tolist() == [5, 9]


def test_fairseq_dict_maps_bpe_ids_like_fairseq(text_dir, tmp_path):
    """Official RoBERTa/data2vec layout: GPT-2 vocab.json + merges.txt + fairseq dict.txt (BPE ids by count)."""
    import shutil

    for f in ("vocab.json", "merges.txt"):
        shutil.copy(text_dir / f, tmp_path / f)
    plain = Tokenizer(text_dir)
    ids = plain.encode("The cat sat on a mat.")
    order = sorted(set(ids), reverse=True)  # a dictionary that lists these BPE ids in another order
    (tmp_path / "dict.txt").write_text("".join(f"{i} {100 - k}\n" for k, i in enumerate(order)))
    fs = Tokenizer(tmp_path)
    assert fs.encode("The cat sat on a mat.") == [4 + order.index(i) for i in ids]
    assert fs.mask == 4 + len(order) and fs.vocab_size == fs.mask + 1 and (fs.bos, fs.pad) == (0, 1)
    assert fs.decode(fs.encode("The cat sat on a mat.")) == "The cat sat on a mat."
    other = plain.encode("Zebras yawn quietly")  # BPE ids missing from the dictionary become <unk>
    assert fs.encode("Zebras yawn quietly") == [4 + order.index(i) if i in order else fs.unk for i in other]
    assert fs.unk in fs.encode("Zebras yawn quietly")


def test_token_masking_spans_specials_and_replacement():
    toks = np.array([0] + list(range(10, 110)) + [2])
    cfg = TokenMaskConfig(mask_prob=0.35, mask_multiple_length=4)
    src, m = mask_tokens(toks, cfg, seed=1, epoch=1, index=5, mask_idx=4, special_ids={0, 1, 2, 3, 4}, vocab_size=200)
    assert not m[0] and not m[-1] and src[0] == 0 and src[-1] == 2  # specials never masked by default
    assert (src[m] == 4).all() and (src[~m] == toks[~m]).all()
    assert 0.2 < m.mean() < 0.4
    again = mask_tokens(toks, cfg, seed=1, epoch=1, index=5, mask_idx=4, special_ids={0, 1, 2, 3, 4}, vocab_size=200)
    assert np.array_equal(again[1], m)
    bert = TokenMaskConfig(mask_prob=0.15, mask_multiple_length=1, leave_unmasked_prob=0.1, random_token_prob=0.1)
    n_sel = n_mask = n_changed_unmasked = 0
    for i in range(200):
        s, mm = mask_tokens(toks, bert, seed=0, epoch=1, index=i, mask_idx=4, special_ids={0, 1, 2, 3, 4}, vocab_size=200)
        n_mask += mm.sum()
        n_changed_unmasked += ((s != toks) & ~mm).sum()  # random replacements (not regressed, as in fairseq)
        n_sel += ((s != toks) | mm).sum()
        assert not np.isin(s[~mm & (s != toks)], [0, 1, 2, 3, 4]).any()
    assert n_mask / n_sel == pytest.approx(0.8 / 0.9, abs=0.05)  # kept-as-is tokens are invisible here
    assert n_changed_unmasked > 0


def test_collator_clean_teacher_input_and_padding(text_dir):
    tok = Tokenizer(text_dir)
    ds = TextBlockDataset(text_dir / "train.npz", tokens_per_sample=32, break_mode="complete_doc", bos=tok.bos)
    assert ds.sizes.max() <= 32 and all(ds[i]["tokens"][0] == tok.bos for i in range(5))
    col = TextCollator(TokenMaskConfig(), 0, tok.pad, tok.mask, tok.special_ids, tok.vocab_size)
    samples = [ds[i] for i in (0, 1, 2)]
    b = col(samples)
    lengths = [len(s["tokens"]) for s in samples]
    for i, n in enumerate(lengths):
        assert torch.equal(b["teacher_source"][i, :n], torch.from_numpy(samples[i]["tokens"]))
    assert (b["teacher_source"][b["mask"]] != tok.mask).all() and (b["source"][b["mask"]] == tok.mask).all()
    assert torch.equal(b["source"][~b["mask"]], b["teacher_source"][~b["mask"]])
    if b["padding_mask"] is not None:
        assert not (b["mask"] & b["padding_mask"]).any()
        assert b["padding_mask"].sum().item() == max(lengths) * 3 - sum(lengths)
    assert torch.equal(col(samples)["mask"], b["mask"])


MICRO_TEXT = ["encoder.embed_dim=32", "encoder.ffn_embed_dim=64", "encoder.depth=2",
              "encoder.num_heads=2", "encoder.max_positions=32", "data.tokens_per_sample=32",
              "data.max_tokens=512", "data.num_workers=0", "model.targets.average_top_k_layers=2",
              "optim.lr=2e-3", "optim.warmup_updates=3", "train.log_interval=1", "train.threads=1",
              "encoder.dropout=0.0", "encoder.attention_dropout=0.0"]


def test_text_pretrain_loss_falls(text_dir, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["pretrain", "--preset", "text-tiny-v1", "--data", str(text_dir), "--out", str(run),
            *set_args(MICRO_TEXT + ["train.max_update=60"])]
    assert main(args) == 0
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    first = statistics.mean(r["loss"] for r in recs[:5])
    last = statistics.mean(r["loss"] for r in recs[-5:])
    assert last < 0.7 * first, (first, last)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["encoder"]["vocab_size"] == Tokenizer(text_dir).vocab_size  # resolved from the data
    assert "vocabulary" in capsys.readouterr().out


def test_rotten_tomatoes_is_available_and_labelled():
    from data2vec.data.text_sources import rotten_tomatoes

    rows = rotten_tomatoes()
    cats = {r["category"] for r in rows}
    assert len(rows) > 13000 and cats == {"fresh", "rotten", "plot"}
    assert sum(r["category"] == "fresh" for r in rows) == 7403  # DATA.md counts
