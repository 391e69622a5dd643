"""HF transformers Data2Vec models -> ours: every layer equal on the same input; our own format round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data2vec.pretrained import load_pretrained, save_pretrained


def _hf_audio():
    from transformers import Data2VecAudioConfig, Data2VecAudioModel

    cfg = Data2VecAudioConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                              conv_dim=(16, 16, 16), conv_kernel=(10, 3, 2), conv_stride=(5, 2, 2),
                              num_conv_pos_embeddings=2, conv_pos_kernel_size=5, num_conv_pos_embedding_groups=4,
                              hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, layerdrop=0.0,
                              feat_proj_dropout=0.0)
    x = torch.randn(2, 4000)
    return Data2VecAudioModel(cfg), {"input_values": x}, x


def _hf_text():
    from transformers import Data2VecTextConfig, Data2VecTextModel

    cfg = Data2VecTextConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, max_position_embeddings=42, type_vocab_size=1, layer_norm_eps=1e-5,
                             pad_token_id=1, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    tokens = torch.randint(4, 60, (2, 20))
    tokens[:, 0] = 0
    tokens[1, 15:] = 1
    return Data2VecTextModel(cfg, add_pooling_layer=True), {"input_ids": tokens, "attention_mask": tokens.ne(1)}, tokens


def _hf_vision():
    from transformers import Data2VecVisionConfig, Data2VecVisionModel

    cfg = Data2VecVisionConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2,
                               num_attention_heads=2, intermediate_size=64, use_shared_relative_position_bias=True,
                               use_mean_pooling=False, use_mask_token=True, layer_norm_eps=1e-6, drop_path_rate=0.0)
    x = torch.randn(2, 3, 16, 16)
    return Data2VecVisionModel(cfg, add_pooling_layer=False), {"pixel_values": x}, x


@pytest.mark.parametrize("make", [_hf_audio, _hf_text, _hf_vision], ids=["audio", "text", "image"])
def test_hf_directory_imports_with_identical_layers(make, tmp_path):
    torch.manual_seed(0)
    hf, inputs, ours_in = make()
    with torch.no_grad():  # make the zero-initialised parts non-trivial
        for n, p in hf.named_parameters():
            if "token_type" in n or "relative_position_bias_table" in n or "lambda" in n:
                p.normal_(0, 0.3)
    hf.eval().save_pretrained(tmp_path / "hf")
    cfg, model = load_pretrained(tmp_path / "hf")
    with torch.no_grad():
        ref = hf(**inputs, output_hidden_states=True)
        e = model.student.encoder.embed(ours_in, None, None)
        out = model.student.encoder.context_encoder(e.x, e.padding_mask)
    strip = 1 if cfg.modality == "image" else 0  # our image outputs drop the CLS token
    valid = ours_in.ne(1) if cfg.modality == "text" else None
    for got, want in zip(out.layer_outputs, ref.hidden_states[1:]):
        want = want[:, strip:]
        if valid is not None:
            got, want = got[valid], want[valid]
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # the teacher starts as the student, and the whole thing survives our own format
    t = dict(model.teacher.module.named_parameters())
    s = dict(model._teacher_source().named_parameters())
    assert all(torch.equal(t[k], s[k]) for k in t)
    save_pretrained(cfg, model, tmp_path / "ours")
    cfg2, model2 = load_pretrained(tmp_path / "ours")
    assert cfg2 == cfg
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model2.state_dict().values()))


def test_fairseq_checkpoint_keeps_its_teacher():
    from pathlib import Path

    cfg, model = load_pretrained(Path(__file__).parent / "fixtures" / "fairseq" / "d2v1_text" / "checkpoint.pt")
    assert cfg.modality == "text" and cfg.encoder.depth == 3
    s = model.student.encoder.context_encoder.layers[0].fc1.weight
    t = model.teacher.module.context_encoder.layers[0].fc1.weight
    assert not torch.equal(s, t)  # the EMA teacher from `_ema`, not a copy of the student


def test_unsupported_inputs_are_clear_errors(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        load_pretrained(tmp_path / "d")
    (tmp_path / "d" / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "d" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="not a data2vec HF model"):
        load_pretrained(tmp_path / "d")
    with pytest.raises(FileNotFoundError):
        load_pretrained(tmp_path / "missing.pt")
    np.save(tmp_path / "x.npy", np.zeros(3))
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        load_pretrained(tmp_path / "x.npy")


def test_pretrain_init_from_converted_checkpoint(tmp_path, speech_corpus):
    """`--init` loads student and teacher: with lr 0 the student stays exactly as loaded, and the teacher is
    the loaded teacher moved one EMA step towards it (not a fresh copy of the student)."""
    from conftest import MICRO_OVERRIDES, run_cli, set_args
    from data2vec.train.checkpoint import load_checkpoint

    run_cli("pretrain", "--preset", "audio-tiny-v1", "--data", str(speech_corpus), "--out", str(tmp_path / "a"),
            *set_args(MICRO_OVERRIDES + ["train.max_update=3"]))
    run_cli("convert", str(tmp_path / "a" / "checkpoint_last.pt"), "--out", str(tmp_path / "conv"))
    run_cli("pretrain", "--init", str(tmp_path / "conv"), "--data", str(speech_corpus), "--out", str(tmp_path / "b"),
            *set_args(["train.max_update=1", "optim.lr=0.0", "data.num_workers=0", "train.threads=1"]))
    a = load_checkpoint(tmp_path / "a" / "checkpoint_last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "checkpoint_last.pt")
    assert b["config"]["train"]["init_from"].endswith("conv")
    student = [k for k in a if k.startswith("student.")]
    assert student and all(torch.equal(a[k], b["model"][k]) for k in student)
    d = b["config"]["model"]["ema"]["ema_decay"]  # the decay of update 1 under the annealed schedule
    decay = d + (b["config"]["model"]["ema"]["ema_end_decay"] - d) / b["config"]["model"]["ema"]["ema_anneal_end_step"]
    key = "teacher.module.layers.0.fc1.weight"
    s_key = "student.encoder.context_encoder.layers.0.fc1.weight"
    assert not torch.equal(a[key], a[s_key])
    torch.testing.assert_close(b["model"][key], decay * a[key] + (1 - decay) * a[s_key])


@pytest.mark.parametrize("make", [_hf_audio, _hf_text, _hf_vision], ids=["audio", "text", "image"])
def test_export_to_hf_round_trip(make, tmp_path):
    """HF -> ours -> HF gives equal tensors, and transformers loads the export with identical outputs."""
    from data2vec.convert.hf import export_hf

    torch.manual_seed(1)
    hf, inputs, _ = make()
    if hasattr(hf, "embeddings") and hasattr(hf.embeddings, "token_type_embeddings"):
        # as in converted data2vec text checkpoints; a non-zero row is folded into the positions on import
        # (outputs equal, tensors not), see data2vec.convert.hf
        hf.embeddings.token_type_embeddings.weight.data.zero_()
    hf.eval().save_pretrained(tmp_path / "hf")
    cfg, model = load_pretrained(tmp_path / "hf")
    export_hf(cfg, model, tmp_path / "back")
    again = type(hf).from_pretrained(tmp_path / "back").eval()
    skip = ("pooler.",)  # the text pooler is not part of data2vec
    orig = {k: v for k, v in hf.state_dict().items() if not k.startswith(skip)}
    back = {k: v for k, v in again.state_dict().items() if not k.startswith(skip)}
    assert orig.keys() == back.keys()
    for k in orig:
        assert torch.equal(orig[k], back[k]), k
    with torch.no_grad():
        torch.testing.assert_close(again(**inputs).last_hidden_state, hf(**inputs).last_hidden_state)


def test_hf_vision_fine_tuned_layout_imports_and_exports(tmp_path):
    """Per-layer relative position bias + mean pooling (HF pooler.layernorm = our fc_norm)."""
    from transformers import Data2VecVisionConfig, Data2VecVisionModel

    from data2vec.convert.hf import export_hf

    torch.manual_seed(2)
    hf = Data2VecVisionModel(Data2VecVisionConfig(
        image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, use_shared_relative_position_bias=False, use_relative_position_bias=True,
        use_mean_pooling=True, layer_norm_eps=1e-6, drop_path_rate=0.0), add_pooling_layer=True).eval()
    with torch.no_grad():
        for n, p in hf.named_parameters():
            if "relative_position_bias_table" in n or "lambda" in n or "pooler" in n:
                p.normal_(0, 0.3)
    hf.save_pretrained(tmp_path / "hf")
    cfg, model = load_pretrained(tmp_path / "hf")
    assert cfg.encoder.rel_pos_bias == "per_layer" and cfg.encoder.use_mean_pooling
    x = torch.randn(2, 3, 16, 16)
    enc = model.student.encoder
    with torch.no_grad():
        ref = hf(x, output_hidden_states=True)
        out = enc(x)
        pooled = enc.context_encoder.pooled(out)
    for got, want in zip(out.layer_outputs, ref.hidden_states[1:]):
        torch.testing.assert_close(got, want[:, 1:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled, ref.pooler_output, atol=1e-5, rtol=1e-5)
    export_hf(cfg, model, tmp_path / "back")
    again = Data2VecVisionModel.from_pretrained(tmp_path / "back", add_pooling_layer=True).eval()
    back = again.state_dict()  # plus a mask token, which the exported model has for pretraining
    assert all(torch.equal(v, back[k]) for k, v in hf.state_dict().items())


@pytest.mark.slow
def test_published_base_shapes_import_exactly(tmp_path):
    """Random weights in the shapes of facebook/data2vec-{audio,text,vision}-base (HF default configs)."""
    from transformers import (Data2VecAudioConfig, Data2VecAudioModel, Data2VecTextConfig, Data2VecTextModel,
                              Data2VecVisionConfig, Data2VecVisionModel)

    torch.manual_seed(0)
    cases = [
        (Data2VecAudioModel(Data2VecAudioConfig(layerdrop=0.0)), None, torch.randn(1, 8000), 0),
        (Data2VecTextModel(Data2VecTextConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1,
                                              layer_norm_eps=1e-5, pad_token_id=1)),
         None, torch.randint(4, 50265, (1, 16)), 0),
        (Data2VecVisionModel(Data2VecVisionConfig(use_mask_token=True, use_shared_relative_position_bias=True,
                                                  use_mean_pooling=False, layer_norm_eps=1e-6, drop_path_rate=0.0)),
         None, torch.randn(1, 3, 224, 224), 1),
    ]
    for i, (hf, _, x, strip) in enumerate(cases):
        hf.eval().save_pretrained(tmp_path / str(i))
        cfg, model = load_pretrained(tmp_path / str(i))
        with torch.no_grad():
            want = hf(x).last_hidden_state[:, strip:]  # image: both after the final LayerNorm, CLS dropped
            got = model.student.encoder(x).x
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        del hf, model
