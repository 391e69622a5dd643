"""Load pretrained weights from any supported format into a ``Data2Vec`` model (student + EMA teacher).

    from data2vec.pretrained import load_pretrained
    cfg, model = load_pretrained("path")   # HF directory, fairseq .pt, our checkpoint or converted directory

Formats (detected from the files): a HF ``transformers`` directory (``config.json`` with a
``data2vec-*`` model_type, ``model.safetensors`` or ``pytorch_model.bin``); a fairseq data2vec 1.0 or 2.0
speech or text checkpoint (read with PyTorch's weights_only unpickler; its ``_ema`` teacher is kept); an official
data2vec vision / BEiT ``.pth`` (pretrained or fine-tuned layout, ``model_ema`` as teacher); one of our
training checkpoints (``checkpoint_last.pt``, or a ``train.parallel=fsdp`` run's DCP checkpoint: the run
directory, ``checkpoint_last.dcp`` or a step directory); a directory written by ``save_pretrained`` /
``data2vec convert`` (``config.json`` + ``model.safetensors``, no pickle at all). A directory saved with
``student_only`` holds no ``teacher.*`` tensors: it loads with the teacher set to a copy of the student, as
pretraining starts (an EMA teacher is only needed to continue pretraining with the same targets). One saved with
``encoder_only`` holds the student's encoder alone (no teacher, no v2 decoder, no v1 regression head; its
safetensors metadata says ``contents: encoder``): the rest loads freshly initialised, teacher := student. It is
what fine-tuning and feature extraction read; continued pretraining starts with a new decoder.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import torch

from data2vec.config import merge, to_dict
from data2vec.convert import fairseq_finetuned as ff
from data2vec.convert import fairseq_v2 as f2
from data2vec.convert.fairseq import v1_mapping, v2_mapping
from data2vec.convert.fairseq_pickle import fairseq_plain
from data2vec.convert.hf import encoder_config_from_hf, encoder_state_from_hf, hf_mapping, read_hf_dir
from data2vec.core.data2vec import Data2Vec
from data2vec.errors import Data2VecError
from data2vec.keys import load_into
from data2vec.modalities.image import beit
from data2vec.presets import get_preset
from data2vec.safe_load import read_json, read_safetensors, safe_torch_load, safetensors_metadata, write_safetensors
from data2vec.train import dcp
from data2vec.train.checkpoint import check_format_version
from data2vec.train.config import PretrainConfig, build_model, pretrain_config_from_dict

TEACHER = "teacher."  # the EMA teacher's keys in ``Data2Vec.state_dict()``
ENCODER = "student.encoder."  # the student's encoder (what fine-tuning and extraction read)


def _sync_teacher(model: Data2Vec) -> None:
    """Teacher := student (decay 0 copies every parameter and buffer)."""
    model.teacher.update(model._teacher_source(), 0.0)


def _from_hf(path: Path) -> tuple[PretrainConfig, Data2Vec]:
    hf_cfg, sd = read_hf_dir(path)
    modality, enc_cfg = encoder_config_from_hf(hf_cfg)
    mapping = hf_mapping(modality)
    cfg = get_preset(mapping.BASE_PRESET)
    k = min(cfg.model.targets.average_top_k_layers, enc_cfg.depth)  # the recipe's K, capped for smaller models
    cfg = merge(cfg, {"preset": f"{cfg.preset} (imported from {path.name})", "encoder": to_dict(enc_cfg),
                      "model": {"targets": {"average_top_k_layers": k}}})
    cfg = merge(cfg, mapping.preset_overrides(enc_cfg))
    model = build_model(cfg)
    enc_sd = encoder_state_from_hf(modality, sd)
    own = model.student.encoder.state_dict()
    for optional in ("mask_token", "mask_emb"):  # HF builds them only for masking (use_mask_token, mask_time_prob)
        if optional in own and optional not in enc_sd:
            enc_sd[optional] = own[optional]
    pooler = [k for k in ("context_encoder.fc_norm.weight", "context_encoder.fc_norm.bias") if k in own]
    if pooler and not any(k in enc_sd for k in pooler):
        # Data2VecVisionModel(config) has no pooler unless add_pooling_layer=True, though its config says
        # use_mean_pooling (no final norm): the per-patch features are exact; the pooled one gets a fresh fc_norm.
        warnings.warn(f"{path}: HF Data2VecVisionModel saved without its pooler; per-patch features are exact, the "
                      "mean-pooled feature uses a freshly initialised fc_norm (ones/zeros)", stacklevel=2)
        enc_sd |= {k: own[k] for k in pooler}
    load_into(model.student.encoder, enc_sd)
    _sync_teacher(model)
    return cfg, model


def fairseq_pretraining_parts(path: Path, model_cfg: dict, task_cfg: dict, sd: dict) -> tuple[PretrainConfig, dict]:
    """(our config, our ``Data2Vec`` state dict) of a fairseq pretraining model config + state dict
    (``data2vec_audio``, ``data2vec_text`` or ``data2vec_multi``)."""
    name = model_cfg.get("_name")
    fs = v1_mapping(name)
    if fs is not None:  # data2vec 1.0: one fairseq model per modality
        enc, d2v, mask, state = fs.pretraining_parts(model_cfg, task_cfg, sd)
        cfg = get_preset(fs.V1_PRESET)
    elif name == "data2vec_multi":
        mod = str(model_cfg.get("supported_modality") or "")
        key = f"modality_encoders.{mod}.local_encoder.embed_tokens.weight"
        vocab = sd[key].shape[0] if key in sd else None
        mod, enc, d2v, mask, ema = f2.config_from_fairseq(model_cfg, task_cfg or {}, vocab)
        cfg = get_preset(v2_mapping(mod).V2_PRESET)
        state = f2.state_dict_from_fairseq(sd, mod, **ema)
    else:
        raise ValueError(f"{path}: fairseq model {name!r} is not supported (data2vec_audio, data2vec_text and "
                         "data2vec_multi are, and the fine-tuned wav2vec_ctc, roberta, data2vec_text_classification "
                         "and mae_image_classification models built on them)")
    cfg = merge(cfg, {"preset": f"{cfg.preset} (imported from {path.name})", "encoder": to_dict(enc),
                      "model": to_dict(d2v), "masking": to_dict(mask)})
    return cfg, state


def encoder_from_fairseq_finetuned(path: Path, ckpt: dict) -> tuple[PretrainConfig, Data2Vec, dict]:
    """(pretraining config, ``Data2Vec`` whose student encoder holds the fine-tuned encoder and whose teacher
    is a copy of it, wrapper keys) of a fairseq fine-tuned checkpoint."""
    pm, pt, enc_sd, rest = ff.split_finetuned(path, ckpt)
    cfg, state = fairseq_pretraining_parts(path, pm, pt, enc_sd)
    model = build_model(cfg)
    prefix = "student.encoder."
    load_into(model.student.encoder, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    _sync_teacher(model)
    return cfg, model, rest


def _from_fairseq(path: Path, ckpt: dict) -> tuple[PretrainConfig, Data2Vec]:
    if ff.is_finetuned(ckpt):  # the encoder of a fine-tuned model; the teacher starts as its copy
        cfg, model, _ = encoder_from_fairseq_finetuned(path, ckpt)
        return cfg, model
    cfg, state = fairseq_pretraining_parts(path, ckpt["cfg"]["model"], ckpt["cfg"].get("task") or {}, ckpt["model"])
    model = build_model(cfg)
    load_into(model, state)
    return cfg, model


def _from_beit(path: Path, ckpt: dict) -> tuple[PretrainConfig, Data2Vec]:
    sd = ckpt.get("model", ckpt)
    enc = beit.config_from_beit(sd)
    cfg = get_preset("image-base-v1")
    k = min(cfg.model.targets.average_top_k_layers, enc.depth)
    cfg = merge(cfg, {"preset": f"image-base-v1 (imported from {path.name})", "encoder": to_dict(enc),
                      "data": {"augment": {"image_size": enc.image_size}},
                      "model": {"targets": {"average_top_k_layers": k}, "loss": {"loss_scale": 1 / enc.embed_dim}}})
    model = build_model(cfg)
    own = model.student.encoder.state_dict()
    state = beit.encoder_state_from_beit(sd)
    state.setdefault("mask_token", own["mask_token"])  # fine-tuned checkpoints have none
    load_into(model.student.encoder, state)
    if "lm_head.weight" in sd:
        model.student.head.load_state_dict({"weight": sd["lm_head.weight"], "bias": sd["lm_head.bias"]})
    _sync_teacher(model)
    if isinstance(ckpt.get("model_ema"), dict):  # the official EMA teacher
        ema = beit.encoder_state_from_beit(ckpt["model_ema"])
        ema.setdefault("mask_token", own["mask_token"])
        load_into(model.teacher.module, ema)
    return cfg, model.eval()


def fairseq_exact_config(cfg: PretrainConfig) -> PretrainConfig:
    """``cfg`` with our deliberate deviations from fairseq switched off (README, "Deliberate differences"):
    padded frames enter the target instance norm, text masks may cover ``<s>``/``</s>``, and data2vec 2.0
    keeps masked positions on padding in the loss. Continued pretraining of a fairseq checkpoint with this
    config computes what fairseq computes."""
    model = replace(cfg.model, targets=replace(cfg.model.targets, include_padding_in_norm=True), loss_on_padding=True)
    # a field of text 1.0's masking only (the other maskers already follow fairseq here)
    masking = replace(cfg.masking, mask_special_tokens=True) if hasattr(cfg.masking, "mask_special_tokens") else \
        cfg.masking
    return replace(cfg, model=model, masking=masking)


def load_pretrained(path: str | Path, fairseq_exact: bool = False) -> tuple[PretrainConfig, Data2Vec]:
    """Detect the format of ``path`` and return (config, model) on the CPU in eval mode. ``fairseq_exact``
    applies :func:`fairseq_exact_config` (same weights, fairseq's arithmetic)."""
    cfg, model = _load_pretrained(path)
    if fairseq_exact:
        cfg = fairseq_exact_config(cfg)
        exact = build_model(cfg)
        exact.load_state_dict(model.state_dict())
        model = exact.eval()
    return cfg, model


def _load_pretrained(path: str | Path) -> tuple[PretrainConfig, Data2Vec]:
    p = Path(path)

    if dcp.is_dcp_path(p):  # a train.parallel=fsdp run: its DCP checkpoint (run dir, pointer or step directory)
        cfg, model = dcp.load_model(p)
        return cfg, model.eval()
    if p.is_dir():
        cfg_file = p / "config.json"
        if not cfg_file.is_file():
            raise ValueError(f"{p} has no config.json: not a HF or data2vec model directory")
        meta = read_json(cfg_file)
        if "modality" in meta:  # ours
            cfg = pretrain_config_from_dict(meta)
            model = build_model(cfg)
            state = read_safetensors(p / "model.safetensors")
            if safetensors_metadata(p / "model.safetensors").get("contents") == "encoder":
                if not all(k.startswith(ENCODER) for k in state):
                    raise Data2VecError(f"{p / 'model.safetensors'} says it holds the encoder alone, but it has "
                                        "other tensors: damaged; regenerate it with `data2vec convert --encoder-only`")
                # the decoder / head as initialised; the teacher is synced from the student below
                state |= {k: v for k, v in model.state_dict().items() if not k.startswith((ENCODER, TEACHER))}
            if not any(k.startswith(TEACHER) for k in state):  # saved with student_only: teacher := student
                load_into(model, {**state, **_teacher_keys(model)})
                _sync_teacher(model)
            else:
                load_into(model, state)
            return cfg, model.eval()
        return tuple(x.eval() if isinstance(x, torch.nn.Module) else x for x in _from_hf(p))
    if not p.is_file():
        raise FileNotFoundError(f"{p} does not exist")
    raw = safe_torch_load(p)  # PyTorch's weights_only unpickler: a refused file raises UnsafeCheckpointError
    if isinstance(raw, dict) and "format_version" in raw:  # ours
        check_format_version(p, raw)
        if not isinstance(raw.get("config"), dict) or "model" not in raw:
            raise Data2VecError(f"{p} is a data2vec checkpoint without its 'config' or 'model' entry: damaged")
        cfg = pretrain_config_from_dict(raw["config"])
        model = build_model(cfg)
        load_into(model, raw["model"])
        return cfg, model.eval()
    ckpt = fairseq_plain(p, raw)

    if isinstance(ckpt, dict) and beit.is_beit_state(ckpt.get("model", ckpt)):
        return _from_beit(p, ckpt)
    if not isinstance(ckpt, dict) or "model" not in ckpt or not ckpt.get("cfg"):
        raise ValueError(f"{p} is neither a data2vec checkpoint nor a fairseq checkpoint with a cfg")
    cfg, model = _from_fairseq(p, ckpt)
    return cfg, model.eval()


def _teacher_keys(model: Data2Vec) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if k.startswith(TEACHER)}


def save_pretrained(cfg: PretrainConfig, model: Data2Vec, out_dir: str | Path, student_only: bool = False,
                    encoder_only: bool = False) -> Path:
    """Our pickle-free format: ``config.json`` (the resolved config) + ``model.safetensors`` (student + teacher;
    ``student_only``: the student alone, about half the size; ``encoder_only``: the student's encoder alone, the
    smallest, for fine-tuning and feature extraction)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()
             if (k.startswith(ENCODER) if encoder_only else not (student_only and k.startswith(TEACHER)))}
    contents = "encoder" if encoder_only else "student" if student_only else "student+teacher"
    write_safetensors(state, out / "model.safetensors", metadata={"contents": contents})
    return out
