"""data2vec 2.0 (speech and text) against fairseq's own outputs (tests/fixtures/fairseq/d2v2_*, see the READMEs).

The checkpoints are read with our restricted unpickler and the v2 key table. In eval mode the only random op
is the decoder's noise at masked positions; the fixture stores fairseq's draw and we feed it back. Kept tokens
are compared by position: fairseq gathers them in unstable-argsort order, we in increasing order.
"""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from data2vec.convert import fairseq_v2
from data2vec.convert.fairseq_pickle import load_fairseq_checkpoint
from data2vec.core.data2vec import Data2Vec
from data2vec.core.loss import regression_loss_sum
from data2vec.core.schedules import ema_decay
from data2vec.keys import load_into
from data2vec.layers.mask_info import make_mask_info
from data2vec.modalities.audio.encoder_v2 import AudioEncoderV2
from data2vec.modalities.text.encoder_v2 import TextEncoderV2

FIXTURES = Path(__file__).parent / "fixtures" / "fairseq"
ATOL = 2e-5


def _load(name):
    fix = FIXTURES / name
    ref = dict(np.load(fix / "reference.npz", allow_pickle=False))
    ckpt = load_fairseq_checkpoint(fix / "checkpoint.pt")
    key = "modality_encoders.TEXT.local_encoder.embed_tokens.weight"
    vocab = ckpt["model"][key].shape[0] if key in ckpt["model"] else None
    mod, enc, d2v, mask_cfg, ema = fairseq_v2.config_from_fairseq(ckpt["cfg"]["model"], ckpt["cfg"]["task"], vocab)
    # fairseq's instance norm runs over padded positions too (text batch below is padded)
    d2v = dataclasses.replace(d2v, targets=dataclasses.replace(d2v.targets, include_padding_in_norm=True))
    encoder = (AudioEncoderV2 if mod == "AUDIO" else TextEncoderV2)(enc)
    model = Data2Vec(encoder, d2v)
    load_into(model, fairseq_v2.state_dict_from_fairseq(ckpt["model"], mod, **ema))
    return model.eval(), ref, mask_cfg, ckpt


@pytest.fixture(scope="module", params=["d2v2_audio", "d2v2_text"])
def case(request):
    return (request.param, *_load(request.param))


def _inputs(ref):
    src = torch.from_numpy(ref["source"])
    pad = torch.from_numpy(ref["padding_mask"]) if "padding_mask" in ref else None
    return src, pad, torch.from_numpy(ref["mask"])


def _noise(ref):
    """fairseq's noise at masked positions, in our (increasing position) order."""
    return torch.stack([torch.from_numpy(ref["decoder_input"][r][ref["mask"][r]]) for r in range(len(ref["mask"]))])


def test_config_read_from_checkpoint(case):
    name, model, ref, mask_cfg, _ = case
    enc = model.student.encoder.cfg
    assert (enc.depth, enc.embed_dim, enc.num_heads, enc.mlp_ratio) == (3, 64, 4, 2.0)
    assert mask_cfg.clone_batch == 2
    dec = model.cfg.decoder
    if name == "d2v2_audio":
        assert enc.use_alibi_encoder and enc.learned_alibi_scale_per_head and model.cfg.ema.ema_transformer_only
        assert (dec.decoder_dim, dec.decoder_kernel, dec.decoder_layers, dec.decoder_groups) == (32, 7, 2, 16)
        assert (mask_cfg.mask_prob, mask_cfg.mask_prob_adjust, mask_cfg.mask_length) == (0.5, 0.05, 5)
        assert model.cfg.targets.average_top_k_layers == 2 and model.cfg.loss.loss_scale is None
    else:
        assert (dec.decoder_dim, dec.decoder_groups, dec.decoder_residual, dec.projection_layers) == (64, 1, False, 2)
        assert mask_cfg.mask_prob == 0.48 and model.cfg.loss.loss_scale == 1.0
        assert model.cfg.targets.average_top_k_layers == 3


def test_ema_decay_schedule(case):
    ref = case[2]
    np.testing.assert_allclose([ema_decay(k, 0.9, 0.99, 10) for k in range(5)], ref["ema_decay_schedule"], atol=1e-12)


def test_unmasked_student_and_teacher_layers(case):
    name, model, ref = case[:3]
    src, pad, _ = _inputs(ref)
    enc = model.student.encoder
    with torch.no_grad():
        x, fpad = enc.local_features(src, None)
        np.testing.assert_allclose(x.numpy(), ref["local_features"], atol=ATOL)
        if name == "d2v2_audio":
            np.testing.assert_allclose(enc.local_encoder(src).transpose(1, 2).numpy(), ref["cnn_features"], atol=ATOL)
        else:
            np.testing.assert_array_equal(fpad.numpy(), ref["padding_mask"])
        s = enc.context_encoder(x, fpad)
        t = model.teacher.module(x, fpad)  # the EMA teacher from the checkpoint's _ema
    np.testing.assert_allclose(s.x.numpy(), ref["student_final"], atol=ATOL)
    for i in range(3):
        np.testing.assert_allclose(s.layer_outputs[i].numpy(), ref["student_layer_out"][i], atol=ATOL)
        np.testing.assert_allclose(s.ffn_outputs[i].numpy(), ref["student_layer_ffn"][i], atol=ATOL)
        np.testing.assert_allclose(t.layer_outputs[i].numpy(), ref["teacher_layer_out"][i], atol=ATOL)
        np.testing.assert_allclose(t.ffn_outputs[i].numpy(), ref["teacher_layer_ffn"][i], atol=ATOL)
    # the teacher really is the EMA, not a copy of the student
    assert np.abs(ref["teacher_final"] - ref["student_final"]).max() > 1e-3


