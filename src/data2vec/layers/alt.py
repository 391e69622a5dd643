"""data2vec 2.0 Transformer pieces: ``AltBlock`` (fused qkv, post-LN), ALiBi biases, the prenet encoder.

Mirrors fairseq ``examples/data2vec/models/modalities/modules.py`` (``AltBlock``, ``AltAttention``,
``BlockEncoder``) and the ALiBi helpers of ``modalities/base.py`` (``get_alibi``, ``masked_alibi``).
Module names follow fairseq (``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.fc1``,
``mlp.fc2``) so checkpoints map one to one.

Only the post-LN block (``layer_norm_first=False``) is built: every released data2vec 2.0 config uses
it, and fairseq's pre-LN branch drops the residual around the MLP (SPEC A.4, "likely bug"), so
reproducing it would reproduce a bug. Attention is ``F.scaled_dot_product_attention`` with the ALiBi
bias and the key padding folded into one additive float mask; it equals fairseq's explicit
``softmax(q k^T * scale + bias)`` to float rounding.

Shapes: B batch, T time, C channels, H heads.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth per sample (timm ``DropPath``)."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.size(0),) + (1,) * (x.dim() - 1)).bernoulli_(1 - p)
    return x * keep / (1 - p)


class AltAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, *, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim={dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x_BTC: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        """``attn_bias``: additive float mask broadcastable to [B, H, T, T] (ALiBi and/or -inf at padded keys)."""
        B, T, C = x_BTC.shape
        q, k, v = self.qkv(x_BTC).view(B, T, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        if attn_bias is not None:
            attn_bias = attn_bias.to(q.dtype)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias,
                                           dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class Mlp(nn.Module):
    """timm ``Mlp``: fc1 -> GELU -> dropout -> fc2 -> dropout."""

    def __init__(self, dim: int, hidden: int, drop: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class AltBlock(nn.Module):
    """Post-LN block: x = norm1(x + attn(x)); t = mlp(x); x = norm2(x + t). Returns (x, t).

    ``t`` (the MLP output before dropout, residual and ``norm2``) is data2vec 2.0's regression target
    (fairseq ``ffn_targets=True``)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, *, norm_eps: float, norm_affine: bool = True,
                 encoder_dropout: float = 0.0, attention_dropout: float = 0.0, activation_dropout: float = 0.0,
                 post_mlp_drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=norm_affine)
        self.attn = AltAttention(dim, num_heads, attn_drop=attention_dropout, proj_drop=encoder_dropout)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=norm_affine)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), activation_dropout)
        self.post_mlp_dropout = nn.Dropout(post_mlp_drop)
        self.drop_path = drop_path

    def forward(self, x_BTC: torch.Tensor, attn_bias: torch.Tensor | None = None):
        x = self.norm1(x_BTC + drop_path(self.attn(x_BTC, attn_bias), self.drop_path, self.training))
        t = self.mlp(x)
        x = self.norm2(x + drop_path(self.post_mlp_dropout(t), self.drop_path, self.training))
        return x, t


def alibi_slopes(num_heads: int) -> list[float]:
    """ALiBi head slopes (Press et al.); for a non-power-of-2 head count, fairseq's interleaving workaround."""
    def pow2(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(num_heads).is_integer():
        return pow2(num_heads)
    closest = 2 ** math.floor(math.log2(num_heads))
    return pow2(closest) + alibi_slopes(2 * closest)[0::2][: num_heads - closest]


def alibi_bias_1d(num_positions: int, num_heads: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """[H, T, T] symmetric 1-D ALiBi: bias[h, i, j] = -slope_h * |i - j| (fairseq ``get_alibi``, dims=1)."""
    pos = torch.arange(num_positions, device=device)
    dist = (pos[None, :] - pos[:, None]).abs().neg().to(dtype)
    slopes = torch.tensor(alibi_slopes(num_heads), device=device, dtype=dtype)
    return slopes[:, None, None] * dist[None]


def gather_kept_bias(bias_BHTT: torch.Tensor, ids_keep_BK: torch.Tensor) -> torch.Tensor:
    """fairseq ``masked_alibi``: keep the rows and columns of the kept positions -> [B, H, K, K]."""
    B, H, T, _ = bias_BHTT.shape
    K = ids_keep_BK.size(1)
    rows = torch.gather(bias_BHTT, 2, ids_keep_BK[:, None, :, None].expand(B, H, K, T))
    return torch.gather(rows, 3, ids_keep_BK[:, None, None, :].expand(B, H, K, K))


def run_blocks(blocks: nn.ModuleList, x_BTC: torch.Tensor, bias: torch.Tensor | None,
               scales: list[torch.Tensor | None], layerdrop: float, training: bool):
    """Run AltBlocks with layerdrop; ``scales[i]`` (or None) multiplies the ALiBi part of block i's bias.

    ``bias`` is a tuple (alibi [B, H, T, T] or None, padding [B, 1, 1, T] float (0 / -inf) or None).
    Returns (x, end-of-block outputs, FFN outputs) of the executed blocks."""
    alibi, pad = bias
    outs, ffns = [], []
    for i, blk in enumerate(blocks):
        if training and layerdrop > 0 and torch.rand(()).item() < layerdrop:
            continue
        b = alibi
        if b is not None and scales[i] is not None:
            b = b * scales[i].type_as(b)
        if pad is not None:
            b = pad if b is None else b + pad
        x_BTC, t = blk(x_BTC, b)
        outs.append(x_BTC)
        ffns.append(t)
    return x_BTC, outs, ffns
