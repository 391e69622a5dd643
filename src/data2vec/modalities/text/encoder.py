"""Text encoder for data2vec 1.0: RoBERTa-style post-LN Transformer (fairseq ``TransformerEncoder`` as
configured by ``examples/data2vec/config/text/pretraining/base.yaml``).

token embedding (no scaling) + learned positions (RoBERTa offset: position ids start at ``pad + 1``,
padding gets ``pad``) -> ``layernorm_embedding`` -> dropout -> padded positions zeroed -> post-LN
layers. The padding mask is derived from the tokens (``tokens == pad``), as in fairseq.

Masking happens on the tokens, in the collator (``<mask>``, random or kept tokens), so ``embed``
ignores ``mask``; the teacher gets the uncorrupted tokens through ``batch["teacher_source"]``.
With ``ema_transformer_only=False`` the teacher is an EMA of this whole encoder; under
``ema_layers_only`` (fairseq ``ema_transformer_layers_only``) the embeddings, positions and embedding
LayerNorm are copied instead of averaged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from data2vec.layers.transformer import ContextOutput, Embedded, EncoderBase, PostLNBlock, init_bert_params, run_layers


@dataclass(kw_only=True)
class TextEncoderConfig:
    # data2vec 1.0 (fairseq) names of these fields, still read from config files, --set and checkpoints
    RENAMED: ClassVar[dict[str, str]] = {
        "encoder_embed_dim": "embed_dim", "encoder_layers": "depth", "encoder_attention_heads": "num_heads",
        "encoder_ffn_embed_dim": "ffn_embed_dim", "encoder_layerdrop": "layerdrop"}
    vocab_size: int = 0  # 0 = take it from the data's tokenizer at build time
    pad: int = 1  # padding id (fairseq/RoBERTa: <s>=0, <pad>=1, </s>=2, <unk>=3)
    max_positions: int = 512
    embed_dim: int = 768
    depth: int = 12
    ffn_embed_dim: int = 3072
    num_heads: int = 12
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    layerdrop: float = 0.0
    layernorm_embedding: bool = True
    no_scale_embedding: bool = True  # fairseq: embeddings are multiplied by sqrt(C) unless this is set
    layer_norm_eps: float = 1e-5

    def __post_init__(self):
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim={self.embed_dim} must be divisible by "
                             f"num_heads={self.num_heads}")


def make_positions(tokens_BT: torch.Tensor, pad: int) -> torch.Tensor:
    """fairseq ``utils.make_positions``: pad + 1, pad + 2, ... over non-pad tokens; pad at padding."""
    keep = tokens_BT.ne(pad).int()
    return (torch.cumsum(keep, dim=1).type_as(keep) * keep).long() + pad


class TextContextEncoder(nn.Module):
    def __init__(self, cfg: TextEncoderConfig):
        super().__init__()
        self.layerdrop = cfg.layerdrop
        self.layers = nn.ModuleList(
            PostLNBlock(cfg.embed_dim, cfg.ffn_embed_dim, cfg.num_heads,
                        dropout=cfg.dropout, attention_dropout=cfg.attention_dropout,
                        activation_dropout=cfg.activation_dropout, layer_norm_eps=cfg.layer_norm_eps)
            for _ in range(cfg.depth))

    def forward(self, x_BTC: torch.Tensor, padding_mask_BT: torch.Tensor | None = None) -> ContextOutput:
        return ContextOutput(*run_layers(self.layers, x_BTC, padding_mask_BT, self.layerdrop, self.training))


class TextEncoder(EncoderBase):
    # The collator corrupts the student's tokens (BERT-style mask/random/keep), so the batch must also carry
    # the clean tokens for the teacher (batch["teacher_source"]); Data2Vec refuses a batch without them.
    needs_teacher_source = True

    def __init__(self, cfg: TextEncoderConfig):
        super().__init__()
        if cfg.vocab_size <= 0:
            raise ValueError("encoder.vocab_size is not set: it comes from the tokenizer (data.path) or set it")
        self.cfg = cfg
        C = cfg.embed_dim
        self.embed_tokens = nn.Embedding(cfg.vocab_size, C, padding_idx=cfg.pad)
        self.embed_positions = nn.Embedding(cfg.max_positions + cfg.pad + 1, C, padding_idx=cfg.pad)
        self.layernorm_embedding = nn.LayerNorm(C, eps=cfg.layer_norm_eps) if cfg.layernorm_embedding else None
        self.embed_scale = 1.0 if cfg.no_scale_embedding else C**0.5
        self.dropout = nn.Dropout(cfg.dropout)
        self.context_encoder = TextContextEncoder(cfg)
        self.apply(init_bert_params)

    def ema_copy_keys(self, transformer_only: bool) -> set[str]:
        """Copied, not averaged, under ``ema_layers_only`` (fairseq ``ema_transformer_layers_only``)."""
        if transformer_only:
            raise ValueError("text: ema_transformer_only must be false (the teacher embeds its own tokens)")
        names = [n for n, _ in self.named_parameters() if not n.startswith("context_encoder.")]
        return set(names)

    def embed(self, tokens_BT: torch.Tensor, padding_mask_BT=None, mask_BT=None) -> Embedded:
        if tokens_BT.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"text encoder expects token ids (int64), got {tokens_BT.dtype}")
        if tokens_BT.size(1) > self.cfg.max_positions:
            raise ValueError(f"sequence of {tokens_BT.size(1)} tokens exceeds max_positions={self.cfg.max_positions}")
        pad = tokens_BT.eq(self.cfg.pad)
        x = self.embed_scale * self.embed_tokens(tokens_BT) + self.embed_positions(make_positions(tokens_BT, self.cfg.pad))
        if self.layernorm_embedding is not None:
            x = self.layernorm_embedding(x)
        x = self.dropout(x)
        has_pad = bool(pad.any())
        if has_pad:
            x = x.masked_fill(pad.unsqueeze(-1), 0.0)
        return Embedded(x, x, pad if has_pad else None)

    def forward(self, tokens_BT: torch.Tensor, padding_mask_BT=None, mask_BT=None) -> ContextOutput:
        e = self.embed(tokens_BT)
        return self.context_encoder(e.x, e.padding_mask)
