"""fairseq fine-tuned checkpoints (wav2vec_ctc, roberta / data2vec_text_classification heads,
mae_image_classification) -> our fine-tuned models.

No fine-tuned fairseq fixture exists, so each test wraps a pretraining fixture the way fairseq's fine-tuning
wrapper saves it (the pretraining model under its prefix with ``final_proj`` / ``_ema`` / decoder removed,
the pretraining config embedded, a random head) and checks the head's output against fairseq's own encoder
output from the fixture (``student_final`` = ``extract_features(mask=False)``) pushed through fairseq's head
math (CTC: ``proj(x)``; RoBERTa head: ``out_proj(tanh(dense(x[:, 0])))``).
"""

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from data2vec.convert.fairseq_pickle import load_fairseq_checkpoint
from data2vec.finetune.inference import is_finetuned, load_finetuned
from data2vec.pretrained import load_pretrained

FIXTURES = Path(__file__).parent / "fixtures" / "fairseq"
ATOL = 2e-5
LETTERS = ["|", "E", "T", "A", "O", "N", "I", "H", "S", "R"]


def _pretraining(name):
    ckpt = load_fairseq_checkpoint(FIXTURES / name / "checkpoint.pt")
    ref = dict(np.load(FIXTURES / name / "reference.npz", allow_pickle=False))
    return ckpt, ref


def _encoder_keys(sd: dict, drop: tuple[str, ...]) -> dict:
    """What fairseq's remove_pretraining_modules leaves of a pretraining state dict."""
    return {k: v for k, v in sd.items() if not k.startswith(drop) and "_ema" not in k}


def _ctc_checkpoint(name: str, drop: tuple[str, ...], n_out: int, g: torch.Generator):
    ckpt, ref = _pretraining(name)
    D = ref["student_final"].shape[-1]
    proj_w, proj_b = torch.randn(n_out, D, generator=g) * 0.1, torch.randn(n_out, generator=g) * 0.1
    sd = {"w2v_encoder.w2v_model." + k: v for k, v in _encoder_keys(ckpt["model"], drop).items()}
    sd |= {"w2v_encoder.proj.weight": proj_w, "w2v_encoder.proj.bias": proj_b}
    cfg = {"model": {"_name": "wav2vec_ctc", "final_dropout": 0.1, "freeze_finetune_updates": 10000,
                     "mask_prob": 0.65, "mask_channel_prob": 0.25, "mask_channel_length": 64,
                     "w2v_args": {"model": ckpt["cfg"]["model"], "task": ckpt["cfg"]["task"]}},
           "task": {"_name": "audio_finetuning", "data": "/nonexistent/manifests"}}
    return {"cfg": cfg, "model": sd, "task_state": {}}, ref, (proj_w, proj_b)


def _write_dict_ltr(path: Path) -> None:
    path.write_text("".join(f"{c} {1000 - i}\n" for i, c in enumerate(LETTERS)))


@pytest.mark.parametrize("name,drop", [("d2v1_audio", ("final_proj",)),
                                       ("d2v2_audio", ("modality_encoders.AUDIO.decoder",))])
def test_wav2vec_ctc_logits_equal_fairseq_encoder_through_proj(tmp_path, name, drop):
    g = torch.Generator().manual_seed(0)
    ckpt, ref, (w, b) = _ctc_checkpoint(name, drop, 4 + len(LETTERS), g)
    torch.save(ckpt, tmp_path / "ft.pt")
    _write_dict_ltr(tmp_path / "dict.ltr.txt")
    assert is_finetuned(tmp_path / "ft.pt")
    cfg, model = load_finetuned(tmp_path / "ft.pt")
    assert cfg.task == "asr" and list(cfg.head.symbols) == LETTERS
    assert (cfg.head.final_dropout, cfg.head.freeze_finetune_updates, cfg.head.mask_channel_length) == (0.1, 10000, 64)
    src = torch.from_numpy(ref["source"])
    pad = torch.from_numpy(ref["padding_mask"]) if "padding_mask" in ref else None
    with torch.no_grad():
        logits, frame_pad = model(src, pad)
    want = torch.from_numpy(ref["student_final"]) @ w.T + b
    valid = ~torch.from_numpy(ref["frame_padding_mask"]) if "frame_padding_mask" in ref else torch.ones(want.shape[:2], dtype=torch.bool)
    assert valid.sum() < valid.numel() or name == "d2v2_audio"  # v1: one clip is padded
    torch.testing.assert_close(logits[valid], want[valid], rtol=0, atol=ATOL)
    # the encoder alone loads through load_pretrained (feature extraction from a fine-tuned model)
    pcfg, pre = load_pretrained(tmp_path / "ft.pt")
    assert pcfg.version == (2 if name.startswith("d2v2") else 1)
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(pre.student.encoder.state_dict()[k], v), k


