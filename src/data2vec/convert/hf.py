"""HF ``transformers`` Data2Vec{Audio,Text,Vision} models -> our encoders (SPEC E.1-E.3).

Explicit key tables with strict accounting (``map_keys``): every HF key is either mapped or listed in
the drop patterns (heads we do not build, non-persistent buffers), every encoder key is produced, and
shapes are checked on load. The HF config becomes our encoder config; the rest of the recipe comes from
the modality's base preset, so an imported model can continue pretraining. HF models have no
regression head and no teacher: the head keeps its fresh initialisation and the teacher starts as a
copy of the student.

Folded parameters: HF text models add ``token_type_embeddings[0]`` to every token; it is added to our
position table (each token gets exactly one position), which is exact. With ``type_vocab_size`` > 1
(transformers' default config), rows 1.. are dropped with a warning: transformers' forward uses type 0
unless given ``token_type_ids``, and data2vec text has no token types.
Vision: both the pretrained layout (shared relative position bias, final LayerNorm) and the fine-tuned
one (per-layer bias, mean pooling with ``fc_norm`` = HF ``pooler.layernorm``). Not supported, with a
clear error: absolute position embeddings and audio adapters.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import torch

from data2vec.convert.keys import map_keys
from data2vec.modalities.vision import VisionEncoderConfig
from data2vec.modalities.vision.encoder import HF_KEYS as VISION_KEYS
from data2vec.safe_load import read_json, read_safetensors, safe_torch_load

MODEL_TYPES = {"data2vec-audio": "audio", "data2vec-text": "text", "data2vec-vision": "vision"}
BASE_PRESET = {"audio": "audio-base-v1", "text": "text-base-v1", "vision": "image-base-v1"}

AUDIO_KEYS = {
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
TEXT_KEYS = {
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
TABLES = {"audio": AUDIO_KEYS, "text": TEXT_KEYS, "vision": VISION_KEYS}
# HF keys we do not import: task heads, pooler, non-persistent/derived buffers
DROPPED = re.compile(r"^(lm_head|classifier|projector|layer_weights|pooler\.dense|qa_outputs|decode_head|auxiliary_head)\b"
                     r"|position_ids$|token_type_ids$|relative_position_index$")
PREFIXES = ("data2vec_audio.", "data2vec_text.", "data2vec_vision.")

V2_NOT_IN_HF = ("HF transformers has no data2vec 2.0 model classes (its Data2VecAudio/Text/Vision models are the "
                "data2vec 1.0 architectures), so a data2vec 2.0 {what} cannot be exported with --to hf; use it from "
                "our checkpoint or run directory instead (data2vec evaluate / transcribe / extract, "
                "data2vec.finetune.inference.load_finetuned, data2vec.pretrained.load_pretrained)")


def encoder_config_from_hf(hf: dict):
    """HF ``config.json`` dict -> (modality, our encoder config)."""
    modality = MODEL_TYPES.get(hf.get("model_type", ""))
    if modality is None:
        raise ValueError(f"not a data2vec HF model (model_type={hf.get('model_type')!r}); "
                         f"supported: {', '.join(MODEL_TYPES)}")
    if modality == "audio":
        from data2vec.modalities.audio import AudioEncoderConfig

        if hf.get("add_adapter"):
            raise ValueError("HF audio models with an adapter are not supported")
        layers = [f"({d}, {k}, {s})" for d, k, s in zip(hf["conv_dim"], hf["conv_kernel"], hf["conv_stride"])]
        depth = hf.get("num_conv_pos_embeddings", 5)
        return modality, AudioEncoderConfig(
            conv_feature_layers="[" + ", ".join(layers) + "]", extractor_mode="layer_norm",
            conv_bias=hf.get("conv_bias", False), embed_dim=hf["hidden_size"],
            depth=hf["num_hidden_layers"], ffn_embed_dim=hf["intermediate_size"],
            num_heads=hf["num_attention_heads"], dropout=hf.get("hidden_dropout", 0.1),
            attention_dropout=hf.get("attention_dropout", 0.1), activation_dropout=hf.get("activation_dropout", 0.0),
            layerdrop=hf.get("layerdrop", 0.0), conv_pos=hf.get("conv_pos_kernel_size", 19) * depth,
            conv_pos_groups=hf.get("num_conv_pos_embedding_groups", 16), pos_conv_depth=depth,
            layer_norm_eps=hf.get("layer_norm_eps", 1e-5))
    if modality == "text":
        from data2vec.modalities.text import TextEncoderConfig

        pad = hf.get("pad_token_id", 1)
        if pad != 1:
            raise ValueError(f"HF text model with pad_token_id={pad}: only RoBERTa's layout (pad 1) is supported")
        return modality, TextEncoderConfig(
            vocab_size=hf["vocab_size"], pad=pad, max_positions=hf["max_position_embeddings"] - pad - 1,
            embed_dim=hf["hidden_size"], depth=hf["num_hidden_layers"],
            ffn_embed_dim=hf["intermediate_size"], num_heads=hf["num_attention_heads"],
            dropout=hf.get("hidden_dropout_prob", 0.1), attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
            layer_norm_eps=hf.get("layer_norm_eps", 1e-12))

    if hf.get("use_absolute_position_embeddings"):
        raise ValueError("vision models with absolute position embeddings are not data2vec's layout")
    rel = "shared" if hf.get("use_shared_relative_position_bias") else \
        "per_layer" if hf.get("use_relative_position_bias") else "none"
    return modality, VisionEncoderConfig(
        image_size=hf["image_size"], patch_size=hf["patch_size"], in_chans=hf.get("num_channels", 3),
        embed_dim=hf["hidden_size"], depth=hf["num_hidden_layers"], num_heads=hf["num_attention_heads"],
        mlp_ratio=hf["intermediate_size"] / hf["hidden_size"], layer_scale_init_value=hf.get("layer_scale_init_value", 0.1),
        drop_path_rate=hf.get("drop_path_rate", 0.1), layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
        rel_pos_bias=rel, use_mean_pooling=hf.get("use_mean_pooling", True))


def encoder_state_from_hf(modality: str, hf_sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF state dict (base model or with a task head) -> our encoder's state dict."""
    sd = {}
    for k, v in hf_sd.items():
        for p in PREFIXES:
            if k.startswith(p):
                k = k[len(p):]
        if not DROPPED.search(k):
            sd[k] = v
    if modality == "text":
        tt = sd.pop("embeddings.token_type_embeddings.weight", None)
        if tt is not None:
            if tt.size(0) > 1 and tt[1:].abs().max() > 0:  # transformers' forward uses type 0 unless told
                warnings.warn(f"HF text model with type_vocab_size={tt.size(0)}: row 0 of token_type_embeddings is "
                              "folded into the positions (transformers' default token_type_ids=0); rows 1.. are "
                              "dropped, since data2vec text has no token types", stacklevel=2)
            sd["embeddings.position_embeddings.weight"] = sd["embeddings.position_embeddings.weight"] + tt[0]
    return map_keys(sd, TABLES[modality])


