"""Which modality's fairseq mapping (``ModalitySpec.fairseq``: ``modalities/<m>/fairseq.py``) reads a fairseq data2vec
pretraining checkpoint. data2vec 1.0 checkpoints are told apart by their model (``cfg.model._name``:
``data2vec_audio``, ``data2vec_text``), data2vec 2.0 ones (``data2vec_multi``) by fairseq's ``supported_modality``
(AUDIO, TEXT, IMAGE). Each mapping names its own (``V1_MODEL``, ``V2_MODALITY``)."""

from __future__ import annotations

from data2vec.modalities import MODALITIES, get_modality


def fairseq_mappings() -> dict[str, object]:
    """our modality -> its ``modalities/<m>/fairseq.py`` mapping, for every registered modality that has one."""
    out = {}
    for name in MODALITIES:
        fs = get_modality(name).fairseq
        if fs is not None:
            out[name] = fs
    return out


def v1_mapping(model_name: str | None):
    """The mapping of a data2vec 1.0 checkpoint of fairseq model ``model_name`` (None: no modality reads it)."""
    return next((fs for fs in fairseq_mappings().values() if model_name and fs.V1_MODEL == model_name), None)


def v2_modalities() -> list[str]:
    """fairseq's ``supported_modality`` names of the data2vec 2.0 checkpoints that load."""
    return [fs.V2_MODALITY for fs in fairseq_mappings().values() if fs.V2_MODALITY]


def v2_mapping(supported_modality: str):
    """The mapping of a data2vec 2.0 checkpoint of fairseq's ``supported_modality`` (None: no modality reads it)."""
    return next((fs for fs in fairseq_mappings().values() if fs.V2_MODALITY == supported_modality), None)