def _fake_fairseq_dictionary(monkeypatch):
    """A class that pickles as fairseq.data.dictionary.Dictionary (what fine-tuned checkpoints' task_state holds)."""
    mods = {n: types.ModuleType(n) for n in ("fairseq", "fairseq.data", "fairseq.data.dictionary")}

    class Dictionary:
        def __init__(self, symbols):
            self.bos_word, self.unk_word, self.pad_word, self.eos_word = "<s>", "<unk>", "<pad>", "</s>"
            self.symbols, self.count = list(symbols), [1] * len(symbols)
            self.indices = {s: i for i, s in enumerate(symbols)}
            self.nspecial = 4

    Dictionary.__module__ = "fairseq.data.dictionary"
    Dictionary.__qualname__ = "Dictionary"
    mods["fairseq.data.dictionary"].Dictionary = Dictionary
    for n, m in mods.items():
        monkeypatch.setitem(sys.modules, n, m)
    return Dictionary


def test_ctc_letters_from_task_state_dictionary(tmp_path, monkeypatch):
    """fairseq saves the target Dictionary object in task_state; the restricted unpickler reads it as data."""
    g = torch.Generator().manual_seed(1)
    ckpt, _, _ = _ctc_checkpoint("d2v1_audio", ("final_proj",), 4 + len(LETTERS), g)
    Dictionary = _fake_fairseq_dictionary(monkeypatch)
    ckpt["task_state"] = {"target_dictionary": Dictionary(["<s>", "<pad>", "</s>", "<unk>", *LETTERS])}
    torch.save(ckpt, tmp_path / "ft.pt")
    for n in ("fairseq.data.dictionary", "fairseq.data", "fairseq"):  # load without any fairseq importable
        monkeypatch.delitem(sys.modules, n)
    cfg, _ = load_finetuned(tmp_path / "ft.pt")  # no dict.ltr.txt beside it
    assert list(cfg.head.symbols) == LETTERS


def test_ctc_without_letters_or_with_wrong_size_is_refused(tmp_path):
    g = torch.Generator().manual_seed(2)
    ckpt, _, _ = _ctc_checkpoint("d2v1_audio", ("final_proj",), 4 + len(LETTERS), g)
    torch.save(ckpt, tmp_path / "ft.pt")
    with pytest.raises(ValueError, match="dict.ltr.txt beside it"):
        load_finetuned(tmp_path / "ft.pt")
    (tmp_path / "dict.ltr.txt").write_text("| 3\nA 2\nB 1\n")
    with pytest.raises(ValueError, match="has 7 entries but the CTC projection has 14"):
        load_finetuned(tmp_path / "ft.pt")


def test_ctc_leftover_and_missing_pretraining_config_are_named(tmp_path):
    g = torch.Generator().manual_seed(3)
    ckpt, _, _ = _ctc_checkpoint("d2v1_audio", ("final_proj",), 4 + len(LETTERS), g)
    _write_dict_ltr(tmp_path / "dict.ltr.txt")
    ckpt["model"]["w2v_encoder.surprise"] = torch.zeros(1)
    torch.save(ckpt, tmp_path / "ft.pt")
    with pytest.raises(ValueError, match="w2v_encoder.surprise"):
        load_finetuned(tmp_path / "ft.pt")
    del ckpt["model"]["w2v_encoder.surprise"]
    ckpt["cfg"]["model"]["w2v_args"] = None
    torch.save(ckpt, tmp_path / "ft.pt")
    with pytest.raises(ValueError, match="does not embed its pretraining config"):
        load_finetuned(tmp_path / "ft.pt")


def _head(D: int, n: int, g):
    return {"dense.weight": torch.randn(D, D, generator=g) * 0.2, "dense.bias": torch.randn(D, generator=g) * 0.1,
            "out_proj.weight": torch.randn(n, D, generator=g) * 0.2, "out_proj.bias": torch.randn(n, generator=g) * 0.1}


