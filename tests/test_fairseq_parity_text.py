"""data2vec 1.0 text against fairseq's own outputs (tests/fixtures/fairseq/d2v1_text, see its README).

fairseq feeds its teacher ``target_tokens`` (pad everywhere but the masked positions, fairseq#4881).
Fed exactly that, our model reproduces fairseq's predictions, targets and loss; fed the clean
sentence (our default, ``teacher_source`` = the original tokens) it reproduces the fixture's
``target_full_clean_teacher_input``.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from data2vec.convert.fairseq_pickle import load_fairseq_checkpoint
from data2vec.core.data2vec import Data2Vec
from data2vec.keys import load_into
from data2vec.modalities.text import TextEncoder, make_positions, mask_tokens
from data2vec.modalities.text.fairseq import config_from_fairseq, state_dict_from_fairseq

FIX = Path(__file__).parent / "fixtures" / "fairseq" / "d2v1_text"
ATOL = 2e-5
PAD, MASK, VOCAB = 1, 99, 100


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(FIX / "reference.npz", allow_pickle=False))


@pytest.fixture(scope="module")
def loaded():
    ckpt = load_fairseq_checkpoint(FIX / "checkpoint.pt")
    enc_cfg, d2v_cfg, mask_cfg = config_from_fairseq(ckpt["cfg"]["model"], ckpt["cfg"]["task"], VOCAB)
    model = Data2Vec(TextEncoder(enc_cfg), d2v_cfg)
    load_into(model, state_dict_from_fairseq(ckpt["model"]))
    return model.eval(), ckpt, mask_cfg


def _t(ref, k):
    return torch.from_numpy(ref[k])


def test_config_read_from_checkpoint(loaded):
    model, _, mask_cfg = loaded
    c = model.student.encoder.cfg
    assert (c.depth, c.embed_dim, c.max_positions) == (3, 64, 64)
    assert model.cfg.loss.loss_beta == 4.0 and model.cfg.loss.loss_scale == 1.0 and model.cfg.head_layers == 2
    assert model.cfg.targets.layer_norm_target_layer and model.cfg.targets.average_top_k_layers == 2
    assert (mask_cfg.mask_prob, mask_cfg.mask_multiple_length) == (0.35, 4)


def test_masks_reproduced_exactly_in_fairseq_mode(ref, loaded):
    _, ckpt, mask_cfg = loaded
    mask_cfg.mask_special_tokens = True  # fairseq draws over <s> and </s> too
    for b, idx in enumerate(ref["sample_ids"]):
        n = int(ref["src_lengths"][b])
        src, m = mask_tokens(ref["orig_tokens"][b, :n], mask_cfg, seed=ckpt["cfg"]["task"]["seed"], epoch=1,
                             index=int(idx), mask_idx=MASK, special_ids={0, 1, 2, 3}, vocab_size=VOCAB)
        np.testing.assert_array_equal(src, ref["src_tokens"][b, :n])
        np.testing.assert_array_equal(m, ref["mask"][b, :n])


def test_positions(ref):
    np.testing.assert_array_equal(make_positions(_t(ref, "orig_tokens"), PAD).numpy(), ref["orig_positions"])
    np.testing.assert_array_equal(make_positions(_t(ref, "target_tokens"), PAD).numpy(), ref["teacher_tt_positions"])


def test_student_embeddings_and_layers(ref, loaded):
    model, _, _ = loaded
    enc = model.student.encoder
    with torch.no_grad():
        e = enc.embed(_t(ref, "orig_tokens"))
        out = enc.context_encoder(e.x, e.padding_mask)
    torch.testing.assert_close(e.x, _t(ref, "student_embed"), atol=ATOL, rtol=0)
    torch.testing.assert_close(torch.stack(out.layer_outputs), _t(ref, "student_layer_out"), atol=ATOL, rtol=0)
    torch.testing.assert_close(torch.stack(out.ffn_outputs), _t(ref, "student_layer_ffn"), atol=ATOL, rtol=0)
    torch.testing.assert_close(out.x, _t(ref, "student_final"), atol=ATOL, rtol=0)


@pytest.mark.parametrize("tokens, prefix", [("target_tokens", "teacher_tt_"), ("orig_tokens", "teacher_")])
def test_teacher_layers(ref, loaded, tokens, prefix):
    model, _, _ = loaded
    t = model.teacher.module
    with torch.no_grad():
        e = t.embed(_t(ref, tokens))
        out = t.context_encoder(e.x, e.padding_mask)
    valid = ~_t(ref, tokens).eq(PAD)  # rows of padded queries are not used by anything
    torch.testing.assert_close(e.x, _t(ref, prefix + "embed"), atol=ATOL, rtol=0)
    for got, want in zip(out.ffn_outputs, _t(ref, prefix + "layer_ffn")):
        torch.testing.assert_close(got[valid], want[valid], atol=ATOL, rtol=0)
    torch.testing.assert_close(out.x[valid], _t(ref, prefix + "final")[valid], atol=ATOL, rtol=0)


def _batch(ref, teacher_tokens):
    return {"source": _t(ref, "src_tokens"), "teacher_source": _t(ref, teacher_tokens), "padding_mask": None,
            "mask": _t(ref, "mask")}


def test_prediction_target_and_loss_match_fairseq_with_its_teacher_input(ref, loaded):
    model, _, _ = loaded
    with torch.no_grad():
        out = model(_batch(ref, "target_tokens"))
    torch.testing.assert_close(out.pred_MC, _t(ref, "pred"), atol=ATOL, rtol=0)
    torch.testing.assert_close(out.target_MC, _t(ref, "target"), atol=ATOL, rtol=0)
    assert out.sample_size == int(ref["sample_size"])
    assert out.loss_sum.item() == pytest.approx(float(ref["loss"]), rel=1e-5)


def test_default_teacher_sees_the_full_sentence(ref, loaded):
    """Our fix of fairseq#4881: targets from the clean sentence, which differ from fairseq's."""
    model, _, _ = loaded
    with torch.no_grad():
        out = model(_batch(ref, "orig_tokens"))
    mask = ref["mask"]
    torch.testing.assert_close(out.target_MC, _t(ref, "target_full_clean_teacher_input")[mask], atol=ATOL, rtol=0)
    assert (out.target_MC - _t(ref, "target")).abs().max() > 0.1
