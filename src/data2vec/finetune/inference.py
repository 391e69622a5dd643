"""Using fine-tuned models: load them, evaluate them on a labelled split, transcribe audio.

    data2vec evaluate asr runs/ft-asr --data data/speech --subset test [--decoder beam --lm data/speech/lm.arpa]
    data2vec evaluate image-classification runs/ft-image --data data/images --subset test
    data2vec transcribe runs/ft-asr clip1.wav clip2.flac [--decoder beam --lm lm.arpa]

``MODEL`` is a fine-tuning run directory (its ``checkpoint_best.pt``, else ``checkpoint_last.pt``) or one of
its checkpoints.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from data2vec.asr.decode import BeamDecoder, greedy_decode
from data2vec.convert.fairseq_finetuned import is_finetuned as fairseq_is_finetuned
from data2vec.convert.fairseq_pickle import UnsafeCheckpointError, load_fairseq_checkpoint
from data2vec.convert.hf_heads import ARCHS
from data2vec.finetune.interop import finetuned_from_fairseq, finetuned_from_hf
from data2vec.finetune.loop import finetune_config_from_dict, get_task
from data2vec.modalities import get_modality
from data2vec.modalities.audio.dataset import audio_files
from data2vec.modalities.audio.finetune import evaluate as asr_evaluate
from data2vec.safe_load import read_json
from data2vec.train.checkpoint import load_checkpoint


def _checkpoint_path(src: str | Path) -> Path:
    p = Path(src)
    if p.is_dir():
        for name in ("checkpoint_best.pt", "checkpoint_last.pt"):
            if (p / name).is_file():
                return p / name
        raise ValueError(f"{p} holds no checkpoint_best.pt or checkpoint_last.pt: not a fine-tuning run directory")
    if not p.is_file():
        raise FileNotFoundError(f"{p} does not exist")
    return p


def is_finetuned(src: str | Path) -> bool:
    """Whether ``src`` is one of our fine-tuning runs or checkpoints (not a pretraining one)."""
    p = Path(src)
    if p.is_dir():
        c = p / "config.json"
        if not c.is_file():
            return False
        cfg = read_json(c)
        if "model_type" in cfg:  # a HF directory: a task model (Data2VecAudioForCTC, ...) or a base model
            return bool(set(cfg.get("architectures") or ()) & set(ARCHS))
        return "task" in cfg
    if p.is_file() and p.suffix == ".pt":
        try:
            return "task" in load_checkpoint(p, mmap=True).get("config", {})  # the config only: tensors stay on disk
        except Exception:  # noqa: BLE001 - not ours: a fairseq fine-tuned model, else the pretrained loader reports it
            return _fairseq_finetuned(p) is not None
    return False


def _fairseq_finetuned(p: Path) -> dict | None:
    """The plain-data fairseq checkpoint at ``p`` if it holds a fine-tuning wrapper (wav2vec_ctc, ...), else None."""
    try:
        ckpt = load_fairseq_checkpoint(p)
    except UnsafeCheckpointError:  # a refused pickle is reported, never hidden
        raise
    except ValueError:  # not a fairseq checkpoint either
        return None
    return ckpt if fairseq_is_finetuned(ckpt) else None


def load_finetuned(src: str | Path, device: str | torch.device = "cpu"):
    """(config, model in eval mode) of a fine-tuning run or checkpoint, a HF task-model directory
    (``Data2VecAudioForCTC``, ``...VisionForImageClassification``, ``...TextForSequenceClassification``), or a
    fairseq fine-tuned checkpoint (``wav2vec_ctc``, ``roberta`` / ``data2vec_text_classification`` heads,
    ``mae_image_classification``; see ``data2vec.convert.fairseq_finetuned``)."""
    p = Path(src)
    if p.is_dir() and (p / "config.json").is_file() and "model_type" in read_json(p / "config.json"):
        cfg, model = finetuned_from_hf(p)
        return cfg, model.to(device).eval()
    path = _checkpoint_path(src)
    try:
        ck = load_checkpoint(path)
    except Exception:  # noqa: BLE001 - not ours: a fairseq fine-tuned checkpoint?
        fs = _fairseq_finetuned(path)
        if fs is None:
            raise
        cfg, model = finetuned_from_fairseq(path, fs)
        return cfg, model.to(device).eval()
    if "config" not in ck or "task" not in ck.get("config", {}):
        raise ValueError(f"{path} is not a fine-tuned model (pretraining checkpoints have no task head; "
                         "fine-tune it first with `data2vec finetune`)")
    cfg = finetune_config_from_dict(ck["config"])
    task = get_task(cfg.task)
    model = task.build_model(cfg, get_modality(task.modality).build_encoder(cfg.encoder), None)
    model.load_state_dict(ck["model"])
    return cfg, model.to(device).eval()


def build_decoder(model, args):
    """None (greedy) or a ``BeamDecoder`` from the CLI options."""
    if args.decoder == "greedy":
        if args.lm:
            raise ValueError("--lm needs --decoder beam")
        return None

    kw = {"beam_size": args.beam, "beam_threshold": args.beam_threshold}
    if args.lm:
        if not Path(args.lm).is_file():
            raise FileNotFoundError(f"language model {args.lm} not found (`data2vec prepare lm` writes one)")
        kw |= {"lm_path": args.lm, "lm_weight": args.lm_weight, "word_score": args.word_score}
    return BeamDecoder(model.tokens, **kw)


def add_decoder_arguments(p) -> None:
    p.add_argument("--decoder", choices=["greedy", "beam"], default="greedy", help="CTC decoding (default greedy)")
    p.add_argument("--beam", type=int, default=50, help="beam size")
    p.add_argument("--beam-threshold", type=float, default=25.0, help="prune hypotheses this far below the best")
    p.add_argument("--lm", help="word n-gram LM in ARPA format (beam only; `data2vec prepare lm` estimates one)")
    p.add_argument("--lm-weight", type=float, default=2.0, help="LM weight (fairseq/flashlight lmweight)")
    p.add_argument("--word-score", type=float, default=-1.0, help="score added per word (word insertion bonus)")


def add_evaluate_arguments(p) -> None:
    p.add_argument("model", help="fine-tuning run directory or checkpoint")
    p.add_argument("--data", required=True, help="data directory in the task's format")
    p.add_argument("--subset", default="test", help="split to evaluate (default test)")
    p.add_argument("--out", help="also write the metrics as JSON here")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def _device(name: str) -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else "cpu" if name == "auto" else name)


def cmd_evaluate(args) -> int:
    device = _device(args.device)
    cfg, model = load_finetuned(args.model, device)
    if cfg.task != args.task:
        raise ValueError(f"{args.model} is a {cfg.task} model, not {args.task}")
    task = get_task(cfg.task)
    loader = task.eval_data(cfg, args.data, args.subset)
    if cfg.task == "asr":
        metrics = asr_evaluate(model, loader, device, model.tokens, build_decoder(model, args))
        metrics["decoder"] = args.decoder + (f" + {args.lm}" if args.lm else "")
    else:
        metrics = task.evaluate(model, loader, device, cfg)
    text = json.dumps(metrics, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


def cmd_transcribe(args) -> int:
    device = _device(args.device)
    cfg, model = load_finetuned(args.model, device)
    if cfg.task != "asr":
        raise ValueError(f"{args.model} is a {cfg.task} model; transcribe needs one from `data2vec finetune asr`")
    decoder = build_decoder(model, args)
    clips = audio_files(args.audio, sample_rate=cfg.data.sample_rate, normalize=cfg.data.normalize)
    for i, path in enumerate(args.audio):  # one at a time: padding would change the positional conv's view
        x = clips[i]["source"]
        with torch.no_grad():
            logits, _ = model(x[None].to(device))
        logits = logits.float().cpu()
        lengths = torch.tensor([logits.size(1)])
        text = decoder.decode(logits, lengths)[0] if decoder else greedy_decode(logits, lengths, model.tokens)[0]
        print(f"{path}\t{text}", flush=True)
    sys.stdout.flush()
    return 0
