"""Text encoder of data2vec 2.0 (fairseq ``examples/data2vec/models/modalities/text.py::TextEncoder``).

token embedding (no scaling) + learned positions (RoBERTa offset) -> ``layernorm_embedding`` -> dropout
= the local encoder; then the v2 context encoder (no relative positional conv, no ALiBi, no prenet in
the released configs). Unlike v1, padded positions are *not* zeroed (fairseq v2 does not); attention
ignores padded keys. The padding mask comes from the tokens (``tokens == pad``).

Masking is never applied to the tokens: the student drops the masked positions (``MaskInfo``) and the
teacher sees every token, so there is no ``<mask>`` symbol and no corrupted teacher input (the
concern of fairseq#4881 cannot arise).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from data2vec.modalities.base_v2 import V2ContextEncoder, V2Encoder, V2EncoderConfig
from data2vec.modalities.text.encoder import make_positions


@dataclass(kw_only=True)
class TextEncoderV2Config(V2EncoderConfig):
    vocab_size: int = 0  # 0 = take it from the data's tokenizer at build time
    pad: int = 1
    max_positions: int = 512  # fairseq max_source_positions
    dropout: float = 0.1  # on the embeddings (fairseq modalities.text.dropout)
    layernorm_embedding: bool = True
    no_scale_embedding: bool = True


class TextLocalEncoder(nn.Module):
    def __init__(self, cfg: TextEncoderV2Config):
        super().__init__()
        C = cfg.embed_dim
        self.pad = cfg.pad
        self.embed_tokens = nn.Embedding(cfg.vocab_size, C, padding_idx=cfg.pad)
        self.embed_positions = nn.Embedding(cfg.max_positions + cfg.pad + 1, C, padding_idx=cfg.pad)
        self.layernorm_embedding = nn.LayerNorm(C) if cfg.layernorm_embedding else None
        self.embed_scale = 1.0 if cfg.no_scale_embedding else C**0.5
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, tokens_BT):
        x = self.embed_scale * self.embed_tokens(tokens_BT) + self.embed_positions(make_positions(tokens_BT, self.pad))
        if self.layernorm_embedding is not None:
            x = self.layernorm_embedding(x)
        return self.dropout(x)


class TextEncoderV2(V2Encoder):
    def __init__(self, cfg: TextEncoderV2Config):
        super().__init__(cfg)
        if cfg.vocab_size <= 0:
            raise ValueError("encoder.vocab_size is not set: it comes from the tokenizer (data.path) or set it")
        if cfg.use_alibi_encoder:
            raise ValueError("text v2: use_alibi_encoder is not supported (no released text config uses it)")
        self.local_encoder = TextLocalEncoder(cfg)
        self.project_features = nn.Identity()
        # fairseq builds the prenet LayerNorm for text only when there is a prenet
        self.context_encoder = V2ContextEncoder(cfg, prenet_norm=cfg.prenet_depth > 0)
        if cfg.prenet_depth == 0:  # and its dropout too (fairseq TextEncoder)
            self.context_encoder.prenet_dropout = nn.Dropout(0.0)
        self._finish_init()

    def _local(self, tokens_BT, padding_mask_BT=None):
        if tokens_BT.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"text encoder expects token ids (int64), got {tokens_BT.dtype}")
        if tokens_BT.size(1) > self.cfg.max_positions:
            raise ValueError(f"sequence of {tokens_BT.size(1)} tokens exceeds max_positions={self.cfg.max_positions}")
        pad = tokens_BT.eq(self.cfg.pad)
        return self.local_encoder(tokens_BT), (pad if bool(pad.any()) else None)
