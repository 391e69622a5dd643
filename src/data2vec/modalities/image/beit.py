"""Official data2vec vision / BEiT checkpoints (``.pth``: ``{"model": state_dict, "model_ema"?: ..., "args": ...}``)
-> our image encoder (SPEC E.3: the same mapping HF's converter applies).

``blocks.{i}.attn.qkv.weight`` is split into q/k/v (k has no bias; ``q_bias``/``v_bias`` are the others),
``gamma_1/2`` are the layer scales, ``rel_pos_bias.*`` is the shared relative position bias (pretrained
checkpoints), ``blocks.{i}.attn.relative_position_bias_table`` the per-layer one (fine-tuned), ``fc_norm``
the mean-pooling norm. The config (width, depth, heads, patch and image size, layout) is read off the
tensor shapes. ``lm_head`` is the pretraining regression head; ``head`` (a classifier) is not imported.
"""

from __future__ import annotations

import re

import torch

from data2vec.modalities.image import ImageEncoderConfig

_DIRECT = {
    "cls_token": "context_encoder.cls_token",
    "mask_token": "mask_token",
    "patch_embed.proj.weight": "patch_embed.weight",
    "patch_embed.proj.bias": "patch_embed.bias",
    "rel_pos_bias.relative_position_bias_table": "context_encoder.rel_pos_bias",
    "norm.weight": "context_encoder.norm.weight",
    "norm.bias": "context_encoder.norm.bias",
    "fc_norm.weight": "context_encoder.fc_norm.weight",
    "fc_norm.bias": "context_encoder.fc_norm.bias",
}
_BLOCK = {
    "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias", "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias", "attn.q_bias": "attn.q.bias", "attn.v_bias": "attn.v.bias",
    "attn.proj.weight": "attn.proj.weight", "attn.proj.bias": "attn.proj.bias",
    "attn.relative_position_bias_table": "rel_pos_bias", "mlp.fc1.weight": "fc1.weight", "mlp.fc1.bias": "fc1.bias",
    "mlp.fc2.weight": "fc2.weight", "mlp.fc2.bias": "fc2.bias", "gamma_1": "lambda_1", "gamma_2": "lambda_2",
}
_DROPPED = re.compile(r"relative_position_index$|^head\.|^lm_head\.")
_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(.+)$")


def is_beit_state(sd: dict) -> bool:
    return "patch_embed.proj.weight" in sd and any(k.startswith("blocks.0.") for k in sd)


def config_from_beit(sd: dict[str, torch.Tensor]) -> ImageEncoderConfig:
    C, chans, p, _ = sd["patch_embed.proj.weight"].shape
    depth = 1 + max(int(m.group(1)) for k in sd if (m := _BLOCK_KEY.match(k)))
    if "rel_pos_bias.relative_position_bias_table" in sd:
        rel, table = "shared", sd["rel_pos_bias.relative_position_bias_table"]
    elif "blocks.0.attn.relative_position_bias_table" in sd:
        rel, table = "per_layer", sd["blocks.0.attn.relative_position_bias_table"]
    else:
        rel, table = "none", None
    if table is not None:
        heads = table.shape[1]
        grid = int(round(((table.shape[0] - 3) ** 0.5 + 1) / 2))
    else:
        heads, grid = C // 64, 224 // p
    return ImageEncoderConfig(
        image_size=grid * p, patch_size=p, in_chans=chans, embed_dim=C, depth=depth, num_heads=heads,
        mlp_ratio=sd["blocks.0.mlp.fc1.weight"].shape[0] / C,
        layer_scale_init_value=0.1 if "blocks.0.gamma_1" in sd else 0.0,
        rel_pos_bias=rel, use_mean_pooling="fc_norm.weight" in sd)


def encoder_state_from_beit(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out, unknown = {}, []
    for k, v in sd.items():
        if _DROPPED.search(k):
            continue
        m = _BLOCK_KEY.match(k)
        if k in _DIRECT:
            out[_DIRECT[k]] = v
        elif m and m.group(2) == "attn.qkv.weight":
            q, kk, vv = v.chunk(3, dim=0)
            pre = f"context_encoder.layers.{m.group(1)}.attn."
            out[pre + "q.weight"], out[pre + "k.weight"], out[pre + "v.weight"] = q, kk, vv
        elif m and m.group(2) in _BLOCK:
            out[f"context_encoder.layers.{m.group(1)}.{_BLOCK[m.group(2)]}"] = v
        else:
            unknown.append(k)
    if unknown:
        raise ValueError(f"BEiT/data2vec vision checkpoint has keys the table does not know: {unknown[:10]}")
    return out
