"""Transformer blocks shared by the modalities.

``MultiheadSelfAttention`` is fairseq ``fairseq/modules/multihead_attention.py`` (separate q/k/v/out
projections, keys at padded positions ignored) computed with ``F.scaled_dot_product_attention``.
``PostLNBlock`` is fairseq ``fairseq/models/wav2vec/wav2vec2.py::TransformerSentenceEncoderLayer`` with
``layer_norm_first=False`` (also RoBERTa's post-LN layer): it returns the block output and the FFN
output before dropout, the residual and the final LayerNorm, which is data2vec's regression target.

Shapes: B batch, T time, C channels, H heads.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class EncoderBase(nn.Module):
    """The part of the encoder protocol (``data2vec.core.data2vec``) that every modality's encoder shares: its
    sizes from ``self.cfg``, and the teacher parameters that ``ema_layers_only`` copies instead of averaging
    (none unless the encoder names some)."""

    cfg: object  # the encoder's config dataclass: ``embed_dim``, ``depth``

    @property
    def embed_dim(self) -> int:
        return self.cfg.embed_dim

    @property
    def num_layers(self) -> int:
        return self.cfg.depth

    def ema_copy_keys(self, transformer_only: bool) -> set[str]:
        return set()


class Embedded(NamedTuple):
    x: torch.Tensor  # [B, T, C] student input to the context encoder (masking applied where the modality applies it)
    unmasked: torch.Tensor  # [B, T, C] the same features before dropout and masking (teacher input)
    padding_mask: torch.Tensor | None  # [B, T] True = padded position, None if no padding


class ContextOutput(NamedTuple):
    """What every context encoder returns, data2vec 1.0 and 2.0 alike."""

    x: torch.Tensor  # [B, extra + T, C] final output (v2: extra tokens such as CLS first; v1 has none)
    layer_outputs: list[torch.Tensor]  # per executed layer [B, T, C], end of block, extra tokens removed
    ffn_outputs: list[torch.Tensor]  # per executed layer [B, T, C], FFN output before the residual, extra tokens removed
    padding_mask: torch.Tensor | None = None  # [B, T] of the returned positions; v1 returns None (the caller has it)
    num_extra: int = 0  # extra tokens at the start of x (v1: 0)


class MultiheadSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, *, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embedding dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.k_proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.v_proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x_BTC: torch.Tensor, padding_mask_BT: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C = x_BTC.shape
        H = self.num_heads

        def heads(t):
            return t.view(B, T, H, C // H).transpose(1, 2)  # [B, H, T, C/H]

        q, k, v = heads(self.q_proj(x_BTC)), heads(self.k_proj(x_BTC)), heads(self.v_proj(x_BTC))
        attn_mask = None
        if padding_mask_BT is not None:
            attn_mask = (~padding_mask_BT)[:, None, None, :]  # True = may attend
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(y.transpose(1, 2).reshape(B, T, C))


class PostLNBlock(nn.Module):
    """x = LN(x + Attn(x)); ffn = fc2(act(fc1(x))); x = LN(x + ffn). Returns (x, ffn)."""

    def __init__(
        self,
        dim: int,
        ffn_dim: int,
        num_heads: int,
        *,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        activation_dropout: float = 0.0,
        layer_norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.self_attn = MultiheadSelfAttention(dim, num_heads, attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)
        self.activation_dropout = nn.Dropout(activation_dropout)

    def forward(self, x_BTC: torch.Tensor, padding_mask_BT: torch.Tensor | None = None):
        x = self.self_attn_layer_norm(x_BTC + self.dropout(self.self_attn(x_BTC, padding_mask_BT)))
        ffn = self.fc2(self.activation_dropout(F.gelu(self.fc1(x))))
        x = self.final_layer_norm(x + self.dropout(ffn))
        return x, ffn


def run_layers(layers: nn.ModuleList, x_BTC: torch.Tensor, padding_mask_BT: torch.Tensor | None,
               layerdrop: float, training: bool):
    """Run post-LN blocks with layerdrop; returns (x, end-of-block outputs, FFN outputs) of executed layers."""
    outs, ffns = [], []
    for layer in layers:
        if training and layerdrop > 0 and torch.rand(()).item() < layerdrop:
            continue
        x_BTC, ffn = layer(x_BTC, padding_mask_BT)
        outs.append(x_BTC)
        ffns.append(ffn)
    return x_BTC, outs, ffns


def init_bert_params(module: nn.Module) -> None:
    """fairseq ``init_bert_params``: N(0, 0.02) for Linear/Embedding weights, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.padding_idx is not None:
            module.weight.data[module.padding_idx].zero_()
