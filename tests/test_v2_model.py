"""data2vec 2.0 model pieces not covered by the fairseq fixtures (images have none): ALiBi, sin-cos
positions, MaskInfo, the 2-D decoder and CLS loss, padding, errors, and that training lowers the loss."""

import math

import numpy as np
import pytest
import torch

from data2vec.core.data2vec import Data2Vec
from data2vec.core.loss import regression_loss_sum
from data2vec.layers.alt import alibi_bias_1d, alibi_slopes
from data2vec.layers.mask_info import gather_positions, make_mask_info
from data2vec.modalities import get_modality
from data2vec.modalities.image.encoder_v2 import sincos_2d
from data2vec.presets import get_preset
from data2vec.train.optim import param_groups


def _model(name, **enc):
    cfg = get_preset(name)
    for k, v in enc.items():
        setattr(cfg.encoder, k, v)
    if cfg.modality == "text":
        cfg.encoder.vocab_size = 50
    torch.manual_seed(0)
    return cfg, Data2Vec(get_modality(cfg.modality).build_encoder(cfg.encoder), cfg.model)


def test_alibi_slopes_and_bias():
    assert alibi_slopes(4) == [0.25, 0.0625, 0.015625, 0.00390625]  # 2^(-8/n * (i+1))
    assert alibi_slopes(8) == [2.0 ** -(i + 1) for i in range(8)]
    # 6 heads (not a power of 2): the 4-head slopes, then every other slope of the 8-head set
    assert alibi_slopes(6) == alibi_slopes(4) + [0.5, 0.125]
    b = alibi_bias_1d(5, 4)
    assert b.shape == (4, 5, 5)
    assert b[1, 0, 3].item() == pytest.approx(-3 * 0.0625) and b[2, 4, 1].item() == pytest.approx(-3 * 0.015625)
    assert torch.all(torch.diagonal(b, dim1=1, dim2=2) == 0)


def test_sincos_positions_follow_mae():
    dim, grid = 8, 3
    pe = sincos_2d(dim, grid)
    omega = 1.0 / 10000 ** (np.arange(2) / 2.0)  # dim/4 frequencies per axis
    for i in range(grid):  # row
        for j in range(grid):  # column
            want = np.concatenate([np.sin(j * omega), np.cos(j * omega), np.sin(i * omega), np.cos(i * omega)])
            np.testing.assert_allclose(pe[i * grid + j].numpy(), want, atol=1e-6)


def test_mask_info_gathers_and_restores():
    mask = torch.tensor([[1, 0, 1, 0, 0], [0, 0, 1, 1, 0]], dtype=torch.bool)
    info = make_mask_info(mask)
    assert info.ids_keep.tolist() == [[1, 3, 4], [0, 1, 4]] and info.ids_masked.tolist() == [[0, 2], [2, 3]]
    x = torch.arange(10.0).view(2, 5, 1)
    shuffled = torch.cat([gather_positions(x, info.ids_keep), gather_positions(x, info.ids_masked)], 1)
    assert torch.equal(torch.gather(shuffled, 1, info.ids_restore[..., None]), x)
    with pytest.raises(ValueError, match="same number of masked positions"):
        make_mask_info(torch.tensor([[1, 0, 0], [1, 1, 0]], dtype=torch.bool))


def _image_batch(B=2, M=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 1, 28, 28, generator=g)
    mask = torch.zeros(B * M, 49, dtype=torch.bool)
    for r in range(B * M):
        mask[r, torch.randperm(49, generator=g)[:29]] = True
    return {"source": x, "padding_mask": None, "mask": mask, "num_masked": int(mask.sum())}


