"""One fine-tuning step, ours vs the HF ``transformers`` task model on the same weights (issue "Speed").

A random HF base-size task model (``Data2VecAudioForCTC``, ``Data2VecTextForSequenceClassification``,
``Data2VecVisionForImageClassification``) is saved once (``--make DIR``); each implementation then runs in its
own process (``--impl data2vec|hf``) and times forward + loss + backward + AdamW step:

- ours: the directory read by ``data2vec.finetune.interop.finetuned_from_hf`` (what ``data2vec evaluate`` reads)
  and one ``Trainer.train_update`` per step, the real fine-tuning update (gradient clipping, lr schedule,
  layer-decay groups, autocast);
- HF: ``model(inputs, labels=...).loss.backward()`` and ``torch.optim.AdamW`` (foreach), as a HF training
  loop does.

Same work on both sides: no SpecAugment/time masks, no layerdrop, no mixup, the CNN frozen for CTC (fairseq's and
HF's recipe: ``freeze_feature_encoder``), dropout as each config says (the same rates). Equal-length inputs (no
padding). ``python benchmarks/finetune_step.py --make /tmp/ft --task text`` then
``python benchmarks/finetune_step.py --impl data2vec --task text --model-dir /tmp/ft/text --batch 8 --length 128``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import time
from pathlib import Path

import torch

TASKS = ("audio", "text", "image")
LETTERS = list("abcdefghijklmnopqrstuvwxyz'") + ["|"]


def make(task: str, out: Path, tiny: bool) -> Path:
    """Save a random HF task model for ``task`` under ``out/task``; return that directory."""
    from transformers import (Data2VecAudioConfig, Data2VecAudioForCTC, Data2VecTextConfig,
                              Data2VecTextForSequenceClassification, Data2VecVisionConfig,
                              Data2VecVisionForImageClassification)

    torch.manual_seed(0)
    small = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128) if tiny else {}
    d = out / task
    if task == "audio":
        vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{c: i + 4 for i, c in enumerate(LETTERS)}}
        cfg = Data2VecAudioConfig(layerdrop=0.0, mask_time_prob=0.0, mask_feature_prob=0.0, vocab_size=len(vocab),
                                  pad_token_id=0, ctc_loss_reduction="sum", **small,
                                  **({"conv_dim": (64,) * 7} if tiny else {}))
        model = Data2VecAudioForCTC(cfg)
        d.mkdir(parents=True, exist_ok=True)
        (d / "vocab.json").write_text(json.dumps(vocab))
    elif task == "text":
        cfg = Data2VecTextConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                                 layer_norm_eps=1e-5, num_labels=2, **small)
        model = Data2VecTextForSequenceClassification(cfg)
    else:
        cfg = Data2VecVisionConfig(image_size=32 if tiny else 224, use_shared_relative_position_bias=True,
                                   use_mean_pooling=True, layer_scale_init_value=0.1, num_labels=10, **small)
        model = Data2VecVisionForImageClassification(cfg)
    model.save_pretrained(d)
    return d


def inputs(task: str, batch: int, length: int) -> dict:
    g = torch.Generator().manual_seed(1)
    if task == "audio":  # about one letter per 80 ms, a plausible CTC target length
        n = max(1, length // 1280)
        return {"source": torch.randn(batch, length, generator=g),
                "targets": torch.randint(4, 4 + len(LETTERS), (batch, n), generator=g),
                "target_lengths": torch.full((batch,), n)}
    if task == "text":
        x = torch.randint(5, 50265, (batch, length), generator=g)
        x[:, 0], x[:, -1] = 0, 2
        return {"source": x, "labels": torch.randint(0, 2, (batch,), generator=g)}
    return {"source": torch.randn(batch, 3, length, length, generator=g),
            "labels": torch.randint(0, 10, (batch,), generator=g)}


def ours_step(model_dir: Path, task: str, precision: str):
    from data2vec.config import merge
    from data2vec.finetune.interop import finetuned_from_hf
    from data2vec.train.distributed import DistInfo
    from data2vec.train.loop import Trainer

    cfg, model = finetuned_from_hf(model_dir)
    cfg = merge(cfg, {"train": {"precision": precision, "device": "cpu"}, "optim": {"clip_norm": 0.0}})
    for m in model.modules():  # no layerdrop (HF's layerdrop is 0 in the saved config too)
        if isinstance(getattr(m, "layerdrop", None), float):
            m.layerdrop = 0.0
    if task == "audio":  # the whole encoder trains from the first update (no frozen-encoder warm-up) but the CNN,
        # frozen as `data2vec finetune asr` does (feature_grad_mult 0; finetuned_from_hf reads the HF config's 1.0)
        model.cfg = merge(model.cfg, {"freeze_finetune_updates": 0})
        model.encoder.feature_extractor.requires_grad_(False)
    elif task == "image":
        model.cfg = merge(model.cfg, {"mixup": 0.0, "cutmix": 0.0})
    trainer = Trainer(cfg, model, DistInfo(0, 1, 0, torch.device("cpu")))

    def step(batch: dict) -> None:
        b = dict(batch)
        if task == "audio":
            b["padding_mask"] = torch.zeros(b["source"].shape, dtype=torch.bool)
        trainer.train_update([b])

    return step


def hf_step(model_dir: Path, task: str, precision: str):
    from transformers import (Data2VecAudioForCTC, Data2VecTextForSequenceClassification,
                              Data2VecVisionForImageClassification)

    cls = {"audio": Data2VecAudioForCTC, "text": Data2VecTextForSequenceClassification,
           "image": Data2VecVisionForImageClassification}[task]
    model = cls.from_pretrained(model_dir, attn_implementation="sdpa").train()
    if task == "audio":
        model.freeze_feature_encoder()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, foreach=True)
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16" else contextlib.nullcontext

    def step(batch: dict) -> None:
        if task == "audio":
            kw = {"input_values": batch["source"], "labels": batch["targets"]}
        elif task == "text":
            kw = {"input_ids": batch["source"], "labels": batch["labels"]}
        else:
            kw = {"pixel_values": batch["source"], "labels": batch["labels"]}
        with ctx():
            loss = model(**kw).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    step = (ours_step if args.impl == "data2vec" else hf_step)(Path(args.model_dir), args.task, args.precision)
    batch = inputs(args.task, args.batch, args.length)
    times = []
    for i in range(args.warmup + args.steps):
        t = time.perf_counter()
        step(batch)
        if i >= args.warmup:
            times.append(time.perf_counter() - t)
    return {"impl": args.impl, "task": args.task, "shape": [args.batch, args.length], "precision": args.precision,
            "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--make", help="save random HF task models under this directory and exit")
    p.add_argument("--tiny", action="store_true", help="with --make: tiny models (a smoke test)")
    p.add_argument("--impl", choices=["data2vec", "hf"])
    p.add_argument("--task", choices=TASKS, required=True)
    p.add_argument("--model-dir")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=128, help="samples (audio), tokens (text) or image side in pixels")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args()
    if args.make:
        print(json.dumps({"made": str(make(args.task, Path(args.make), args.tiny))}))
        return
    print(json.dumps(run(args)), flush=True)


if __name__ == "__main__":
    main()
