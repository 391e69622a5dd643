"""Speech recognition fine-tuning: letter dictionary, recipes, CTC head (vs HF Data2VecAudioForCTC),
freezing, masks, and a tiny fine-tune that learns to read a tone alphabet."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import set_args

from data2vec.asr.dictionary import LetterDictionary, words_to_letters
from data2vec.cli import main

LETTER_HZ = {"A": 400.0, "B": 900.0, "C": 1800.0}


def _tone_corpus(root, n_train=48, seed=0):
    """Utterances of 1-3 'words' over letters A/B/C; each letter is 0.12 s of its own tone and 0.04 s of
    noise, words are separated by 0.12 s more noise. fairseq layout: .tsv manifests, .ltr/.wrd labels, dict.ltr.txt."""
    rng = np.random.default_rng(seed)
    sr = 16000
    (root / "wav").mkdir(parents=True)
    counts = {}
    for split, n in (("train", n_train), ("valid", 12), ("test", 12)):
        tsv, ltr, wrd = [str(root)], [], []
        for i in range(n):
            words = ["".join(rng.choice(list(LETTER_HZ), rng.integers(1, 4))) for _ in range(rng.integers(1, 4))]
            parts = [rng.normal(0, 0.01, int(0.1 * sr))]
            for w in words:
                for ch in w:
                    t = np.arange(int(0.12 * sr)) / sr
                    parts.append(0.5 * np.sin(2 * np.pi * LETTER_HZ[ch] * t) * np.hanning(t.size) ** 0.2)
                    parts.append(rng.normal(0, 0.01, int(0.04 * sr)))
                parts.append(rng.normal(0, 0.01, int(0.12 * sr)))
            x = np.concatenate(parts).astype(np.float32)
            path = root / "wav" / f"{split}{i}.wav"
            sf.write(path, x, sr)
            tsv.append(f"wav/{path.name}\t{x.size}")
            wrd.append(" ".join(words))
            ltr.append(words_to_letters(" ".join(words)))
            for ch in ltr[-1].split():
                counts[ch] = counts.get(ch, 0) + 1
        (root / f"{split}.tsv").write_text("\n".join(tsv) + "\n")
        (root / f"{split}.ltr").write_text("\n".join(ltr) + "\n")
        (root / f"{split}.wrd").write_text("\n".join(wrd) + "\n")
    LetterDictionary.from_labels([" ".join(k for k, v in counts.items() for _ in range(v))]).save(root / "dict.ltr.txt")
    return root


TINY = ["encoder.conv_feature_layers=[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2",
        "encoder.embed_dim=32", "encoder.ffn_embed_dim=64", "encoder.depth=2",
        "encoder.num_heads=2", "encoder.conv_pos_width=16", "encoder.conv_pos_groups=4",
        "encoder.conv_pos_depth=2", "encoder.layerdrop=0.0", "data.num_workers=0", "train.threads=1",
        "data.max_tokens=400000"]


# ---- dictionary ------------------------------------------------------------------------------------
def test_letter_dictionary_fairseq_and_hf_layouts(tmp_path):
    (tmp_path / "dict.ltr.txt").write_text("| 10\nE 7\nT 5\n' 1 #fairseq:overwrite\n")
    d = LetterDictionary.load(tmp_path / "dict.ltr.txt")
    assert d.tokens == ["<s>", "<pad>", "</s>", "<unk>", "|", "E", "T", "'"] and d.blank == 0
    assert d.encode("T E E | T ' X |") == [6, 5, 5, 4, 6, 7, 3, 4]
    assert d.decode([6, 5, 4, 0, 6, 4]) == "TE T"
    vocab = d.hf_vocab()
    assert vocab["<pad>"] == 0 and vocab["<s>"] == 1 and vocab["|"] == 4
    assert LetterDictionary.from_hf_vocab(vocab) == d
    d.save(tmp_path / "again.txt")
    assert LetterDictionary.load(tmp_path / "again.txt") == d
    assert words_to_letters("HI THERE") == "H I | T H E R E |"
    (tmp_path / "bad.txt").write_text("E 7\nT\n")
    with pytest.raises(ValueError, match="bad.txt:2"):
        LetterDictionary.load(tmp_path / "bad.txt")
    assert LetterDictionary.from_labels(["B A |", "A |"]).tokens[4:] == ["A", "|", "B"]  # count, then name


# ---- recipes ------------------------------------------------------------------------------------
def test_base_recipes_follow_the_published_table():
    from data2vec.modalities.audio.finetune import recipe_config
    from data2vec.presets import get_preset

    src = get_preset("audio-base-v1")
    cfg = recipe_config(src, "", "base-10h")
    assert (cfg.optim.lr, cfg.train.max_update, cfg.head.freeze_finetune_updates) == (5e-5, 20000, 10000)
    assert (cfg.head.mask_prob, cfg.head.mask_channel_prob, cfg.encoder.layerdrop) == (0.65, 0.5, 0.05)
    assert cfg.head.mask_channel_length == 64 and cfg.encoder.local_grad_mult == 0.0
    assert cfg.optim.phase_ratio == (0.1, 0.4, 0.5) and cfg.optim.final_lr_scale == 0.05
    assert cfg.optim.adam_betas == (0.9, 0.98) and cfg.optim.adam_eps == 1e-8 and cfg.optim.weight_decay == 0.0
    assert cfg.encoder.activation_dropout == 0.1 and cfg.encoder.dropout == 0.0
    assert cfg.data.normalize == src.data.normalize  # taken from pretraining, never a separate switch
    assert recipe_config(src, "", "base-960h").optim.lr == 1e-4
    assert recipe_config(src, "").recipe == "base-1h"
    assert recipe_config(src, "").best_metric == "wer" and recipe_config(src, "").optim.clip_norm == 0.0
    tiny = recipe_config(get_preset("audio-tiny-v1"), "")
    assert tiny.recipe == "tiny" and tiny.best_metric == "cer" and tiny.optim.clip_norm == 5.0
    assert (tiny.optim.lr, tiny.train.max_update, tiny.encoder.local_grad_mult) == (2e-3, 1500, 0.0)
    with pytest.raises(ValueError, match="unknown ASR recipe"):
        recipe_config(src, "", "base-2h")


# ---- the CTC head ---------------------------------------------------------------------------------
def _ctc_model(freeze=0, mask_prob=0.65, symbols=("|", "A", "B", "C")):
    from data2vec.modalities.audio import AudioEncoder, AudioEncoderConfig
    from data2vec.modalities.audio.finetune import CtcHeadConfig, CtcModel

    enc = AudioEncoder(AudioEncoderConfig(
        conv_feature_layers="[(16, 10, 5)] + [(16, 3, 2)] * 2", embed_dim=32, ffn_embed_dim=64,
        depth=2, num_heads=2, conv_pos_width=16, conv_pos_groups=4, conv_pos_depth=2,
        dropout=0.0, attention_dropout=0.0, layerdrop=0.0, local_grad_mult=0.0))
    return CtcModel(enc, CtcHeadConfig(symbols=symbols, freeze_finetune_updates=freeze, mask_prob=mask_prob))


def test_ctc_head_equals_hf_data2vec_audio_for_ctc():
    """Logits and the summed CTC loss equal transformers' Data2VecAudioForCTC with the same weights."""
    from transformers import Data2VecAudioConfig, Data2VecAudioForCTC

    from data2vec.convert.hf import hf_config_from_encoder, hf_state_from_encoder
    from data2vec.modalities.audio.finetune import ctc_loss

    torch.manual_seed(0)
    ours = _ctc_model().eval()
    hf_cfg = hf_config_from_encoder("audio", ours.encoder.cfg) | {
        "vocab_size": 8, "pad_token_id": 0, "ctc_loss_reduction": "sum", "ctc_zero_infinity": True,
        "final_dropout": 0.0, "mask_time_prob": 0.0}
    hf_cfg.pop("model_type")
    hf = Data2VecAudioForCTC(Data2VecAudioConfig(**hf_cfg)).eval()
    sd = {f"data2vec_audio.{k}": v for k, v in hf_state_from_encoder("audio", ours.encoder.state_dict()).items()}
    sd |= {"lm_head.weight": ours.proj.weight, "lm_head.bias": ours.proj.bias}
    del sd["data2vec_audio.masked_spec_embed"]  # HF builds it only with time masking on
    hf.load_state_dict(sd, strict=True)
    x = torch.randn(2, 4000)
    pad = torch.zeros(2, 4000, dtype=torch.bool)
    pad[1, 3000:] = True
    x[1, 3000:] = 0
    labels = torch.tensor([[5, 6, 4, 7, 5], [6, 6, 4, -100, -100]])
    with torch.no_grad():
        ref = hf(x, attention_mask=(~pad).long(), labels=labels)
        logits, fpad = ours(x, pad)
    valid = ~fpad[1]
    torch.testing.assert_close(logits[0], ref.logits[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[1, valid], ref.logits[1, valid], atol=1e-5, rtol=1e-5)
    loss = ctc_loss(logits, fpad, torch.tensor([5, 6, 4, 7, 5, 6, 6, 4]), torch.tensor([5, 3]))
    torch.testing.assert_close(loss, ref.loss, atol=1e-4, rtol=1e-5)


def test_freeze_finetune_updates_trains_only_the_projection():
    from data2vec.modalities.audio.finetune import ctc_loss

    model = _ctc_model(freeze=2, mask_prob=0.0).train()
    x = torch.randn(2, 4000)

    def grads():
        model.zero_grad(set_to_none=True)
        logits, fpad = model(x)
        ctc_loss(logits, fpad, torch.tensor([5, 6, 5, 6]), torch.tensor([2, 2])).backward()
        return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}

    assert grads() == {"proj.weight", "proj.bias"}
    model.after_update(2)  # the loop calls this after each update; update 2 ends the freeze
    got = grads()
    assert "encoder.context_encoder.layers.0.fc1.weight" in got and "encoder.post_extract_proj.weight" in got
    assert not any(n.startswith("encoder.feature_extractor") for n in got)  # the CNN stays frozen (grad mult 0)
    assert not any(p.requires_grad for p in model.encoder.feature_extractor.parameters())
    assert int(model.state_dict()["num_updates"]) == 2  # the freeze position is saved with the model


