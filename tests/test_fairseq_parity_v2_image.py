"""data2vec 2.0 images against fairseq's own image model (tests/fixtures/fairseq/d2v2_image, see its README).

The checkpoint goes through the public loader (``load_pretrained``: restricted unpickler, v2 config and key
table, ``_ema`` as the teacher). Everything is compared in fp32, eval mode, to ~1e-5: patch features, prenet
and block inputs, every student and teacher layer *with* the CLS token (fairseq keeps it in its layer
results and drops it only for the targets), the masked student (prenet input, kept-token output, CLS output),
the decoder, the targets, the regression and CLS losses, the monitors and the EMA schedule and update.

Deviations and how the test handles them (no config switch is needed for images):
- kept and masked patches: fairseq orders them by an unstable argsort of the mask, we in increasing patch
  order. Only float summation order depends on it (positions are added before the gather), so kept tokens
  are compared by patch;
- the decoder noise at masked patches: under fairseq's seed we draw the very same tensor, but assign its
  rows to the masked patches in increasing order where fairseq uses its argsort order; the test feeds
  fairseq's noise per patch;
- padding (our instance norm over valid positions only, masked padding left out of the loss) does not
  arise: image batches are not padded, so ``load_pretrained(..., fairseq_exact=True)`` gives the same numbers.
Not covered by this eval-mode fixture: fairseq applies the decoder's ``input_dropout`` in place to the
student output, so in training its CLS prediction is dropped out too when ``input_dropout > 0`` (ours is
not); every released image recipe sets ``input_dropout: 0``.
"""

from __future__ import annotations

import contextlib
import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from data2vec.convert import fairseq_v2
from data2vec.convert.fairseq_pickle import load_fairseq_checkpoint
from data2vec.core.loss import regression_loss_sum
from data2vec.core.monitors import compute_var
from data2vec.core.schedules import ema_decay
from data2vec.data.masks_v2 import compute_block_mask_2d
from data2vec.layers.mask_info import make_mask_info
from data2vec.modalities.image.masking_v2 import draw_v2_masks
from data2vec.pretrained import load_pretrained

FIX = Path(__file__).parent / "fixtures" / "fairseq" / "d2v2_image"
ATOL = 1e-5
M = 2  # clone_batch
DECODER = "modality_encoders.IMAGE.decoder."


@pytest.fixture(scope="module")
def loaded():
    cfg, model = load_pretrained(FIX / "checkpoint.pt")
    ref = dict(np.load(FIX / "reference.npz", allow_pickle=False))
    return cfg, model.eval(), ref


def _close(got, want, atol=ATOL):
    np.testing.assert_allclose(got.detach().numpy() if torch.is_tensor(got) else got, want, rtol=0, atol=atol)


@contextlib.contextmanager
def _record(context_encoder):
    """Captures the prenet input (CLS + patches + positions), the first shared block's input and every shared
    block's (end-of-block, FFN) output, extra tokens included."""
    rec = {"layers": []}
    hooks = [
        context_encoder.prenet_norm.register_forward_pre_hook(lambda m, a: rec.__setitem__("prenet_input", a[0])),
        context_encoder.blocks[0].register_forward_pre_hook(lambda m, a: rec.__setitem__("block_input", a[0])),
        *[b.register_forward_hook(lambda m, a, out: rec["layers"].append(out)) for b in context_encoder.blocks],
    ]
    try:
        yield rec
    finally:
        for h in hooks:
            h.remove()


def _inputs(ref):
    return torch.from_numpy(ref["source"]), torch.from_numpy(ref["mask"])


def _noise(ref):
    """fairseq's decoder noise per masked patch, in our (increasing patch) order."""
    return torch.stack([torch.from_numpy(ref["decoder_input"][r][ref["mask"][r]]) for r in range(len(ref["mask"]))])


def _by_patch(ours_ids_keep, ref_ids_keep):
    """Row r: indices into our kept tokens that give fairseq's kept-token order."""
    out = []
    for ours, theirs in zip(ours_ids_keep.tolist(), ref_ids_keep.tolist()):
        pos = {p: j for j, p in enumerate(ours)}
        out.append([pos[p] for p in theirs])
    return torch.tensor(out)


