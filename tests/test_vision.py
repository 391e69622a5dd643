"""Vision (data2vec 1.0, BEiT backbone): our encoder holds HF Data2VecVisionModel weights exactly."""

from __future__ import annotations

import re

import pytest
import torch

from data2vec.modalities.vision.encoder import HF_KEYS, VisionEncoder, VisionEncoderConfig, relative_position_index


def _hf_to_ours(hf_sd: dict) -> dict:
    table = [(re.compile(re.escape(k).replace(r"\{i\}", r"(?P<i>\d+)") + "$"), v) for k, v in HF_KEYS.items()]
    out = {}
    for key, t in hf_sd.items():
        for pat, dst in table:
            m = pat.match(key)
            if m:
                out[dst.format(**m.groupdict())] = t
                break
        else:
            raise AssertionError(f"HF key not in the table: {key}")
    return out


@pytest.mark.parametrize("image, patch, chans", [(32, 8, 3), (28, 4, 1)])
def test_matches_hf_data2vec_vision_layer_by_layer(image, patch, chans):
    from transformers import Data2VecVisionConfig, Data2VecVisionModel

    torch.manual_seed(0)
    hcfg = Data2VecVisionConfig(
        image_size=image, patch_size=patch, num_channels=chans, hidden_size=48, num_hidden_layers=3,
        num_attention_heads=4, intermediate_size=96, layer_norm_eps=1e-6, use_mask_token=True,
        use_shared_relative_position_bias=True, use_relative_position_bias=False,
        use_absolute_position_embeddings=False, use_mean_pooling=False, layer_scale_init_value=0.1,
        drop_path_rate=0.0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    hf = Data2VecVisionModel(hcfg, add_pooling_layer=False).eval()
    with torch.no_grad():  # non-trivial values for the zero-initialised tables and layer scales
        for n, p in hf.named_parameters():
            if "relative_position_bias_table" in n or "lambda" in n or "token" in n:
                p.normal_(0, 0.5)
    ours = VisionEncoder(VisionEncoderConfig(image_size=image, patch_size=patch, in_chans=chans, embed_dim=48,
                                             depth=3, num_heads=4, mlp_ratio=2.0, drop_path_rate=0.0)).eval()
    sd = {k: v for k, v in hf.state_dict().items() if "relative_position_index" not in k}
    ours.load_state_dict(_hf_to_ours(sd), strict=True)

    x = torch.randn(2, chans, image, image)
    n = (image // patch) ** 2
    mask = torch.rand(2, n) < 0.5
    with torch.no_grad():
        ref = hf(x, bool_masked_pos=mask, output_hidden_states=True)
        out = ours(x, None, mask)
    for got, want in zip(out.layer_outputs, ref.hidden_states[1:]):
        torch.testing.assert_close(got, want[:, 1:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.x, ref.last_hidden_state[:, 1:], atol=1e-5, rtol=1e-5)


def test_relative_position_index_cls_rows():
    idx = relative_position_index(2, 3)
    num = (2 * 2 - 1) * (2 * 3 - 1) + 3
    assert idx.shape == (7, 7) and idx[0, 0] == num - 1 and (idx[0, 1:] == num - 3).all() and (idx[1:, 0] == num - 2).all()
    assert idx[1, 1] == idx[2, 2] and idx[1, 2] != idx[2, 1]  # translation-invariant, direction-aware


def test_bad_image_shape_is_a_clear_error():
    enc = VisionEncoder(VisionEncoderConfig(image_size=28, patch_size=4, in_chans=1, embed_dim=16, depth=1, num_heads=2))
    with pytest.raises(ValueError, match=r"expected images \[B, 1, 28, 28\]"):
        enc.embed(torch.zeros(2, 3, 28, 28))
