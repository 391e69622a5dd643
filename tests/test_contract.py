"""The contract every modality's encoder keeps with the core method (data2vec.core.data2vec docstring)."""

from __future__ import annotations

import pytest
import torch

from data2vec.core.data2vec import Data2Vec, Data2VecConfig, EMAConfig
from data2vec.core.targets import TargetConfig
from data2vec.modalities.audio import AudioEncoder, AudioEncoderConfig
from data2vec.modalities.text import TextEncoder, TextEncoderConfig

B = 3


def _audio():
    enc = AudioEncoder(AudioEncoderConfig(
        conv_feature_layers="[(16, 10, 5), (16, 3, 2)]", embed_dim=32, ffn_embed_dim=64,
        depth=3, num_heads=2, conv_pos_width=8, conv_pos_groups=4, conv_pos_depth=2,
        dropout=0.1, layerdrop=0.0))
    g = torch.Generator().manual_seed(0)
    source = torch.randn(B, 3000, generator=g)
    T = int(enc.frame_lengths(torch.tensor([3000]))[0])
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[:, 20:40] = True
    cfg = Data2VecConfig(targets=TargetConfig(average_top_k_layers=2, instance_norm_target_layer=True))
    return enc, cfg, {"source": source, "padding_mask": None, "mask": mask}


def _text():
    enc = TextEncoder(TextEncoderConfig(vocab_size=50, max_positions=40, embed_dim=32, depth=3,
                                        ffn_embed_dim=64, num_heads=2, dropout=0.1))
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(5, 50, (B, 30), generator=g)
    clean[:, 0], clean[:, -1] = 0, 2
    clean[2, 20:] = 1  # a padded row
    mask = torch.zeros(B, 30, dtype=torch.bool)
    mask[:, 5:12] = True
    source = clean.masked_fill(mask, 4)
    cfg = Data2VecConfig(ema=EMAConfig(ema_transformer_only=False), head_layers=2,
                         targets=TargetConfig(average_top_k_layers=2, layer_norm_target_layer=True))
    return enc, cfg, {"source": source, "teacher_source": clean, "padding_mask": None, "mask": mask}


def _image():
    from data2vec.modalities.image import ImageEncoder, ImageEncoderConfig

    enc = ImageEncoder(ImageEncoderConfig(image_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=3, num_heads=2,
                                          drop_path_rate=0.1, dropout=0.1))
    images = torch.randn(B, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(B, 16, dtype=torch.bool)
    mask[:, 5:11] = True
    cfg = Data2VecConfig(ema=EMAConfig(ema_transformer_only=False, ema_layers_only=False),
                         targets=TargetConfig(average_top_k_layers=2, layer_results="end", layer_norm_target_layer=True,
                                              layer_norm_targets=True))
    return enc, cfg, {"source": images, "padding_mask": None, "mask": mask}


MODALITIES = {"audio": _audio, "text": _text, "image": _image}


@pytest.fixture(params=list(MODALITIES))
def setup(request):
    torch.manual_seed(0)
    return request.param, *MODALITIES[request.param]()


def test_shapes_and_layer_counts(setup):
    _, enc, _, batch = setup
    enc.eval()
    e = enc.embed(batch["source"], batch["padding_mask"], batch["mask"])
    out = enc.context_encoder(e.x, e.padding_mask)
    T = batch["mask"].size(1)
    assert e.x.shape == (B, T, enc.embed_dim) and out.x.shape == (B, T, enc.embed_dim)
    assert len(out.layer_outputs) == len(out.ffn_outputs) == enc.num_layers


def test_masking_changes_only_masked_positions(setup):
    name, enc, _, batch = setup
    enc.eval()
    clean_input = batch.get("teacher_source", batch["source"])
    a = enc.embed(clean_input, batch["padding_mask"], None).x
    b = enc.embed(batch["source"], batch["padding_mask"], batch["mask"]).x
    changed = (a - b).abs().amax(-1) > 0
    assert torch.equal(changed, batch["mask"])


def test_teacher_is_eval_gets_no_grad_and_student_does(setup):
    _, enc, cfg, batch = setup
    model = Data2Vec(enc, cfg).train()
    assert not model.teacher.module.training
    out = model(batch)
    out.loss_sum.backward()
    assert out.sample_size == int(batch["mask"].sum())
    assert all(p.grad is None for p in model.teacher.parameters())
    assert sum(p.grad.abs().sum() for p in model.student.parameters() if p.grad is not None) > 0
    t1 = model(batch).target_MC  # teacher: eval mode, no dropout -> the same targets twice
    assert torch.equal(t1, model(batch).target_MC)


def test_deterministic_under_a_seed(setup):
    name, _, cfg, batch = setup
    losses, states = [], []
    for _ in range(2):
        torch.manual_seed(123)
        enc = MODALITIES[name]()[0]
        model = Data2Vec(enc, cfg).train()
        states.append(model.state_dict())
        torch.manual_seed(7)
        losses.append(model(batch).loss_sum.item())
    assert losses[0] == losses[1]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_text_padding_does_not_change_valid_outputs():
    enc, _, batch = _text()
    enc.eval()
    tokens = batch["teacher_source"]
    with torch.no_grad():
        batched = enc(tokens).x
        alone = enc(tokens[2:3, :20]).x
    torch.testing.assert_close(batched[2, :20], alone[0], atol=1e-5, rtol=1e-5)
