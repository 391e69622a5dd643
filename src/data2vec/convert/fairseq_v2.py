"""fairseq data2vec 2.0 checkpoints (``data2vec_multi``) -> our ``Data2Vec`` with a v2 encoder.

One modality per checkpoint (``supported_modality`` AUDIO, TEXT or IMAGE); what differs per modality (the local
encoder's keys, the encoder and mask config) is in that modality's mapping (``modalities/<m>/fairseq.py``, found
through ``ModalitySpec.fairseq``), the rest is here. fairseq keys the modality parts
under ``modality_encoders.<MOD>.`` and the shared blocks under ``blocks.``; the EMA teacher (``_ema``) is
keyed like the student (``ema_encoder_only: false``: every part except the local encoder when it is shared,
and the decoder) or relative to ``blocks`` (``ema_encoder_only: true``, text). Our names follow fairseq's
inside blocks and decoders, so the table is short. Accounting is strict (``map_keys``, ``load_into``): every
source key is used or explicitly dropped, every target key produced, shapes checked.

``config_from_fairseq`` maps ``cfg.model`` (plus the task's mask settings) to our dataclasses. What our v2
path does not build is refused with a message: pre-LN blocks (``layer_norm_first``), 2-D ALiBi, a shared
or Transformer decoder, MAE reconstruction loss.
"""

from __future__ import annotations

import torch

from data2vec.convert.fairseq import v2_mapping, v2_modalities
from data2vec.core.data2vec import Data2VecConfig
from data2vec.core.monitors import CollapseConfig
from data2vec.keys import map_keys
from data2vec.layers.decoder import DecoderConfig
from data2vec.modalities.fairseq_common import ema_from_fairseq, loss_from_fairseq, targets_from_fairseq

_BLOCK = {f"{m}.{p}": f"{m}.{p}" for m in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
          for p in ("weight", "bias")}
# fairseq key relative to modality_encoders.<MOD>. -> ours relative to the encoder: what every modality has (the
# local encoder's keys are the modality mapping's V2_KEYS)
_MOD = {
    "alibi_scale": "context_encoder.alibi_scale",
    "extra_tokens": "context_encoder.extra_tokens",
    "context_encoder.norm.weight": "context_encoder.prenet_norm.weight",
    "context_encoder.norm.bias": "context_encoder.prenet_norm.bias",
    **{f"context_encoder.blocks.{{i}}.{k}": f"context_encoder.prenet.{{i}}.{v}" for k, v in _BLOCK.items()},
    **{f"decoder.{k}": f"DECODER.{k}" for k in (
        "blocks.{i}.0.weight", "blocks.{i}.0.bias", "proj.weight", "proj.bias",
        "proj.{j}.weight", "proj.{j}.bias")},
}
_SHARED = {f"blocks.{{i}}.{k}": f"context_encoder.blocks.{{i}}.{v}" for k, v in _BLOCK.items()}


def _mapping(mod: str):
    fs = v2_mapping(mod)
    if fs is None:
        raise ValueError(f"supported_modality={mod!r}: only single-modality checkpoints "
                         f"({', '.join(v2_modalities())}) load")
    return fs


def _encoder_keys(sd: dict[str, torch.Tensor], mod: str) -> dict[str, torch.Tensor]:
    """fairseq student/teacher keys -> ours relative to the encoder (decoder keys under DECODER.)."""
    fs = _mapping(mod)
    prefix = f"modality_encoders.{mod}."
    table = {prefix + k: v for k, v in (_MOD | fs.V2_KEYS).items()} | _SHARED
    return map_keys(fs.prepare_v2_keys(sd, prefix), table)


def state_dict_from_fairseq(fs_sd: dict[str, torch.Tensor], mod: str, *, ema_encoder_only: bool,
                            ema_local_encoder: bool) -> dict[str, torch.Tensor]:
    """fairseq ``ckpt['model']`` -> our state dict (``student.*`` and ``teacher.module.*``).

    Our teacher is the context encoder (shared local encoder: audio, text) or the whole encoder (images).
    Without ``_ema`` the teacher starts from the student (continue-pretraining semantics)."""
    sd = {k: v for k, v in fs_sd.items() if not k.endswith(".version")}
    ema = sd.pop("_ema", None)
    enc = _encoder_keys(sd, mod)
    out = {("student.decoder." + k[len("DECODER."):]) if k.startswith("DECODER.") else "student.encoder." + k: v
           for k, v in enc.items()}
    if ema is None:
        ema = {k: v for k, v in sd.items() if ".decoder." not in k}
    elif ema_encoder_only:  # keyed relative to ``blocks``
        ema = {f"blocks.{k}": v for k, v in ema.items()}
    t = _encoder_keys({k: v for k, v in ema.items() if ".decoder." not in k}, mod)
    whole = ema_local_encoder and not ema_encoder_only
    for k, v in t.items():
        if whole:
            out["teacher.module." + k] = v
        elif k.startswith("context_encoder."):
            out["teacher.module." + k[len("context_encoder."):]] = v
        elif not (k.startswith("local_encoder.") or k.startswith("project_features.")):
            raise ValueError(f"teacher key {k} has no place in a teacher of the context encoder")
    return out


