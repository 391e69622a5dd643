"""fairseq fine-tuned data2vec checkpoints -> our fine-tuned models (SPEC B.1-B.3).

fairseq fine-tunes by wrapping the pretraining model; the wrapper's checkpoint embeds the pretraining config
and keeps the encoder's keys under a prefix. Supported wrappers (``cfg.model._name``):

- ``wav2vec_ctc`` (speech recognition, data2vec 1.0 and 2.0): ``w2v_encoder.w2v_model.*`` is the pretraining
  model (``final_proj``, ``_ema`` and the v2 decoder removed), ``w2v_encoder.proj`` the letter projection ->
  ``CtcModel.proj``; the pretraining config is ``cfg.model.w2v_args``. The letters come from the checkpoint's
  ``task_state`` (``target_dictionary``) when fairseq saved it, else from ``dict.ltr.txt`` beside the
  checkpoint or in ``cfg.task.data``; fairseq's order (``<s> <pad> </s> <unk>``, blank = 0) is ours.
- ``roberta`` (text classification, data2vec 1.0: fairseq fine-tunes data2vec text with the RoBERTa GLUE
  configs): ``encoder.sentence_encoder.*`` is the data2vec text encoder, ``encoder.lm_head.*`` is dropped (a
  RoBERTa LM head fairseq adds, never trained by data2vec), ``classification_heads.<name>.{dense,out_proj}``
  -> ``TextClassifier.classifier``.
- ``data2vec_text_classification`` (text, data2vec 2.0): ``model.*`` (pretraining model without decoder and
  EMA) + ``classification_heads.<name>``; the pretraining config is ``cfg.model.pretrained_model_args``.
- ``mae_image_classification`` on a ``data2vec_multi`` image model (data2vec 2.0): ``model.*`` + ``fc_norm``
  + ``head`` -> ``ImageClassifier.{fc_norm,head}`` (mean pooling over patches; fairseq's CLS-token and
  ``lin_softmax`` prediction modes are refused).

Encoder keys go through the pretraining converters' key tables (strict accounting); the wrapper keys are
consumed here, and any key left over is named in the error. This module maps keys and configs only;
``data2vec.finetune.interop.finetuned_from_fairseq`` builds the (fine-tuning config, model) that
``load_finetuned`` / ``data2vec evaluate`` / ``transcribe`` / ``export`` use, and ``load_pretrained`` on such a
file gives the encoder alone (teacher = a copy of it).
"""

from __future__ import annotations

from pathlib import Path

from data2vec.asr.dictionary import SPECIALS, LetterDictionary

# fairseq wrapper model name -> our fine-tuning task
WRAPPERS = {"wav2vec_ctc": "asr", "roberta": "text-classification", "roberta_base": "text-classification",
            "roberta_large": "text-classification", "data2vec_text_classification": "text-classification",
            "mae_image_classification": "image-classification"}


def is_finetuned(ckpt: dict) -> bool:
    """Whether a fairseq checkpoint (plain data from ``load_fairseq_checkpoint``) holds a fine-tuning wrapper."""
    return str(((ckpt.get("cfg") or {}).get("model") or {}).get("_name")) in WRAPPERS


