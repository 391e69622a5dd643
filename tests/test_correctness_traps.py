"""Correctness traps found while checking parity (issue "Hardening", 5): each used to fail, or to succeed
silently with the wrong result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from data2vec import cli
from data2vec.pretrained import load_pretrained

FIXTURES = Path(__file__).parent / "fixtures" / "fairseq"


def test_hf_vision_model_saved_without_pooler_loads(tmp_path):
    """transformers' Data2VecVisionModel(config) has no pooler (add_pooling_layer=False) while its config says
    use_mean_pooling=True (no final norm): the per-patch features load exactly."""
    from transformers import Data2VecVisionConfig, Data2VecVisionModel

    torch.manual_seed(0)
    hf = Data2VecVisionModel(Data2VecVisionConfig(
        image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, drop_path_rate=0.0)).eval()
    assert hf.config.use_mean_pooling and not any(k.startswith("pooler") for k in hf.state_dict())
    hf.save_pretrained(tmp_path / "hf")
    with pytest.warns(UserWarning, match="without its pooler"):
        cfg, model = load_pretrained(tmp_path / "hf")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ref = hf(pixel_values=x, output_hidden_states=True)
        e = model.student.encoder.embed(x, None, None)
        out = model.student.encoder.context_encoder(e.x, e.padding_mask)
    for got, want in zip(out.layer_outputs, ref.hidden_states[1:]):
        torch.testing.assert_close(got, want[:, 1:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.x, ref.last_hidden_state[:, 1:], atol=1e-5, rtol=1e-5)  # no final norm


def _hf_text_config(**kw):
    from transformers import Data2VecTextConfig

    return Data2VecTextConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=64, max_position_embeddings=42, layer_norm_eps=1e-5, pad_token_id=1,
                              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **kw)


def test_hf_text_with_two_token_types_runs_as_transformers_does(tmp_path):
    from transformers import Data2VecTextModel

    torch.manual_seed(0)
    hf = Data2VecTextModel(_hf_text_config(type_vocab_size=2), add_pooling_layer=False).eval()
    with torch.no_grad():
        hf.embeddings.token_type_embeddings.weight.normal_(0, 0.3)
    hf.save_pretrained(tmp_path / "hf")
    with pytest.warns(UserWarning, match="rows 1.. are dropped"):
        _, model = load_pretrained(tmp_path / "hf")
    tokens = torch.randint(4, 60, (2, 12))
    tokens[:, 0] = 0
    with torch.no_grad():
        ref = hf(input_ids=tokens).last_hidden_state  # default token_type_ids: all 0
        e = model.student.encoder.embed(tokens, None, None)
        out = model.student.encoder.context_encoder(e.x, e.padding_mask)
    torch.testing.assert_close(out.x, ref, atol=1e-5, rtol=1e-5)


def test_export_of_a_hf_task_directory_keeps_its_head(tmp_path, capsys):
    from transformers import Data2VecTextForSequenceClassification

    torch.manual_seed(0)
    hf = Data2VecTextForSequenceClassification(_hf_text_config(type_vocab_size=1, num_labels=3)).eval()
    hf.save_pretrained(tmp_path / "task")
    assert cli.main(["export", str(tmp_path / "task"), "--to", "hf", "--out", str(tmp_path / "out")]) == 0
    out_cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert out_cfg["architectures"] == ["Data2VecTextForSequenceClassification"]
    back = Data2VecTextForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    tokens = torch.randint(4, 60, (2, 10))
    tokens[:, 0] = 0
    with torch.no_grad():
        torch.testing.assert_close(back(input_ids=tokens).logits, hf(input_ids=tokens).logits, atol=1e-5, rtol=1e-5)


def test_export_refuses_a_head_it_cannot_carry(tmp_path, capsys):
    from transformers import Data2VecTextForMaskedLM

    Data2VecTextForMaskedLM(_hf_text_config(type_vocab_size=1)).save_pretrained(tmp_path / "mlm")
    assert cli.main(["export", str(tmp_path / "mlm"), "--to", "hf", "--out", str(tmp_path / "out")]) == 2
    assert "Data2VecTextForMaskedLM" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_text_batch_without_clean_teacher_input_is_refused():
    from data2vec.config import merge
    from data2vec.pretrained import build_model
    from data2vec.presets import get_preset

    cfg = merge(get_preset("text-tiny-v1"), {"encoder": {"vocab_size": 50, "encoder_layers": 2,
                                                         "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64,
                                                         "encoder_attention_heads": 2},
                                             "model": {"targets": {"average_top_k_layers": 2}}})
    model = build_model(cfg)
    tokens = torch.randint(4, 50, (2, 12))
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[:, 3:6] = True
    with pytest.raises(ValueError, match="teacher_source"):
        model({"source": tokens, "padding_mask": None, "mask": mask})
    out = model({"source": tokens, "teacher_source": tokens, "padding_mask": None, "mask": mask})
    assert out.sample_size == 6


def test_fairseq_exact_switch_for_v1_text_and_speech(tmp_path, capsys):
    cfg, _ = load_pretrained(FIXTURES / "d2v1_text" / "checkpoint.pt", fairseq_exact=True)
    assert cfg.masking.mask_special_tokens and cfg.model.targets.include_padding_in_norm
    default, _ = load_pretrained(FIXTURES / "d2v1_text" / "checkpoint.pt")
    assert not default.masking.mask_special_tokens and not default.model.targets.include_padding_in_norm
    assert cli.main(["convert", str(FIXTURES / "d2v1_audio" / "checkpoint.pt"), "--fairseq-exact",
                     "--out", str(tmp_path / "c")]) == 0
    saved = json.loads((tmp_path / "c" / "config.json").read_text())
    assert saved["model"]["targets"]["include_padding_in_norm"] is True
