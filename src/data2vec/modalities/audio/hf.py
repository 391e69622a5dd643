"""HF ``transformers`` ``Data2VecAudioModel`` <-> our data2vec 1.0 speech encoder (docs/SPEC.md E.1): the config
fields and the key table (strict accounting in ``data2vec.keys.map_keys``). HF has no data2vec 2.0 speech model.
Not supported, with a clear error: audio adapters, the group-norm conv extractor."""

from __future__ import annotations

import torch

from data2vec.keys import map_keys
from data2vec.modalities.audio.encoder import AudioEncoderConfig, parse_conv_layers

MODEL_TYPE = "data2vec-audio"
PREFIX = "data2vec_audio."  # of the encoder's keys in HF task models
BASE_PRESET = "audio-base-v1"  # the pretraining recipe an imported encoder continues with

KEYS = {
    "masked_spec_embed": "mask_emb",
    "feature_extractor.conv_layers.{i}.conv.weight": "feature_extractor.conv_layers.{i}.conv.weight",
    "feature_extractor.conv_layers.{i}.conv.bias": "feature_extractor.conv_layers.{i}.conv.bias",
    "feature_extractor.conv_layers.{i}.layer_norm.weight": "feature_extractor.conv_layers.{i}.norm.weight",
    "feature_extractor.conv_layers.{i}.layer_norm.bias": "feature_extractor.conv_layers.{i}.norm.bias",
    "feature_projection.layer_norm.weight": "layer_norm.weight",
    "feature_projection.layer_norm.bias": "layer_norm.bias",
    "feature_projection.projection.weight": "post_extract_proj.weight",
    "feature_projection.projection.bias": "post_extract_proj.bias",
    "encoder.pos_conv_embed.layers.{j}.conv.weight": "context_encoder.pos_conv.{j}.conv.weight",
    "encoder.pos_conv_embed.layers.{j}.conv.bias": "context_encoder.pos_conv.{j}.conv.bias",
    "encoder.layer_norm.weight": "context_encoder.layer_norm.weight",
    "encoder.layer_norm.bias": "context_encoder.layer_norm.bias",
    **{f"encoder.layers.{{i}}.{hf}.{p}": f"context_encoder.layers.{{i}}.{ours}.{p}" for hf, ours in {
        "attention.q_proj": "self_attn.q_proj", "attention.k_proj": "self_attn.k_proj",
        "attention.v_proj": "self_attn.v_proj", "attention.out_proj": "self_attn.out_proj",
        "layer_norm": "self_attn_layer_norm", "feed_forward.intermediate_dense": "fc1",
        "feed_forward.output_dense": "fc2", "final_layer_norm": "final_layer_norm"}.items() for p in ("weight", "bias")},
}


def config_from_hf(hf: dict) -> AudioEncoderConfig:
    if hf.get("add_adapter"):
        raise ValueError("HF audio models with an adapter are not supported")
    layers = [f"({d}, {k}, {s})" for d, k, s in zip(hf["conv_dim"], hf["conv_kernel"], hf["conv_stride"])]
    depth = hf.get("num_conv_pos_embeddings", 5)
    return AudioEncoderConfig(
        conv_feature_layers="[" + ", ".join(layers) + "]", extractor_mode="layer_norm",
        conv_bias=hf.get("conv_bias", False), embed_dim=hf["hidden_size"],
        depth=hf["num_hidden_layers"], ffn_embed_dim=hf["intermediate_size"],
        num_heads=hf["num_attention_heads"], dropout=hf.get("hidden_dropout", 0.1),
        attention_dropout=hf.get("attention_dropout", 0.1), activation_dropout=hf.get("activation_dropout", 0.0),
        layerdrop=hf.get("layerdrop", 0.0), conv_pos_width=hf.get("conv_pos_kernel_size", 19) * depth,
        conv_pos_groups=hf.get("num_conv_pos_embedding_groups", 16), conv_pos_depth=depth,
        layer_norm_eps=hf.get("layer_norm_eps", 1e-5))


def config_to_hf(enc: AudioEncoderConfig) -> dict:
    if enc.extractor_mode != "layer_norm":
        raise ValueError("HF Data2VecAudio has a layer-norm conv extractor only (extractor_mode=layer_norm)")
    conv = parse_conv_layers(enc.conv_feature_layers)
    k = max(3, enc.conv_pos_width // enc.conv_pos_depth)
    return {"model_type": MODEL_TYPE, "architectures": ["Data2VecAudioModel"],
            "conv_dim": [c[0] for c in conv], "conv_kernel": [c[1] for c in conv], "conv_stride": [c[2] for c in conv],
            "conv_bias": enc.conv_bias, "feat_extract_activation": "gelu", "hidden_size": enc.embed_dim,
            "num_hidden_layers": enc.depth, "num_attention_heads": enc.num_heads,
            "intermediate_size": enc.ffn_embed_dim, "num_conv_pos_embeddings": enc.conv_pos_depth,
            "conv_pos_kernel_size": k, "num_conv_pos_embedding_groups": enc.conv_pos_groups,
            "layer_norm_eps": enc.layer_norm_eps, "hidden_dropout": enc.dropout,
            "attention_dropout": enc.attention_dropout, "activation_dropout": enc.activation_dropout,
            "layerdrop": enc.layerdrop, "mask_time_prob": 0.05}


def state_from_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return map_keys(sd, KEYS)


def state_to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return map_keys(sd, {v: k for k, v in KEYS.items()})


def preset_overrides(enc: AudioEncoderConfig) -> dict:
    """What the base recipe must change to fit an imported encoder (nothing for speech)."""
    return {}
