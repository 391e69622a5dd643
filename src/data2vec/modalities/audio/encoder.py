"""Speech encoder of data2vec 1.0: conv feature extractor -> LN -> projection -> (mask) -> pos-conv -> post-LN Transformer.

Mirrors fairseq ``fairseq/models/wav2vec/wav2vec2.py`` (``ConvFeatureExtractionModel``,
``TransformerEncoder`` with ``pos_conv_depth > 1``, ``TransformerSentenceEncoderLayer``) as configured by
``examples/data2vec/models/data2vec_audio.py``. Module names differ from fairseq's (``conv_layers.i.conv``
instead of ``conv_layers.i.0``); ``data2vec.convert.fairseq`` holds the key table.

The encoder is split the way the EMA teacher needs it:
- ``embed`` (CNN, ``layer_norm``, ``post_extract_proj``, input dropout, mask embedding) = the *local
  encoder*, shared with the teacher in the v1 recipe (``ema_transformer_only``);
- ``context_encoder`` (positional conv, ``layer_norm``, layers) = what the teacher averages.
Masked frames are replaced by the learned ``mask_emb`` after the projection, as in fairseq.

Shapes: B batch, S samples, T frames, C channels.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from data2vec.errors import Data2VecError
from data2vec.layers.grad import run_with_grad_mult
from data2vec.layers.padding import lengths_to_padding_mask
from data2vec.layers.transformer import ContextOutput, Embedded, EncoderBase, PostLNBlock, init_bert_params, run_layers

WAV2VEC2_CONV = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2"
MAX_CONV_LAYERS = 1000  # a spec is refused before expanding ``[...] * n`` beyond this


def parse_conv_layers(spec: str) -> list[tuple[int, int, int]]:
    """Parse fairseq's ``conv_feature_layers`` string (e.g. ``"[(512,10,5)] + [(512,3,2)] * 4"``)
    without ``eval``: only list/tuple literals of ints, ``+`` and ``* int`` are allowed."""

    def ev(node):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return ev(node.left) + ev(node.right)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            left, right = ev(node.left), ev(node.right)
            seq, times = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(seq, (list, tuple)) and isinstance(times, int) and len(seq) * times > MAX_CONV_LAYERS:
                raise _TooLong(f"conv_feature_layers={spec[:80]!r}: {len(seq) * times:,} conv layers; at most "
                               f"{MAX_CONV_LAYERS} are allowed (wav2vec 2.0 has 7)")
            return left * right
        if isinstance(node, (ast.List, ast.Tuple)):
            vals = [ev(e) for e in node.elts]
            return vals if isinstance(node, ast.List) else tuple(vals)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        raise ValueError

    class _TooLong(Data2VecError):
        pass

    try:
        layers = ev(ast.parse(spec, mode="eval").body)
        assert isinstance(layers, list) and layers
        layers = [tuple(int(v) for v in t) for t in layers]
        assert all(len(t) == 3 and min(t) > 0 for t in layers)
    except _TooLong:
        raise
    except (ValueError, SyntaxError, AssertionError, TypeError):
        raise ValueError(
            f"conv_feature_layers={spec!r} is not a list of (dim, kernel, stride) tuples, "
            f"e.g. {WAV2VEC2_CONV!r}"
        ) from None
    return layers


@dataclass(kw_only=True)
class AudioEncoderConfig:
    # data2vec 1.0 (fairseq) names of these fields, still read from config files, --set and checkpoints
    RENAMED: ClassVar[dict[str, str]] = {
        "encoder_embed_dim": "embed_dim", "encoder_layers": "depth", "encoder_attention_heads": "num_heads",
        "encoder_ffn_embed_dim": "ffn_embed_dim", "encoder_layerdrop": "layerdrop",
        "feature_grad_mult": "local_grad_mult", "conv_pos": "conv_pos_width", "pos_conv_depth": "conv_pos_depth"}
    conv_feature_layers: str = WAV2VEC2_CONV  # (dim, kernel, stride) per conv layer
    extractor_mode: Literal["layer_norm", "group_norm"] = "layer_norm"  # fairseq "default" = group_norm
    conv_bias: bool = False
    local_grad_mult: float = 1.0  # gradient scale into the CNN (0 = frozen)
    embed_dim: int = 768
    depth: int = 12
    ffn_embed_dim: int = 3072
    num_heads: int = 12
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    layerdrop: float = 0.05
    dropout_input: float = 0.0
    conv_pos_width: int = 95  # total receptive field of the positional conv stack
    conv_pos_groups: int = 16
    conv_pos_depth: int = 5  # kernel of each conv = max(3, conv_pos_width // conv_pos_depth)
    layer_norm_eps: float = 1e-5

    def __post_init__(self):
        parse_conv_layers(self.conv_feature_layers)
        if self.embed_dim % self.conv_pos_groups:
            raise ValueError(
                f"embed_dim={self.embed_dim} must be divisible by conv_pos_groups={self.conv_pos_groups}"
            )
        if self.conv_pos_depth < 1:
            raise ValueError("conv_pos_depth must be >= 1")


def conv_frame_lengths(num_samples, conv_layers: list[tuple[int, int, int]]):
    """Frames the conv stack produces from ``num_samples`` samples: floor((n - k) / s + 1) per layer."""
    n = num_samples
    for _, k, s in conv_layers:
        n = (n - k) // s + 1
    return n


class ConvBlock(nn.Module):
    def __init__(self, n_in: int, n_out: int, kernel: int, stride: int, norm: str | None, bias: bool):
        super().__init__()
        self.conv = nn.Conv1d(n_in, n_out, kernel, stride=stride, bias=bias)
        nn.init.kaiming_normal_(self.conv.weight)
        self.norm_kind = norm
        if norm == "layer_norm":
            self.norm = nn.LayerNorm(n_out)
        elif norm == "group_norm":
            self.norm = nn.GroupNorm(n_out, n_out)

    def forward(self, x_BCS: torch.Tensor) -> torch.Tensor:
        x = self.conv(x_BCS)
        if self.norm_kind == "layer_norm":  # fp32 LN over channels (fairseq Fp32LayerNorm)
            x = F.layer_norm(x.transpose(1, 2).float(), self.norm.normalized_shape, self.norm.weight.float(),
                             self.norm.bias.float(), self.norm.eps).type_as(x).transpose(1, 2)
        elif self.norm_kind == "group_norm":  # fp32 GN (fairseq Fp32GroupNorm)
            x = F.group_norm(x.float(), self.norm.num_groups, self.norm.weight.float(), self.norm.bias.float(),
                             self.norm.eps).type_as(x)
        return F.gelu(x)


class ConvFeatureExtractor(nn.Module):
    """Waveform [B, S] -> features [B, C, T]. ``layer_norm`` mode: LN in every block;
    ``group_norm`` mode: GroupNorm(C, C) in the first block only (wav2vec 2.0 "default")."""

    def __init__(self, layers: list[tuple[int, int, int]], mode: str, bias: bool, in_channels: int = 1):
        super().__init__()
        blocks, n_in = [], in_channels
        for i, (dim, k, s) in enumerate(layers):
            norm = "layer_norm" if mode == "layer_norm" else ("group_norm" if i == 0 else None)
            blocks.append(ConvBlock(n_in, dim, k, s, norm, bias))
            n_in = dim
        self.conv_layers = nn.ModuleList(blocks)

    def forward(self, source_BS: torch.Tensor) -> torch.Tensor:
        return self.run_blocks(source_BS.unsqueeze(1))

    def run_blocks(self, x_BCS: torch.Tensor) -> torch.Tensor:
        for block in self.conv_layers:
            x_BCS = block(x_BCS)
        return x_BCS


class PosConvBlock(nn.Module):
    def __init__(self, dim: int, kernel: int, groups: int):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups)
        self.remove = 1 if kernel % 2 == 0 else 0  # fairseq SamePad

    def forward(self, x_BCT: torch.Tensor) -> torch.Tensor:
        x = self.conv(x_BCT)
        if self.remove:
            x = x[:, :, : -self.remove]
        x = F.layer_norm(x.transpose(1, 2), (x.size(1),)).transpose(1, 2)
        return F.gelu(x)


class AudioContextEncoder(nn.Module):
    """Positional conv stack + LayerNorm + post-LN layers (fairseq ``TransformerEncoder``)."""

    def __init__(self, cfg: AudioEncoderConfig):
        super().__init__()
        k = max(3, cfg.conv_pos_width // cfg.conv_pos_depth)
        self.pos_conv = nn.ModuleList(
            PosConvBlock(cfg.embed_dim, k, cfg.conv_pos_groups) for _ in range(cfg.conv_pos_depth)
        )
        self.layer_norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layerdrop = cfg.layerdrop
        self.layers = nn.ModuleList(
            PostLNBlock(
                cfg.embed_dim,
                cfg.ffn_embed_dim,
                cfg.num_heads,
                dropout=cfg.dropout,
                attention_dropout=cfg.attention_dropout,
                activation_dropout=cfg.activation_dropout,
                layer_norm_eps=cfg.layer_norm_eps,
            )
            for _ in range(cfg.depth)
        )
        self.apply(init_bert_params)

    def forward(self, x_BTC: torch.Tensor, padding_mask_BT: torch.Tensor | None = None) -> ContextOutput:
        if padding_mask_BT is not None:
            x_BTC = x_BTC.masked_fill(padding_mask_BT.unsqueeze(-1), 0.0)
        pos = x_BTC.transpose(1, 2)
        for block in self.pos_conv:
            pos = block(pos)
        x = self.dropout(self.layer_norm(x_BTC + pos.transpose(1, 2)))
        return ContextOutput(*run_layers(self.layers, x, padding_mask_BT, self.layerdrop, self.training))


class AudioEncoder(EncoderBase):
    """The student's speech encoder. ``embed`` = local encoder, ``context_encoder`` = Transformer."""

    def __init__(self, cfg: AudioEncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.conv_layers = parse_conv_layers(cfg.conv_feature_layers)
        self.feature_extractor = ConvFeatureExtractor(self.conv_layers, cfg.extractor_mode, cfg.conv_bias)
        conv_dim = self.conv_layers[-1][0]
        self.layer_norm = nn.LayerNorm(conv_dim, eps=cfg.layer_norm_eps)
        self.post_extract_proj = nn.Linear(conv_dim, cfg.embed_dim)
        self.dropout_input = nn.Dropout(cfg.dropout_input)
        self.mask_emb = nn.Parameter(torch.empty(cfg.embed_dim).uniform_())
        self.context_encoder = AudioContextEncoder(cfg)

    @property
    def local_encoder(self) -> nn.Module:
        """The CNN, under data2vec 2.0's name for the modality's local encoder."""
        return self.feature_extractor

    def frame_lengths(self, num_samples):
        """Frames produced for ``num_samples`` input samples (numpy array, tensor or int)."""
        return conv_frame_lengths(num_samples, self.conv_layers)

    def ema_copy_keys(self, transformer_only: bool) -> set[str]:
        """Teacher parameters copied, not averaged, under ``ema_layers_only`` (the positional conv)."""
        prefix = "" if transformer_only else "context_encoder."
        return {f"{prefix}pos_conv.{n}" for n, _ in self.context_encoder.pos_conv.named_parameters()}

    def frame_padding_mask(self, padding_mask_BS: torch.Tensor | None, num_frames: int) -> torch.Tensor | None:
        if padding_mask_BS is None or not padding_mask_BS.any():
            return None
        lengths = self.frame_lengths((~padding_mask_BS).sum(-1))
        return lengths_to_padding_mask(lengths, num_frames)

    def local_features(self, source_BS: torch.Tensor, padding_mask_BS: torch.Tensor | None = None):
        feats = run_with_grad_mult(self.feature_extractor, self.cfg.local_grad_mult, source_BS)
        x = self.post_extract_proj(self.layer_norm(feats.transpose(1, 2)))
        return x, self.frame_padding_mask(padding_mask_BS, x.size(1))

    def embed(self, source_BS, padding_mask_BS=None, mask_BT=None) -> Embedded:
        unmasked, padding_mask_BT = self.local_features(source_BS, padding_mask_BS)
        x = self.dropout_input(unmasked)
        if mask_BT is not None:
            x = torch.where(mask_BT.unsqueeze(-1), self.mask_emb.to(x.dtype), x)
        return Embedded(x, unmasked, padding_mask_BT)

    def forward(self, source_BS, padding_mask_BS=None, mask_BT=None) -> ContextOutput:
        e = self.embed(source_BS, padding_mask_BS, mask_BT)
        return self.context_encoder(e.x, e.padding_mask)
