"""fairseq data2vec speech checkpoints -> our ``Data2Vec`` model: 1.0 (``data2vec_audio``) and the speech parts of
2.0 (``data2vec_multi`` with ``supported_modality`` AUDIO; the generic part is ``data2vec.convert.fairseq_v2``).
Found through ``ModalitySpec.fairseq``.

Key table from fairseq ``examples/data2vec/models/data2vec_audio.py`` + ``fairseq/models/wav2vec/wav2vec2.py``
module names (SPEC E.1) to ours, with strict accounting: every source key is consumed, every target
key produced, shapes checked; leftovers are named in the error. The EMA teacher (``_ema``, keys relative
to fairseq's ``encoder``) becomes ``teacher.module.*``.

``config_from_fairseq`` maps ``cfg.model`` to our dataclasses (fairseq spelling is kept, so most fields
copy over). Only what data2vec 1.0 speech uses is accepted; e.g. ``layer_norm_first=True`` or a
single weight-normed positional conv (``pos_conv_depth=1``, wav2vec 2.0) are refused with a message.

data2vec 2.0: the local encoder's keys (``V2_KEYS``), the positional conv stack's index shift
(``prepare_v2_keys``) and the encoder and mask config (``v2_encoder_and_mask``).
"""

from __future__ import annotations

import re

import torch

from data2vec.core.data2vec import Data2VecConfig
from data2vec.data.masks_v2 import BlockMaskV2Config
from data2vec.keys import map_keys
from data2vec.modalities.audio.encoder import AudioEncoderConfig, parse_conv_layers
from data2vec.modalities.audio.encoder_v2 import AudioEncoderV2Config
from data2vec.modalities.audio.masking import SpanMaskConfig
from data2vec.modalities.fairseq_common import (
    block_mask_from_fairseq,
    ema_from_fairseq,
    loss_from_fairseq,
    targets_from_fairseq,
)

V1_MODEL = "data2vec_audio"  # fairseq's cfg.model._name of a data2vec 1.0 speech checkpoint
V2_MODALITY = "AUDIO"  # fairseq's supported_modality of a data2vec 2.0 (data2vec_multi) speech checkpoint
V1_PRESET, V2_PRESET = "audio-base-v1", "audio-base-v2"  # the recipes an imported checkpoint continues with

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
        conv_pos_width=c.get("conv_pos", 128), conv_pos_groups=c.get("conv_pos_groups", 16),
        conv_pos_depth=c["pos_conv_depth"],
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


def pretraining_parts(model_cfg: dict, task_cfg: dict, sd: dict[str, torch.Tensor]):
    """(encoder config, Data2VecConfig, mask config, our state dict) of a ``data2vec_audio`` checkpoint."""
    enc, d2v, mask = config_from_fairseq(model_cfg)
    return enc, d2v, mask, state_dict_from_fairseq(sd)


# data2vec 2.0: fairseq key relative to modality_encoders.AUDIO. -> ours relative to the encoder
V2_KEYS = {
    "local_encoder.conv_layers.{i}.0.weight": "local_encoder.conv_layers.{i}.conv.weight",
    "local_encoder.conv_layers.{i}.2.1.weight": "local_encoder.conv_layers.{i}.norm.weight",
    "local_encoder.conv_layers.{i}.2.1.bias": "local_encoder.conv_layers.{i}.norm.bias",
    "local_encoder.conv_layers.{i}.2.weight": "local_encoder.conv_layers.{i}.norm.weight",
    "local_encoder.conv_layers.{i}.2.bias": "local_encoder.conv_layers.{i}.norm.bias",
    "project_features.1.weight": "project_features.layer_norm.weight",
    "project_features.1.bias": "project_features.layer_norm.bias",
    "project_features.2.weight": "project_features.proj.weight",
    "project_features.2.bias": "project_features.proj.bias",
    "relative_positional_encoder.{j}.0.weight": "context_encoder.relative_positional_encoder.{j}.conv.weight",
    "relative_positional_encoder.{j}.0.bias": "context_encoder.relative_positional_encoder.{j}.conv.bias",
}


def _shift_pos_conv(key: str) -> str:
    """fairseq's positional conv stack starts with a transpose (index 0): conv j is our j - 1."""
    m = re.search(r"relative_positional_encoder\.(\d+)\.0\.", key)
    if not m:
        return key
    return key[: m.start(1)] + str(int(m.group(1)) - 1) + key[m.end(1):]


def prepare_v2_keys(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """fairseq's data2vec 2.0 keys as ``V2_KEYS`` reads them: the positional convs shifted by one."""
    return {_shift_pos_conv(k): v for k, v in sd.items()}


def v2_encoder_and_mask(m: dict, c: dict, common: dict, task_cfg: dict,
                        vocab_size: int | None) -> tuple[AudioEncoderV2Config, BlockMaskV2Config]:
    """fairseq ``cfg.model.modalities.audio`` (``m``) -> our encoder config (``common``: the fields every
    modality shares) and mask config."""
    enc = AudioEncoderV2Config(**common, conv_feature_layers=m.get("feature_encoder_spec"),
                               extractor_mode=m.get("extractor_mode", "layer_norm"),
                               conv_pos_width=m.get("conv_pos_width", 95), conv_pos_groups=m.get("conv_pos_groups", 16),
                               conv_pos_depth=m.get("conv_pos_depth", 5))
    if m.get("conv_pos_pre_ln"):
        raise ValueError("conv_pos_pre_ln is not supported")
    return enc, block_mask_from_fairseq(m, c, task_cfg)
