"""HF ``transformers`` task models <-> our fine-tuned models (SPEC E.1-E.3, "Heads").

- ``Data2VecAudioForCTC``: ``data2vec_audio.*`` (encoder) + ``lm_head`` -> ``CtcModel.proj``; the letters
  come from the directory's ``vocab.json`` (HF's CTC tokenizer file: ``<pad>`` = 0 is the blank, as our
  index 0). ``final_dropout`` -> ``head.final_dropout``.
- ``Data2VecVisionForImageClassification``: ``data2vec_vision.*`` with ``pooler.layernorm`` (= BEiT
  ``fc_norm``) + ``classifier`` -> ``ImageClassifier.head``; class names from ``id2label``.
- ``Data2VecTextForSequenceClassification``: ``data2vec_text.*`` + ``classifier.{dense,out_proj}``.

Import: ``head_from_hf`` maps the head; ``data2vec.finetune.interop.finetuned_from_hf(DIR) -> (finetune config,
model)`` builds the model (``data2vec evaluate``/``transcribe`` and ``load_finetuned`` accept such a directory). Export: ``export_finetuned_hf(cfg, model, DIR)`` writes the
matching HF class (``data2vec export RUN --to hf``); transformers' ``from_pretrained`` gives the same outputs.
HF transformers implements data2vec 1.0 only: a model on a data2vec 2.0 encoder is refused (``V2_NOT_IN_HF``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from data2vec.asr.dictionary import LetterDictionary
from data2vec.convert.hf import hf_config_from_encoder, hf_mapping, hf_state_from_encoder, refuse_v2
from data2vec.safe_load import read_json, write_safetensors

ARCHS = {"Data2VecAudioForCTC": "asr", "Data2VecVisionForImageClassification": "image-classification",
         "Data2VecTextForSequenceClassification": "text-classification"}
TASK_ARCH = {v: k for k, v in ARCHS.items()}
HF_POOL = {"image-classification": "mean", "text-classification": "first"}  # the readout of HF's task models
TASK_MODALITY = {"asr": "audio", "image-classification": "image", "text-classification": "text"}

def refuse_unsupported_head(path: str | Path) -> None:
    """A HF directory whose model carries a task head we have no task for (``...ForMaskedLM``,
    ``...ForSemanticSegmentation``, ...) would lose it silently when read as an encoder: refuse it."""
    p = Path(path)
    if not (p.is_dir() and (p / "config.json").is_file()):
        return
    archs = read_json(p / "config.json").get("architectures") or []
    heads = [a for a in archs if a not in ARCHS and not a.endswith("Model")]
    if heads:
        raise ValueError(f"{p} holds a {heads[0]}, whose task head data2vec has no task for; exporting it would "
                         f"drop the head. Supported task models: {', '.join(ARCHS)}; to export the encoder alone, "
                         "`data2vec convert` it first")


def head_from_hf(path: Path, hf_cfg: dict, sd: dict, task_name: str) -> tuple[dict, dict]:
    """(fine-tuning config overrides for ``head``, head state in our keys) of a HF task model's config and state
    dict (the encoder's keys are left out here; any other key is named in the error)."""
    sd = {k: v for k, v in sd.items() if not k.startswith(hf_mapping(TASK_MODALITY[task_name]).PREFIX)}
    if task_name == "asr":
        if hf_cfg.get("pad_token_id", 0) != 0:
            raise ValueError(f"{path}: the CTC blank (pad_token_id) must be 0, got {hf_cfg.get('pad_token_id')}")
        if not (path / "vocab.json").is_file():
            raise ValueError(f"{path} has no vocab.json: the letters of the CTC head are unknown")
        letters = LetterDictionary.from_hf_vocab(path / "vocab.json")
        if len(letters) != hf_cfg["vocab_size"]:
            raise ValueError(f"{path}: vocab.json has {len(letters)} entries, config.json vocab_size={hf_cfg['vocab_size']}")
        overrides = {"symbols": tuple(letters.tokens[4:]), "final_dropout": hf_cfg.get("final_dropout", 0.0)}
        head = {"proj.weight": sd.pop("lm_head.weight"), "proj.bias": sd.pop("lm_head.bias")}
    elif task_name == "image-classification":
        n = len(hf_cfg.get("id2label") or {}) or sd["classifier.weight"].shape[0]
        overrides = {"num_classes": n}
        head = {"head.weight": sd.pop("classifier.weight"), "head.bias": sd.pop("classifier.bias")}
    else:
        n = sd["classifier.out_proj.weight"].shape[0]
        id2label = hf_cfg.get("id2label") or {}
        names = [id2label.get(str(i), id2label.get(i, "")) for i in range(n)]
        labels = tuple(names) if n > 1 and all(names) and not all(x == f"LABEL_{i}" for i, x in enumerate(names)) else ()
        overrides = {"num_classes": n, "labels": labels}
        head = {k: sd.pop(k) for k in list(sd) if k.startswith("classifier.")}
    if sd:
        arch = (hf_cfg.get("architectures") or [""])[0]
        raise ValueError(f"{path}: keys of the {arch} head this converter does not know: {sorted(sd)}")
    return overrides, head


def export_finetuned_hf(cfg, model, out_dir: str | Path) -> Path:
    """Write the HF task model (config.json + model.safetensors [+ vocab.json for CTC])."""
    refuse_v2(model.encoder, f"{cfg.task} model")
    hf_pool = HF_POOL.get(cfg.task)
    if hf_pool is not None and cfg.head.pool != hf_pool:
        raise ValueError(f"a model fine-tuned with head.pool={cfg.head.pool} has no HF equivalent (HF's {cfg.task} "
                         f"model pools with {hf_pool!r}); only head.pool={hf_pool} models can be exported")
    modality = TASK_MODALITY[cfg.task]
    prefix = hf_mapping(modality).PREFIX
    enc_cfg, enc_sd = cfg.encoder, model.encoder.state_dict()
    head: dict[str, torch.Tensor] = {}
    extra: dict = {}
    if cfg.task == "asr":
        head = {"lm_head.weight": model.proj.weight, "lm_head.bias": model.proj.bias}
        extra = {"vocab_size": len(model.tokens), "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
                 "final_dropout": cfg.head.final_dropout, "ctc_loss_reduction": "sum", "ctc_zero_infinity": True}
    elif cfg.task == "image-classification":
        if model.fc_norm is not None:  # BEiT fine-tuning layout: fc_norm instead of the final LayerNorm
            enc_sd = {k: v for k, v in enc_sd.items() if not k.startswith("context_encoder.norm.")}
            enc_sd |= {f"context_encoder.fc_norm.{k}": v for k, v in model.fc_norm.state_dict().items()}
            enc_cfg = replace(enc_cfg, use_mean_pooling=True)
        head = {"classifier.weight": model.head.weight, "classifier.bias": model.head.bias}
        n = cfg.head.num_classes
        extra = {"num_labels": n, "id2label": {str(i): f"LABEL_{i}" for i in range(n)},
                 "label2id": {f"LABEL_{i}": i for i in range(n)}}
    else:
        head = {f"classifier.{k}": v for k, v in model.classifier.state_dict().items()}
        n = cfg.head.num_classes
        names = list(cfg.head.labels) if len(cfg.head.labels) == n else [f"LABEL_{i}" for i in range(n)]
        extra = {"num_labels": n, "problem_type": "regression" if n == 1 else "single_label_classification",
                 "id2label": {str(i): x for i, x in enumerate(names)}, "label2id": {x: i for i, x in enumerate(names)}}
    hf_cfg = hf_config_from_encoder(modality, enc_cfg) | extra
    hf_cfg["architectures"] = [TASK_ARCH[cfg.task]]
    state = {prefix + k: v for k, v in hf_state_from_encoder(modality, enc_sd).items()} | head
    if cfg.task == "text-classification":  # HF builds the sequence-classification base without a pooler
        state = {k: v for k, v in state.items() if ".pooler." not in k}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(hf_cfg, indent=2) + "\n")
    if cfg.task == "asr":
        (out / "vocab.json").write_text(json.dumps(LetterDictionary(list(cfg.head.symbols)).hf_vocab(), indent=1) + "\n")
    write_safetensors({k: v.detach().contiguous() for k, v in state.items()}, out / "model.safetensors",
                      metadata={"format": "pt"})
    return out
