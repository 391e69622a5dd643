"""Speech encoder of data2vec 2.0 (fairseq ``examples/data2vec/models/modalities/audio.py::AudioEncoder``).

conv feature extractor (layer-norm mode, as v1) -> LayerNorm + Linear (``project_features``) -> the v2
context encoder with a relative positional conv stack (``conv_pos_depth`` x [grouped conv, SamePad,
LayerNorm without affine, GELU], no residual inside the stack) and 1-D ALiBi attention bias.
Frame padding follows the conv length formula (fairseq ``convert_padding_mask``).

Shapes: B batch, S samples, T frames, C channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from data2vec.layers.padding import lengths_to_padding_mask
from data2vec.modalities.audio.encoder import ConvFeatureExtractor, PosConvBlock, conv_frame_lengths, parse_conv_layers
from data2vec.modalities.base_v2 import V2ContextEncoder, V2Encoder, V2EncoderConfig


@dataclass(kw_only=True)
class AudioEncoderV2Config(V2EncoderConfig):
    RENAMED: ClassVar[dict[str, str]] = {"feature_encoder_spec": "conv_feature_layers"}  # fairseq's v2 name
    conv_feature_layers: str = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2"  # (dim, kernel, stride)
    extractor_mode: Literal["layer_norm", "group_norm"] = "layer_norm"
    conv_pos_width: int = 95  # total width of the positional conv stack
    conv_pos_groups: int = 16
    conv_pos_depth: int = 5  # kernel of each conv = max(3, conv_pos_width // conv_pos_depth)

    def __post_init__(self):
        super().__post_init__()
        parse_conv_layers(self.conv_feature_layers)
        if self.embed_dim % self.conv_pos_groups:
            raise ValueError(f"embed_dim={self.embed_dim} must be divisible by conv_pos_groups={self.conv_pos_groups}")
        if self.conv_pos_depth < 1:
            raise ValueError("conv_pos_depth must be >= 1")


class FeatureProjection(nn.Module):
    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.layer_norm = nn.LayerNorm(n_in)
        self.proj = nn.Linear(n_in, n_out)

    def forward(self, x_BTC):
        return self.proj(self.layer_norm(x_BTC))


class RelativePositionalConv(nn.Sequential):
    """The stack of positional convs. Padded frames are zeroed before *every* conv (fairseq zeroes nothing), so
    a padded frame never leaks into a valid one: a padded batch gives each clip its unpadded output."""

    def forward(self, x_BTC: torch.Tensor, padding_mask_BT: torch.Tensor | None = None) -> torch.Tensor:
        x = x_BTC.transpose(1, 2)
        keep = None if padding_mask_BT is None else (~padding_mask_BT)[:, None, :].to(x.dtype)
        for block in self:
            x = block(x if keep is None else x * keep)
        return x.transpose(1, 2)


class AudioEncoderV2(V2Encoder):
    def __init__(self, cfg: AudioEncoderV2Config):
        super().__init__(cfg)
        self.conv_layers = parse_conv_layers(cfg.conv_feature_layers)
        conv_dim = self.conv_layers[-1][0]
        self.local_encoder = ConvFeatureExtractor(self.conv_layers, cfg.extractor_mode, bias=False)
        self.project_features = FeatureProjection(conv_dim, cfg.embed_dim)
        k = max(3, cfg.conv_pos_width // cfg.conv_pos_depth)
        pos = RelativePositionalConv(*[PosConvBlock(cfg.embed_dim, k, cfg.conv_pos_groups)
                                       for _ in range(cfg.conv_pos_depth)])
        self.context_encoder = V2ContextEncoder(cfg, relative_positional_encoder=pos)
        self._finish_init()

    def reset_parameters(self) -> None:
        self.project_features.proj.reset_parameters()  # fairseq AudioEncoder.reset_parameters

    def frame_lengths(self, num_samples):
        return conv_frame_lengths(num_samples, self.conv_layers)

    def _local(self, source_BS, padding_mask_BS=None):
        x = self.local_encoder(source_BS).transpose(1, 2)
        pad = None
        if padding_mask_BS is not None and bool(padding_mask_BS.any()):
            lengths = self.frame_lengths((~padding_mask_BS).sum(-1))
            pad = lengths_to_padding_mask(lengths, x.size(1))
        return x, pad
