"""data2vec 2.0 conv decoders: predict the teacher targets at every position from the kept tokens.

Mirrors fairseq ``examples/data2vec/models/modalities/modules.py`` (``Decoder1d``, ``Decoder2d``,
``D2vDecoderConfig``) and ``ModalitySpecificEncoder.decoder_input`` (``modalities/base.py``): the
student output at the kept positions and ``N(0, mask_noise_std)`` noise at the masked positions are put
back in sequence order; then ``decoder_layers`` x [grouped conv (SamePad) -> LayerNorm without affine
-> GELU], with a residual between blocks whose widths match, then a projection back to the model width.
The noise is drawn in training *and* eval mode, as in fairseq.

Key names follow fairseq (``blocks.{i}.0`` = the conv; ``proj`` or ``proj.0``/``proj.2``).

Shapes: B batch (x clones), T positions, K kept positions, C channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from data2vec.layers.mask_info import MaskInfo


@dataclass(kw_only=True)
class DecoderConfig:
    decoder_dim: int = 384
    decoder_groups: int = 16
    decoder_kernel: int = 5
    decoder_layers: int = 5
    input_dropout: float = 0.1  # dropout on the student output before the decoder
    decoder_residual: bool = True  # residual between blocks of equal width
    projection_layers: int = 1  # 1 = Linear; 2 = Linear(dim, ratio * dim) -> GELU -> Linear (1-D only)
    projection_ratio: float = 2.0
    mask_noise_std: float = 0.01  # std of the noise standing in for masked positions

    def __post_init__(self):
        if self.decoder_layers < 1 or self.decoder_kernel < 1 or self.projection_layers < 1:
            raise ValueError("decoder_layers, decoder_kernel and projection_layers must be >= 1")
        if self.decoder_dim % self.decoder_groups:
            raise ValueError(f"decoder_dim={self.decoder_dim} must be divisible by decoder_groups={self.decoder_groups}")


class _ConvBlock(nn.Sequential):
    """Conv (index 0, fairseq's key) -> SamePad -> channel LayerNorm (no affine) -> GELU."""

    def __init__(self, conv: nn.Module, kernel: int):
        super().__init__(conv)
        self.remove = 1 if kernel % 2 == 0 else 0

    def forward(self, x):  # [B, C, *spatial]
        x = self[0](x)
        if self.remove:
            x = x[..., : x.size(-1) - 1] if x.dim() == 3 else x[..., :-1, :-1]
        x = F.layer_norm(x.movedim(1, -1), (x.size(1),)).movedim(-1, 1)
        return F.gelu(x)


class ConvDecoder(nn.Module):
    """``Decoder1d`` (``grid=None``) or ``Decoder2d`` (``grid=(h, w)``, images)."""

    def __init__(self, cfg: DecoderConfig, dim: int, grid: tuple[int, int] | None = None):
        super().__init__()
        self.cfg, self.grid = cfg, grid
        conv = nn.Conv1d if grid is None else nn.Conv2d
        k = cfg.decoder_kernel
        self.blocks = nn.Sequential(*[
            _ConvBlock(conv(dim if i == 0 else cfg.decoder_dim, cfg.decoder_dim, k, padding=k // 2,
                            groups=cfg.decoder_groups), k)
            for i in range(cfg.decoder_layers)])
        if dim % cfg.decoder_groups:
            raise ValueError(f"embed_dim={dim} must be divisible by decoder_groups={cfg.decoder_groups}")
        if cfg.projection_layers == 1:
            self.proj = nn.Linear(cfg.decoder_dim, dim)
        else:
            if grid is not None:
                raise ValueError("projection_layers > 1 exists only for the 1-D decoder (fairseq Decoder1d)")
            layers, cur = [], cfg.decoder_dim
            for i in range(cfg.projection_layers - 1):
                nxt = int(cur * cfg.projection_ratio) if i == 0 else cur
                layers += [nn.Linear(cur, nxt), nn.GELU()]
                cur = nxt
            self.proj = nn.Sequential(*layers, nn.Linear(cur, dim))

    def reset_parameters(self) -> None:
        """fairseq ``DecoderBase.reset_parameters``: PyTorch's default init for the projection."""
        for m in self.proj.modules() if isinstance(self.proj, nn.Sequential) else [self.proj]:
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def decoder_input(self, x_BKC: torch.Tensor, info: MaskInfo, num_extra: int,
                      noise: torch.Tensor | None = None) -> torch.Tensor:
        """Kept tokens (after ``num_extra`` leading extra tokens) + noise at masked positions -> [B, T, C].

        ``noise`` [B, T - K, C] replaces the random draw (tests); its rows follow ``info.ids_masked``."""
        x = F.dropout(x_BKC, self.cfg.input_dropout, self.training)[:, num_extra:]
        B, K, C = x.shape
        if noise is None:
            noise = x.new_empty(B, info.ids_restore.size(1) - K, C).normal_(0, self.cfg.mask_noise_std)
        x = torch.cat([x, noise.to(x.dtype)], dim=1)
        return torch.gather(x, 1, info.ids_restore[:, :, None].expand(-1, -1, C))

    def forward(self, x_BKC: torch.Tensor, info: MaskInfo, num_extra: int = 0,
                noise: torch.Tensor | None = None) -> torch.Tensor:
        x = self.decoder_input(x_BKC, info, num_extra, noise)
        B, T, C = x.shape
        x = x.transpose(1, 2)
        if self.grid is not None:
            x = x.reshape(B, C, *self.grid)
        residual = x
        for blk in self.blocks:
            x = blk(x)
            if self.cfg.decoder_residual and residual.size(1) == x.size(1):
                x = x + residual
            residual = x
        x = x.reshape(B, x.size(1), T).transpose(1, 2)
        return self.proj(x)
