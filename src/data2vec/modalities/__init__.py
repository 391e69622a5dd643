"""Modalities, as a plain dict (no registry side effects): what differs per modality lives here.

A ``ModalitySpec`` names the modality's config classes and how to build its encoder and its
pretraining data pipeline. The core method and the training loop only talk to this interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable



@dataclass(frozen=True)
class ModalitySpec:
    name: str
    encoder_config: type  # dataclass of the encoder
    mask_config: type  # dataclass of the masker
    data_config: type  # dataclass of the data pipeline
    build_encoder: Callable[[Any], Any]
    build_pretrain_data: Callable[..., Any]  # (cfg, encoder, dist, *, seed) -> PretrainData
    resolve_config: Callable[[Any], Any] = lambda cfg: cfg  # fill data-dependent fields (e.g. vocab size)


def _audio() -> ModalitySpec:
    from data2vec.modalities import audio

    return ModalitySpec(
        name="audio",
        encoder_config=audio.AudioEncoderConfig,
        mask_config=audio.SpanMaskConfig,
        data_config=audio.AudioDataConfig,
        build_encoder=audio.AudioEncoder,
        build_pretrain_data=audio.build_pretrain_data,
    )


def _text() -> ModalitySpec:
    from data2vec.modalities import text
    from data2vec.modalities.text import data

    return ModalitySpec(
        name="text",
        encoder_config=text.TextEncoderConfig,
        mask_config=text.TokenMaskConfig,
        data_config=data.TextDataConfig,
        build_encoder=text.TextEncoder,
        build_pretrain_data=data.build_pretrain_data,
        resolve_config=data.resolve_config,
    )


def _vision() -> ModalitySpec:
    from data2vec.modalities import vision
    from data2vec.modalities.vision import data

    return ModalitySpec(
        name="vision",
        encoder_config=vision.VisionEncoderConfig,
        mask_config=vision.BlockMaskConfig,
        data_config=data.ImageDataConfig,
        build_encoder=vision.VisionEncoder,
        build_pretrain_data=data.build_pretrain_data,
    )


# name -> factory; modules are imported on first use, so readers under data2vec.data can use
# modality helpers (e.g. masking) without import cycles
MODALITIES: dict[str, Callable[[], ModalitySpec]] = {"audio": _audio, "text": _text, "vision": _vision}


def get_modality(name: str) -> ModalitySpec:
    if name not in MODALITIES:
        raise ValueError(f"unknown modality {name!r}; available: {', '.join(MODALITIES)}")
    return MODALITIES[name]()