def test_collator_masks_time_and_channels_in_training_only():
    from data2vec.modalities.audio.encoder import conv_frame_lengths
    from data2vec.modalities.audio.finetune import AsrCollator, CtcHeadConfig

    conv = [(16, 10, 5), (16, 3, 2), (16, 3, 2)]
    head = CtcHeadConfig(symbols=("|", "A"), mask_prob=0.5, mask_length=3, mask_channel_prob=0.5,
                         mask_channel_length=4)
    samples = [{"id": i, "epoch": 1, "source": torch.randn(n), "target": torch.tensor([5, 4]), "words": "A"}
               for i, n in enumerate((4000, 2500))]
    fl = lambda n: conv_frame_lengths(n, conv)  # noqa: E731
    b = AsrCollator(frame_lengths=fl, head=head, channels=32, seed=1, train=True)(samples)
    T = int(fl(4000))
    assert b["mask"].shape == (2, T) and b["channel_mask"].shape == (2, 32)
    assert not b["mask"][1, int(fl(2500)):].any()  # padding is never masked
    assert b["mask"][0].sum() == b["mask"][1].sum() > 0  # same count per row, fairseq require_same_masks
    assert b["padding_mask"][1, 2500:].all() and not b["padding_mask"][0].any()
    assert b["targets"].tolist() == [5, 4, 5, 4] and b["target_lengths"].tolist() == [2, 2]
    again = AsrCollator(frame_lengths=fl, head=head, channels=32, seed=1, train=True)(samples)
    assert torch.equal(again["mask"], b["mask"]) and torch.equal(again["channel_mask"], b["channel_mask"])
    e = AsrCollator(frame_lengths=fl, head=head, channels=32, seed=1, train=False)(samples)
    assert "mask" not in e and "channel_mask" not in e


