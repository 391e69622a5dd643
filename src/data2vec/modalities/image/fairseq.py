"""fairseq data2vec 2.0 image checkpoints (``data2vec_multi`` with ``supported_modality`` IMAGE) -> the image parts
of our ``Data2Vec`` model; the generic part is ``data2vec.convert.fairseq_v2``. Found through
``ModalitySpec.fairseq``.

fairseq has no data2vec 1.0 image model we read: the paper's 1.0 image models come from the BEiT-based official
code, read by ``modalities/image/beit.py``. For 2.0: the patch embedding's keys (``V2_KEYS``), the fixed sin-cos
table fairseq stores and we rebuild (``prepare_v2_keys`` compares them) and the encoder and mask config
(``v2_encoder_and_mask``).
"""

from __future__ import annotations

import math

import torch

from data2vec.data.masks_v2 import BlockMaskV2Config
from data2vec.modalities.fairseq_common import block_mask_from_fairseq
from data2vec.modalities.image.encoder_v2 import ImageEncoderV2Config, sincos_2d

V1_MODEL = None  # no fairseq data2vec 1.0 image checkpoint is read (see above)
V2_MODALITY = "IMAGE"  # fairseq's supported_modality of a data2vec 2.0 (data2vec_multi) image checkpoint
V1_PRESET, V2_PRESET = "image-base-v1", "image-base-v2"  # the recipes an imported checkpoint continues with

# data2vec 2.0: fairseq key relative to modality_encoders.IMAGE. -> ours relative to the encoder
V2_KEYS = {f"local_encoder.proj.{p}": f"local_encoder.proj.{p}" for p in ("weight", "bias")}
_POSITIONS = "fixed_positional_encoder.positions"  # fixed sin-cos table: ours is rebuilt (and compared)


def _check_fixed_positions(key: str, table: torch.Tensor) -> None:
    """fairseq's stored [1, T, C] table must be the 2-D sin-cos table our image encoder rebuilds."""
    T, C = table.shape[-2:] if table.dim() == 3 else (0, 0)
    grid = math.isqrt(T)
    if not T or grid * grid != T or C % 4 or not torch.allclose(sincos_2d(C, grid), table[0].float(), rtol=0,
                                                                  atol=1e-5):
        raise ValueError(f"{key} {tuple(table.shape)} differs from the 2-D sin-cos table the image encoder builds")


def prepare_v2_keys(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """fairseq's data2vec 2.0 image keys as ``V2_KEYS`` reads them: the fixed positions checked and left out."""
    kept = {}
    for k, v in sd.items():
        if k == prefix + _POSITIONS:
            _check_fixed_positions(k, v)
            continue
        kept[k] = v
    return kept


def v2_encoder_and_mask(m: dict, c: dict, common: dict, task_cfg: dict,
                        vocab_size: int | None) -> tuple[ImageEncoderV2Config, BlockMaskV2Config]:
    """fairseq ``cfg.model.modalities.image`` (``m``) -> our encoder config (``common``: the fields every
    modality shares) and mask config."""
    if m.get("embed_dim", common["embed_dim"]) != common["embed_dim"]:
        raise ValueError("image: a patch embedding width different from embed_dim is not supported")
    enc = ImageEncoderV2Config(**common, image_size=m.get("input_size", 224), patch_size=m.get("patch_size", 16),
                               in_chans=m.get("in_chans", 3), fixed_positions=m.get("fixed_positions", True))
    return enc, block_mask_from_fairseq(m, c, task_cfg)