def test_masked_student_decoder_targets_and_loss(case):
    name, model, ref = case[:3]
    src, pad, mask = _inputs(ref)
    with torch.no_grad():
        e = model.student.encoder.embed(src)
        info = make_mask_info(mask)
        out = model.student.encoder.context_encoder(e.x, e.padding_mask, info, 2)
        kept = out.x.numpy()
        for r in range(mask.size(0)):  # compare kept tokens by position
            pos = {int(p): j for j, p in enumerate(info.ids_keep[r])}
            rows = [pos[int(p)] for p in ref["ids_keep"][r]]
            np.testing.assert_allclose(kept[r, rows], ref["student_encoder_out_kept"][r], atol=ATOL)
        dec = model.student.decoder(out.x, info, out.num_extra, _noise(ref))
        np.testing.assert_allclose(dec.numpy(), ref["decoder_output"], atol=ATOL)
        s = model.student._forward_v2(src, None, mask, _noise(ref))
        y = model.targets(src, None, s)
    np.testing.assert_allclose(y.numpy(), ref["target_full"], atol=ATOL)
    pred_all, target_all = dec[mask], y.repeat_interleave(2, 0)[mask]
    np.testing.assert_allclose(pred_all.numpy(), ref["pred"], atol=ATOL)
    np.testing.assert_allclose(target_all.numpy(), ref["target"], atol=ATOL)
    # fairseq's loss: every masked position, padded ones included
    fs_loss = regression_loss_sum(pred_all, target_all, model.cfg.loss)
    np.testing.assert_allclose(fs_loss.item(), float(ref["loss"]), rtol=1e-5)
    assert int(mask.sum()) == int(ref["sample_size"])
    # ours leaves masked padding out of the loss (the text batch has 6 such positions, the audio batch none)
    n_pad = int((mask & pad.repeat_interleave(2, 0)).sum()) if pad is not None else 0
    assert s.pred_MC.shape[0] == int(ref["sample_size"]) - n_pad
    assert n_pad == (6 if name == "d2v2_text" else 0)


def test_full_forward_uses_the_model_noise(case):
    """Data2Vec.forward in eval mode: the only randomness is the decoder noise, drawn from torch's RNG."""
    name, model, ref = case[:3]
    src, pad, mask = _inputs(ref)
    torch.manual_seed(0)
    with torch.no_grad():
        out = model({"source": src, "padding_mask": pad, "mask": mask})
        K = model.student.encoder.embed(src).x.size(1) - int(mask[0].sum())
    torch.manual_seed(0)
    noise = torch.empty(mask.size(0), int(mask[0].sum()), 64).normal_(0, 0.01)
    with torch.no_grad():
        s = model.student._forward_v2(src, None, mask, noise)
        y = model.targets(src, None, s)
    target = y.repeat_interleave(2, 0)[s.loss_mask]
    assert out.sample_size == s.pred_MC.shape[0] and K > 0
    np.testing.assert_allclose(out.loss_sum.item(), regression_loss_sum(s.pred_MC, target, model.cfg.loss).item(),
                               rtol=1e-6)
    np.testing.assert_allclose(out.target_var.item(), float(ref["target_var"]), atol=0.05)


def test_load_pretrained_detects_v2(case):
    from data2vec.pretrained import load_pretrained

    name, model = case[:2]
    cfg, loaded = load_pretrained(FIXTURES / name / "checkpoint.pt")
    assert cfg.version == 2 and cfg.model.decoder is not None
    ours = loaded.state_dict()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(ours[k], v, rtol=0, atol=0)