# ---- configuration and weights ----------------------------------------------------------------------------
def test_config_read_from_checkpoint(loaded):
    cfg, model, ref = loaded
    assert cfg.modality == "image" and cfg.version == 2
    enc = model.student.encoder.cfg
    assert (enc.embed_dim, enc.depth, enc.num_heads, enc.mlp_ratio, enc.norm_eps) == (64, 3, 4, 2.0, 1e-6)
    assert (enc.image_size, enc.patch_size, enc.in_chans, enc.prenet_depth, enc.num_extra_tokens) == (40, 4, 3, 1, 1)
    assert not enc.init_extra_token_zero and not enc.use_alibi_encoder and enc.fixed_positions
    d2v = model.cfg
    assert not d2v.ema.ema_transformer_only and not d2v.ema.ema_layers_only  # EMA of the whole encoder
    t = d2v.targets
    assert (t.average_top_k_layers, t.layer_results, t.instance_norm_target_layer, t.layer_norm_targets) == (
        3, "ffn", True, True)
    dec = d2v.decoder
    assert (dec.decoder_dim, dec.decoder_kernel, dec.decoder_layers, dec.decoder_groups, dec.decoder_residual,
            dec.projection_layers, dec.mask_noise_std) == (64, 3, 2, 16, True, 1, 0.01)
    assert d2v.cls_loss == 0.01 and d2v.loss.loss_scale is None and d2v.loss.loss_beta == 0
    mk = cfg.masking
    assert (mk.mask_prob, mk.mask_prob_adjust, mk.mask_length, mk.inverse_mask, mk.clone_batch) == (0.8, 0.07, 3, True, M)
    assert not mk.expand_adjacent and not mk.non_overlapping
    # fairseq's dataset draws the masks with the task's precompute_mask_config (2-D-only options included)
    ck = load_fairseq_checkpoint(FIX / "checkpoint.pt")["cfg"]
    task = dict(ck["task"], precompute_mask_config=dict(ck["task"]["precompute_mask_config"], non_overlapping=True,
                                                         expand_adjacent=True, mask_prob=0.75))
    mk = fairseq_v2.config_from_fairseq(ck["model"], task)[3]
    assert (mk.non_overlapping, mk.expand_adjacent, mk.mask_prob, mk.mask_length) == (True, True, 0.75, 3)
    # the fixed 2-D sin-cos table we build is fairseq's (MAE: columns in the first half of the channels)
    _close(model.student.encoder.context_encoder.fixed_positions[0], ref["pos_embed"], atol=1e-6)


def test_weights_and_ema_teacher_come_from_the_checkpoint(loaded):
    _, model, _ = loaded
    fs = load_fairseq_checkpoint(FIX / "checkpoint.pt")["model"]
    ema = fs["_ema"]
    s, t = model.student, model.teacher.module
    pairs = [("modality_encoders.IMAGE.local_encoder.proj.weight", s.encoder.local_encoder.proj.weight,
              t.local_encoder.proj.weight),
             ("modality_encoders.IMAGE.extra_tokens", s.encoder.context_encoder.extra_tokens,
              t.context_encoder.extra_tokens),
             ("modality_encoders.IMAGE.context_encoder.norm.weight", s.encoder.context_encoder.prenet_norm.weight,
              t.context_encoder.prenet_norm.weight),
             ("modality_encoders.IMAGE.context_encoder.blocks.0.attn.qkv.weight",
              s.encoder.context_encoder.prenet[0].attn.qkv.weight, t.context_encoder.prenet[0].attn.qkv.weight),
             ("blocks.2.mlp.fc2.weight", s.encoder.context_encoder.blocks[2].mlp.fc2.weight,
              t.context_encoder.blocks[2].mlp.fc2.weight)]
    for key, ours_s, ours_t in pairs:
        assert torch.equal(ours_s, fs[key]) and torch.equal(ours_t, ema[key]), key
        assert not torch.equal(fs[key], ema[key]), key  # the teacher really is the EMA (patch embedding, CLS too)
    assert torch.equal(s.decoder.proj.weight, fs[DECODER + "proj.weight"])
    assert not any(".decoder." in k for k in ema)


