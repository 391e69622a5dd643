"""Text (data2vec 1.0): RoBERTa-style encoder and token masking."""

from data2vec.modalities.text.encoder import TextEncoder, TextEncoderConfig, make_positions
from data2vec.modalities.text.masking import TokenMaskConfig, mask_tokens

__all__ = ["TextEncoder", "TextEncoderConfig", "TokenMaskConfig", "make_positions", "mask_tokens"]