def test_channel_mask_zeroes_whole_channels():
    model = _ctc_model(mask_prob=0.0).train()
    seen = {}
    model.encoder.context_encoder.register_forward_pre_hook(lambda m, a: seen.setdefault("x", a[0].detach()))
    chan = torch.zeros(1, 32, dtype=torch.bool)
    chan[0, 3:7] = True
    model(torch.randn(1, 4000), None, None, chan)
    assert (seen["x"][0, :, 3:7] == 0).all() and (seen["x"][0, :, 7:] != 0).any()


# ---- data -----------------------------------------------------------------------------------------
def test_labels_must_match_the_manifest(tmp_path):
    root = _tone_corpus(tmp_path / "tones", n_train=6)
    (root / "train.ltr").write_text("A |\n")
    base = ["finetune", "asr", "--preset", "audio-tiny-v1", "--data", str(root), "--out", str(tmp_path / "r")]
    assert main([*base, *set_args(TINY)]) == 2
    (root / "dict.ltr.txt").unlink()
    assert main([*base, *set_args(TINY)]) == 2


def test_label_hours_subset_is_seeded_and_nested():
    from data2vec.modalities.audio.finetune import hours_subset

    sizes = np.full(100, 16000 * 36)  # 100 x 36 s = 1 h
    small, large = hours_subset(sizes, 16000, 0.1, 1), hours_subset(sizes, 16000, 0.5, 1)
    assert len(small) == 10 and len(large) == 50 and set(small) <= set(large)
    assert hours_subset(sizes, 16000, 0.1, 1) == small != hours_subset(sizes, 16000, 0.1, 2)