def read_hf_dir(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    d = Path(path)
    cfg_path = d / "config.json"
    if not cfg_path.is_file():
        raise ValueError(f"{d} is not a HF model directory (no config.json)")
    cfg = read_json(cfg_path)
    encoder_config_from_hf(cfg)  # unsupported model types fail here, before reading weights
    try:
        if (d / "model.safetensors").is_file():
            sd = read_safetensors(d / "model.safetensors")
        elif (d / "pytorch_model.bin").is_file():
            sd = safe_torch_load(d / "pytorch_model.bin")
        else:
            raise ValueError(f"{d} has neither model.safetensors nor pytorch_model.bin")
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - corrupt or truncated weight files
        raise ValueError(f"cannot read the weights in {d}: {e}") from None
    return cfg, sd


def hf_config_from_encoder(modality: str, enc) -> dict:
    """Our encoder config -> HF ``config.json`` dict (base model, no task head)."""
    if modality == "audio":
        from data2vec.modalities.audio.encoder import parse_conv_layers

        if enc.extractor_mode != "layer_norm":
            raise ValueError("HF Data2VecAudio has a layer-norm conv extractor only (extractor_mode=layer_norm)")
        conv = parse_conv_layers(enc.conv_feature_layers)
        k = max(3, enc.conv_pos // enc.pos_conv_depth)
        return {"model_type": "data2vec-audio", "architectures": ["Data2VecAudioModel"],
                "conv_dim": [c[0] for c in conv], "conv_kernel": [c[1] for c in conv], "conv_stride": [c[2] for c in conv],
                "conv_bias": enc.conv_bias, "feat_extract_activation": "gelu", "hidden_size": enc.embed_dim,
                "num_hidden_layers": enc.depth, "num_attention_heads": enc.num_heads,
                "intermediate_size": enc.ffn_embed_dim, "num_conv_pos_embeddings": enc.pos_conv_depth,
                "conv_pos_kernel_size": k, "num_conv_pos_embedding_groups": enc.conv_pos_groups,
                "layer_norm_eps": enc.layer_norm_eps, "hidden_dropout": enc.dropout,
                "attention_dropout": enc.attention_dropout, "activation_dropout": enc.activation_dropout,
                "layerdrop": enc.layerdrop, "mask_time_prob": 0.05}
    if modality == "text":
        if not enc.layernorm_embedding or not enc.no_scale_embedding:
            raise ValueError("HF Data2VecText needs layernorm_embedding=true and no_scale_embedding=true")
        return {"model_type": "data2vec-text", "architectures": ["Data2VecTextModel"], "vocab_size": enc.vocab_size,
                "hidden_size": enc.embed_dim, "num_hidden_layers": enc.depth,
                "num_attention_heads": enc.num_heads, "intermediate_size": enc.ffn_embed_dim,
                "max_position_embeddings": enc.max_positions + enc.pad + 1, "type_vocab_size": 1,
                "layer_norm_eps": enc.layer_norm_eps, "pad_token_id": enc.pad, "bos_token_id": 0, "eos_token_id": 2,
                "hidden_dropout_prob": enc.dropout, "attention_probs_dropout_prob": enc.attention_dropout,
                "hidden_act": "gelu"}
    return {"model_type": "data2vec-vision", "architectures": ["Data2VecVisionModel"], "image_size": enc.image_size,
            "patch_size": enc.patch_size, "num_channels": enc.in_chans, "hidden_size": enc.embed_dim,
            "num_hidden_layers": enc.depth, "num_attention_heads": enc.num_heads,
            "intermediate_size": int(enc.embed_dim * enc.mlp_ratio), "layer_norm_eps": enc.layer_norm_eps,
            "use_mask_token": True, "use_shared_relative_position_bias": enc.rel_pos_bias == "shared",
            "use_relative_position_bias": enc.rel_pos_bias == "per_layer",
            "use_absolute_position_embeddings": False, "use_mean_pooling": enc.use_mean_pooling,
            "layer_scale_init_value": enc.layer_scale_init_value, "drop_path_rate": enc.drop_path_rate,
            "hidden_dropout_prob": enc.dropout, "attention_probs_dropout_prob": enc.attention_dropout}


def hf_state_from_encoder(modality: str, enc_sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our encoder state dict -> HF base-model state dict (the inverse tables; text gets zero token types)."""
    inverse = {v: k for k, v in TABLES[modality].items()}
    sd = {k: v for k, v in enc_sd.items() if not k.endswith("rel_pos_index")}
    out = map_keys(sd, inverse)
    if modality == "text":
        C = out["embeddings.word_embeddings.weight"].shape[1]
        out["embeddings.token_type_embeddings.weight"] = torch.zeros(1, C)
    return out


def export_hf(cfg, model, out_dir: str | Path) -> Path:
    """Write a HF ``transformers`` directory (config.json + model.safetensors) of the student encoder."""
    from safetensors.torch import save_file

    if getattr(cfg, "version", 1) == 2:
        raise ValueError(V2_NOT_IN_HF.format(what="model"))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hf_cfg = hf_config_from_encoder(cfg.modality, cfg.encoder)
    state = hf_state_from_encoder(cfg.modality, model.student.encoder.state_dict())
    (out / "config.json").write_text(json.dumps(hf_cfg, indent=2) + "\n")
    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    return out
