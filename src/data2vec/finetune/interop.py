"""Fine-tuned task models from other code bases' files: HF ``transformers`` task-model directories and fairseq
fine-tuned checkpoints. The key and config mapping lives in ``data2vec.convert`` (``hf_heads``,
``fairseq_finetuned``); here the mapped encoder and head become one of our task models.

    cfg, model = finetuned_from_hf("hf-ctc-dir")           # Data2VecAudioForCTC, ...ForImageClassification, ...
    cfg, model = finetuned_from_fairseq("checkpoint.pt")   # wav2vec_ctc, roberta, mae_image_classification, ...
"""

from __future__ import annotations

from pathlib import Path

from data2vec.config import merge
from data2vec.convert.fairseq_finetuned import WRAPPERS, head_from_fairseq, is_finetuned
from data2vec.convert.fairseq_pickle import load_fairseq_checkpoint
from data2vec.convert.hf import read_hf_dir
from data2vec.convert.hf_heads import ARCHS, head_from_hf
from data2vec.finetune.loop import default_config, get_task
from data2vec.keys import load_into
from data2vec.pretrained import encoder_from_fairseq_finetuned, load_pretrained


def finetuned_from_hf(path: str | Path):
    """(fine-tuning config, model in eval mode) of a HF task-model directory."""
    path = Path(path)
    hf_cfg, sd = read_hf_dir(path)
    arch = (hf_cfg.get("architectures") or [""])[0]
    if arch not in ARCHS:
        raise ValueError(f"{path} holds a {arch or 'base'} model, not a task model ({', '.join(ARCHS)}); "
                         "fine-tune it with `data2vec finetune --init` first")
    task_name = ARCHS[arch]
    src_cfg, pre = load_pretrained(path)  # the encoder, with strict key accounting
    overrides, head = head_from_hf(path, hf_cfg, sd, task_name)
    cfg = merge(default_config(task_name, src_cfg), {"head": overrides})
    model = get_task(task_name).build_model(cfg, pre.student.encoder, None)
    load_into(model, model.state_dict() | head)
    return cfg, model.eval()


def finetuned_from_fairseq(path: str | Path, ckpt: dict | None = None, head: str | None = None):
    """(fine-tuning config, model in eval mode) of a fairseq fine-tuned checkpoint. ``head`` picks one of
    several ``classification_heads`` (text); with one head it is used."""
    path = Path(path)
    ckpt = ckpt if ckpt is not None else load_fairseq_checkpoint(path)
    if not is_finetuned(ckpt):
        name = ((ckpt.get("cfg") or {}).get("model") or {}).get("_name")
        raise ValueError(f"{path}: fairseq model {name!r} is not a fine-tuned model ({', '.join(sorted(WRAPPERS))}); "
                         "load it with load_pretrained / fine-tune it with `data2vec finetune --init`")
    src_cfg, pre, rest = encoder_from_fairseq_finetuned(path, ckpt)
    task_name, overrides, head_sd = head_from_fairseq(path, ckpt, rest, head)
    cfg = merge(default_config(task_name, src_cfg), {"head": overrides})
    model = get_task(task_name).build_model(cfg, pre.student.encoder, None)
    load_into(model, model.state_dict() | head_sd)  # load_into names any head key our model lacks
    return cfg, model.eval()