def test_fixed_positions_are_checked(tmp_path):
    """fairseq stores the sin-cos table; we rebuild it, and refuse a checkpoint whose table differs."""
    fs = load_fairseq_checkpoint(FIX / "checkpoint.pt")["model"]
    key = "modality_encoders.IMAGE.fixed_positional_encoder.positions"
    bad = dict(fs, **{key: fs[key] + 0.1})
    with pytest.raises(ValueError, match="sin-cos"):
        fairseq_v2.state_dict_from_fairseq(bad, "IMAGE", ema_encoder_only=False, ema_local_encoder=True)
    bad = dict(fs, _ema=dict(fs["_ema"], **{key: fs[key][:, :99]}))
    with pytest.raises(ValueError, match="sin-cos"):
        fairseq_v2.state_dict_from_fairseq(bad, "IMAGE", ema_encoder_only=False, ema_local_encoder=True)


# ---- EMA --------------------------------------------------------------------------------------------------
def test_ema_decay_schedule_and_update(loaded):
    _, model, ref = loaded
    np.testing.assert_allclose([ema_decay(k, 0.9, 0.99, 10) for k in range(5)], ref["ema_decay_schedule"],
                               rtol=0, atol=1e-12)
    m = copy.deepcopy(model)
    before = {k: v.clone() for k, v in m.teacher.module.state_dict().items()}
    d = m.update_teacher(4)
    assert d == pytest.approx(float(ref["ema_decay_schedule"][4]), abs=1e-12)
    student = m.student.encoder.state_dict()
    after = m.teacher.module.state_dict()
    assert set(after) == set(student)  # the whole encoder (patch embedding, CLS, prenet, blocks), no decoder
    for k in after:  # fairseq EMAModule: ema = d * ema + (1 - d) * student, every parameter
        torch.testing.assert_close(after[k], d * before[k] + (1 - d) * student[k], rtol=0, atol=1e-6)


# ---- unmasked student and teacher -------------------------------------------------------------------------
@pytest.mark.parametrize("who", ["student", "teacher"])
def test_unmasked_layers_with_cls(loaded, who):
    _, model, ref = loaded
    src, _ = _inputs(ref)
    enc = model.student.encoder if who == "student" else model.teacher.module
    with torch.no_grad(), _record(enc.context_encoder) as rec:
        feats, _ = enc.local_features(src)
        out = enc(src)
    _close(feats, ref["local_features" if who == "student" else "teacher_local_features"])
    _close(rec["prenet_input"], ref[f"{who}_prenet_input"])  # CLS (no position), then patches + positions
    _close(rec["block_input"], ref[f"{who}_block_input"])
    for i, (x, t) in enumerate(rec["layers"]):
        _close(x, ref[f"{who}_layer_out"][i])
        _close(t, ref[f"{who}_layer_ffn"][i])
        _close(out.layer_outputs[i], ref[f"{who}_layer_out"][i][:, 1:])  # ours drop the extra token
        _close(out.ffn_outputs[i], ref[f"{who}_layer_ffn"][i][:, 1:])
    assert len(rec["layers"]) == 3 and out.num_extra == 1
    _close(out.x, ref[f"{who}_final"])
    assert np.abs(ref["teacher_final"] - ref["student_final"]).max() > 1e-3


# ---- masked student, decoder, targets, losses ---------------------------------------------------------------
def test_masked_student_decoder_targets_and_losses(loaded):
    _, model, ref = loaded
    src, mask = _inputs(ref)
    info = make_mask_info(mask)
    assert torch.equal(info.ids_keep.sort(1).values, torch.from_numpy(ref["ids_keep"]).sort(1).values)
    order = _by_patch(info.ids_keep, ref["ids_keep"])
    take = torch.cat([torch.zeros(len(order), 1, dtype=torch.long), order + 1], 1)  # CLS, then kept patches
    with torch.no_grad(), _record(model.student.encoder.context_encoder) as rec:
        e = model.student.encoder.embed(src)
        out = model.student.encoder.context_encoder(e.x, None, info, M)
    _close(torch.gather(rec["prenet_input"], 1, take[..., None].expand(-1, -1, 64)), ref["student_masked_prenet_input"])
    _close(torch.gather(out.x, 1, take[..., None].expand(-1, -1, 64)), ref["student_encoder_out_kept"])
    dec = model.student.decoder
    with torch.no_grad():
        _close(dec.decoder_input(out.x, info, out.num_extra, _noise(ref)), ref["decoder_input"])
        _close(dec(out.x, info, out.num_extra, _noise(ref)), ref["decoder_output"])
        s = model.student._forward_v2(src, None, mask, _noise(ref))
        y = model.targets(src, None, s)
    _close(y, ref["target_full"])
    target = y.repeat_interleave(M, 0)[s.loss_mask]
    _close(s.pred_MC, ref["pred"])
    _close(target, ref["target"])
    _close(s.cls_pred, ref["cls_pred"])  # final student output at the CLS token, no decoder
    cls_target = y.mean(dim=1).repeat_interleave(M, 0)
    _close(cls_target, ref["cls_target"])
    n = int(s.loss_mask.sum())
    assert n == int(ref["sample_size"]) == int(mask.sum()) == 4 * 81
    assert 1 - info.ids_keep.size(1) / mask.size(1) == pytest.approx(float(ref["masked_pct"]), abs=1e-12)
    reg = regression_loss_sum(s.pred_MC, target, model.cfg.loss)  # sum of squares / sqrt(D)
    cls = regression_loss_sum(s.cls_pred, cls_target, model.cfg.loss) * (model.cfg.cls_loss * n)
    np.testing.assert_allclose(reg.item(), float(ref["loss_regression"]), rtol=1e-5)
    np.testing.assert_allclose(cls.item(), float(ref["loss_cls"]), rtol=1e-5)
    _close(compute_var(target), float(ref["target_var"]))
    _close(compute_var(s.pred_MC), float(ref["pred_var"]))


