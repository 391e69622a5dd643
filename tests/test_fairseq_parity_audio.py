"""data2vec 1.0 speech against fairseq's own outputs (tests/fixtures/fairseq/d2v1_audio, see its README).

The checkpoint is read with our restricted unpickler and key table; with fairseq's target quirk
(padded frames inside the instance-norm statistics) switched on, every intermediate and the loss
match fairseq to ~1e-5 in fp32.
"""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from data2vec.convert.fairseq_pickle import load_fairseq_checkpoint
from data2vec.core.data2vec import Data2Vec
from data2vec.core.schedules import ema_decay
from data2vec.keys import load_into
from data2vec.modalities.audio.encoder import AudioEncoder
from data2vec.modalities.audio.fairseq import config_from_fairseq, state_dict_from_fairseq
from data2vec.modalities.audio.masking import compute_span_mask

FIX = Path(__file__).parent / "fixtures" / "fairseq" / "d2v1_audio"
ATOL = 2e-5


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(FIX / "reference.npz", allow_pickle=False))


@pytest.fixture(scope="module")
def loaded():
    ckpt = load_fairseq_checkpoint(FIX / "checkpoint.pt")
    enc_cfg, d2v_cfg, mask_cfg = config_from_fairseq(ckpt["cfg"]["model"])
    fairseq_targets = dataclasses.replace(d2v_cfg.targets, include_padding_in_norm=True)
    model = Data2Vec(AudioEncoder(enc_cfg), dataclasses.replace(d2v_cfg, targets=fairseq_targets))
    load_into(model, state_dict_from_fairseq(ckpt["model"]))
    return model.eval(), ckpt, mask_cfg


def _batch(ref):
    return {k: torch.from_numpy(ref[k]) for k in ("source", "padding_mask", "mask")}


def test_config_read_from_checkpoint(loaded):
    model, ckpt, mask_cfg = loaded
    enc = model.student.encoder.cfg
    assert (enc.depth, enc.embed_dim, enc.ffn_embed_dim) == (3, 64, 128)
    assert model.cfg.targets.average_top_k_layers == 2 and model.cfg.targets.instance_norm_target_layer
    assert (mask_cfg.mask_prob, mask_cfg.mask_length) == (0.65, 5)


def test_mask_reproduced_exactly(ref, loaded):
    _, ckpt, mask_cfg = loaded
    mask = compute_span_mask((2, 49), ref["frame_padding_mask"], mask_cfg, seed=1234, epoch=999, indices=[1000, 1001])
    np.testing.assert_array_equal(mask, ref["mask"])


def test_ema_decay_schedule(ref):
    got = [ema_decay(k, 0.9, 0.99, 10) for k in range(5)]
    np.testing.assert_allclose(got, ref["ema_decay_schedule"], rtol=0, atol=1e-12)


def test_features_and_layers(ref, loaded):
    model = loaded[0]
    enc = model.student.encoder
    b = _batch(ref)
    with torch.no_grad():
        x, pad = enc.local_features(b["source"], b["padding_mask"])
        np.testing.assert_array_equal(pad.numpy(), ref["frame_padding_mask"])
        np.testing.assert_array_equal(enc.frame_lengths(torch.tensor([16000, 12000])).numpy(), ref["frame_lengths"])
        cnn = enc.feature_extractor(b["source"]).transpose(1, 2)
        np.testing.assert_allclose(cnn.numpy(), ref["cnn_features"], atol=ATOL)
        valid = ~ref["frame_padding_mask"]
        # fairseq zeroes padded frames of this tensor in place inside its encoder; compare valid frames
        np.testing.assert_allclose(x.numpy()[valid], ref["encoder_input"][valid], atol=ATOL)
        s = enc.context_encoder(x, pad)
        t = model.teacher.module(x, pad)
    for ours, name in ((s.layer_outputs, "student_layer_out"), (s.ffn_outputs, "student_layer_ffn"),
                       (t.layer_outputs, "teacher_layer_out"), (t.ffn_outputs, "teacher_layer_ffn")):
        np.testing.assert_allclose(torch.stack(ours).numpy(), ref[name], atol=ATOL, err_msg=name)
    np.testing.assert_allclose(s.x.numpy(), ref["student_final"], atol=ATOL)
    np.testing.assert_allclose(t.x.numpy(), ref["teacher_final"], atol=ATOL)


def test_predictions_targets_loss(ref, loaded):
    model = loaded[0]
    b = _batch(ref)
    with torch.no_grad():
        out = model(b)
        s = model.student(b["source"], b["padding_mask"], b["mask"])
        target_full = model.targets(b["source"], b["padding_mask"], s)
    np.testing.assert_allclose(s.x_BTC.numpy(), ref["student_masked_encoder_out"], atol=ATOL)
    np.testing.assert_allclose(target_full.numpy(), ref["target_full"], atol=ATOL)
    np.testing.assert_allclose(out.pred_MC.numpy(), ref["pred"], atol=ATOL)
    np.testing.assert_allclose(out.target_MC.numpy(), ref["target"], atol=ATOL)
    assert out.sample_size == int(ref["sample_size"])
    np.testing.assert_allclose(out.loss_sum.item(), float(ref["loss"]), rtol=1e-5)
    np.testing.assert_allclose(out.target_var.item(), float(ref["target_var"]), rtol=1e-5)
    np.testing.assert_allclose(out.pred_var.item(), float(ref["pred_var"]), rtol=1e-5)


def test_default_targets_exclude_padding(ref, loaded):
    """Our default (padding excluded from the instance norm) differs from fairseq only on the
    padded utterance, where it equals the norm computed over that utterance's valid frames alone."""
    model = loaded[0]
    b = _batch(ref)
    ours = dataclasses.replace(model.cfg.targets, include_padding_in_norm=False)
    from data2vec.core.targets import build_targets

    with torch.no_grad():
        s = model.student(b["source"], b["padding_mask"], b["mask"])
        layers = model.teacher_layers(b["source"], b["padding_mask"], s)
        y = build_targets(layers, ours, s.padding_mask_BT)
        y1 = build_targets([t[1:, :37] for t in layers], ours)  # utterance 1's 37 valid frames only
    np.testing.assert_allclose(y[0].numpy(), ref["target_full"][0], atol=ATOL)  # no padding: same as fairseq
    np.testing.assert_allclose(y[1, :37].numpy(), y1[0].numpy(), atol=ATOL)
    assert np.abs(y[1, :37].numpy() - ref["target_full"][1, :37]).max() > 1e-3  # fairseq's quirk differs
