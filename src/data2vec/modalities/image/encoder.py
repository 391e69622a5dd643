"""Image encoder for data2vec 1.0: BEiT ViT as in the official data2vec vision code (SPEC A.3 "Official").

patch embedding (Conv2d, any patch size / channel count) -> masked patches replaced by a learned
``mask_token`` (``embed``); then the ``context_encoder``: CLS token prepended, pre-LN blocks with layer
scale and drop path, q/v bias without k bias, one relative position bias table shared by all blocks
(no absolute positions), LayerNorm eps 1e-6, final LayerNorm. The context encoder returns patch tokens
only (CLS dropped), so masks are over patches, as HF's ``bool_masked_pos``.

Parameters match HF ``Data2VecVisionModel`` one to one (``tests/test_image.py`` loads random HF weights
through ``data2vec.modalities.image.hf.KEYS`` and compares every layer): so official checkpoints can be imported.
Targets are end-of-block outputs (``TargetConfig.layer_results = "end"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from data2vec.layers.transformer import ContextOutput, Embedded, EncoderBase


@dataclass(kw_only=True)
class ImageEncoderConfig:
    image_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    layer_scale_init_value: float = 0.1  # lambda_1/lambda_2 init (BEiT "init_values"); 0 disables layer scale
    drop_path_rate: float = 0.1  # stochastic depth, linearly increasing over blocks
    attention_dropout: float = 0.0
    dropout: float = 0.0
    layer_norm_eps: float = 1e-6
    rel_pos_bias: Literal["shared", "per_layer", "none"] = "shared"  # pretraining: shared; fine-tuned: per layer
    use_mean_pooling: bool = False  # fine-tuned layout: no final norm, fc_norm on the mean of patch tokens

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size={self.image_size} is not a multiple of patch_size={self.patch_size}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim={self.embed_dim} must be divisible by num_heads={self.num_heads}")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


def relative_position_index(h: int, w: int) -> torch.Tensor:
    """BEiT's [1 + h*w, 1 + h*w] index into the shared bias table (last 3 rows: cls<->token, cls<->cls)."""
    num = (2 * h - 1) * (2 * w - 1) + 3
    coords = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    rel[:, :, 0] += h - 1
    rel[:, :, 1] += w - 1
    rel[:, :, 0] *= 2 * w - 1
    idx = torch.zeros((h * w + 1,) * 2, dtype=torch.long)
    idx[1:, 1:] = rel.sum(-1)
    idx[0, :] = num - 3
    idx[:, 0] = num - 2
    idx[0, 0] = num - 1
    return idx


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, attention_dropout: float):
        super().__init__()
        self.heads, self.attention_dropout = heads, attention_dropout
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim, bias=False)  # BEiT: q and v biases only
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x_BTC, bias_HTT):
        B, T, C = x_BTC.shape

        def split(t):
            return t.view(B, T, self.heads, C // self.heads).transpose(1, 2)

        mask = None if bias_HTT is None else bias_HTT.unsqueeze(0).to(x_BTC.dtype)
        y = F.scaled_dot_product_attention(split(self.q(x_BTC)), split(self.k(x_BTC)), split(self.v(x_BTC)),
                                           attn_mask=mask,
                                           dropout_p=self.attention_dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.size(0),) + (1,) * (x.dim() - 1)).bernoulli_(1 - p)
    return x * keep / (1 - p)


class Block(nn.Module):
    """x = x + dp(lambda_1 * attn(norm1(x))); x = x + dp(lambda_2 * mlp(norm2(x)))."""

    def __init__(self, cfg: ImageEncoderConfig, drop_path_rate: float):
        super().__init__()
        C = cfg.embed_dim
        self.norm1 = nn.LayerNorm(C, eps=cfg.layer_norm_eps)
        self.attn = Attention(C, cfg.num_heads, cfg.attention_dropout)
        self.norm2 = nn.LayerNorm(C, eps=cfg.layer_norm_eps)
        self.fc1 = nn.Linear(C, int(C * cfg.mlp_ratio))
        self.fc2 = nn.Linear(int(C * cfg.mlp_ratio), C)
        self.dropout = nn.Dropout(cfg.dropout)
        self.drop_path = drop_path_rate
        v = cfg.layer_scale_init_value
        self.lambda_1 = nn.Parameter(v * torch.ones(C)) if v > 0 else None
        self.lambda_2 = nn.Parameter(v * torch.ones(C)) if v > 0 else None
        g = cfg.grid
        self.rel_pos_bias = nn.Parameter(torch.zeros((2 * g - 1) ** 2 + 3, cfg.num_heads)) \
            if cfg.rel_pos_bias == "per_layer" else None

    def forward(self, x, bias):
        a = self.dropout(self.attn(self.norm1(x), bias))
        x = x + drop_path(a * self.lambda_1 if self.lambda_1 is not None else a, self.drop_path, self.training)
        ffn = self.dropout(self.fc2(F.gelu(self.fc1(self.norm2(x)))))
        x = x + drop_path(ffn * self.lambda_2 if self.lambda_2 is not None else ffn, self.drop_path, self.training)
        return x, ffn


