"""What every fairseq data2vec model config (``data2vec_audio``, ``data2vec_text``, ``data2vec_multi``) says the
same way: the EMA schedule, the target normalisation and the loss; and the data2vec 2.0 block-mask settings that
speech and images share. Used by each modality's fairseq mapping (``modalities/<m>/fairseq.py``) and by the
generic data2vec 2.0 converter (``convert/fairseq_v2.py``)."""

from __future__ import annotations

from data2vec.core.data2vec import EMAConfig
from data2vec.core.loss import LossConfig
from data2vec.core.targets import TargetConfig
from data2vec.data.masks_v2 import BlockMaskV2Config


def ema_from_fairseq(c: dict, *, anneal_end_step: int, transformer_only: bool, layers_only: bool) -> EMAConfig:
    """``ema_decay`` -> ``ema_end_decay`` over ``anneal_end_step`` updates; which parts the teacher copies is
    named differently per model, so the caller reads it."""
    return EMAConfig(ema_decay=c.get("ema_decay", 0.999), ema_end_decay=c.get("ema_end_decay", 0.9999),
                     ema_anneal_end_step=anneal_end_step, ema_transformer_only=transformer_only,
                     ema_layers_only=layers_only)


def targets_from_fairseq(c: dict, top_k: int, **extra) -> TargetConfig:
    """Top-K averaging and the per-layer / final normalisations (``top_k``: the model's default K)."""
    return TargetConfig(average_top_k_layers=c.get("average_top_k_layers", top_k),
                        instance_norm_target_layer=c.get("instance_norm_target_layer", False),
                        batch_norm_target_layer=c.get("batch_norm_target_layer", False),
                        layer_norm_target_layer=c.get("layer_norm_target_layer", False),
                        layer_norm_targets=c.get("layer_norm_targets", False),
                        instance_norm_targets=c.get("instance_norm_targets", False), **extra)


def loss_from_fairseq(c: dict) -> LossConfig:
    """``loss_beta`` (0: L2, else smooth L1 with that beta) and ``loss_scale`` (None: 1/sqrt(dim))."""
    return LossConfig(loss_beta=float(c.get("loss_beta", 0.0)), loss_scale=c.get("loss_scale"))


def block_mask_from_fairseq(m: dict, c: dict, task_cfg: dict) -> BlockMaskV2Config:
    """Block-mask settings (speech, images). fairseq draws the masks in the dataset from the task's
    ``precompute_mask_config`` (the recipes' ``{}`` resolves to the modality's values; ``expand_adjacent`` and
    ``non_overlapping`` exist only there); without it the model draws them from the modality config."""
    pre = task_cfg.get("precompute_mask_config") or {}
    return BlockMaskV2Config(mask_prob=pre.get("mask_prob", m.get("mask_prob", 0.7)),
                             mask_prob_adjust=pre.get("mask_prob_adjust", m.get("mask_prob_adjust", 0.0)),
                             mask_length=pre.get("mask_length", m.get("mask_length", 5)),
                             inverse_mask=pre.get("inverse_mask", m.get("inverse_mask", False)),
                             mask_dropout=pre.get("mask_dropout", m.get("mask_dropout", 0.0)),
                             expand_adjacent=bool(pre.get("expand_adjacent", False)),
                             non_overlapping=bool(pre.get("non_overlapping", False)),
                             clone_batch=c.get("clone_batch", 1))  # what the model repeats samples by