def test_image_v2_student_decoder_and_cls_loss():
    cfg, model = _model("image-tiny-v2")
    model.eval()
    b = _image_batch()
    torch.manual_seed(1)
    out = model(b)
    assert out.sample_size == b["num_masked"] and out.pred_MC.shape == (b["num_masked"], 192)
    # the CLS term, recomputed from its definition: student CLS output vs the mean target of its sample
    torch.manual_seed(1)
    s = model.student(b["source"], None, b["mask"])
    y = model.targets(b["source"], None, s)
    assert s.cls_pred.shape == (8, 192) and s.x_BTC.shape == (8, 1 + 49 - 29, 192)
    reg = regression_loss_sum(s.pred_MC, y.repeat_interleave(4, 0)[b["mask"]], model.cfg.loss)
    cls = sum(((s.cls_pred[r] - y[r // 4].mean(0)) ** 2).sum() for r in range(8)) / math.sqrt(192)
    torch.testing.assert_close(out.loss_sum, reg + 0.01 * b["num_masked"] * cls, rtol=1e-5, atol=1e-5)
    # the teacher is an EMA of the whole encoder (own patch embedding) and sees every patch
    assert hasattr(model.teacher.module, "local_encoder") and y.shape == (2, 49, 192)


def test_audio_v2_padded_batch_equals_one_by_one():
    cfg, model = _model("audio-tiny-v2")
    enc = model.student.encoder.eval()
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(16000, generator=g), torch.randn(11000, generator=g)
    src = torch.zeros(2, 16000)
    src[0], src[1, :11000] = a, b
    pad = torch.zeros(2, 16000, dtype=torch.bool)
    pad[1, 11000:] = True
    with torch.no_grad():
        both = enc(src, pad)
        alone = enc(b[None])
    n = alone.x.size(1)
    assert both.padding_mask[1, :n].logical_not().all() and both.padding_mask[1, n:].all()
    torch.testing.assert_close(both.x[1, :n], alone.x[0], atol=1e-4, rtol=1e-4)


def test_v2_errors_name_the_fix():
    cfg, model = _model("image-tiny-v2")
    b = _image_batch()
    b["mask"] = b["mask"][:7]
    with pytest.raises(ValueError, match="clone_batch masks per sample"):
        model(b)
    enc = get_modality("image").build_encoder(cfg.encoder)
    cfg.model.decoder = None
    with pytest.raises(ValueError, match="needs model.decoder"):
        Data2Vec(enc, cfg.model)


def test_alibi_scale_gets_no_weight_decay():
    _, model = _model("audio-tiny-v2")
    groups = param_groups(model.student, 0.01, True)
    no_decay = {id(p) for p in groups[1]["params"]}
    assert id(model.student.encoder.context_encoder.alibi_scale) in no_decay


@pytest.mark.parametrize("name", ["image-tiny-v2", "text-tiny-v2"])
def test_v2_training_steps_lower_the_loss_and_move_the_teacher(name):
    cfg, model = _model(name)
    if cfg.modality == "text":
        g = torch.Generator().manual_seed(0)
        src = torch.randint(4, 50, (4, 32), generator=g)
        src[:, 0] = 0
        mask = torch.zeros(16, 32, dtype=torch.bool)
        for r in range(16):
            mask[r, torch.randperm(32, generator=g)[:15]] = True
        batch = {"source": src, "padding_mask": None, "mask": mask}
    else:
        batch = _image_batch()
    opt = torch.optim.AdamW(model.student.parameters(), lr=1e-3)
    t0 = next(model.teacher.module.parameters()).clone()
    losses = []
    for step in range(1, 16):
        torch.manual_seed(step)
        out = model(batch)
        loss = out.loss_sum / out.sample_size
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.update_teacher(step)
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    assert not torch.equal(next(model.teacher.module.parameters()), t0)


def test_export_hf_refuses_v2_from_python(tmp_path):
    from data2vec.convert.hf import export_hf

    cfg, model = _model("image-tiny-v2")
    with pytest.raises(ValueError, match="no data2vec 2.0 model classes"):
        export_hf(cfg, model, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_frozen_local_encoder_keeps_the_projection_trainable():
    """local_grad_mult = 0 freezes only the CNN (fairseq); the LayerNorm + Linear projection still learns."""
    cfg, model = _model("audio-tiny-v2", local_grad_mult=0.0)
    enc = model.student.encoder
    x, _ = enc.local_features(torch.randn(2, 8000))
    x.sum().backward()
    assert enc.project_features.proj.weight.grad is not None
    assert all(p.grad is None for p in enc.local_encoder.parameters())