def _fairseq_image_layout(model) -> dict:
    """Our image v2 model's weights under fairseq data2vec_multi names (IMAGE), written out by hand from
    fairseq's module tree (modalities/images.py, modules.py), with the teacher as ``_ema``."""
    def to_fs(k: str) -> str:
        k = k.replace("context_encoder.prenet_norm.", "context_encoder.norm.")
        k = k.replace("context_encoder.prenet.", "context_encoder.blocks.")
        return k.replace("context_encoder.extra_tokens", "extra_tokens")

    def encoder_sd(sd, prefix):
        out = {}
        for k, v in sd.items():
            if not k.startswith(prefix):
                continue
            k = k[len(prefix):]
            if k.startswith("context_encoder.blocks."):  # the shared blocks are top-level in fairseq
                out["blocks." + k[len("context_encoder.blocks."):]] = v
            else:
                out["modality_encoders.IMAGE." + to_fs(k)] = v
        return out

    sd = model.state_dict()
    fs = encoder_sd(sd, "student.encoder.")
    fs.update({"modality_encoders.IMAGE.decoder." + k[len("student.decoder."):]: v
               for k, v in sd.items() if k.startswith("student.decoder.")})
    pos = model.student.encoder.context_encoder.fixed_positions
    fs["modality_encoders.IMAGE.fixed_positional_encoder.positions"] = pos.clone()
    ema = encoder_sd(sd, "teacher.module.")
    ema["modality_encoders.IMAGE.fixed_positional_encoder.positions"] = pos.clone()
    fs["_ema"] = ema
    return fs


def test_image_v2_key_table_round_trip():
    """The key table maps the full fairseq image layout (prenet, CLS token, 2-D decoder, EMA patch embedding)
    onto our model, on a config other than the fixture's (numerical parity: test_fairseq_parity_v2_image.py)."""
    from data2vec.modalities.image.encoder_v2 import ImageEncoderV2
    from data2vec.presets import get_preset

    cfg = get_preset("image-tiny-v2")
    torch.manual_seed(0)
    model = Data2Vec(ImageEncoderV2(cfg.encoder), cfg.model)
    model.teacher.update(model.student.encoder, 0.5)  # make teacher != student
    with torch.no_grad():
        for p in model.student.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    fs = _fairseq_image_layout(model)
    assert any(k.startswith("modality_encoders.IMAGE.context_encoder.blocks.0.") for k in fs)  # the prenet
    model_cfg = {"_name": "data2vec_multi", "supported_modality": "IMAGE", "depth": 5, "embed_dim": 192,
                 "num_heads": 3, "mlp_ratio": 4.0, "norm_eps": 1e-6, "clone_batch": 4, "ema_encoder_only": False,
                 "average_top_k_layers": 3, "instance_norm_target_layer": True, "layer_norm_targets": True,
                 "cls_loss": 0.01,
                 "modalities": {"image": {"input_size": 28, "patch_size": 4, "in_chans": 1, "embed_dim": 192,
                                          "prenet_depth": 1, "num_extra_tokens": 1, "init_extra_token_zero": False,
                                          "ema_local_encoder": True, "inverse_mask": True, "mask_prob": 0.6,
                                          "mask_length": 3, "decoder": {"decoder_dim": 192, "decoder_kernel": 3,
                                                                         "decoder_layers": 3, "decoder_groups": 16}}}}
    mod, enc, d2v, mask_cfg, ema = fairseq_v2.config_from_fairseq(model_cfg, {})
    assert mod == "IMAGE" and ema == {"ema_encoder_only": False, "ema_local_encoder": True}
    assert not d2v.ema.ema_transformer_only and d2v.cls_loss == 0.01 and mask_cfg.inverse_mask
    assert (enc.image_size, enc.patch_size, enc.prenet_depth, enc.num_extra_tokens) == (28, 4, 1, 1)
    ours = fairseq_v2.state_dict_from_fairseq(fs, mod, **ema)
    want = model.state_dict()
    assert set(ours) == set(want)
    for k in want:
        assert torch.equal(ours[k], want[k]), k
    fs["modality_encoders.IMAGE.surprise.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="surprise"):
        fairseq_v2.state_dict_from_fairseq(fs, mod, **ema)


def test_fairseq_exact_switch_reproduces_fairseq_loss_and_sample_size():
    """``load_pretrained(..., fairseq_exact=True)`` (CLI ``--fairseq-exact``) turns our deliberate deviations off:
    the padded text batch's masked padding is regressed and counted, as fairseq does."""
    from data2vec.pretrained import load_pretrained

    _, ref, _, _ = _load("d2v2_text")
    src, pad, mask = _inputs(ref)
    cfg, model = load_pretrained(FIXTURES / "d2v2_text" / "checkpoint.pt", fairseq_exact=True)
    assert cfg.model.loss_on_padding and cfg.model.targets.include_padding_in_norm
    with torch.no_grad():
        s = model.student._forward_v2(src, None, mask, _noise(ref))
        y = model.targets(src, None, s)
    loss = regression_loss_sum(s.pred_MC, y.repeat_interleave(2, 0)[s.loss_mask], model.cfg.loss)
    np.testing.assert_allclose(loss.item(), float(ref["loss"]), rtol=1e-5)
    batch = {"source": src, "padding_mask": pad, "mask": mask, "num_masked": int((mask & ~pad.repeat_interleave(2, 0)).sum())}
    assert model.num_units(batch) == int(ref["sample_size"])
    _, default = load_pretrained(FIXTURES / "d2v2_text" / "checkpoint.pt")
    assert default.num_units(batch) == int(ref["sample_size"]) - 6  # ours: masked padding left out