def _roberta_head_math(x_BTD: torch.Tensor, h: dict) -> torch.Tensor:
    x = torch.tanh(x_BTD[:, 0] @ h["dense.weight"].T + h["dense.bias"])
    return x @ h["out_proj.weight"].T + h["out_proj.bias"]


def test_roberta_finetuned_data2vec_text_v1(tmp_path):
    """data2vec 1.0 text is fine-tuned in fairseq as a `roberta` model restored from the data2vec checkpoint."""
    ckpt, ref = _pretraining("d2v1_text")
    g = torch.Generator().manual_seed(4)
    t = ckpt["cfg"]["model"]["transformer"]
    e = t["encoder"]
    model_cfg = {"_name": "roberta", "encoder_layers": e["layers"], "encoder_embed_dim": e["embed_dim"],
                 "encoder_ffn_embed_dim": e["ffn_embed_dim"], "encoder_attention_heads": e["attention_heads"],
                 "max_positions": ckpt["cfg"]["model"]["max_positions"], "dropout": 0.1, "attention_dropout": 0.1,
                 "activation_dropout": 0.0, "pooler_dropout": 0.0, "pooler_activation_fn": "tanh",
                 "encoder_normalize_before": False, "layernorm_embedding": True, "no_scale_embedding": True}
    D = e["embed_dim"]
    sd = {k: v for k, v in ckpt["model"].items() if k.startswith("encoder.sentence_encoder.")}
    V = sd["encoder.sentence_encoder.embed_tokens.weight"].shape[0]
    sd |= {"encoder.lm_head.dense.weight": torch.zeros(D, D), "encoder.lm_head.bias": torch.zeros(V)}  # dropped
    heads = {"sst2": _head(D, 2, g), "stsb": _head(D, 1, g)}
    for name, h in heads.items():
        sd |= {f"classification_heads.{name}.{k}": v for k, v in h.items()}
    torch.save({"cfg": {"model": model_cfg, "task": {"_name": "sentence_prediction"}}, "model": sd},
               tmp_path / "ft.pt")
    from data2vec.finetune.interop import finetuned_from_fairseq

    with pytest.raises(ValueError, match=r"several classification heads \['sst2', 'stsb'\]"):
        finetuned_from_fairseq(tmp_path / "ft.pt")
    tokens = torch.from_numpy(ref["orig_tokens"])
    for name, h in heads.items():
        cfg, model = finetuned_from_fairseq(tmp_path / "ft.pt", head=name)
        assert cfg.task == "text-classification" and cfg.head.num_classes == len(h["out_proj.bias"])
        with torch.no_grad():
            got = model(tokens)
        torch.testing.assert_close(got, _roberta_head_math(torch.from_numpy(ref["student_final"]), h),
                                   rtol=0, atol=ATOL)


def test_data2vec_text_classification_v2(tmp_path):
    ckpt, ref = _pretraining("d2v2_text")
    g = torch.Generator().manual_seed(5)
    D = ref["student_final"].shape[-1]
    h = _head(D, 3, g)
    sd = {"model." + k: v for k, v in _encoder_keys(ckpt["model"], ("modality_encoders.TEXT.decoder",)).items()}
    sd |= {f"classification_heads.mnli.{k}": v for k, v in h.items()}
    cfg = {"model": {"_name": "data2vec_text_classification", "pooler_dropout": 0.0, "pooler_activation_fn": "tanh",
                     "pretrained_model_args": {"model": ckpt["cfg"]["model"], "task": ckpt["cfg"]["task"]}},
           "task": {"_name": "sentence_prediction", "d2v2_multi": True}}
    torch.save({"cfg": cfg, "model": sd}, tmp_path / "ft.pt")
    cfg, model = load_finetuned(tmp_path / "ft.pt")
    assert cfg.task == "text-classification" and cfg.head.num_classes == 3
    src = torch.from_numpy(ref["source"])
    with torch.no_grad():
        got = model(src)
    torch.testing.assert_close(got, _roberta_head_math(torch.from_numpy(ref["student_final"]), h), rtol=0, atol=ATOL)


