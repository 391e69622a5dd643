"""Speech: conv feature encoder + Transformer, span masking, manifest data."""

from data2vec.modalities.audio.data import AudioDataConfig, build_pretrain_data
from data2vec.modalities.audio.encoder import AudioEncoder, AudioEncoderConfig
from data2vec.modalities.audio.masking import SpanMaskConfig, compute_span_mask

__all__ = ["AudioDataConfig", "AudioEncoder", "AudioEncoderConfig", "SpanMaskConfig", "build_pretrain_data",
           "compute_span_mask"]