# ---- a tiny fine-tune that learns, then evaluate / transcribe / export ----------------------------
LEARN = TINY + ["head.mask_prob=0.3", "head.mask_channel_prob=0.0", "head.freeze_finetune_updates=0",
                "encoder.local_grad_mult=1.0", "train.max_update=200", "optim.lr=2e-3", "eval_interval=100"]


@pytest.fixture(scope="module")
def tone_run(tmp_path_factory):
    root = _tone_corpus(tmp_path_factory.mktemp("tones") / "data", n_train=160)
    run = root.parent / "run"
    assert main(["finetune", "asr", "--preset", "audio-tiny-v1", "--data", str(root), "--out", str(run),
                 *set_args(LEARN)]) == 0
    return root, run


def test_tiny_asr_finetune_learns_the_tone_alphabet(tone_run):
    root, run = tone_run
    m = json.loads((run / "metrics.json").read_text())
    assert m["metric"] == "cer" and m["test"]["utterances"] == 12  # the tiny recipe keeps the best valid CER
    assert m["test"]["cer"] < 0.7  # an untrained model outputs nothing or noise: CER ~1
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    cers = [r["valid_cer"] for r in recs if "valid_cer" in r]
    assert len(cers) > 1 and m["best_valid"]["cer"] == min(cers)
    losses = [r["loss"] for r in recs if "loss" in r]
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3])
    valid = [r["valid_loss"] for r in recs if "valid_loss" in r]
    assert valid[-1] < valid[0]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["head"]["symbols"] == LetterDictionary.load(root / "dict.ltr.txt").tokens[4:]


def test_evaluate_with_beam_search_and_an_lm(tone_run, tmp_path, capsys):
    root, run = tone_run
    assert main(["prepare", "lm", "--text", str(root / "train.wrd"), "--out", str(tmp_path / "lm.arpa"),
                 "--order", "2"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "asr", str(run), "--data", str(root), "--subset", "test"]) == 0
    greedy = json.loads(capsys.readouterr().out)
    assert main(["evaluate", "asr", str(run), "--data", str(root), "--subset", "test", "--decoder", "beam",
                 "--beam", "20", "--out", str(tmp_path / "beam.json")]) == 0
    beam = json.loads(capsys.readouterr().out)
    assert beam == json.loads((tmp_path / "beam.json").read_text())
    assert beam["utterances"] == greedy["utterances"] == 12 and beam["cer"] <= greedy["cer"] + 0.05
    assert main(["evaluate", "asr", str(run), "--data", str(root), "--subset", "test", "--decoder", "beam",
                 "--lm", str(tmp_path / "lm.arpa"), "--lm-weight", "1.0", "--word-score", "0"]) == 0
    with_lm = json.loads(capsys.readouterr().out)
    assert "lm.arpa" in with_lm["decoder"] and 0 <= with_lm["wer"] <= 1.5
    # every hypothesis word comes from the lexicon (the LM's words)
    vocab = set((root / "train.wrd").read_text().split())
    assert all(w in vocab for e in with_lm["examples"] for w in e["hyp"].split())
    assert main(["evaluate", "asr", str(run), "--data", str(root), "--lm", str(tmp_path / "lm.arpa")]) == 2
    assert "--decoder beam" in capsys.readouterr().err


