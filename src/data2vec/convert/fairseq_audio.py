"""fairseq data2vec 1.0 speech checkpoints (``data2vec_audio``) -> our ``Data2Vec`` model.

Key table from fairseq ``examples/data2vec/models/data2vec_audio.py`` + ``fairseq/models/wav2vec/wav2vec2.py``
module names (SPEC E.1) to ours, with strict accounting: every source key is consumed, every target
key produced, shapes checked; leftovers are named in the error. The EMA teacher (``_ema``, keys relative
to fairseq's ``encoder``) becomes ``teacher.module.*``.

``config_from_fairseq`` maps ``cfg.model`` to our dataclasses (fairseq spelling is kept, so most fields
copy over). Only what data2vec 1.0 speech uses is accepted; e.g. ``layer_norm_first=True`` or a
single weight-normed positional conv (``pos_conv_depth=1``, wav2vec 2.0) are refused with a message.
"""

from __future__ import annotations

import torch

from data2vec.convert.fairseq_common import ema_from_fairseq, loss_from_fairseq, targets_from_fairseq
from data2vec.core.data2vec import Data2VecConfig
from data2vec.keys import map_keys
from data2vec.modalities.audio.encoder import AudioEncoderConfig, parse_conv_layers
from data2vec.modalities.audio.masking import SpanMaskConfig

# fairseq key template (with {i}/{j} slots) -> our key template. ENC = the context encoder.
_S = "student.encoder."
_ENC_TABLE = {
    "pos_conv.{j}.0.weight": "pos_conv.{j}.conv.weight",
    "pos_conv.{j}.0.bias": "pos_conv.{j}.conv.bias",
    "layer_norm.weight": "layer_norm.weight",
    "layer_norm.bias": "layer_norm.bias",
    **{
        f"layers.{{i}}.{m}.{p}": f"layers.{{i}}.{m}.{p}"
        for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                  "self_attn_layer_norm", "fc1", "fc2", "final_layer_norm")
        for p in ("weight", "bias")
    },
}
_TOP_TABLE = {
    "mask_emb": _S + "mask_emb",
    "feature_extractor.conv_layers.{i}.0.weight": _S + "feature_extractor.conv_layers.{i}.conv.weight",
    "feature_extractor.conv_layers.{i}.0.bias": _S + "feature_extractor.conv_layers.{i}.conv.bias",
    "feature_extractor.conv_layers.{i}.2.1.weight": _S + "feature_extractor.conv_layers.{i}.norm.weight",
    "feature_extractor.conv_layers.{i}.2.1.bias": _S + "feature_extractor.conv_layers.{i}.norm.bias",
    "feature_extractor.conv_layers.{i}.2.weight": _S + "feature_extractor.conv_layers.{i}.norm.weight",
    "feature_extractor.conv_layers.{i}.2.bias": _S + "feature_extractor.conv_layers.{i}.norm.bias",
    "post_extract_proj.weight": _S + "post_extract_proj.weight",
    "post_extract_proj.bias": _S + "post_extract_proj.bias",
    "layer_norm.weight": _S + "layer_norm.weight",
    "layer_norm.bias": _S + "layer_norm.bias",
    "final_proj.weight": "student.head.weight",
    "final_proj.bias": "student.head.bias",
    **{"encoder." + k: _S + "context_encoder." + v for k, v in _ENC_TABLE.items()},
}
_DROPPED = {"encoder.pos_conv.{j}.0.weight_g", "encoder.pos_conv.{j}.0.weight_v"}  # never in data2vec ckpts


def config_from_fairseq(model_cfg: dict) -> tuple[AudioEncoderConfig, Data2VecConfig, SpanMaskConfig]:
    """fairseq ``cfg.model`` of a ``data2vec_audio`` checkpoint -> our configs."""
    c = model_cfg
    if c.get("_name") not in (None, "data2vec_audio"):
        raise ValueError(f"not a data2vec 1.0 speech checkpoint (model._name={c.get('_name')!r})")
    if c.get("layer_norm_first", False):
        raise ValueError("layer_norm_first=True (pre-LN) is not the data2vec 1.0 speech architecture")
    if c.get("pos_conv_depth", 1) < 2:
        raise ValueError("pos_conv_depth=1 (wav2vec 2.0's weight-normed pos-conv) is not supported; data2vec uses 5")
    mode = {"default": "group_norm", "layer_norm": "layer_norm"}[c.get("extractor_mode", "default")]
    enc = AudioEncoderConfig(
        conv_feature_layers=c["conv_feature_layers"], extractor_mode=mode, conv_bias=c.get("conv_bias", False),
        local_grad_mult=c.get("feature_grad_mult", 1.0), embed_dim=c["encoder_embed_dim"],
        depth=c["encoder_layers"], ffn_embed_dim=c["encoder_ffn_embed_dim"],
        num_heads=c["encoder_attention_heads"], dropout=c.get("dropout", 0.1),
        attention_dropout=c.get("attention_dropout", 0.1), activation_dropout=c.get("activation_dropout", 0.0),
        layerdrop=c.get("encoder_layerdrop", 0.0), dropout_input=c.get("dropout_input", 0.0),
        conv_pos=c.get("conv_pos", 128), conv_pos_groups=c.get("conv_pos_groups", 16),
        pos_conv_depth=c["pos_conv_depth"],
    )
    d2v = Data2VecConfig(
        ema=ema_from_fairseq(c, anneal_end_step=c.get("ema_anneal_end_step", c.get("max_update", 0)),
                             transformer_only=c.get("ema_transformer_only", True) or c.get("ema_layers_only", True),
                             layers_only=c.get("ema_layers_only", True)),
        targets=targets_from_fairseq(c, 8),
        loss=loss_from_fairseq(c),
    )
    if c.get("group_norm_target_layer", False):
        raise ValueError("group_norm_target_layer is not supported")
    mask = SpanMaskConfig(
        mask_prob=c.get("mask_prob", 0.65), mask_length=c.get("mask_length", 10),
        require_same_masks=c.get("require_same_masks", True), mask_dropout=c.get("mask_dropout", 0.0),
    )
    parse_conv_layers(enc.conv_feature_layers)
    return enc, d2v, mask


def state_dict_from_fairseq(fs_model_sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fairseq ``ckpt['model']`` (student + ``_ema``) -> our ``Data2Vec`` state dict.
    Without ``_ema`` the teacher is initialised from the student (continue-pretraining semantics)."""
    sd = dict(fs_model_sd)
    ema = sd.pop("_ema", None)
    out = map_keys(sd, _TOP_TABLE)
    if ema is None:
        ema = {k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")}
    ema = {k: v for k, v in ema.items() if not k.endswith("version")}
    out.update(map_keys(ema, _ENC_TABLE, prefix_out="teacher.module."))
    return out
