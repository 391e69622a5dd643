"""The modality-agnostic method: schedules, EMA teacher, targets, loss, collapse guard, optimizer groups."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from data2vec.core.data2vec import Data2Vec, Data2VecConfig, EMAConfig
from data2vec.core.ema import EMATeacher
from data2vec.core.loss import LossConfig, regression_loss_sum
from data2vec.core.monitors import CollapseConfig, CollapseError, check_collapse, compute_var
from data2vec.core.schedules import cosine_lr, ema_decay, tri_stage_lr
from data2vec.core.targets import TargetConfig, build_targets, instance_norm
from data2vec.modalities.audio import AudioEncoder, AudioEncoderConfig
from data2vec.train.optim import OptimConfig, lr_at, param_groups


# ---- schedules ------------------------------------------------------------------------------
@pytest.mark.parametrize("step, expected", [(0, 0.999), (15000, 0.99945), (30000, 0.9999), (10**6, 0.9999)])
def test_ema_decay_is_fairseq_annealed_rate(step, expected):
    assert ema_decay(step, 0.999, 0.9999, 30000) == pytest.approx(expected, abs=1e-12)


def test_ema_decay_constant_when_start_equals_end():
    assert ema_decay(5, 0.9998, 0.9998, 0) == 0.9998


def test_ema_decay_rises_linearly():
    steps = range(0, 30000, 1000)
    diffs = [ema_decay(t + 1000, 0.999, 0.9999, 30000) - ema_decay(t, 0.999, 0.9999, 30000) for t in steps]
    assert diffs == pytest.approx([0.0009 / 30] * len(diffs), abs=1e-12)


def test_tri_stage_lr_phases():
    kw = dict(lr=1.0, total_steps=1000, phase_ratio=(0.1, 0.4, 0.5), init_lr_scale=0.01, final_lr_scale=0.05)
    assert tri_stage_lr(0, **kw) == pytest.approx(0.01)
    assert tri_stage_lr(50, **kw) == pytest.approx(0.01 + 0.99 * 0.5)  # linear warm-up
    assert tri_stage_lr(100, **kw) == tri_stage_lr(499, **kw) == 1.0  # hold
    assert tri_stage_lr(750, **kw) == pytest.approx(math.sqrt(0.05))  # exponential decay, halfway
    assert tri_stage_lr(1000, **kw) == pytest.approx(0.05)
    assert tri_stage_lr(5000, **kw) == pytest.approx(0.05)


@pytest.mark.parametrize("step, expected", [
    (0, 5e-6), (6000, (5e-6 + 5e-4) / 2), (12000, 5e-4), (371999, 5e-4),  # warmup 3% of 400k, hold 90%
    (386000, 5e-5), (400000, 5e-6), (450000, 5e-6)])  # exponential decay over the last 7% to lr * 0.01
def test_lr_at_speech_base_recipe(step, expected):
    cfg = OptimConfig(lr=5e-4, lr_scheduler="tri_stage", phase_ratio=(0.03, 0.9, 0.07))
    assert lr_at(step, cfg, 400000) == pytest.approx(expected, rel=1e-9)


def test_cosine_lr():
    kw = dict(lr=2.0, total_steps=110, warmup_steps=10, min_lr=0.2)
    assert cosine_lr(5, **kw) == pytest.approx(1.0)
    assert cosine_lr(10, **kw) == pytest.approx(2.0)
    assert cosine_lr(60, **kw) == pytest.approx(1.1)
    assert cosine_lr(110, **kw) == pytest.approx(0.2)


# ---- EMA teacher ----------------------------------------------------------------------------
class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)
        self.pos = nn.Linear(3, 3)
        self.bn = nn.BatchNorm1d(3)
        self.drop = nn.Dropout(0.5)


def test_ema_closed_form_and_copied_keys():
    torch.manual_seed(0)
    student = _Net()
    teacher = EMATeacher(student, copy_keys={"pos.weight", "pos.bias"})
    t0 = teacher.module.a.weight.clone()
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
        student.bn.running_mean.fill_(7.0)
    d, n = 0.9, 5
    for _ in range(n):
        teacher.update(student, d)
    s = student.a.weight
    torch.testing.assert_close(teacher.module.a.weight, d**n * t0 + (1 - d**n) * s)
    assert torch.equal(teacher.module.pos.weight, student.pos.weight)  # copied, not averaged
    assert torch.equal(teacher.module.bn.running_mean, student.bn.running_mean)  # buffers copied
    assert not any(p.requires_grad for p in teacher.module.parameters())


def test_ema_tracks_a_moving_student_and_decay_one_freezes():
    torch.manual_seed(0)
    student = _Net()
    teacher = EMATeacher(student)
    ref = teacher.module.a.weight.clone()
    for step in range(4):
        with torch.no_grad():
            student.a.weight.mul_(1.1).add_(0.1 * step)
        decay = 0.5 + 0.1 * step
        teacher.update(student, decay)
        ref = decay * ref + (1 - decay) * student.a.weight
        torch.testing.assert_close(teacher.module.a.weight, ref)
    frozen = teacher.module.a.weight.clone()
    student.a.weight.data.add_(5)
    teacher.update(student, 1.0)
    assert torch.equal(teacher.module.a.weight, frozen)


def test_frozen_student_params_are_copied_and_teacher_is_fp32():
    student = _Net().half()
    student.a.bias.requires_grad_(False)
    teacher = EMATeacher(student)
    assert all(p.dtype == torch.float32 for p in teacher.module.parameters())
    with torch.no_grad():
        student.a.bias.fill_(3.0)
        student.a.weight.fill_(3.0)
    t0 = teacher.module.a.weight.clone()
    teacher.update(student, 0.5)
    assert torch.equal(teacher.module.a.bias, torch.full((3,), 3.0))  # requires_grad=False: copied
    torch.testing.assert_close(teacher.module.a.weight, 0.5 * t0 + 1.5)  # averaged, in fp32


def test_teacher_stays_in_eval_mode():
    teacher = EMATeacher(_Net())
    teacher.train()
    assert not teacher.module.training and not teacher.module.drop.training
    model = _tiny_model()
    model.train()
    assert model.student.training and not any(m.training for m in model.teacher.module.modules())


def test_ema_unknown_copy_key_is_an_error():
    with pytest.raises(ValueError, match="not found"):
        EMATeacher(_Net(), copy_keys={"nope.weight"})


# ---- targets --------------------------------------------------------------------------------
def _time_channel_stats_differ():
    """x[b, t, c] with per-channel mean c and scale c + 1 over time: time and channel stats differ."""
    torch.manual_seed(0)
    B, T, C = 2, 50, 4
    c = torch.arange(C, dtype=torch.float32)
    return torch.randn(B, T, C) * (c + 1) + c


def test_instance_norm_normalises_each_channel_over_time():
    x = _time_channel_stats_differ()
    y = instance_norm(x)
    torch.testing.assert_close(y.mean(dim=1), torch.zeros(2, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(dim=1, unbiased=False), torch.ones(2, 4), atol=1e-3, rtol=0)
    ref = nn.functional.instance_norm(x.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)
    assert y.mean(dim=2).abs().max() > 0.1  # not normalised over channels


def test_padding_excluded_from_norm_by_default_and_included_on_request():
    x = _time_channel_stats_differ()
    pad = torch.zeros(2, 50, dtype=torch.bool)
    pad[1, 30:] = True
    x2 = x.clone()
    x2[1, 30:] = 1000.0
    cfg = TargetConfig(average_top_k_layers=1, instance_norm_target_layer=True)
    a, b = build_targets([x], cfg, pad), build_targets([x2], cfg, pad)
    torch.testing.assert_close(a[:, :30], b[:, :30])  # valid frames do not see the padding
    torch.testing.assert_close(a[1, :30], instance_norm(x[1:2, :30])[0])
    fair = TargetConfig(average_top_k_layers=1, instance_norm_target_layer=True, include_padding_in_norm=True)
    torch.testing.assert_close(build_targets([x], fair, pad), instance_norm(x))  # fairseq: stats over padding too


def test_batch_norm_target_layer_uses_batch_and_time_stats_of_valid_frames():
    x = _time_channel_stats_differ()
    cfg = TargetConfig(average_top_k_layers=1, batch_norm_target_layer=True)
    ref = nn.functional.batch_norm(x.transpose(1, 2), None, None, training=True).transpose(1, 2)
    torch.testing.assert_close(build_targets([x], cfg), ref, atol=1e-5, rtol=1e-5)
    pad = torch.zeros(2, 50, dtype=torch.bool)
    pad[0, 20:] = True
    x2 = x.clone()
    x2[pad] = -500.0
    valid = x[~pad]  # [N, C]
    manual = (x - valid.mean(0)) / torch.sqrt(valid.var(0, unbiased=False) + 1e-5)
    y = build_targets([x2], cfg, pad)
    torch.testing.assert_close(y[~pad], manual[~pad], atol=1e-5, rtol=1e-5)


def test_top_k_averages_exactly_the_last_k_layers():
    layers = [torch.full((1, 3, 2), float(i)) for i in range(6)]
    y = build_targets(layers, TargetConfig(average_top_k_layers=3))
    assert torch.all(y == (3 + 4 + 5) / 3)
    assert torch.all(build_targets(layers, TargetConfig(average_top_k_layers=1)) == 5)
    assert torch.all(build_targets(layers, TargetConfig(average_top_k_layers=6)) == 2.5)
    with pytest.raises(ValueError, match="average_top_k_layers"):
        build_targets(layers, TargetConfig(average_top_k_layers=7))


def test_layer_and_final_norms():
    x = _time_channel_stats_differ()
    y = build_targets([x, 2 * x], TargetConfig(average_top_k_layers=2, layer_norm_target_layer=True))
    torch.testing.assert_close(y, nn.functional.layer_norm(x, (4,)), atol=1e-5, rtol=1e-5)  # LN is scale-free
    y = build_targets([x], TargetConfig(average_top_k_layers=1, layer_norm_targets=True))
    torch.testing.assert_close(y.mean(-1), torch.zeros(2, 50), atol=1e-5, rtol=0)
    y = build_targets([x], TargetConfig(average_top_k_layers=1, instance_norm_targets=True))
    torch.testing.assert_close(y, instance_norm(x))
    y = build_targets([x], TargetConfig(average_top_k_layers=1, batch_norm_target_layer=True))
    torch.testing.assert_close(y.reshape(-1, 4).mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    assert build_targets([x.half()], TargetConfig(average_top_k_layers=1)).dtype == torch.float32


# ---- loss and monitors ----------------------------------------------------------------------
def test_loss_l2_smooth_l1_and_scale():
    pred = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    target = torch.tensor([[0.5, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 4.0]])
    # L2: per-row sum of squares (0.25, 9), summed, times 1/sqrt(D) = 1/2
    assert regression_loss_sum(pred, target, LossConfig()).item() == pytest.approx((0.25 + 9) / 2)
    # smooth-L1 beta 1: 0.5 * 0.25 for |d| = 0.5, |d| - 0.5 = 2.5 for |d| = 3
    assert regression_loss_sum(pred, target, LossConfig(loss_beta=1.0, loss_scale=1.0)).item() == pytest.approx(0.125 + 2.5)


def test_compute_var_and_collapse_guard():
    y = torch.tensor([[1.0, 0.0], [3.0, 0.0]])  # channel 0: var 2 (unbiased), channel 1: 0
    assert compute_var(y).item() == pytest.approx((math.sqrt(2 + 1e-6) + math.sqrt(1e-6)) / 2)
    cfg = CollapseConfig(min_target_var=0.1, min_pred_var=0.01, var_check_after=100)
    check_collapse(100, 0.0, 0.0, cfg)  # not checked yet
    check_collapse(101, 0.5, 0.5, cfg)  # healthy
    with pytest.raises(CollapseError, match="lower.*learning rate.*EMA decay.*masks"):
        check_collapse(101, 0.05, 0.5, cfg)
    with pytest.raises(CollapseError, match="pred_var"):
        check_collapse(101, 0.5, 0.001, cfg)


def test_feature_spread_sees_features_constant_in_time_and_ignores_padding():
    from data2vec.core.monitors import feature_spread

    g = torch.Generator().manual_seed(0)
    noise = torch.randn(4, 50, 16, generator=g)
    assert 0.95 < feature_spread(noise).item() < 1.05  # every frame its own draw
    constant = torch.randn(4, 1, 16, generator=g).expand(4, 50, 16) * 3  # one vector per sequence (collapsed)
    assert feature_spread(constant).item() < 1e-3
    assert feature_spread(constant + 0.1 * noise).item() == pytest.approx(0.1 / 3, rel=0.25)
    pad = torch.zeros(4, 50, dtype=torch.bool)
    pad[1, 30:] = True
    padded = noise.clone()
    padded[1, 30:] = 1e3  # whatever padded frames hold does not count
    assert feature_spread(padded, pad).item() == pytest.approx(feature_spread(noise, pad).item())
    assert 0.95 < feature_spread(padded, pad).item() < 1.05


def test_no_weight_decay_on_biases_and_norms():
    net = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    decay, no_decay = param_groups(net, 0.01, no_decay_1d=True)
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 4])] and decay["weight_decay"] == 0.01
    assert len(no_decay["params"]) == 3 and no_decay["weight_decay"] == 0.0
    assert len(param_groups(net, 0.01, no_decay_1d=False)[0]["params"]) == 4
    student = _tiny_model().student
    decay, no_decay = param_groups(student, 0.01, no_decay_1d=True)
    assert all(p.ndim >= 2 for p in decay["params"])
    names = {id(p): n for n, p in student.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert "encoder.mask_emb" in no_decay_names and "head.bias" in no_decay_names
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(student.parameters()))


# ---- the full method on a tiny speech encoder -----------------------------------------------
def _tiny_model(**ema):  # conv stack: 4000 samples -> 799 -> 399 frames
    enc = AudioEncoder(AudioEncoderConfig(
        conv_feature_layers="[(16, 10, 5), (16, 3, 2)]", embed_dim=32, ffn_embed_dim=64,
        depth=2, num_heads=2, conv_pos_width=8, conv_pos_groups=4, conv_pos_depth=1,
        dropout=0.0, attention_dropout=0.0, layerdrop=0.0))
    return Data2Vec(enc, Data2VecConfig(ema=EMAConfig(**ema), targets=TargetConfig(average_top_k_layers=2,
                                                                                   instance_norm_target_layer=True)))


def test_forward_gradients_flow_to_student_only_and_teacher_follows_schedule():
    torch.manual_seed(0)
    model = _tiny_model(ema_decay=0.9, ema_end_decay=0.99, ema_anneal_end_step=10)
    source = torch.randn(2, 4000)
    T = int(model.student.encoder.frame_lengths(torch.tensor([4000]))[0])
    mask = torch.zeros(2, T, dtype=torch.bool)
    mask[:, 10:30] = True
    out = model({"source": source, "padding_mask": None, "mask": mask})
    assert out.sample_size == 40 and out.pred_MC.shape == out.target_MC.shape == (40, 32)
    assert torch.isfinite(out.loss_sum) and out.loss_sum > 0
    out.loss_sum.backward()
    enc = model.student.encoder
    for part in (model.student.head, enc.context_encoder.layers, enc.feature_extractor, enc.post_extract_proj):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    assert enc.mask_emb.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.teacher.parameters())
    before = {k: v.clone() for k, v in model.teacher.module.state_dict().items()}
    with torch.no_grad():
        for p in model.student.parameters():
            p.add_(0.01)
    assert model.update_teacher(5) == pytest.approx(0.945)
    name = "layers.0.fc1.weight"
    s = dict(model.student.encoder.context_encoder.named_parameters())[name]
    torch.testing.assert_close(model.teacher.module.state_dict()[name], 0.945 * before[name] + 0.055 * s)
    model.zero_grad()
    empty = model({"source": source, "padding_mask": None, "mask": torch.zeros_like(mask)})
    assert empty.sample_size == 0 and empty.loss_sum.item() == 0.0
    empty.loss_sum.backward()  # still a graph over the student (keeps DDP ranks in step)
    assert model.student.head.weight.grad is not None and not model.student.head.weight.grad.any()


def test_targets_are_the_teachers_top_k_ffn_outputs_on_the_unmasked_input():
    torch.manual_seed(0)
    model = _tiny_model()
    source = torch.randn(2, 4000)
    mask = torch.zeros(2, 399, dtype=torch.bool)
    mask[0, 5:25] = mask[1, 50:60] = True
    out = model({"source": source, "padding_mask": None, "mask": mask})
    with torch.no_grad():
        feats, _ = model.student.encoder.local_features(source)  # unmasked, before dropout
        ffn = model.teacher.module(feats).ffn_outputs
    assert len(ffn) == 2
    inorm = [nn.functional.instance_norm(f.transpose(1, 2)).transpose(1, 2) for f in ffn]
    torch.testing.assert_close(out.target_MC, ((inorm[0] + inorm[1]) / 2)[mask], atol=1e-5, rtol=1e-5)
    assert out.target_MC.shape == (30, 32) and not out.target_MC.requires_grad
    torch.testing.assert_close(out.loss_sum, ((out.pred_MC - out.target_MC) ** 2).sum() / math.sqrt(32))


def test_polynomial_schedule_is_fairseq_polynomial_decay():
    from data2vec.core.schedules import polynomial_lr

    kw = {"lr": 1e-3, "total_steps": 110, "warmup_steps": 10}
    assert polynomial_lr(0, **kw) == 0.0 and polynomial_lr(5, **kw) == pytest.approx(5e-4)
    assert polynomial_lr(10, **kw) == pytest.approx(1e-3)
    assert polynomial_lr(60, **kw) == pytest.approx(5e-4)  # halfway through the decay, power 1
    assert polynomial_lr(60, **kw, power=2.0) == pytest.approx(2.5e-4)
    assert polynomial_lr(110, **kw, end_lr=1e-5) == 1e-5
