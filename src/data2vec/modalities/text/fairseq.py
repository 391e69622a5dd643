"""fairseq data2vec text checkpoints -> our ``Data2Vec`` model: 1.0 (``data2vec_text``, with a ``TextEncoder``) and
the text parts of 2.0 (``data2vec_multi`` with ``supported_modality`` TEXT; the generic part is
``data2vec.convert.fairseq_v2``). Found through ``ModalitySpec.fairseq``.

fairseq keeps the student under ``encoder.sentence_encoder.*`` (a ``TransformerEncoder``) and the head under
``encoder.regression_head.{0,2}``; the EMA teacher (``encoder._ema``) is keyed relative to
``sentence_encoder``. Our module names follow fairseq's inside the encoder, so the table is short;
accounting is strict as for speech (``map_keys``, ``load_into``).

data2vec 2.0: the local encoder's keys (``V2_KEYS``) and the encoder and mask config (``v2_encoder_and_mask``).
"""

from __future__ import annotations

import torch

from data2vec.core.data2vec import Data2VecConfig
from data2vec.keys import map_keys
from data2vec.modalities.fairseq_common import ema_from_fairseq, loss_from_fairseq, targets_from_fairseq
from data2vec.modalities.text.encoder import TextEncoderConfig
from data2vec.modalities.text.encoder_v2 import TextEncoderV2Config
from data2vec.modalities.text.masking import TokenMaskConfig
from data2vec.modalities.text.masking_v2 import RandomMaskV2Config

V1_MODEL = "data2vec_text"  # fairseq's cfg.model._name of a data2vec 1.0 text checkpoint
V2_MODALITY = "TEXT"  # fairseq's supported_modality of a data2vec 2.0 (data2vec_multi) text checkpoint
V1_PRESET, V2_PRESET = "text-base-v1", "text-base-v2"  # the recipes an imported checkpoint continues with

_LAYER = {f"layers.{{i}}.{m}.{p}": f"context_encoder.layers.{{i}}.{m}.{p}"
          for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                    "self_attn_layer_norm", "fc1", "fc2", "final_layer_norm") for p in ("weight", "bias")}
_ENCODER = {
    "embed_tokens.weight": "embed_tokens.weight",
    "embed_positions.weight": "embed_positions.weight",
    "layernorm_embedding.weight": "layernorm_embedding.weight",
    "layernorm_embedding.bias": "layernorm_embedding.bias",
    **_LAYER,
}
_TOP = {
    **{"encoder.sentence_encoder." + k: "student.encoder." + v for k, v in _ENCODER.items()},
    "encoder.regression_head.{i}.weight": "student.head.{i}.weight",
    "encoder.regression_head.{i}.bias": "student.head.{i}.bias",
}


def config_from_fairseq(model_cfg: dict, task_cfg: dict, vocab_size: int) -> tuple[TextEncoderConfig, Data2VecConfig, TokenMaskConfig]:
    c, t = model_cfg, task_cfg
    if c.get("_name") not in (None, "data2vec_text"):
        raise ValueError(f"not a data2vec 1.0 text checkpoint (model._name={c.get('_name')!r})")
    tr, enc = c["transformer"], c["transformer"]["encoder"]
    if enc.get("normalize_before", False):
        raise ValueError("encoder.normalize_before=True (pre-LN) is not the data2vec 1.0 text architecture")
    enc_cfg = TextEncoderConfig(
        vocab_size=vocab_size, max_positions=c.get("max_positions", 512), embed_dim=enc["embed_dim"],
        depth=enc["layers"], ffn_embed_dim=enc["ffn_embed_dim"],
        num_heads=enc["attention_heads"], dropout=tr.get("dropout", 0.1),
        attention_dropout=tr.get("attention_dropout", 0.0), activation_dropout=tr.get("activation_dropout", 0.0),
        layerdrop=enc.get("layerdrop", 0.0), layernorm_embedding=tr.get("layernorm_embedding", True),
        no_scale_embedding=tr.get("no_scale_embedding", True))
    d2v = Data2VecConfig(
        ema=ema_from_fairseq(c, anneal_end_step=c.get("ema_anneal_end_step", 0), transformer_only=False,
                             layers_only=c.get("ema_transformer_layers_only", True)),
        targets=targets_from_fairseq(c, 10),
        loss=loss_from_fairseq(c),
        head_layers=c.get("head_layers", 1))
    mask = TokenMaskConfig(mask_prob=t.get("mask_prob", 0.15), mask_multiple_length=t.get("mask_multiple_length", 1),
                           leave_unmasked_prob=t.get("leave_unmasked_prob", 0.1),
                           random_token_prob=t.get("random_token_prob", 0.1))
    return enc_cfg, d2v, mask


def state_dict_from_fairseq(fs_model_sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fairseq ``ckpt['model']`` -> our state dict; the teacher from ``encoder._ema`` (else the student)."""
    sd = {k: v for k, v in fs_model_sd.items() if not k.endswith(".version")}
    ema = sd.pop("encoder._ema", None)
    out = map_keys(sd, _TOP)
    if ema is None:
        prefix = "encoder.sentence_encoder."
        ema = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    ema = {k: v for k, v in ema.items() if not k.endswith("version")}
    out.update(map_keys(ema, _ENCODER, prefix_out="teacher.module."))
    return out


def pretraining_parts(model_cfg: dict, task_cfg: dict, sd: dict[str, torch.Tensor]):
    """(encoder config, Data2VecConfig, mask config, our state dict) of a ``data2vec_text`` checkpoint; the
    vocabulary size comes from its embedding."""
    vocab = sd["encoder.sentence_encoder.embed_tokens.weight"].shape[0]
    enc, d2v, mask = config_from_fairseq(model_cfg, task_cfg, vocab)
    return enc, d2v, mask, state_dict_from_fairseq(sd)


# data2vec 2.0: fairseq key relative to modality_encoders.TEXT. -> ours relative to the encoder
V2_KEYS = {f"local_encoder.{k}": f"local_encoder.{k}" for k in (
    "embed_tokens.weight", "embed_positions.weight", "layernorm_embedding.weight", "layernorm_embedding.bias")}


def prepare_v2_keys(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """fairseq's data2vec 2.0 text keys need no rewriting before ``V2_KEYS``."""
    return sd


def v2_encoder_and_mask(m: dict, c: dict, common: dict, task_cfg: dict,
                        vocab_size: int | None) -> tuple[TextEncoderV2Config, RandomMaskV2Config]:
    """fairseq ``cfg.model.modalities.text`` (``m``) -> our encoder config (``common``: the fields every
    modality shares) and mask config."""
    if vocab_size is None:
        raise ValueError("text: the vocabulary size comes from the checkpoint's embedding")
    enc = TextEncoderV2Config(**common, vocab_size=vocab_size, pad=1,
                              max_positions=m.get("max_source_positions", 512), dropout=m.get("dropout", 0.1),
                              layernorm_embedding=m.get("layernorm_embedding", True),
                              no_scale_embedding=m.get("no_scale_embedding", True))
    if m.get("mask_length", 5) != 1:
        raise ValueError("text: only random (MAE-style, mask_length 1) masking is supported")
    return enc, RandomMaskV2Config(mask_prob=m.get("mask_prob", 0.7), clone_batch=c.get("clone_batch", 1))