@pytest.mark.parametrize("fairseq_exact", [False, True])
def test_full_forward_gives_fairseqs_loss(loaded, monkeypatch, fairseq_exact):
    """Data2Vec.forward (the training loss: regression + CLS) with fairseq's decoder noise fed in. Our default
    config and ``fairseq_exact=True`` (the switch for our deliberate deviations) agree: none arises here."""
    ref = loaded[2]
    cfg, model = load_pretrained(FIX / "checkpoint.pt", fairseq_exact=True) if fairseq_exact else loaded[:2]
    assert cfg.model.loss_on_padding == fairseq_exact
    src, mask = _inputs(ref)
    dec = model.student.decoder
    original = dec.decoder_input
    monkeypatch.setattr(dec, "decoder_input", lambda x, info, n, noise=None: original(x, info, n, _noise(ref)))
    with torch.no_grad():
        out = model({"source": src, "padding_mask": None, "mask": mask})
    np.testing.assert_allclose(out.loss_sum.item(), float(ref["loss"]), rtol=1e-5)
    assert out.sample_size == int(ref["sample_size"])
    assert model.num_units({"source": src, "padding_mask": None, "mask": mask, "num_masked": int(mask.sum())}) == \
        int(ref["sample_size"])
    _close(out.target_var, float(ref["target_var"]))
    _close(out.pred_var, float(ref["pred_var"]))


def test_decoder_noise_is_fairseqs_draw(loaded):
    """Eval mode still draws the decoder noise; under fairseq's seed we draw the very same tensor (the rows go
    to the masked patches in increasing order, fairseq's in its argsort order)."""
    _, model, ref = loaded
    src, mask = _inputs(ref)
    info = make_mask_info(mask)
    with torch.no_grad():
        e = model.student.encoder.embed(src)
        out = model.student.encoder.context_encoder(e.x, None, info, M)
        torch.manual_seed(int(ref["ref_torch_seed"]))
        x = model.student.decoder.decoder_input(out.x, info, out.num_extra)
    ours = torch.stack([x[r][mask[r]] for r in range(len(mask))])
    assert torch.equal(ours, torch.from_numpy(ref["decoder_mask_noise"]))
    _close(x[~mask], ref["decoder_input"][~ref["mask"]])  # kept patches: the student output


# ---- masks ------------------------------------------------------------------------------------------------
def _kept_adjacent_pairs(kept_BL: torch.Tensor, d: int) -> torch.Tensor:
    k = kept_BL.view(-1, d, d).int()
    return (k[:, 1:] & k[:, :-1]).sum((1, 2)) + (k[:, :, 1:] & k[:, :, :-1]).sum((1, 2))


