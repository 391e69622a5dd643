"""The data2vec 2.0 encoder frame shared by every modality (fairseq ``data2vec_multi``).

Mirrors fairseq ``examples/data2vec/models/modalities/base.py::ModalitySpecificEncoder`` followed by
the shared ``blocks`` of ``examples/data2vec/models/data2vec2.py::Data2VecMultiModel``:

    local encoder (CNN | token embedding | patch embedding) -> project_features      = ``local_features``
    + fixed positions -> [clone M times, gather the kept tokens] -> + relative positional conv
    -> extra tokens (CLS) -> prenet (LayerNorm, dropout, ``prenet_depth`` blocks) -> ``depth`` AltBlocks
                                                                                     = ``context_encoder``

With a ``MaskInfo`` the context encoder repeats each sample ``clone_batch`` times and encodes only the
kept tokens; the relative positional conv runs on the full sequence with masked positions zeroed
(``encoder_zero_mask``) before the kept positions are gathered, and the ALiBi bias is gathered to the
kept positions. Without one (the teacher, fine-tuning, feature extraction) it encodes everything.

The split matches our v1 encoders (``embed`` = local encoder, ``context_encoder`` = what the teacher
averages under ``ema_transformer_only``), so ``data2vec.core.data2vec`` drives both versions:
- audio (fairseq ``ema_local_encoder: false``): teacher = EMA of the context encoder, fed the student's
  CNN features;
- text (``ema_encoder_only: true``): the same; fairseq averages only ``blocks`` and feeds the teacher the
  student's prenet output, which is identical whenever the prenet has no parameters (``prenet_depth: 0``,
  every released text config). With a text prenet our teacher averages it instead (documented deviation);
- images (``ema_local_encoder: true``): teacher = EMA of the whole encoder, fed the raw images.

Deviation (documented, tested): padded frames are zeroed before every layer of the relative positional
conv stack, so a padded batch gives each sample the output it gets alone (fairseq zeroes nothing there;
it pretrains on cropped, unpadded audio batches, so its pretraining numbers are unaffected).

Shapes: B batch, T positions, K kept positions, C channels, H heads, M clones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data2vec.layers.alt import AltBlock, alibi_bias_1d, gather_kept_bias, run_blocks
from data2vec.layers.decoder import ConvDecoder
from data2vec.layers.grad import run_with_grad_mult
from data2vec.layers.mask_info import MaskInfo, gather_positions
from data2vec.layers.transformer import ContextOutput, Embedded, EncoderBase, init_bert_params


@dataclass(kw_only=True)
class V2EncoderConfig:
    """Fields of fairseq ``Data2VecMultiConfig`` (model) and ``D2vModalityConfig`` (per modality)."""

    embed_dim: int = 768
    depth: int = 12  # shared blocks (targets come from these)
    num_heads: int = 12
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-5
    norm_affine: bool = True
    encoder_dropout: float = 0.1  # attention output projection dropout
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0  # inside the MLP
    post_mlp_drop: float = 0.1
    dropout_input: float = 0.0  # before the shared blocks
    layerdrop: float = 0.0
    start_drop_path_rate: float = 0.0
    end_drop_path_rate: float = 0.0
    prenet_depth: int = 0  # modality-specific blocks before the shared ones
    prenet_layerdrop: float = 0.0
    prenet_dropout: float = 0.0
    num_extra_tokens: int = 0  # learned tokens prepended (images: 1 = CLS)
    init_extra_token_zero: bool = True
    use_alibi_encoder: bool = False  # 1-D ALiBi attention bias (audio)
    alibi_scale: float = 1.0
    learned_alibi_scale: bool = False
    learned_alibi_scale_per_head: bool = False
    learned_alibi_scale_per_layer: bool = False
    local_grad_mult: float = 1.0  # gradient scale into the local encoder (0 = frozen)

    def __post_init__(self):
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim={self.embed_dim} must be divisible by num_heads={self.num_heads}")
        if self.depth < 1 or self.prenet_depth < 0:
            raise ValueError("depth must be >= 1 and prenet_depth >= 0")
        if self.num_extra_tokens < 0:
            raise ValueError("num_extra_tokens must be >= 0")


def is_v2(encoder_or_cfg) -> bool:
    """Whether an encoder, an encoder config or a pretraining config is data2vec 2.0."""
    return isinstance(encoder_or_cfg, V2EncoderConfig) or getattr(encoder_or_cfg, "version", 1) == 2


class V2ContextEncoder(nn.Module):
    """Everything after the local features: what the teacher averages when the CNN/embedding is shared."""

    def __init__(self, cfg: V2EncoderConfig, *, relative_positional_encoder: nn.Module | None = None,
                 fixed_positions: torch.Tensor | None = None, prenet_norm: bool = True):
        super().__init__()
        self.cfg = cfg
        C = cfg.embed_dim

        def block(dp):
            return AltBlock(C, cfg.num_heads, cfg.mlp_ratio, norm_eps=cfg.norm_eps, norm_affine=cfg.norm_affine,
                            encoder_dropout=cfg.encoder_dropout, attention_dropout=cfg.attention_dropout,
                            activation_dropout=cfg.activation_dropout, post_mlp_drop=cfg.post_mlp_drop,
                            drop_path=float(dp))

        self.relative_positional_encoder = relative_positional_encoder
        if fixed_positions is not None:
            self.register_buffer("fixed_positions", fixed_positions, persistent=False)
        else:
            self.fixed_positions = None
        self.extra_tokens = None
        if cfg.num_extra_tokens:
            self.extra_tokens = nn.Parameter(torch.zeros(1, cfg.num_extra_tokens, C))
        self.alibi_scale = None
        if cfg.use_alibi_encoder:
            n = cfg.prenet_depth + cfg.depth if cfg.learned_alibi_scale_per_layer else 1
            h = cfg.num_heads if cfg.learned_alibi_scale_per_head else 1
            self.alibi_scale = nn.Parameter(torch.full((n, 1, h, 1, 1), cfg.alibi_scale),
                                            requires_grad=cfg.learned_alibi_scale)
        # fairseq BlockEncoder: (LayerNorm) -> dropout -> prenet blocks
        self.prenet_norm = nn.LayerNorm(C, eps=cfg.norm_eps, elementwise_affine=cfg.norm_affine) if prenet_norm else None
        self.prenet_dropout = nn.Dropout(cfg.prenet_dropout)
        self.prenet = nn.ModuleList(block(dp) for dp in np.linspace(0, 0, cfg.prenet_depth))
        self.dropout_input = nn.Dropout(cfg.dropout_input)
        self.blocks = nn.ModuleList(
            block(dp) for dp in np.linspace(cfg.start_drop_path_rate, cfg.end_drop_path_rate, cfg.depth))

    def init_extra_tokens(self) -> None:
        if self.extra_tokens is not None:
            if not self.cfg.init_extra_token_zero:
                nn.init.normal_(self.extra_tokens)
            elif self.extra_tokens.size(1) > 1:
                nn.init.normal_(self.extra_tokens[:, 1:])

    def _alibi(self, B: int, T: int, device) -> tuple[torch.Tensor | None, list]:
        """ALiBi bias [B, H, T, T] (scale folded in when it is shared by all layers) and per-layer scales."""
        n_layers = self.cfg.prenet_depth + self.cfg.depth
        if self.alibi_scale is None:
            return None, [None] * n_layers
        bias = alibi_bias_1d(T, self.cfg.num_heads, device=device)[None]
        scale = self.alibi_scale.clamp_min(0)
        if scale.size(0) == 1:
            return (bias * scale[0]).expand(B, -1, -1, -1), [None] * n_layers
        return bias.expand(B, -1, -1, -1), [scale[i] for i in range(n_layers)]

    def forward(self, x_BTC: torch.Tensor, padding_mask_BT: torch.Tensor | None = None,
                mask_info: MaskInfo | None = None, clone_batch: int = 1) -> ContextOutput:
        B, T, C = x_BTC.shape
        pad = padding_mask_BT if padding_mask_BT is not None and bool(padding_mask_BT.any()) else None
        x = x_BTC
        if self.fixed_positions is not None:
            x = x + self.fixed_positions[:, :T].to(x.dtype)
        alibi, scales = self._alibi(B, T, x.device)
        if mask_info is not None:
            if mask_info.mask.shape != (B * clone_batch, T):
                raise ValueError(f"mask of shape {tuple(mask_info.mask.shape)} does not fit {B} samples x "
                                 f"{clone_batch} clones x {T} positions")
            keep = mask_info.ids_keep
            if clone_batch > 1:
                x = x.repeat_interleave(clone_batch, 0)
                pad = pad.repeat_interleave(clone_batch, 0) if pad is not None else None
                alibi = alibi.repeat_interleave(clone_batch, 0) if alibi is not None else None
            kept = gather_positions(x, keep)
            if self.relative_positional_encoder is not None:  # on the full sequence, masked positions zeroed
                zeroed = x * (~mask_info.mask).unsqueeze(-1).to(x.dtype)
                kept = kept + gather_positions(self.relative_positional_encoder(zeroed, pad), keep)
            x = kept
            if pad is not None:
                pad = torch.gather(pad, 1, keep)
                pad = pad if bool(pad.any()) else None
            if alibi is not None:
                alibi = gather_kept_bias(alibi, keep)
        elif self.relative_positional_encoder is not None:
            x = x + self.relative_positional_encoder(x, pad)
        n = self.cfg.num_extra_tokens
        out_pad = pad
        if self.extra_tokens is not None:
            x = torch.cat([self.extra_tokens.expand(x.size(0), -1, -1).to(x.dtype), x], dim=1)
            pad = F.pad(pad, (n, 0)) if pad is not None else None
            alibi = F.pad(alibi, (n, 0, n, 0)) if alibi is not None else None
        pad_bias = None
        if pad is not None:
            pad_bias = torch.zeros(pad.shape, dtype=torch.float32, device=x.device).masked_fill(
                pad, float("-inf"))[:, None, None, :]
        if self.prenet_norm is not None:
            x = self.prenet_norm(x)
        x = self.prenet_dropout(x)
        p = self.cfg.prenet_depth
        x, _, _ = run_blocks(self.prenet, x, (alibi, pad_bias), scales[:p], self.cfg.prenet_layerdrop, self.training)
        x = self.dropout_input(x)
        x, outs, ffns = run_blocks(self.blocks, x, (alibi, pad_bias), scales[p:], self.cfg.layerdrop, self.training)
        return ContextOutput(x, [o[:, n:] for o in outs], [f[:, n:] for f in ffns], out_pad, n)


class V2Encoder(EncoderBase):
    """Base class of the v2 modality encoders. Subclasses build ``local_encoder``, ``project_features``
    and the context encoder's modality parts, and implement ``_local(source, padding_mask)``."""

    version = 2

    def __init__(self, cfg: V2EncoderConfig):
        super().__init__()
        self.cfg = cfg

    def _finish_init(self) -> None:
        """fairseq init order: BERT init of every Linear/Embedding, then the modality's resets."""
        self.apply(init_bert_params)
        self.reset_parameters()
        self.context_encoder.init_extra_tokens()

    def reset_parameters(self) -> None:
        pass

    def build_decoder(self, decoder_cfg) -> nn.Module:
        dec = ConvDecoder(decoder_cfg, self.embed_dim, getattr(self, "decoder_grid", None))
        dec.apply(init_bert_params)
        dec.reset_parameters()
        return dec

    def _local(self, source, padding_mask):
        """The modality's ``local_encoder`` on ``source``: (features [B, T, C'], padding mask [B, T] or None)."""
        raise NotImplementedError

    def local_features(self, source, padding_mask=None):
        """(features [B, T, C], padding mask [B, T] or None) shared by student and (audio, text) teacher.

        ``local_grad_mult`` scales the gradient into the local encoder only (0 = frozen, no graph);
        ``project_features`` always trains, as in fairseq ``ModalitySpecificEncoder.local_features``."""
        x, pad = run_with_grad_mult(self._local, self.cfg.local_grad_mult, source, padding_mask)
        return self.project_features(x), pad

    def embed(self, source, padding_mask=None, mask=None) -> Embedded:
        """Local features; v2 masks in the context encoder, so ``mask`` is not used here."""
        x, pad = self.local_features(source, padding_mask)
        return Embedded(x, x, pad)

    def forward(self, source, padding_mask=None, mask=None) -> ContextOutput:
        """The unmasked encoder (fine-tuning, feature extraction, the teacher)."""
        e = self.embed(source, padding_mask)
        return self.context_encoder(e.x, e.padding_mask)