def test_mae_image_classification_v2(tmp_path):
    """The wrapper on our image-tiny-v2 weights in fairseq's layout (grey 28x28 images; the wrapper on fairseq's
    own image model: test_fairseq_parity_v2_image.py); the logits follow fairseq's head math (mean over patches,
    fc_norm eps 1e-6, head)."""
    from test_fairseq_parity_v2 import _fairseq_image_layout

    from data2vec.core.data2vec import Data2Vec
    from data2vec.modalities.image.encoder_v2 import ImageEncoderV2
    from data2vec.presets import get_preset

    pcfg = get_preset("image-tiny-v2")
    torch.manual_seed(0)
    pre = Data2Vec(ImageEncoderV2(pcfg.encoder), pcfg.model).eval()
    fs = _fairseq_image_layout(pre)
    fs = {"model." + k: v for k, v in fs.items() if k != "_ema" and ".decoder." not in k}
    g = torch.Generator().manual_seed(6)
    D = pcfg.encoder.embed_dim
    head = {"fc_norm.weight": 1 + 0.1 * torch.randn(D, generator=g), "fc_norm.bias": 0.1 * torch.randn(D, generator=g),
            "head.weight": 0.1 * torch.randn(10, D, generator=g), "head.bias": 0.1 * torch.randn(10, generator=g)}
    fs |= head
    model_cfg = {"_name": "data2vec_multi", "supported_modality": "IMAGE", "depth": 5, "embed_dim": D, "num_heads": 3,
                 "mlp_ratio": 4.0, "norm_eps": 1e-6, "average_top_k_layers": 3,
                 "modalities": {"image": {"input_size": 28, "patch_size": 4, "in_chans": 1, "embed_dim": D,
                                          "prenet_depth": 1, "num_extra_tokens": 1, "init_extra_token_zero": False}}}
    cfg = {"model": {"_name": "mae_image_classification", "prediction_mode": "MEAN_POOLING", "use_fc_norm": True,
                     "pretrained_model_args": {"model": model_cfg, "task": {}}}, "task": {"_name": "mae_image_pretraining"}}
    torch.save({"cfg": cfg, "model": fs}, tmp_path / "ft.pt")
    cfg_ft, model = load_finetuned(tmp_path / "ft.pt")
    assert cfg_ft.task == "image-classification" and cfg_ft.head.num_classes == 10
    images = torch.randn(3, 1, 28, 28, generator=g)
    with torch.no_grad():
        x = pre.student.encoder(images).x[:, 1:].mean(1)  # fairseq: remove_extra_tokens, then mean
        x = torch.nn.functional.layer_norm(x, (D,), head["fc_norm.weight"], head["fc_norm.bias"], eps=1e-6)
        torch.testing.assert_close(model(images), x @ head["head.weight"].T + head["head.bias"], rtol=0, atol=1e-5)
    cfg["model"]["prediction_mode"] = "CLS_TOKEN"
    torch.save({"cfg": cfg, "model": fs}, tmp_path / "cls.pt")
    with pytest.raises(ValueError, match="only mean pooling"):
        load_finetuned(tmp_path / "cls.pt")


def test_pretraining_checkpoint_is_not_finetuned(tmp_path):
    assert not is_finetuned(FIXTURES / "d2v1_audio" / "checkpoint.pt")
    with pytest.raises(ValueError, match="not a data2vec checkpoint"):
        load_finetuned(FIXTURES / "d2v1_audio" / "checkpoint.pt")


def test_fairseq_ctc_exports_to_hf_and_transcribes(tmp_path):
    """fairseq wav2vec_ctc (data2vec 1.0) -> `data2vec export --to hf` -> transformers' Data2VecAudioForCTC gives
    fairseq's logits; `data2vec transcribe` runs on the .pt as it is."""
    import soundfile as sf
    from transformers import Data2VecAudioForCTC

    from data2vec.cli import main as cli

    g = torch.Generator().manual_seed(7)
    ckpt, ref, (w, b) = _ctc_checkpoint("d2v1_audio", ("final_proj",), 4 + len(LETTERS), g)
    torch.save(ckpt, tmp_path / "ft.pt")
    _write_dict_ltr(tmp_path / "dict.ltr.txt")
    assert cli(["export", str(tmp_path / "ft.pt"), "--to", "hf", "--out", str(tmp_path / "hf")]) == 0
    hf = Data2VecAudioForCTC.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        got = hf(torch.from_numpy(ref["source"][:1])).logits  # the unpadded clip
    want = torch.from_numpy(ref["student_final"][:1]) @ w.T + b
    torch.testing.assert_close(got, want, rtol=0, atol=ATOL)
    sf.write(tmp_path / "clip.wav", ref["source"][0], 16000)
    assert cli(["transcribe", str(tmp_path / "ft.pt"), str(tmp_path / "clip.wav")]) == 0