def test_transcribe_matches_evaluate_and_export_to_hf(tone_run, tmp_path, capsys):
    from transformers import Data2VecAudioForCTC

    from data2vec.asr.decode import greedy_decode
    from data2vec.finetune.inference import load_finetuned

    root, run = tone_run
    wavs = sorted((root / "wav").glob("test*.wav"))[:3]
    assert main(["transcribe", str(run), *map(str, wavs)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split("\t")[0] for ln in lines] == list(map(str, wavs))
    cfg, model = load_finetuned(run)
    x = torch.from_numpy(sf.read(wavs[0], dtype="float32")[0])
    x = torch.nn.functional.layer_norm(x, x.shape)  # data.normalize, as in training
    with torch.no_grad():
        logits, _ = model(x[None])
    assert lines[0].split("\t")[1] == greedy_decode(logits, torch.tensor([logits.size(1)]), model.tokens)[0]
    assert main(["export", str(run), "--to", "hf", "--out", str(tmp_path / "hf")]) == 0
    assert "Data2VecAudioForCTC" in capsys.readouterr().out
    hf = Data2VecAudioForCTC.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(x[None]).logits, logits, atol=1e-4, rtol=1e-4)
    assert main(["transcribe", str(tmp_path / "hf"), str(wavs[0])]) == 0  # a HF ForCTC directory works too
    assert capsys.readouterr().out.strip() == lines[0]
    assert main(["transcribe", str(run), str(tmp_path / "missing.wav")]) == 2


def test_prepare_real_speech_writes_a_fairseq_test_set(tmp_path):
    from data2vec.data.prepare_real_speech import ROOT, prepare_real_speech
    from data2vec.modalities.audio.dataset import read_manifest

    if not (ROOT / "librivox" / "transcription").is_file():
        pytest.skip("Debian pocketsphinx-testdata is not installed")
    assert main(["prepare", "real-speech", "--out", str(tmp_path / "real")]) == 0
    man = read_manifest(tmp_path / "real" / "test.tsv")
    words = (tmp_path / "real" / "test.wrd").read_text().splitlines()
    ltr = (tmp_path / "real" / "test.ltr").read_text().splitlines()
    assert len(man) == len(words) == len(ltr) == 10
    assert words[1] == "HE WAS NOT AN ILL DISPOSED YOUNG MAN" and ltr[1].startswith("H E | W A S |")
    for p, n in zip(man.paths, man.sizes):
        info = sf.info(str(man.root / p))
        assert info.frames == n and info.samplerate == 16000
    with pytest.raises(ValueError, match="pocketsphinx-testdata"):
        prepare_real_speech(tmp_path / "none", root=tmp_path)


def test_ddp_finetune_with_frozen_encoder_equals_one_process(tmp_path):
    """2 gloo ranks (real processes) = 1 process with update_freq 2: update 1 with the encoder frozen (DDP
    with unused parameters), update 2 with everything training and time/channel masks on. (Two updates:
    later ones would cross an epoch boundary, where the shards of 2 ranks and the micro-batches of 1
    process group batches differently.)"""
    import subprocess
    import sys

    from conftest import ROOT

    from data2vec.train.checkpoint import load_checkpoint

    root = _tone_corpus(tmp_path / "tones", n_train=24)
    common = [*TINY, "head.freeze_finetune_updates=1", "train.max_update=2", "train.log_interval=1",
              "eval_interval=100", "encoder.activation_dropout=0.0", "data.max_tokens=120000"]

    def args(out, extra):
        return ["finetune", "asr", "--preset", "audio-tiny-v1", "--data", str(root), "--out", str(out),
                *set_args(common + extra)]

    assert main(args(tmp_path / "single", ["train.update_freq=2"])) == 0
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "data2vec.cli", *args(tmp_path / "ddp", ["train.update_freq=1"])],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = load_checkpoint(tmp_path / "single" / "checkpoint_last.pt")
    d = load_checkpoint(tmp_path / "ddp" / "checkpoint_last.pt")
    assert d["world_size"] == 2 and d["step"] == s["step"] == 2 and int(s["model"]["num_updates"]) == 2
    for k in s["model"]:
        torch.testing.assert_close(d["model"][k], s["model"][k], rtol=1e-5, atol=1e-6, msg=k)
    losses = {r: [json.loads(x)["loss"] for x in (tmp_path / r / "metrics.jsonl").read_text().splitlines()
                  if "loss" in json.loads(x)] for r in ("single", "ddp")}
    assert losses["single"] == pytest.approx(losses["ddp"], rel=1e-5) and len(losses["single"]) == 2
