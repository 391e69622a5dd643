"""Vision (data2vec 1.0, official recipe): BEiT ViT encoder and blockwise masking."""

from data2vec.modalities.vision.encoder import VisionEncoder, VisionEncoderConfig
from data2vec.modalities.vision.masking import BlockMaskConfig, block_mask

__all__ = ["BlockMaskConfig", "VisionEncoder", "VisionEncoderConfig", "block_mask"]
