"""Images (data2vec 1.0, official recipe): BEiT ViT encoder and blockwise masking."""

from data2vec.modalities.image.encoder import ImageEncoder, ImageEncoderConfig
from data2vec.modalities.image.masking import BlockMaskConfig, block_mask

__all__ = ["BlockMaskConfig", "ImageEncoder", "ImageEncoderConfig", "block_mask"]
