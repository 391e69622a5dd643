"""HF ``transformers`` ``Data2VecTextModel`` (= ``RobertaModel``) <-> our data2vec 1.0 text encoder (docs/SPEC.md
E.2): the config fields and the key table. HF text models add ``token_type_embeddings[0]`` to every token; it is
folded into our position table (each token gets exactly one position), which is exact. With ``type_vocab_size``
> 1 (transformers' default config), rows 1.. are dropped with a warning: transformers' forward uses type 0 unless
given ``token_type_ids``, and data2vec text has no token types."""

from __future__ import annotations

import warnings

import torch

from data2vec.keys import map_keys
from data2vec.modalities.text.encoder import TextEncoderConfig

MODEL_TYPE = "data2vec-text"
PREFIX = "data2vec_text."
BASE_PRESET = "text-base-v1"

KEYS = {
    "embeddings.word_embeddings.weight": "embed_tokens.weight",
    "embeddings.position_embeddings.weight": "embed_positions.weight",
    "embeddings.LayerNorm.weight": "layernorm_embedding.weight",
    "embeddings.LayerNorm.bias": "layernorm_embedding.bias",
    **{f"encoder.layer.{{i}}.{hf}.{p}": f"context_encoder.layers.{{i}}.{ours}.{p}" for hf, ours in {
        "attention.self.query": "self_attn.q_proj", "attention.self.key": "self_attn.k_proj",
        "attention.self.value": "self_attn.v_proj", "attention.output.dense": "self_attn.out_proj",
        "attention.output.LayerNorm": "self_attn_layer_norm", "intermediate.dense": "fc1",
        "output.dense": "fc2", "output.LayerNorm": "final_layer_norm"}.items() for p in ("weight", "bias")},
}


def config_from_hf(hf: dict) -> TextEncoderConfig:
    pad = hf.get("pad_token_id", 1)
    if pad != 1:
        raise ValueError(f"HF text model with pad_token_id={pad}: only RoBERTa's layout (pad 1) is supported")
    return TextEncoderConfig(
        vocab_size=hf["vocab_size"], pad=pad, max_positions=hf["max_position_embeddings"] - pad - 1,
        embed_dim=hf["hidden_size"], depth=hf["num_hidden_layers"],
        ffn_embed_dim=hf["intermediate_size"], num_heads=hf["num_attention_heads"],
        dropout=hf.get("hidden_dropout_prob", 0.1), attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
        layer_norm_eps=hf.get("layer_norm_eps", 1e-12))


def config_to_hf(enc: TextEncoderConfig) -> dict:
    if not enc.layernorm_embedding or not enc.no_scale_embedding:
        raise ValueError("HF Data2VecText needs layernorm_embedding=true and no_scale_embedding=true")
    return {"model_type": MODEL_TYPE, "architectures": ["Data2VecTextModel"], "vocab_size": enc.vocab_size,
            "hidden_size": enc.embed_dim, "num_hidden_layers": enc.depth,
            "num_attention_heads": enc.num_heads, "intermediate_size": enc.ffn_embed_dim,
            "max_position_embeddings": enc.max_positions + enc.pad + 1, "type_vocab_size": 1,
            "layer_norm_eps": enc.layer_norm_eps, "pad_token_id": enc.pad, "bos_token_id": 0, "eos_token_id": 2,
            "hidden_dropout_prob": enc.dropout, "attention_probs_dropout_prob": enc.attention_dropout,
            "hidden_act": "gelu"}


def state_from_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    sd = dict(sd)
    tt = sd.pop("embeddings.token_type_embeddings.weight", None)
    if tt is not None:
        if tt.size(0) > 1 and tt[1:].abs().max() > 0:  # transformers' forward uses type 0 unless told
            warnings.warn(f"HF text model with type_vocab_size={tt.size(0)}: row 0 of token_type_embeddings is "
                          "folded into the positions (transformers' default token_type_ids=0); rows 1.. are "
                          "dropped, since data2vec text has no token types", stacklevel=3)
        sd["embeddings.position_embeddings.weight"] = sd["embeddings.position_embeddings.weight"] + tt[0]
    return map_keys(sd, KEYS)


def state_to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = map_keys(sd, {v: k for k, v in KEYS.items()})
    out["embeddings.token_type_embeddings.weight"] = torch.zeros(1, out["embeddings.word_embeddings.weight"].shape[1])
    return out


def preset_overrides(enc: TextEncoderConfig) -> dict:
    return {}
