"""Image encoder of data2vec 2.0 (fairseq ``examples/data2vec/models/modalities/images.py::ImageEncoder``).

patch embedding (conv, stride = patch; xavier-uniform init) -> fixed 2-D sin-cos positions (MAE
``get_2d_sincos_pos_embed``, added before masking) -> the v2 context encoder with a CLS token
(``num_extra_tokens: 1``, random normal init) and a prenet (``prenet_depth: 2`` in the base recipe).
The decoder is 2-D (``Decoder2d``) over the patch grid. No ALiBi (``use_alibi_encoder: false``).

Shapes: B batch, N = grid x grid patches, C channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from data2vec.modalities.base_v2 import V2ContextEncoder, V2Encoder, V2EncoderConfig


@dataclass(kw_only=True)
class ImageEncoderV2Config(V2EncoderConfig):
    image_size: int = 224  # fairseq input_size
    patch_size: int = 16
    in_chans: int = 3
    fixed_positions: bool = True

    def __post_init__(self):
        super().__post_init__()
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size={self.image_size} is not a multiple of patch_size={self.patch_size}")
        if self.use_alibi_encoder:
            raise ValueError("image v2: use_alibi_encoder (2-D ALiBi) is not supported; released configs use fixed "
                             "sin-cos positions")
        if self.embed_dim % 4:
            raise ValueError("embed_dim must be divisible by 4 for 2-D sin-cos positions")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


def sincos_2d(dim: int, grid: int) -> torch.Tensor:
    """[grid*grid, dim] MAE 2-D sin-cos positions: first half encodes the column, second half the row."""
    def one_d(d, pos):
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d / 2.0))
        out = pos.reshape(-1)[:, None] * omega[None]
        return torch.cat([out.sin(), out.cos()], dim=1)

    coords = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    return torch.cat([one_d(dim // 2, cols), one_d(dim // 2, rows)], dim=1).float()


class PatchEmbed(nn.Module):
    def __init__(self, cfg: ImageEncoderV2Config):
        super().__init__()
        self.proj = nn.Conv2d(cfg.in_chans, cfg.embed_dim, cfg.patch_size, stride=cfg.patch_size)
        w = self.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.size(0), -1))

    def forward(self, images_BCHW):
        return self.proj(images_BCHW).flatten(2).transpose(1, 2)


class ImageEncoderV2(V2Encoder):
    def __init__(self, cfg: ImageEncoderV2Config):
        super().__init__(cfg)
        self.local_encoder = PatchEmbed(cfg)
        self.project_features = nn.Identity()
        self.decoder_grid = (cfg.grid, cfg.grid)
        pos = sincos_2d(cfg.embed_dim, cfg.grid)[None] if cfg.fixed_positions else None
        self.context_encoder = V2ContextEncoder(cfg, fixed_positions=pos)
        self._finish_init()

    def _local(self, images_BCHW, padding_mask=None):
        c = self.cfg
        if images_BCHW.dim() != 4 or images_BCHW.shape[1:] != (c.in_chans, c.image_size, c.image_size):
            raise ValueError(f"expected images [B, {c.in_chans}, {c.image_size}, {c.image_size}], "
                             f"got {tuple(images_BCHW.shape)}")
        return self.local_encoder(images_BCHW), None
