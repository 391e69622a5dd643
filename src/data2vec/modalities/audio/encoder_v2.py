"""Speech encoder of data2vec 2.0 (fairseq ``examples/data2vec/models/modalities/audio.py::AudioEncoder``).

conv feature extractor (layer-norm mode, as v1) -> LayerNorm + Linear (``project_features``) -> the v2
context encoder with a relative positional conv stack (``conv_pos_depth`` x [grouped conv, SamePad,
LayerNorm without affine, GELU], no residual inside the stack) and 1-D ALiBi attention bias.
Frame padding follows the conv length formula (fairseq ``convert_padding_mask``).

``extractor_mode="log_mel"`` (not in fairseq) replaces the learned first conv with a fixed log-mel filterbank: the
first ``(dim, kernel, stride)`` of ``conv_feature_layers`` is read as (mel bands, window, hop) in samples, the
rest are layer-norm conv blocks on the bands. It is the classical front end of the speech baseline (a small
encoder trained from scratch on log-mel features, docs/results.md); the frame formula is the conv one.

Shapes: B batch, S samples, T frames, C channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from data2vec.layers.padding import lengths_to_padding_mask
from data2vec.modalities.audio.encoder import (
    ConvFeatureExtractor,
    PosConvBlock,
    conv_frame_lengths,
    parse_conv_layers,
)
from data2vec.modalities.base_v2 import V2ContextEncoder, V2Encoder, V2EncoderConfig


@dataclass(kw_only=True)
class AudioEncoderV2Config(V2EncoderConfig):
    RENAMED: ClassVar[dict[str, str]] = {"feature_encoder_spec": "conv_feature_layers"}  # fairseq's v2 name
    conv_feature_layers: str = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2"  # (dim, kernel, stride)
    extractor_mode: Literal["layer_norm", "group_norm", "log_mel"] = "layer_norm"
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


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int) -> torch.Tensor:
    """Triangular filters [n_freqs, n_mels] evenly spaced on the HTK mel scale from 0 to Nyquist."""
    def mel(f):
        return 2595.0 * torch.log10(1.0 + f / 700.0)

    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = 700.0 * (10 ** (torch.linspace(0, float(mel(torch.tensor(sample_rate / 2.0))), n_mels + 2,
                                            dtype=torch.float64) / 2595.0) - 1.0)
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    f = freqs[:, None]
    up, down = (f - lo) / (mid - lo), (hi - f) / (hi - mid)
    return torch.clamp(torch.minimum(up, down), min=0.0).float()


def check_sample_rate(enc_cfg, sample_rate: int) -> None:
    """Refuse data at a rate the log-mel front end was not built for (its mel edges are fixed at 16 kHz)."""
    if getattr(enc_cfg, "extractor_mode", "") == "log_mel" and sample_rate != LogMelFeatureExtractor.SAMPLE_RATE:
        raise ValueError(f"encoder.extractor_mode=log_mel computes its mel bands for "
                         f"{LogMelFeatureExtractor.SAMPLE_RATE} Hz audio, but data.sample_rate={sample_rate}: "
                         f"set data.sample_rate={LogMelFeatureExtractor.SAMPLE_RATE} (files at other rates are "
                         "resampled when read)")


class LogMelFeatureExtractor(ConvFeatureExtractor):
    """Waveform [B, S] -> features [B, C, T]: log of a mel-filtered power spectrum (Hann window of ``kernel``
    samples every ``stride``, no centring, so frame t sees samples [t*stride, t*stride + kernel) as a conv does),
    then layer-norm conv blocks. Assumes 16 kHz audio (the mel edges); no learned parameter before the convs."""

    SAMPLE_RATE = 16000

    def __init__(self, layers: list[tuple[int, int, int]], bias: bool):
        n_mels = layers[0][0]
        super().__init__(layers[1:], "layer_norm", bias, in_channels=n_mels)
        self.window, self.hop = layers[0][1:]
        self.register_buffer("hann", torch.hann_window(self.window), persistent=False)
        self.register_buffer("mel", mel_filterbank(n_mels, self.window, self.SAMPLE_RATE), persistent=False)

    def log_mel(self, source_BS: torch.Tensor) -> torch.Tensor:
        """[B, S] -> log mel energies [B, n_mels, T] (fp32)."""
        spec = torch.stft(source_BS.float(), self.window, self.hop, window=self.hann, center=False,
                          return_complex=True).abs().pow(2)  # [B, F, T]
        return torch.log(torch.einsum("bft,fm->bmt", spec, self.mel) + 1e-6)

    def forward(self, source_BS: torch.Tensor) -> torch.Tensor:
        return self.run_blocks(self.log_mel(source_BS).type_as(source_BS))


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
        self.local_encoder = (LogMelFeatureExtractor(self.conv_layers, bias=False) if cfg.extractor_mode == "log_mel"
                              else ConvFeatureExtractor(self.conv_layers, cfg.extractor_mode, bias=False))
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