def test_inverse_block_mask_count_rule_and_statistics(loaded):
    """fairseq's rule (MaeImageDataset, compute_block_mask_2d with inverse_mask): int(T * (1 - 0.8) + adjust)
    / 3**2 block centres of *kept* 3x3 squares, then exactly int(T * (1 - mask_prob)) kept per row."""
    cfg, _, ref = loaded
    fixture = torch.from_numpy(ref["mask"])
    T, d = 100, 10
    keep = int(T * (1 - cfg.masking.mask_prob))
    assert keep == 19  # (1 - 0.8) is 0.19999999999999996 in float64
    assert (T - fixture.sum(1)).tolist() == [keep] * 4
    assert int(T * ((1 - 0.8 + 0.07) / 9)) == 2  # block centres per row (0.0299... * 100)
    # the same call fairseq's dataset makes per image (2 clones), and our collator's per-sample draw
    torch.manual_seed(0)
    direct = torch.cat([compute_block_mask_2d((M, T), 0.8, 3, 0.07, inverse_mask=True) for _ in range(500)])
    ours = draw_v2_masks(cfg.masking, (d, d), seed=1, epoch=1, indices=range(500))
    assert ours.shape == (500 * M, T)
    for m in (direct, ours):
        assert ((T - m.sum(1)) == keep).all()
    # statistics: kept patches come in blocks, so many kept patches touch; the fixture's rows look like ours
    stat_fix = _kept_adjacent_pairs(~fixture, d).float()
    stat_ours = _kept_adjacent_pairs(~ours, d).float()
    stat_direct = _kept_adjacent_pairs(~direct, d).float()
    lo, hi = torch.quantile(stat_ours, 0.005).item(), torch.quantile(stat_ours, 0.995).item()
    assert ((stat_fix >= lo) & (stat_fix <= hi)).all(), (stat_fix, lo, hi)
    assert abs(stat_ours.mean() - stat_direct.mean()) < 0.5
    assert abs(stat_fix.mean() - stat_ours.mean()) < 3 * stat_ours.std() / math.sqrt(len(stat_fix))
    g = torch.Generator().manual_seed(0)  # a random mask of the same count has far fewer touching kept patches
    rand_kept = torch.zeros(1000, T, dtype=torch.bool).scatter_(1, torch.rand(1000, T, generator=g).argsort(1)[:, :keep], True)
    assert _kept_adjacent_pairs(rand_kept, d).float().mean() < stat_ours.mean() - 5


# ---- fine-tuned wrapper -----------------------------------------------------------------------------------
def test_mae_image_classification_on_the_fixture_encoder(tmp_path):
    """fairseq's ``mae_image_classification`` around this checkpoint's encoder (what fairseq's
    remove_pretraining_modules leaves: no ``_ema``, no decoder) loads with our image-classification head and
    gives fairseq's head math on fairseq's own encoder output: mean over patches (CLS removed), fc_norm
    (LayerNorm, eps 1e-6), head."""
    from data2vec.finetune.inference import is_finetuned, load_finetuned

    ckpt = load_fairseq_checkpoint(FIX / "checkpoint.pt")
    ref = dict(np.load(FIX / "reference.npz", allow_pickle=False))
    g = torch.Generator().manual_seed(19)
    D, n_cls = 64, 7
    head = {"fc_norm.weight": 1 + 0.1 * torch.randn(D, generator=g), "fc_norm.bias": 0.1 * torch.randn(D, generator=g),
            "head.weight": 0.2 * torch.randn(n_cls, D, generator=g), "head.bias": 0.1 * torch.randn(n_cls, generator=g)}
    sd = {"model." + k: v for k, v in ckpt["model"].items() if k != "_ema" and not k.startswith(DECODER)}
    cfg = {"model": {"_name": "mae_image_classification", "prediction_mode": "MEAN_POOLING", "use_fc_norm": True,
                     "num_classes": n_cls,
                     "pretrained_model_args": {"model": ckpt["cfg"]["model"], "task": ckpt["cfg"]["task"]}},
           "task": {"_name": "mae_image_pretraining", "data": "/nonexistent"}}
    torch.save({"cfg": cfg, "model": sd | head}, tmp_path / "ft.pt")
    assert is_finetuned(tmp_path / "ft.pt")
    ft_cfg, model = load_finetuned(tmp_path / "ft.pt")
    assert ft_cfg.task == "image-classification" and ft_cfg.head.num_classes == n_cls
    with torch.no_grad():
        got = model(torch.from_numpy(ref["source"]))
    x = torch.from_numpy(ref["student_final"])[:, 1:].mean(1)  # extract_features(remove_extra_tokens=True)
    x = F.layer_norm(x, (D,), head["fc_norm.weight"], head["fc_norm.bias"], eps=1e-6)
    torch.testing.assert_close(got, x @ head["head.weight"].T + head["head.bias"], rtol=0, atol=ATOL)
