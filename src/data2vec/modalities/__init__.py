"""Modalities, as a plain dict (no registry side effects): what differs per modality lives here.

A ``ModalitySpec`` names the modality's config classes and how to build its encoder and its
pretraining data pipeline. The core method and the training loop only talk to this interface.
Each modality has a data2vec 1.0 and a 2.0 encoder and masker; ``build_encoder`` picks the encoder
from the type of its config, ``configs(version)`` the classes a config file of that version uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from data2vec.config import MODALITY_ALIASES, modality_name
from data2vec.data.masks_v2 import BlockMaskV2Config
from data2vec.modalities import audio, image, text
from data2vec.modalities.audio import extract as audio_extract
from data2vec.modalities.audio import fairseq as audio_fairseq
from data2vec.modalities.audio import hf as audio_hf
from data2vec.modalities.audio import shards as audio_shards
from data2vec.modalities.audio.encoder_v2 import AudioEncoderV2, AudioEncoderV2Config
from data2vec.modalities.image import data as image_data
from data2vec.modalities.image import extract as image_extract
from data2vec.modalities.image import fairseq as image_fairseq
from data2vec.modalities.image import hf as image_hf
from data2vec.modalities.image import shards as image_shards
from data2vec.modalities.image.encoder_v2 import ImageEncoderV2, ImageEncoderV2Config
from data2vec.modalities.text import data as text_data
from data2vec.modalities.text import extract as text_extract
from data2vec.modalities.text import fairseq as text_fairseq
from data2vec.modalities.text import hf as text_hf
from data2vec.modalities.text import shards as text_shards
from data2vec.modalities.text.encoder_v2 import TextEncoderV2, TextEncoderV2Config
from data2vec.modalities.text.masking_v2 import RandomMaskV2Config


@dataclass(frozen=True)
class ModalitySpec:
    name: str
    encoder_config: type  # dataclass of the encoder
    mask_config: type  # dataclass of the masker
    data_config: type  # dataclass of the data pipeline
    build_encoder: Callable[[Any], Any]
    build_pretrain_data: Callable[..., Any]  # (cfg, encoder, dist, *, seed) -> PretrainData
    shard_source: Callable[..., Any]  # (cfg, out, seed) -> (samples, meta, skipped) for data2vec.data.shards
    extract_batches: Callable[..., Any]  # (cfg, encoder, inputs, batch_size, tokenizer) -> (indices, x, pad) batches
    extract_input: str  # what `data2vec extract` reads: "files" (paths) or "lines" (of --text-file)
    hf: Any = None  # modalities/<m>/hf.py: the HF transformers mapping (None: HF has no such model)
    fairseq: Any = None  # modalities/<m>/fairseq.py: the fairseq data2vec 1.0/2.0 mapping (None: none is read)
    resolve_config: Callable[[Any], Any] = lambda cfg: cfg  # fill data-dependent fields (e.g. vocab size)
    encoder_config_v2: type | None = None  # data2vec 2.0 encoder dataclass
    mask_config_v2: type | None = None  # data2vec 2.0 masker dataclass

    def configs(self, version: int) -> tuple[type, type]:
        """(encoder config class, mask config class) of data2vec ``version`` (1 or 2)."""
        if version == 1:
            return self.encoder_config, self.mask_config
        if version == 2 and self.encoder_config_v2 is not None:
            return self.encoder_config_v2, self.mask_config_v2
        raise ValueError(f"{self.name}: unknown data2vec version {version!r} (1 or 2)")


def _by_config(v1_cls: Callable, v2_cfg: type, v2_cls: Callable) -> Callable[[Any], Any]:
    def build(cfg):
        return v2_cls(cfg) if isinstance(cfg, v2_cfg) else v1_cls(cfg)
    return build


def _audio() -> ModalitySpec:
    return ModalitySpec(
        name="audio",
        encoder_config=audio.AudioEncoderConfig,
        mask_config=audio.SpanMaskConfig,
        data_config=audio.AudioDataConfig,
        build_encoder=_by_config(audio.AudioEncoder, AudioEncoderV2Config, AudioEncoderV2),
        build_pretrain_data=audio.build_pretrain_data,
        shard_source=audio_shards.shard_source,
        extract_batches=audio_extract.extract_batches,
        extract_input=audio_extract.INPUT,
        hf=audio_hf,
        fairseq=audio_fairseq,
        encoder_config_v2=AudioEncoderV2Config,
        mask_config_v2=BlockMaskV2Config,
    )


def _text() -> ModalitySpec:
    return ModalitySpec(
        name="text",
        encoder_config=text.TextEncoderConfig,
        mask_config=text.TokenMaskConfig,
        data_config=text_data.TextDataConfig,
        build_encoder=_by_config(text.TextEncoder, TextEncoderV2Config, TextEncoderV2),
        build_pretrain_data=text_data.build_pretrain_data,
        shard_source=text_shards.shard_source,
        extract_batches=text_extract.extract_batches,
        extract_input=text_extract.INPUT,
        hf=text_hf,
        fairseq=text_fairseq,
        resolve_config=text_data.resolve_config,
        encoder_config_v2=TextEncoderV2Config,
        mask_config_v2=RandomMaskV2Config,
    )


def _image() -> ModalitySpec:
    return ModalitySpec(
        name="image",
        encoder_config=image.ImageEncoderConfig,
        mask_config=image.BlockMaskConfig,
        data_config=image_data.ImageDataConfig,
        build_encoder=_by_config(image.ImageEncoder, ImageEncoderV2Config, ImageEncoderV2),
        build_pretrain_data=image_data.build_pretrain_data,
        shard_source=image_shards.shard_source,
        extract_batches=image_extract.extract_batches,
        extract_input=image_extract.INPUT,
        hf=image_hf,
        fairseq=image_fairseq,
        encoder_config_v2=ImageEncoderV2Config,
        mask_config_v2=BlockMaskV2Config,
    )


# name -> factory (a fresh spec per call)
MODALITIES: dict[str, Callable[[], ModalitySpec]] = {"audio": _audio, "text": _text, "image": _image}


def get_modality(name: str) -> ModalitySpec:
    """The spec of modality ``name`` (an old name in ``MODALITY_ALIASES`` reads as its current one)."""
    name = modality_name(name)
    if not isinstance(name, str) or name not in MODALITIES:
        raise ValueError(f"unknown modality {name!r}; available: {', '.join(MODALITIES)}")
    return MODALITIES[name]()


__all__ = ["MODALITIES", "MODALITY_ALIASES", "ModalitySpec", "get_modality", "modality_name"]