def _strip(sd: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def _pretraining_args(path: Path, model_cfg: dict, field: str) -> tuple[dict, dict]:
    args = model_cfg.get(field)
    if not isinstance(args, dict) or not isinstance(args.get("model"), dict):
        raise ValueError(f"{path}: the fine-tuned checkpoint does not embed its pretraining config "
                         f"(cfg.model.{field}); fairseq then rebuilds it from the pretrained checkpoint it names. "
                         "Load that pretrained checkpoint instead, or re-save this one with fairseq")
    return args["model"], args.get("task") or {}


def _roberta_as_data2vec_text(m: dict) -> dict:
    """fairseq ``roberta`` model args -> the ``data2vec_text`` model config our text converter reads."""
    if m.get("encoder_normalize_before", False):
        raise ValueError("encoder_normalize_before=True (pre-LN RoBERTa) is not the data2vec 1.0 text architecture")
    if not m.get("encoder_learned_pos", True):
        raise ValueError("encoder_learned_pos=False (sinusoidal positions) is not the data2vec 1.0 text architecture")
    layers = m.get("encoder_layers", 12)
    # the pretraining recipe's K (text Base: 10), capped for smaller models; only a continued pretraining uses it
    return {"_name": "data2vec_text", "max_positions": m.get("max_positions", 512),
            "average_top_k_layers": min(10, layers),
            "transformer": {"dropout": m.get("dropout", 0.1), "attention_dropout": m.get("attention_dropout", 0.1),
                            "activation_dropout": m.get("activation_dropout", 0.0),
                            "layernorm_embedding": m.get("layernorm_embedding", True),
                            "no_scale_embedding": m.get("no_scale_embedding", True),
                            "encoder": {"embed_dim": m.get("encoder_embed_dim", 768), "layers": layers,
                                        "ffn_embed_dim": m.get("encoder_ffn_embed_dim", 3072),
                                        "attention_heads": m.get("encoder_attention_heads", 12),
                                        "layerdrop": m.get("encoder_layerdrop", 0.0), "normalize_before": False}}}


def split_finetuned(path: Path, ckpt: dict) -> tuple[dict, dict, dict, dict]:
    """(pretraining model cfg, pretraining task cfg, encoder state in pretraining keys, wrapper keys) of a
    fairseq fine-tuned checkpoint (plain data from ``load_fairseq_checkpoint``)."""
    m = ckpt["cfg"]["model"]
    name = str(m.get("_name"))
    sd = {k: v for k, v in ckpt["model"].items() if not k.endswith(".version")}
    if name == "wav2vec_ctc":
        pm, pt = _pretraining_args(path, m, "w2v_args")
        enc = _strip(sd, "w2v_encoder.w2v_model.")
        rest = {k: v for k, v in sd.items() if not k.startswith("w2v_encoder.w2v_model.")}
    elif name.startswith("roberta"):
        if m.get("pooler_activation_fn", "tanh") != "tanh":
            raise ValueError(f"{path}: pooler_activation_fn={m.get('pooler_activation_fn')!r}; our head uses tanh")
        pm, pt = _roberta_as_data2vec_text(m), ckpt["cfg"].get("task") or {}
        enc = {k: v for k, v in sd.items() if k.startswith("encoder.sentence_encoder.")}
        rest = {k: v for k, v in sd.items() if not k.startswith(("encoder.sentence_encoder.", "encoder.lm_head."))}
    else:
        pm, pt = _pretraining_args(path, m, "pretrained_model_args")
        if pm.get("_name") != "data2vec_multi":
            raise ValueError(f"{path}: {name} on a {pm.get('_name')!r} model is not supported (data2vec_multi is)")
        enc = _strip(sd, "model.")
        rest = {k: v for k, v in sd.items() if not k.startswith("model.")}
        if name == "mae_image_classification":
            mode = str(m.get("prediction_mode", "MEAN_POOLING")).upper().split(".")[-1]
            if mode != "MEAN_POOLING":
                raise ValueError(f"{path}: prediction_mode {mode}; only mean pooling (our image head) is supported")
            # older fairseq image models name the fixed sin-cos table ``pos_embed``; it is rebuilt here anyway
            enc = {k.replace("positional_encoder.pos_embed", "fixed_positional_encoder.positions"): v
                   for k, v in enc.items() if not k.endswith("encoder_mask")}
    return pm, pt, enc, rest


def _letters(path: Path, ckpt: dict, n_out: int) -> tuple[str, ...]:
    target = (ckpt.get("task_state") or {}).get("target_dictionary")
    if isinstance(target, dict) and target.get("symbols"):
        symbols = list(target["symbols"])
        where = "the checkpoint's task_state"
    else:
        candidates = [path.parent / "dict.ltr.txt"]
        data = ((ckpt.get("cfg") or {}).get("task") or {}).get("data")
        if data:
            candidates.append(Path(str(data)) / "dict.ltr.txt")
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise ValueError(f"{path}: the CTC head's letters are unknown: the checkpoint has no target dictionary; "
                             f"put fairseq's dict.ltr.txt beside it ({candidates[0]})")
        symbols = LetterDictionary.load(found).tokens
        where = str(found)
    if tuple(symbols[:4]) != SPECIALS:
        raise ValueError(f"{path}: the letter dictionary from {where} does not start with fairseq's {SPECIALS}")
    if len(symbols) != n_out:
        raise ValueError(f"{path}: the letter dictionary from {where} has {len(symbols)} entries but the CTC "
                         f"projection has {n_out} outputs")
    return tuple(symbols[4:])


def _pop_all(rest: dict, keys: dict[str, str]) -> dict:
    out = {}
    for src, dst in keys.items():
        if src not in rest:
            raise ValueError(f"the fine-tuned checkpoint has no {src}")
        out[dst] = rest.pop(src)
    return out


def head_from_fairseq(path: Path, ckpt: dict, rest: dict, head: str | None = None) -> tuple[str, dict, dict]:
    """(our task name, fine-tuning config overrides for ``head``, head state in our keys) of the wrapper keys
    ``rest`` left by :func:`split_finetuned`. ``head`` picks one of several ``classification_heads`` (text);
    with one head it is used. Every wrapper key is consumed or named in the error."""
    m = ckpt["cfg"]["model"]
    task_name = WRAPPERS[str(m["_name"])]
    rest = dict(rest)
    if task_name == "asr":
        if "w2v_encoder.proj.weight" not in rest:
            raise ValueError(f"{path}: wav2vec_ctc without an output projection (w2v_encoder.proj)")
        symbols = _letters(path, ckpt, rest["w2v_encoder.proj.weight"].shape[0])
        overrides = {"symbols": symbols, "final_dropout": float(m.get("final_dropout", 0.0)),
                     "freeze_finetune_updates": int(m.get("freeze_finetune_updates", 0)),
                     "mask_prob": float(m.get("mask_prob", 0.5)), "mask_length": int(m.get("mask_length", 10)),
                     "mask_channel_prob": float(m.get("mask_channel_prob", 0.0)),
                     "mask_channel_length": int(m.get("mask_channel_length", 10))}
        head_sd = _pop_all(rest, {"w2v_encoder.proj.weight": "proj.weight", "w2v_encoder.proj.bias": "proj.bias"})
    elif task_name == "image-classification":
        if not m.get("use_fc_norm", True):
            raise ValueError(f"{path}: use_fc_norm=False; our image head always normalises the pooled features")
        head_sd = _pop_all(rest, {f"{a}.{b}": f"{a}.{b}" for a in ("head", "fc_norm") for b in ("weight", "bias")})
        overrides = {"num_classes": int(head_sd["head.weight"].shape[0]),
                     "linear_probe": bool(m.get("linear_classifier", False))}
    else:
        names = sorted({k.split(".")[1] for k in rest if k.startswith("classification_heads.")})
        if not names:
            raise ValueError(f"{path}: no classification_heads in the checkpoint (a pretrained RoBERTa/data2vec model?)")
        if head is None and len(names) > 1:
            raise ValueError(f"{path}: several classification heads {names}; pick one (head=...)")
        name = head or names[0]
        if name not in names:
            raise ValueError(f"{path}: no classification head {name!r}; the checkpoint has {names}")
        pre_ = f"classification_heads.{name}."
        keys = {pre_ + f"{a}.{b}": f"classifier.{a}.{b}" for a in ("dense", "out_proj") for b in ("weight", "bias")}
        head_sd = _pop_all(rest, keys)
        rest = {k: v for k, v in rest.items() if not k.startswith("classification_heads.")}  # other tasks' heads
        n = int(head_sd["classifier.out_proj.weight"].shape[0])
        overrides = {"num_classes": n, "pooler_dropout": float(m.get("pooler_dropout", 0.0))}
    if rest:
        raise ValueError(f"{path}: keys of the fairseq {m['_name']} model this converter does not know: {sorted(rest)}")
    return task_name, overrides, head_sd
