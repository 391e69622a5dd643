"""HF ``transformers`` ``Data2VecVisionModel`` (= BEiT) <-> our data2vec 1.0 image encoder (docs/SPEC.md E.3),
both the pretrained layout (shared relative position bias, final LayerNorm) and the fine-tuned one (per-layer
bias, mean pooling with ``fc_norm`` = HF ``pooler.layernorm``). Absolute position embeddings are refused."""

from __future__ import annotations

import torch

from data2vec.keys import map_keys
from data2vec.modalities.image.encoder import ImageEncoderConfig

MODEL_TYPE = "data2vec-vision"
PREFIX = "data2vec_vision."
BASE_PRESET = "image-base-v1"

KEYS = {
    "embeddings.cls_token": "context_encoder.cls_token",
    "embeddings.mask_token": "mask_token",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.bias",
    "encoder.relative_position_bias.relative_position_bias_table": "context_encoder.rel_pos_bias",
    "layernorm.weight": "context_encoder.norm.weight",
    "layernorm.bias": "context_encoder.norm.bias",
    "pooler.layernorm.weight": "context_encoder.fc_norm.weight",
    "pooler.layernorm.bias": "context_encoder.fc_norm.bias",
    **{f"encoder.layer.{{i}}.{hf}": f"context_encoder.layers.{{i}}.{ours}" for hf, ours in {
        "attention.attention.query.weight": "attn.q.weight", "attention.attention.query.bias": "attn.q.bias",
        "attention.attention.key.weight": "attn.k.weight",
        "attention.attention.value.weight": "attn.v.weight", "attention.attention.value.bias": "attn.v.bias",
        "attention.output.dense.weight": "attn.proj.weight", "attention.output.dense.bias": "attn.proj.bias",
        "intermediate.dense.weight": "fc1.weight", "intermediate.dense.bias": "fc1.bias",
        "output.dense.weight": "fc2.weight", "output.dense.bias": "fc2.bias",
        "layernorm_before.weight": "norm1.weight", "layernorm_before.bias": "norm1.bias",
        "layernorm_after.weight": "norm2.weight", "layernorm_after.bias": "norm2.bias",
        "lambda_1": "lambda_1", "lambda_2": "lambda_2",
        "attention.attention.relative_position_bias.relative_position_bias_table": "rel_pos_bias"}.items()},
}


def config_from_hf(hf: dict) -> ImageEncoderConfig:
    if hf.get("use_absolute_position_embeddings"):
        raise ValueError("data2vec-vision models with absolute position embeddings are not data2vec's layout")
    rel = "shared" if hf.get("use_shared_relative_position_bias") else \
        "per_layer" if hf.get("use_relative_position_bias") else "none"
    return ImageEncoderConfig(
        image_size=hf["image_size"], patch_size=hf["patch_size"], in_chans=hf.get("num_channels", 3),
        embed_dim=hf["hidden_size"], depth=hf["num_hidden_layers"], num_heads=hf["num_attention_heads"],
        mlp_ratio=hf["intermediate_size"] / hf["hidden_size"], layer_scale_init_value=hf.get("layer_scale_init_value", 0.1),
        drop_path_rate=hf.get("drop_path_rate", 0.1), layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
        rel_pos_bias=rel, use_mean_pooling=hf.get("use_mean_pooling", True))


def config_to_hf(enc: ImageEncoderConfig) -> dict:
    return {"model_type": MODEL_TYPE, "architectures": ["Data2VecVisionModel"], "image_size": enc.image_size,
            "patch_size": enc.patch_size, "num_channels": enc.in_chans, "hidden_size": enc.embed_dim,
            "num_hidden_layers": enc.depth, "num_attention_heads": enc.num_heads,
            "intermediate_size": int(enc.embed_dim * enc.mlp_ratio), "layer_norm_eps": enc.layer_norm_eps,
            "use_mask_token": True, "use_shared_relative_position_bias": enc.rel_pos_bias == "shared",
            "use_relative_position_bias": enc.rel_pos_bias == "per_layer",
            "use_absolute_position_embeddings": False, "use_mean_pooling": enc.use_mean_pooling,
            "layer_scale_init_value": enc.layer_scale_init_value, "drop_path_rate": enc.drop_path_rate,
            "hidden_dropout_prob": enc.dropout, "attention_probs_dropout_prob": enc.attention_dropout}


def state_from_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return map_keys(sd, KEYS)


def state_to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return map_keys({k: v for k, v in sd.items() if not k.endswith("rel_pos_index")}, {v: k for k, v in KEYS.items()})


def preset_overrides(enc: ImageEncoderConfig) -> dict:
    """The base recipe at the imported model's image size, with the loss scale of its width."""
    return {"data": {"augment": {"image_size": enc.image_size}}, "model": {"loss": {"loss_scale": 1 / enc.embed_dim}}}