class ImageContextEncoder(nn.Module):
    def __init__(self, cfg: ImageEncoderConfig):
        super().__init__()
        g = cfg.grid
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.rel_pos_bias = nn.Parameter(torch.zeros((2 * g - 1) ** 2 + 3, cfg.num_heads)) \
            if cfg.rel_pos_bias == "shared" else None
        self.register_buffer("rel_pos_index", relative_position_index(g, g), persistent=False)
        rates = torch.linspace(0, cfg.drop_path_rate, cfg.depth, device="cpu").tolist()  # also under a meta device
        self.layers = nn.ModuleList(Block(cfg, r) for r in rates)
        eps = cfg.layer_norm_eps
        self.norm = None if cfg.use_mean_pooling else nn.LayerNorm(cfg.embed_dim, eps=eps)
        self.fc_norm = nn.LayerNorm(cfg.embed_dim, eps=eps) if cfg.use_mean_pooling else None

    def _bias(self, table: torch.Tensor | None, T: int) -> torch.Tensor | None:
        return None if table is None else table[self.rel_pos_index.view(-1)].view(T, T, -1).permute(2, 0, 1)

    def forward(self, x_BNC: torch.Tensor, padding_mask=None) -> ContextOutput:
        T = x_BNC.size(1) + 1
        shared = self._bias(self.rel_pos_bias, T)
        x = torch.cat([self.cls_token.expand(x_BNC.size(0), -1, -1).to(x_BNC.dtype), x_BNC], dim=1)
        outs, ffns = [], []
        for layer in self.layers:
            x, ffn = layer(x, shared if layer.rel_pos_bias is None else self._bias(layer.rel_pos_bias, T))
            outs.append(x[:, 1:])
            ffns.append(ffn[:, 1:])
        final = x if self.norm is None else self.norm(x)
        return ContextOutput(final[:, 1:], outs, ffns)

    def pooled(self, out: ContextOutput) -> torch.Tensor:
        """Image-level feature: fc_norm(mean of patch tokens) in the fine-tuned layout (HF ``pooler_output``)."""
        if self.fc_norm is None:
            raise ValueError("this encoder has no mean-pooling head (use_mean_pooling=false)")
        return self.fc_norm(out.x.mean(1))


class ImageEncoder(EncoderBase):
    def __init__(self, cfg: ImageEncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = nn.Conv2d(cfg.in_chans, cfg.embed_dim, cfg.patch_size, stride=cfg.patch_size)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.context_encoder = ImageContextEncoder(cfg)
        self._init_weights()

    def _init_weights(self) -> None:
        """BEiT init: trunc-normal(0.02) for tokens and Linear weights, output projections rescaled by depth."""
        for p in (self.mask_token, self.context_encoder.cls_token):
            nn.init.trunc_normal_(p, std=0.02)
        for n, p in self.named_parameters():
            if n.endswith("rel_pos_bias"):
                nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for i, layer in enumerate(self.context_encoder.layers):
            layer.attn.proj.weight.data.div_(math.sqrt(2.0 * (i + 1)))
            layer.fc2.weight.data.div_(math.sqrt(2.0 * (i + 1)))

    def embed(self, images_BCHW: torch.Tensor, padding_mask=None, mask_BN=None) -> Embedded:
        c = self.cfg
        if images_BCHW.dim() != 4 or images_BCHW.shape[1:] != (c.in_chans, c.image_size, c.image_size):
            raise ValueError(f"expected images [B, {c.in_chans}, {c.image_size}, {c.image_size}], "
                             f"got {tuple(images_BCHW.shape)}")
        x = self.patch_embed(images_BCHW).flatten(2).transpose(1, 2)  # [B, N, C]
        unmasked = x
        if mask_BN is not None:
            x = torch.where(mask_BN.unsqueeze(-1), self.mask_token.to(x.dtype), x)
        return Embedded(x, unmasked, None)

    def forward(self, images_BCHW, padding_mask=None, mask_BN=None) -> ContextOutput:
        e = self.embed(images_BCHW, None, mask_BN)
        return self.context_encoder(e.x)


# HF Data2VecVisionModel key -> ours ({i} = layer). Tested in tests/test_image.py.
