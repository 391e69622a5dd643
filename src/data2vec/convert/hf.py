"""HF ``transformers`` Data2Vec{Audio,Text,Vision} models <-> our encoders (docs/SPEC.md E.1-E.3).

Each modality's mapping lives in its package (``modalities/<m>/hf.py``: config fields, key table, the base
preset an imported model continues with), found through ``ModalitySpec.hf``; this module reads and writes HF
directories and does what all of them share. Key tables are explicit, with strict accounting
(``data2vec.keys.map_keys``): every HF key is either mapped or matched by the drop patterns below (heads we do not
build, non-persistent buffers), every encoder key is produced, and shapes are checked on load. The HF config
becomes our encoder config; the rest of the recipe comes from the modality's base preset, so an imported model
can continue pretraining. HF models have no regression head and no teacher: the head keeps its fresh
initialisation and the teacher starts as a copy of the student.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from data2vec.modalities import MODALITIES, get_modality
from data2vec.modalities.base_v2 import is_v2
from data2vec.safe_load import read_json, read_safetensors, safe_torch_load, write_safetensors

# HF keys we do not import: task heads, pooler, non-persistent/derived buffers
DROPPED = re.compile(r"^(lm_head|classifier|projector|layer_weights|pooler\.dense|qa_outputs|decode_head|auxiliary_head)\b"
                     r"|position_ids$|token_type_ids$|relative_position_index$")

V2_NOT_IN_HF = ("HF transformers has no data2vec 2.0 model classes (its Data2VecAudio/Text/Vision models are the "
                "data2vec 1.0 architectures), so a data2vec 2.0 {what} cannot be exported with --to hf; use it from "
                "our checkpoint or run directory instead (data2vec evaluate / transcribe / extract, "
                "data2vec.finetune.inference.load_finetuned, data2vec.pretrained.load_pretrained)")


def refuse_v2(encoder_or_cfg, what: str) -> None:
    """ValueError with ``V2_NOT_IN_HF`` when ``encoder_or_cfg`` (an encoder or a config) is data2vec 2.0."""
    if is_v2(encoder_or_cfg):
        raise ValueError(V2_NOT_IN_HF.format(what=what))


def hf_mappings() -> dict[str, tuple[str, object]]:
    """HF ``model_type`` -> (our modality, its ``modalities/<m>/hf.py`` mapping), for every registered modality
    that has one."""
    out = {}
    for name in MODALITIES:
        hf = get_modality(name).hf
        if hf is not None:
            out[hf.MODEL_TYPE] = (name, hf)
    return out


def hf_mapping(modality: str):
    hf = get_modality(modality).hf
    if hf is None:
        raise ValueError(f"the {modality} modality has no HF transformers model")
    return hf


def encoder_config_from_hf(hf: dict):
    """HF ``config.json`` dict -> (modality, our encoder config)."""
    known = hf_mappings()
    if hf.get("model_type", "") not in known:
        raise ValueError(f"not a data2vec HF model (model_type={hf.get('model_type')!r}); "
                         f"supported: {', '.join(known)}")
    modality, mapping = known[hf["model_type"]]
    return modality, mapping.config_from_hf(hf)


def encoder_state_from_hf(modality: str, hf_sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF state dict (base model or with a task head) -> our encoder's state dict."""
    prefixes = tuple(m.PREFIX for _, m in hf_mappings().values())
    sd = {}
    for k, v in hf_sd.items():
        for p in prefixes:
            if k.startswith(p):
                k = k[len(p):]
        if not DROPPED.search(k):
            sd[k] = v
    return hf_mapping(modality).state_from_hf(sd)


def read_hf_dir(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    d = Path(path)
    cfg_path = d / "config.json"
    if not cfg_path.is_file():
        raise ValueError(f"{d} is not a HF model directory (no config.json)")
    cfg = read_json(cfg_path)
    encoder_config_from_hf(cfg)  # unsupported model types fail here, before reading weights
    try:
        if (d / "model.safetensors").is_file():
            sd = read_safetensors(d / "model.safetensors")
        elif (d / "pytorch_model.bin").is_file():
            sd = safe_torch_load(d / "pytorch_model.bin")
        else:
            raise ValueError(f"{d} has neither model.safetensors nor pytorch_model.bin")
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - corrupt or truncated weight files
        raise ValueError(f"cannot read the weights in {d}: {e}") from None
    return cfg, sd


def hf_config_from_encoder(modality: str, enc) -> dict:
    """Our encoder config -> HF ``config.json`` dict (base model, no task head)."""
    return hf_mapping(modality).config_to_hf(enc)


def hf_state_from_encoder(modality: str, enc_sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our encoder state dict -> HF base-model state dict (the inverse tables)."""
    return hf_mapping(modality).state_to_hf(enc_sd)


def export_hf(cfg, model, out_dir: str | Path) -> Path:
    """Write a HF ``transformers`` directory (config.json + model.safetensors) of the student encoder."""
    refuse_v2(cfg, "model")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hf_cfg = hf_config_from_encoder(cfg.modality, cfg.encoder)
    state = hf_state_from_encoder(cfg.modality, model.student.encoder.state_dict())
    (out / "config.json").write_text(json.dumps(hf_cfg, indent=2) + "\n")
    write_safetensors({k: v.detach().contiguous() for k, v in state.items()}, out / "model.safetensors",
                      metadata={"format": "pt"})
    return out