def config_from_fairseq(model_cfg: dict, task_cfg: dict, vocab_size: int | None = None):
    """fairseq ``cfg.model`` / ``cfg.task`` of a ``data2vec_multi`` checkpoint -> (modality, encoder config,
    Data2VecConfig, mask config)."""
    c = model_cfg
    if c.get("_name") != "data2vec_multi":
        raise ValueError(f"not a data2vec 2.0 checkpoint (model._name={c.get('_name')!r})")
    mod = str(c.get("supported_modality") or "")
    fs = _mapping(mod)
    for key, bad in (("layer_norm_first", True), ("shared_decoder", "set"), ("recon_loss", "set")):
        v = c.get(key)
        if v and (bad == "set" or v == bad):
            raise ValueError(f"model.{key}={v!r} is not supported by our data2vec 2.0 path")
    m = c["modalities"][mod.lower()]
    if m.get("layer_norm_first") or m.get("transformer_decoder") or m.get("learned_alibi"):
        raise ValueError(f"modalities.{mod.lower()}: transformer decoders and learned ALiBi tables are not supported")
    common = dict(
        embed_dim=c.get("embed_dim", 768), depth=c.get("depth", 8), num_heads=c.get("num_heads", 12),
        mlp_ratio=float(c.get("mlp_ratio", 4.0)), norm_eps=c.get("norm_eps", 1e-6), norm_affine=c.get("norm_affine", True),
        encoder_dropout=c.get("encoder_dropout", 0.1), attention_dropout=c.get("attention_dropout", 0.1),
        activation_dropout=c.get("activation_dropout", 0.0), post_mlp_drop=c.get("post_mlp_drop", 0.1),
        dropout_input=c.get("dropout_input", 0.0), layerdrop=c.get("layerdrop", 0.0),
        start_drop_path_rate=c.get("start_drop_path_rate", 0.0), end_drop_path_rate=c.get("end_drop_path_rate", 0.0),
        prenet_depth=m.get("prenet_depth", 4), prenet_layerdrop=m.get("prenet_layerdrop", 0.0),
        prenet_dropout=m.get("prenet_dropout", 0.0), num_extra_tokens=m.get("num_extra_tokens", 0),
        init_extra_token_zero=m.get("init_extra_token_zero", True), use_alibi_encoder=m.get("use_alibi_encoder", False),
        alibi_scale=float(m.get("alibi_scale", 1.0)), learned_alibi_scale=m.get("learned_alibi_scale", False),
        learned_alibi_scale_per_head=m.get("learned_alibi_scale_per_head", False),
        learned_alibi_scale_per_layer=m.get("learned_alibi_scale_per_layer", False),
        local_grad_mult=m.get("local_grad_mult", 1.0),
    )
    if m.get("use_alibi_encoder") and m.get("num_alibi_heads", common["num_heads"]) != common["num_heads"]:
        raise ValueError("num_alibi_heads different from num_heads is not supported")
    enc, mask = fs.v2_encoder_and_mask(m, c, common, task_cfg, vocab_size)
    dec = m.get("decoder") or {}
    decoder = DecoderConfig(
        decoder_dim=dec.get("decoder_dim", 384), decoder_groups=dec.get("decoder_groups", 16),
        decoder_kernel=dec.get("decoder_kernel", 5), decoder_layers=dec.get("decoder_layers", 5),
        input_dropout=dec.get("input_dropout", 0.1), decoder_residual=dec.get("decoder_residual", True),
        projection_layers=dec.get("projection_layers", 1), projection_ratio=float(dec.get("projection_ratio", 2.0)),
        mask_noise_std=m.get("mask_noise_std", 0.01))
    if dec.get("add_positions_masked") or dec.get("add_positions_all"):
        raise ValueError("decoder.add_positions_* is not supported")
    ema_encoder_only = c.get("ema_encoder_only", True)
    ema_local = bool(m.get("ema_local_encoder", False))
    d2v = Data2VecConfig(
        ema=ema_from_fairseq(c, anneal_end_step=c.get("ema_anneal_end_step", c.get("max_update", 0)),
                             transformer_only=ema_encoder_only or not ema_local, layers_only=False),
        targets=targets_from_fairseq(c, 8, layer_results="end" if c.get("end_of_block_targets") else "ffn"),
        loss=loss_from_fairseq(c),
        collapse=CollapseConfig(min_target_var=c.get("min_target_var", 0.1), min_pred_var=c.get("min_pred_var", 0.01)),
        decoder=decoder, cls_loss=float(c.get("cls_loss", 0.0)),
    )
    return mod, enc, d2v, mask, dict(ema_encoder_only=ema_encoder_only, ema_local_encoder=ema_local)
