"""Fine-tuning and feature extraction from data2vec 2.0 encoders: CTC (ours and fairseq's d2v2_audio fixture),
image and text classification, extraction with padding, and the refusal to export v2 models to HF."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import SEQS, padded_batch, set_args

from data2vec.cli import main
from data2vec.config import merge
from data2vec.presets import get_preset

FAIRSEQ = Path(__file__).parent / "fixtures" / "fairseq"
D2V2_AUDIO = FAIRSEQ / "d2v2_audio" / "checkpoint.pt"


def _ref(name: str) -> dict:
    return dict(np.load(FAIRSEQ / name / "reference.npz", allow_pickle=False))


# ---- speech recognition ----------------------------------------------------------------------------
def _fixture_ctc(symbols=("|", "A", "B", "C"), **head):
    """CtcModel on the fairseq d2v2_audio encoder, configured by the default (tiny) recipe."""
    from data2vec.finetune.loop import default_config, load_encoder_weights
    from data2vec.modalities import get_modality
    from data2vec.modalities.audio.finetune import CtcModel
    from data2vec.pretrained import load_pretrained

    cfg = default_config("asr", load_pretrained(D2V2_AUDIO)[0], str(D2V2_AUDIO))
    cfg = merge(cfg, {"head": {"symbols": symbols, **head}})
    enc = get_modality("audio").build_encoder(cfg.encoder)
    load_encoder_weights(enc, cfg.init)
    return cfg, CtcModel(enc, cfg.head)


def test_v2_recipe_maps_the_v1_knobs_and_configs_round_trip():
    from data2vec.config import to_dict
    from data2vec.finetune.loop import finetune_config_from_dict
    from data2vec.modalities.audio.encoder_v2 import AudioEncoderV2Config
    from data2vec.modalities.audio.finetune import recipe_config

    cfg = recipe_config(get_preset("audio-base-v2"), "", "base-10h")
    e = cfg.encoder
    assert isinstance(e, AudioEncoderV2Config) and e.local_grad_mult == 0.0
    assert e.encoder_dropout == e.post_mlp_drop == e.prenet_dropout == e.attention_dropout == e.dropout_input == 0
    assert e.activation_dropout == 0.1 and e.layerdrop == e.prenet_layerdrop == 0.05 and e.learned_alibi_scale
    assert (cfg.optim.lr, cfg.head.mask_prob, cfg.head.mask_channel_prob, cfg.head.mask_channel_length) == (
        5e-5, 0.65, 0.5, 64)
    assert recipe_config(get_preset("audio-base-v2"), "").recipe == "base-1h"
    assert recipe_config(get_preset("audio-tiny-v2"), "").recipe == "tiny"
    back = finetune_config_from_dict(json.loads(json.dumps(to_dict(cfg))))  # the union picks the v2 class
    assert back == cfg and isinstance(back.encoder, AudioEncoderV2Config)
    v1 = recipe_config(get_preset("audio-base-v1"), "", "base-10h")
    assert finetune_config_from_dict(to_dict(v1)) == v1
    with pytest.raises(ValueError, match="feature_grad_mult"):
        merge(cfg, {"encoder": {"feature_grad_mult": 1.0}})  # the v1 name is not a v2 key


def test_ctc_on_the_fairseq_v2_encoder_equals_fairseq_features():
    """Eval logits = proj(fairseq ``extract_features(mask=False)["x"]``): what fairseq's Wav2VecEncoder feeds its
    projection for a data2vec_multi checkpoint."""
    ref = _ref("d2v2_audio")
    _, model = _fixture_ctc()
    model.eval()
    with torch.no_grad():
        logits, pad = model(torch.from_numpy(ref["source"]))
        expected = model.proj(torch.from_numpy(ref["student_final"]))
    assert pad is None and logits.shape == (2, 39, 8)
    torch.testing.assert_close(logits, expected, atol=2e-5, rtol=1e-5)


def test_v2_time_masks_zero_frames_channel_masks_zero_channels_cnn_frozen():
    torch.manual_seed(0)
    ref = _ref("d2v2_audio")
    _, model = _fixture_ctc(freeze_finetune_updates=1)
    model.train()
    assert not any(p.requires_grad for p in model.encoder.local_encoder.parameters())
    seen = {}
    model.encoder.context_encoder.register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0].detach()))
    x = torch.from_numpy(ref["source"])
    mask = torch.zeros(2, 39, dtype=torch.bool)
    mask[:, 5:15] = True
    chan = torch.zeros(2, 64, dtype=torch.bool)
    chan[:, 8:16] = True
    model(x, None, mask, chan)
    local = torch.from_numpy(ref["local_features"])  # fairseq's project_features output
    assert (seen["x"][:, 5:15] == 0).all() and (seen["x"][..., 8:16] == 0).all()  # zeroed (encoder_zero_mask)
    keep = ~mask[..., None] & ~chan[:, None, :]
    torch.testing.assert_close(seen["x"][keep.expand_as(seen["x"])], local[keep.expand_as(local)], atol=2e-5, rtol=1e-5)

    from data2vec.modalities.audio.finetune import ctc_loss

    def grads():
        model.zero_grad(set_to_none=True)
        logits, fpad = model(x, None, mask, chan)
        ctc_loss(logits, fpad, torch.tensor([5, 6, 5, 6]), torch.tensor([2, 2])).backward()
        return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}

    assert grads() == {"proj.weight", "proj.bias"}  # freeze_finetune_updates: only the projection
    model.after_update(1)
    got = grads()
    assert {"encoder.project_features.proj.weight", "encoder.context_encoder.blocks.0.mlp.fc1.weight",
            "encoder.context_encoder.alibi_scale"} <= got  # project_features trains, as in fairseq
    assert not any(n.startswith("encoder.local_encoder") for n in got)
    # DDP without find_unused_parameters: once unfrozen, every trainable parameter gets a gradient (v2 has no
    # mask embedding that goes unused without time masks)
    assert got == {n for n, p in model.named_parameters() if p.requires_grad}
    assert model.has_unused_parameters  # during the freeze
    assert not _fixture_ctc(mask_prob=0.0)[1].has_unused_parameters


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    from test_finetune_asr import _tone_corpus

    return _tone_corpus(tmp_path_factory.mktemp("tones") / "data", n_train=96)


V2_AUDIO_TINY = ["encoder.conv_feature_layers=[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2",
                 "encoder.embed_dim=32", "encoder.depth=2", "encoder.num_heads=2", "encoder.conv_pos_width=16",
                 "encoder.conv_pos_groups=4", "encoder.conv_pos_depth=2", "encoder.layerdrop=0.0",
                 "data.num_workers=0", "train.threads=1", "data.max_tokens=400000"]


def test_tiny_v2_asr_finetune_learns_the_tone_alphabet(tones, tmp_path):
    """From random weights (CNN trained too). Without time masks: from scratch, this tiny v2 model needs about
    twice the updates to leave CTC's all-blank plateau with masks 0.3 (measured: CER 1.0 after 150 updates, 0.0
    after 300); masking is exercised by the fairseq-checkpoint run below and checked by value above."""
    run = tmp_path / "run"
    assert main(["finetune", "asr", "--preset", "audio-tiny-v2", "--data", str(tones), "--out", str(run),
                 *set_args(V2_AUDIO_TINY + ["head.mask_prob=0.0", "head.mask_channel_prob=0.0",
                                            "data.max_tokens=200000", "encoder.local_grad_mult=1.0",
                                            "train.max_update=150", "optim.lr=2e-3", "eval_interval=75",
                                            "train.log_interval=1"])]) == 0
    m = json.loads((run / "metrics.json").read_text())
    assert m["test"]["utterances"] == 12 and m["test"]["cer"] < 0.7  # untrained: CER ~1
    losses = [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3])
    assert json.loads((run / "config.json").read_text())["encoder"]["embed_dim"] == 32


def test_finetune_and_evaluate_from_the_fairseq_v2_checkpoint(tones, tmp_path, capsys):
    from data2vec.pretrained import load_pretrained
    from data2vec.train.checkpoint import load_checkpoint

    run = tmp_path / "run"
    assert main(["finetune", "asr", "--init", str(D2V2_AUDIO), "--data", str(tones), "--out", str(run),
                 *set_args(["data.num_workers=0", "train.threads=1", "train.max_update=24", "eval_interval=12",
                            "train.log_interval=1", "head.mask_channel_prob=0.1", "head.mask_channel_length=8"])]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["recipe"] == "tiny" and cfg["encoder"]["local_grad_mult"] == 0.0 and cfg["encoder"]["depth"] == 3
    losses = [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert len(losses) == 24 and np.mean(losses[-4:]) < 0.5 * np.mean(losses[:2])
    pre = load_pretrained(D2V2_AUDIO)[1].student.encoder.state_dict()
    tuned = load_checkpoint(run / "checkpoint_last.pt")["model"]
    for k, v in pre.items():  # the CNN is frozen (local_grad_mult 0); what comes after it trains
        if k.startswith("local_encoder."):
            torch.testing.assert_close(tuned["encoder." + k], v, atol=0, rtol=0)
    assert not torch.equal(tuned["encoder.project_features.proj.weight"], pre["project_features.proj.weight"])
    assert not torch.equal(tuned["encoder.context_encoder.blocks.2.mlp.fc2.weight"],
                           pre["context_encoder.blocks.2.mlp.fc2.weight"])
    metrics = json.loads((run / "metrics.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", "asr", str(run), "--data", str(tones), "--subset", "test"]) == 0
    ev = json.loads(capsys.readouterr().out)  # the best checkpoint, as metrics.json's test
    assert ev["utterances"] == 12 and ev["cer"] == pytest.approx(metrics["test"]["cer"])
    assert ev["loss"] == pytest.approx(metrics["test"]["loss"], rel=1e-4)
    wav = sorted((tones / "wav").glob("test*.wav"))[0]
    assert main(["transcribe", str(run), str(wav)]) == 0
    assert capsys.readouterr().out.split("\t")[0] == str(wav)
    # HF transformers has no data2vec 2.0 classes: a clear refusal, nothing written
    assert main(["export", str(run), "--to", "hf", "--out", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err
    assert "no data2vec 2.0" in err and "asr model" in err and "Traceback" not in err
    assert not (tmp_path / "hf").exists()
    assert main(["export", str(D2V2_AUDIO), "--to", "hf", "--out", str(tmp_path / "hf2")]) == 2  # pretrained too
    assert "no data2vec 2.0" in capsys.readouterr().err and not (tmp_path / "hf2").exists()


# ---- image classification ----------------------------------------------------------------------------
def _v2_image_encoder(prenet_depth=1, depth=2):
    from data2vec.modalities.image.encoder_v2 import ImageEncoderV2, ImageEncoderV2Config

    return ImageEncoderV2(ImageEncoderV2Config(image_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=depth,
                                               num_heads=2, prenet_depth=prenet_depth, num_extra_tokens=1,
                                               init_extra_token_zero=False))


def test_v2_image_head_mean_pools_patches_and_decays_blocks_only():
    from data2vec.modalities.image.finetune import ImageClassifier, ImageHeadConfig

    torch.manual_seed(0)
    model = ImageClassifier(_v2_image_encoder(), ImageHeadConfig(num_classes=3, layer_decay=0.5)).eval()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        out = model.encoder(x)
        assert out.num_extra == 1 and out.x.shape == (2, 17, 32)
        by_hand = model.head(model.fc_norm(out.x[:, 1:].mean(1)))  # CLS dropped, fairseq mean_pooling
        torch.testing.assert_close(model(x), by_hand)
        assert not torch.allclose(by_hand, model.head(model.fc_norm(out.x.mean(1))))
    assert model.fc_norm.eps == 1e-6
    scale = {id(p): (g["lr_scale"], g["weight_decay"])
             for g in model.optim_param_groups(0.05, True) for p in g["params"]}
    named = dict(model.named_parameters())
    # 3 blocks (1 prenet + 2 shared): block i -> 0.5 ** (3 - i); everything else 1 (fairseq data2vec_multi)
    assert scale[id(named["encoder.context_encoder.prenet.0.mlp.fc1.weight"])] == (0.125, 0.05)
    assert scale[id(named["encoder.context_encoder.blocks.0.mlp.fc1.weight"])] == (0.25, 0.05)
    assert scale[id(named["encoder.context_encoder.blocks.1.mlp.fc1.weight"])] == (0.5, 0.05)
    assert scale[id(named["encoder.context_encoder.blocks.1.mlp.fc1.bias"])] == (0.5, 0.0)
    assert scale[id(named["encoder.local_encoder.proj.weight"])] == (1.0, 0.05)
    assert scale[id(named["encoder.context_encoder.extra_tokens"])] == (1.0, 0.0)
    assert scale[id(named["head.weight"])] == (1.0, 0.05) and scale[id(named["fc_norm.weight"])] == (1.0, 0.0)
    probe = ImageClassifier(_v2_image_encoder(), ImageHeadConfig(num_classes=3, linear_probe=True)).train()
    assert not probe.encoder.training and not any(p.requires_grad for p in probe.encoder.parameters())
    assert sum(p.numel() for g in probe.optim_param_groups(0.0, True) for p in g["params"]) == 32 * 2 + 32 * 3 + 3


def test_flat_image_head_reads_every_patch_token_in_grid_order(tmp_path):
    """``head.pool=flat``: fc_norm per patch token (CLS dropped), concatenated in grid order, so the head sees the
    layout that mean pooling averages away; v1 reads the last block as its mean head does. HF export refuses it."""
    from data2vec.convert.hf_heads import export_finetuned_hf
    from data2vec.finetune.loop import default_config
    from data2vec.modalities.image import ImageEncoder, ImageEncoderConfig
    from data2vec.modalities.image.finetune import ImageClassifier, ImageHeadConfig

    torch.manual_seed(0)
    model = ImageClassifier(_v2_image_encoder(), ImageHeadConfig(num_classes=3, pool="flat")).eval()
    assert model.head.in_features == 16 * 32  # a 4 x 4 grid of 32-wide tokens
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        out = model.encoder(x)
        torch.testing.assert_close(model(x), model.head(model.fc_norm(out.x[:, 1:]).flatten(1)))
        swapped = out.x[:, 1:].clone()
        swapped[:, [0, 1]] = swapped[:, [1, 0]]  # the same tokens at other places: other logits (mean pool: same)
        assert not torch.allclose(model.head(model.fc_norm(swapped).flatten(1)), model(x))
    v1 = ImageEncoder(ImageEncoderConfig(image_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=2,
                                         num_heads=2, drop_path_rate=0.0))
    m1 = ImageClassifier(v1, ImageHeadConfig(num_classes=3, pool="flat")).eval()
    with torch.no_grad():
        torch.testing.assert_close(m1(x), m1.head(m1.fc_norm(v1(x).layer_outputs[-1]).flatten(1)))
    with pytest.raises(ValueError, match="head.pool must be 'mean' or 'flat'"):
        ImageClassifier(_v2_image_encoder(), ImageHeadConfig(num_classes=3, pool="max"))
    cfg = default_config("image-classification", get_preset("image-tiny-v1"), "")
    cfg.encoder, cfg.head = v1.cfg, ImageHeadConfig(num_classes=3, pool="flat")
    with pytest.raises(ValueError, match="no HF equivalent"):
        export_finetuned_hf(cfg, m1, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_v2_image_default_config_follows_fairseq():
    from data2vec.finetune.loop import default_config

    src = get_preset("image-base-v2")
    e = default_config("image-classification", src, "").encoder
    dpr = np.linspace(0, 0.1, 10)  # fairseq: linspace(0, drop_path_rate, depth); the shared blocks from dpr[prenet]
    assert e.start_drop_path_rate == pytest.approx(dpr[2]) and e.end_drop_path_rate == pytest.approx(0.1)
    assert (e.encoder_dropout, e.attention_dropout, e.post_mlp_drop, e.layerdrop, e.prenet_dropout) == (0, 0, 0, 0, 0)


def test_tiny_v2_image_finetune_learns(tmp_path):
    from test_finetune_image import _image_folders

    _image_folders(tmp_path / "img")
    run = tmp_path / "ft"
    small = ["encoder.embed_dim=32", "encoder.depth=2", "encoder.num_heads=2", "encoder.prenet_depth=1",
             "encoder.start_drop_path_rate=0.0", "encoder.end_drop_path_rate=0.0", "data.batch_size=30",
             "data.num_workers=0", "train.max_update=60", "train.log_interval=5", "train.threads=1",
             "eval_interval=20", "optim.lr=2e-3", "optim.warmup_updates=3", "data.augment.crop_scale=(0.8, 1.0)"]
    assert main(["finetune", "image-classification", "--preset", "image-tiny-v2", "--data", str(tmp_path / "img"),
                 "--out", str(run), *set_args(small)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best_valid"]["top1"] > 0.6 and metrics["test"]["top1"] > 0.6  # chance is 1/3
    assert json.loads((run / "config.json").read_text())["encoder"]["num_extra_tokens"] == 1


# ---- text classification -------------------------------------------------------------------------------
def _v2_text_encoder():
    from data2vec.modalities.text.encoder_v2 import TextEncoderV2, TextEncoderV2Config

    return TextEncoderV2(TextEncoderV2Config(vocab_size=60, max_positions=32, embed_dim=32, depth=2, num_heads=2))


def test_v2_text_head_on_the_first_token_ignores_padding():
    from data2vec.modalities.text.finetune import TextClassifier, TextHeadConfig

    torch.manual_seed(0)
    model = TextClassifier(_v2_text_encoder(), TextHeadConfig(num_classes=3, layer_decay=0.5)).eval()
    batch = padded_batch(SEQS)
    with torch.no_grad():
        padded, single = model(batch), torch.cat([model(torch.tensor([s])) for s in SEQS])
        h = model.encoder(batch).x[:, 0]
        by_hand = model.classifier.out_proj(torch.tanh(model.classifier.dense(h)))
    torch.testing.assert_close(padded, single, atol=1e-5, rtol=0)
    torch.testing.assert_close(padded, by_hand)
    scale = {id(p): g["lr_scale"] for g in model.optim_param_groups(0.1, True) for p in g["params"]}
    named = dict(model.named_parameters())
    assert scale[id(named["encoder.context_encoder.blocks.0.attn.qkv.weight"])] == 0.25
    assert scale[id(named["encoder.context_encoder.blocks.1.attn.qkv.weight"])] == 0.5
    assert scale[id(named["encoder.local_encoder.embed_tokens.weight"])] == 1.0
    assert scale[id(named["classifier.out_proj.weight"])] == 1.0


def test_tiny_v2_text_finetune_learns(tmp_path):
    from test_finetune_text import _sentence, _sentences, _write

    from data2vec.data.text import Tokenizer

    rng = random.Random(0)
    data = tmp_path / "polarity"
    data.mkdir()
    for split, n in (("train", 600), ("dev", 200), ("test", 200)):
        labels = [rng.randint(0, 1) for _ in range(n)]
        _write(data / f"{split}.tsv", "sentence\tlabel", [(_sentence(y, rng), y) for y in labels])
    Tokenizer.train(_sentences(2000, rng), data, vocab_size=300)
    run = tmp_path / "ft"
    tiny = ["encoder.embed_dim=32", "encoder.depth=2", "encoder.num_heads=2", "data.batch_size=16",
            "train.threads=1", "train.log_interval=10", "eval_interval=50", "train.max_update=150", "optim.lr=3e-3"]
    assert main(["finetune", "text-classification", "--preset", "text-tiny-v2", "--data", str(data), "--out",
                 str(run), *set_args(tiny)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best_valid"]["score"] > 0.85 and metrics["test"]["score"] > 0.85  # chance is 0.5
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["encoder"]["vocab_size"] == Tokenizer(data).vocab_size > 0
    assert "embed_dim" in cfg["encoder"] and "encoder_embed_dim" not in cfg["encoder"]


# ---- feature extraction -------------------------------------------------------------------------------
def test_v2_audio_extraction_padded_batch_equals_one_by_one_and_fairseq(tmp_path):
    from data2vec.extract import Extractor
    from data2vec.modalities.audio.extract import batches_padded

    ref = _ref("d2v2_audio")
    paths = []
    for i, n in enumerate((12800, 7000, 9913)):  # float WAVs: the samples survive exactly
        sf.write(tmp_path / f"{i}.wav", ref["source"][i % 2][:n], 16000, subtype="FLOAT")
        paths.append(str(tmp_path / f"{i}.wav"))
    ex = Extractor(D2V2_AUDIO)
    assert batches_padded(ex.encoder)
    batched = ex.audio(paths, "all", "none")
    alone = ex.audio(paths, "all", "none", batch_size=1)
    assert [tuple(f.shape) for f in batched] == [(3, 39, 64), (3, 21, 64), (3, 30, 64)]
    for b, a in zip(batched, alone):
        torch.testing.assert_close(b, a, atol=2e-5, rtol=1e-5)
    # clip 0 is fairseq's first source (already normalised; normalising again changes it by ~1e-6)
    torch.testing.assert_close(batched[0], torch.from_numpy(ref["student_layer_out"][:, 0]), atol=2e-4, rtol=1e-4)
    final = ex.audio(paths, "final", "none")
    torch.testing.assert_close(final[2], batched[2][-1])
    assert main(["extract", str(D2V2_AUDIO), *paths, "--layer", "2", "--pool", "mean",
                 "--out", str(tmp_path / "f.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), torch.stack([f[1].mean(0) for f in alone]).numpy(),
                               atol=2e-5)


def test_v2_text_extraction_padded_batch_equals_one_by_one(tmp_path):
    from data2vec.data.prepare_text import prepare_text
    from data2vec.extract import Extractor
    from data2vec.modalities.text.data import resolve_config
    from data2vec.pretrained import build_model, save_pretrained

    (tmp_path / "docs.txt").write_text("\n\n".join(f"The {w} sat on the mat number {i}." for i, w in
                                                   enumerate(["cat", "dog", "bird", "fish"] * 20)) + "\n")
    prepare_text(tmp_path / "text", inputs=[str(tmp_path / "docs.txt")], vocab_size=200)
    cfg = resolve_config(merge(get_preset("text-tiny-v2"), {
        "encoder": {"embed_dim": 32, "depth": 2, "num_heads": 2}, "model": {"targets": {"average_top_k_layers": 2}},
        "data": {"path": str(tmp_path / "text")}}))
    d = save_pretrained(cfg, build_model(cfg), tmp_path / "model")
    ex = Extractor(d)
    lines = ["A short one.", "A much longer line with many more words in it than the first one."]
    batched = ex.text(lines, "all", "none")
    alone = [ex.text([line], "all", "none")[0] for line in lines]
    for b, a in zip(batched, alone):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    assert batched[0].shape[0] == 2 and batched[0].shape[1] < batched[1].shape[1]  # per token, padding removed
    pooled = ex.text(lines, "final", "mean")
    torch.testing.assert_close(pooled[0], alone[0][-1].mean(0), atol=1e-5, rtol=1e-5)


def test_v2_image_extraction_drops_the_cls_token(tmp_path):
    from PIL import Image

    from data2vec.extract import Extractor
    from data2vec.pretrained import build_model, save_pretrained

    paths = []
    for i in range(2):
        pixels = (np.random.default_rng(i).random((28, 28)) * 255).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    cfg = merge(get_preset("image-tiny-v2"), {"encoder": {"embed_dim": 32, "depth": 2, "num_heads": 2},
                                              "model": {"targets": {"average_top_k_layers": 2}}})
    ex = Extractor(save_pretrained(cfg, build_model(cfg), tmp_path / "model"))
    final, every = ex.images(paths, "final", "none"), ex.images(paths, "all", "none")
    assert final[0].shape == (49, 32) and every[0].shape == (2, 49, 32)  # 7 x 7 patches, no CLS
    torch.testing.assert_close(final[1], every[1][-1])


LOG_MEL = ["encoder.extractor_mode=log_mel", 'encoder.conv_feature_layers="[(40, 400, 160), (32, 3, 2)]"']


def test_log_mel_front_end_frames_bands_padding_and_parameters():
    """extractor_mode=log_mel: conv frame formula, a tone lands in its mel band, padding never leaks into a
    clip's frames, and only the convs after the filterbank are parameters (the filterbank is not saved)."""
    from data2vec.modalities.audio.encoder import conv_frame_lengths
    from data2vec.modalities.audio.encoder_v2 import AudioEncoderV2, AudioEncoderV2Config
    from data2vec.train.config import estimate_parameters

    cfg = AudioEncoderV2Config(embed_dim=32, depth=1, num_heads=2, conv_pos_width=16, conv_pos_groups=4,
                               conv_pos_depth=2, extractor_mode="log_mel",
                               conv_feature_layers="[(40, 400, 160), (32, 3, 2)]")
    enc = AudioEncoderV2(cfg).eval()
    front = enc.local_encoder
    sr, n = 16000, 16000
    for f_hz in (300.0, 1000.0, 3000.0):
        tone = torch.sin(2 * torch.pi * f_hz * torch.arange(n) / sr)[None]
        bands = front.log_mel(tone)
        assert bands.shape == (1, 40, (n - 400) // 160 + 1)
        top = 2595 * np.log10(1 + (sr / 2) / 700)  # HTK mel of Nyquist; band i peaks at edge i + 1
        centres = 700 * (10 ** (np.linspace(0, top, 42)[1:-1] / 2595) - 1)
        assert int(bands.mean(-1).argmax()) in np.argsort(np.abs(centres - f_hz))[:2]
    x = torch.randn(1, 12345)
    assert front(x).shape[-1] == conv_frame_lengths(12345, enc.conv_layers) == ((12345 - 400) // 160 + 1 - 3) // 2 + 1
    padded = torch.cat([x, 5 * torch.randn(1, 4000)], 1)  # loud "padding": any leak would show
    torch.testing.assert_close(front(padded)[..., : front(x).shape[-1]], front(x))
    keys = [k for k in enc.state_dict() if k.startswith("local_encoder.")]
    assert keys and all(k.startswith("local_encoder.conv_layers.0.") for k in keys)
    n_front = sum(p.numel() for p in front.parameters())
    assert n_front == 40 * 32 * 3 + 2 * 32  # conv weights (no bias) and its LayerNorm
    real = sum(p.numel() for p in enc.parameters())  # the estimate counts no filterbank weights (~16k here)
    assert abs(estimate_parameters(cfg)[0] - real) < 0.1 * real


def test_log_mel_encoder_pretrains_and_fine_tunes_through_the_cli(tones, tmp_path):
    """A log-mel data2vec 2.0 encoder through pretrain -> finetune --init: the front end travels with the
    checkpoint, and the fine-tuned model reads it (same frames, trained conv after the filterbank)."""
    from test_train import MICRO_V2

    from data2vec.train.checkpoint import load_checkpoint

    pre = tmp_path / "pre"
    assert main(["pretrain", "--preset", "audio-tiny-v2", "--data", str(tones), "--out", str(pre),
                 *set_args([a for a in MICRO_V2 if not a.startswith("encoder.conv_feature_layers")] + LOG_MEL
                           + ["train.max_update=2", "train.save_interval_updates=100",
                              "data.min_sample_size=2000"])]) == 0
    run = tmp_path / "ft"
    assert main(["finetune", "asr", "--init", str(pre / "checkpoint_last.pt"), "--data", str(tones), "--out", str(run),
                 *set_args(["train.max_update=2", "eval_interval=2", "data.num_workers=0", "train.threads=1"])]) == 0
    cfg = json.loads((run / "config.json").read_text())
    enc = cfg["encoder"]
    assert enc["extractor_mode"] == "log_mel" and enc["conv_feature_layers"] == "[(40, 400, 160), (32, 3, 2)]"
    # the tiny recipe as measured in docs/results.md: the conv after the filterbank trains, clipping, CER picks
    assert cfg["recipe"] == "tiny" and enc["local_grad_mult"] == 1.0 and cfg["optim"]["clip_norm"] == 5.0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["utterances"] == 12 and metrics["metric"] == "cer" and "cer" in metrics["best_valid"]
    pre_front = load_checkpoint(pre / "checkpoint_last.pt")["model"]
    tuned = load_checkpoint(run / "checkpoint_last.pt")["model"]
    key = "local_encoder.conv_layers.0.conv.weight"
    assert not torch.equal(tuned["encoder." + key], pre_front["student.encoder." + key])


@pytest.mark.parametrize("command", ["pretrain", "finetune"])
def test_log_mel_refuses_audio_at_another_sample_rate(tones, tmp_path, capsys, command):
    """The mel edges are built for 16 kHz: a run whose data.sample_rate differs is refused in one line."""
    if command == "pretrain":
        args = ["pretrain", "--preset", "audio-tiny-v2", *set_args(LOG_MEL)]
    else:
        args = ["finetune", "asr", "--preset", "audio-tiny-v2", *set_args(LOG_MEL)]
    assert main([*args, "--data", str(tones), "--out", str(tmp_path / "run"),
                 *set_args(["data.sample_rate=8000", "data.num_workers=0"])]) == 2
    err = capsys.readouterr().err
    assert "log_mel" in err and "data.sample_rate=16000" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoint_last.pt").exists()
