"""``data2vec`` command line: pretrain, presets, prepare.

    data2vec presets                                   # list recipes
    data2vec presets --show audio-tiny-v1              # print a recipe's full config (JSON)
    data2vec convert facebook-data2vec-audio-base/ --out models/audio-base   # HF dir or fairseq .pt
    data2vec prepare speech --out data/speech --hours 1
    data2vec prepare text --out data/text
    data2vec prepare images --out data/images
    data2vec shard --preset audio-tiny-v1 --data data/speech --out data/speech-shards   # streaming tar shards
    data2vec pretrain --preset audio-tiny-v1 --data data/speech --out runs/tiny [--set optim.lr=5e-4] [--resume]
    torchrun --nproc_per_node 2 -m data2vec.cli pretrain ...   # DDP

Config precedence: preset < ``--config`` file (YAML/JSON, nested like config.json) < ``--set`` overrides
< ``--data``. With ``--resume`` the run's own ``config.json`` replaces the preset, so a resumed run
keeps its recipe; overrides still apply (e.g. ``--set train.max_update=2000`` to extend it).
Errors the user can fix (``data2vec.errors.Data2VecError``, a ``ValueError`` raised by our own code, a missing
file, a full disk, a read-only or unwritable ``--out``) are printed as one line on stderr with exit code 2,
without a traceback (``DATA2VEC_DEBUG=1`` shows it); any other exception is a bug and keeps its traceback.
A closed stdout (``data2vec presets | head``) ends the command quietly.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path

from data2vec.errors import Data2VecError

EXIT_USAGE = 2
EXIT_COLLAPSE = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as `yes | head` leaves it
_PACKAGE_DIR = str(Path(__file__).resolve().parent)
# OS errors that come from the user's environment (disk, permissions, paths), not from a bug
_ENV_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR,
               errno.ENOENT, errno.EEXIST, errno.ENAMETOOLONG, errno.EFBIG, errno.ENOTEMPTY}


def _deep_update(d: dict, u: dict) -> None:
    for k, v in u.items():
        if isinstance(v, dict) and isinstance(d.get(k), dict):
            _deep_update(d[k], v)
        else:
            d[k] = v


def _apply_overrides(cfg, args):
    """--config file, then --set (applied together: fields validated against each other see the final
    values), then --data."""
    from data2vec.config import load_file, merge, parse_override

    if args.config:
        cfg = merge(cfg, load_file(args.config))
    overrides: dict = {}
    for item in args.set or []:
        _deep_update(overrides, parse_override(item))
    if overrides:
        cfg = merge(cfg, overrides)
    if args.data:
        cfg = merge(cfg, {"data": {"path": str(Path(args.data).resolve())}})
    return cfg


def _build_pretrain_config(args):
    from data2vec.config import merge
    from data2vec.presets import get_preset
    from data2vec.train.config import pretrain_config_from_dict

    saved = Path(args.out) / "config.json"
    if args.resume and saved.is_file():
        cfg = pretrain_config_from_dict(_read_json(saved))
        if args.preset and args.preset != cfg.preset:
            raise Data2VecError(f"--preset {args.preset} does not match the run being resumed ({cfg.preset}); "
                                "drop --preset when resuming")
    elif args.preset:
        cfg = get_preset(args.preset)
    elif args.init:
        from data2vec.pretrained import load_pretrained

        cfg = load_pretrained(args.init)[0]
    else:
        raise Data2VecError("--preset is required (see `data2vec presets`), unless --init or --resume gives the model")
    if args.init:
        cfg = merge(cfg, {"train": {"init_from": str(Path(args.init).resolve())}})
    if args.fairseq_exact:
        from data2vec.pretrained import fairseq_exact_config

        cfg = fairseq_exact_config(cfg)
    return _apply_overrides(cfg, args)


def _read_json(path: Path) -> dict:
    """A run's ``config.json``; a damaged one is a one-line error naming it."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise Data2VecError(f"{path} is not valid JSON ({e}); restore it (the checkpoint holds the run's config)") \
            from None
    if not isinstance(d, dict):
        raise Data2VecError(f"{path} must hold a JSON object, got {type(d).__name__}")
    return d


def _print_config(cfg) -> int:
    """--dry-run: the resolved config as JSON."""
    from data2vec.config import to_dict

    print(json.dumps(to_dict(cfg), indent=2))
    return 0


def cmd_pretrain(args) -> int:
    from data2vec.core.monitors import CollapseError
    from data2vec.train.loop import NonFiniteError, TrainingInterrupted, pretrain

    cfg = _build_pretrain_config(args)
    if args.dry_run:
        return _print_config(cfg)
    try:
        pretrain(cfg, args.out, resume=args.resume)
    except (CollapseError, NonFiniteError) as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return EXIT_COLLAPSE
    except (TrainingInterrupted, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return 0


def cmd_convert(args) -> int:
    from data2vec.pretrained import load_pretrained, save_pretrained

    cfg, model = load_pretrained(args.src, fairseq_exact=args.fairseq_exact)
    out = save_pretrained(cfg, model, args.out, student_only=args.student_only, encoder_only=args.encoder_only)
    part = model.student.encoder if args.encoder_only else model.student
    n = sum(p.numel() for p in part.parameters())
    what = "encoder" if args.encoder_only else "student" if args.student_only else "student (+ EMA teacher)"
    print(f"{args.src}: data2vec {cfg.modality} model, {n / 1e6:.2f} M {what} parameters -> "
          f"{out}/config.json + model.safetensors")
    return 0


def cmd_export(args) -> int:
    from data2vec.convert.hf import export_hf
    from data2vec.finetune.inference import is_finetuned, load_finetuned
    from data2vec.pretrained import load_pretrained

    if is_finetuned(args.src):
        from data2vec.convert.hf_heads import TASK_ARCH, export_finetuned_hf

        cfg, model = load_finetuned(args.src)
        out = export_finetuned_hf(cfg, model, args.out)
        print(f"{args.src}: exported the {cfg.task} model as HF transformers {TASK_ARCH[cfg.task]} -> {out}")
        return 0
    from data2vec.convert.hf import refuse_v2
    from data2vec.convert.hf_heads import refuse_unsupported_head

    refuse_unsupported_head(args.src)
    cfg, model = load_pretrained(args.src)
    refuse_v2(model.student.encoder, f"{cfg.modality} model")
    out = export_hf(cfg, model, args.out)
    print(f"{args.src}: exported the {cfg.modality} student encoder as a HF transformers model -> {out} "
          f"(load with transformers' Data2Vec{cfg.modality.capitalize()}Model.from_pretrained)")
    return 0


def cmd_extract(args) -> int:
    from data2vec import extract

    return extract.run(args)


FINETUNE_TASKS = {  # task -> (help, --data help)
    "image-classification": ("mean-pooled fc_norm head on image folders",
                             "directory with train/valid/test/<class>/<images>"),
    "asr": ("speech recognition: CTC head on letters",
            "directory with train/valid/test .tsv manifests, .ltr labels and dict.ltr.txt "
            "(`data2vec prepare speech`)"),
    "text-classification": ("sentence (pair) classification or regression on the first token",
                            "directory with GLUE-format train/dev/test .tsv files"),
}


RECIPE_HELP = {
    "image-classification": "(no named recipes: the default follows SPEC B.2; override with --set)",
    "asr": "base-10m, base-1h, base-10h, base-100h, base-960h (SPEC B.1) or tiny (CPU); default: tiny for "
           "encoders narrower than 512, else base-1h",
    "text-classification": "a GLUE task (cola, mnli, mrpc, qnli, qqp, rte, sst-2, sts-b; SPEC B.3), base (your own "
                           "TSVs) or tiny (CPU); default: tiny for encoders narrower than 512, else base",
}


def _build_finetune_config(args):
    from data2vec.finetune.loop import default_config, finetune_config_from_dict

    saved = Path(args.out) / "config.json"
    if args.resume and saved.is_file():
        cfg = finetune_config_from_dict(_read_json(saved))
    else:
        if args.init:
            from data2vec.pretrained import load_pretrained

            src = load_pretrained(args.init)[0]
        elif args.preset:
            from data2vec.presets import get_preset

            src = get_preset(args.preset)
        else:
            raise Data2VecError("give --init SRC (pretrained weights) or --preset NAME (random init of its encoder)")
        cfg = default_config(args.task, src, str(Path(args.init).resolve()) if args.init else "", args.recipe)
    return _apply_overrides(cfg, args)


def cmd_finetune(args) -> int:
    from data2vec.finetune.loop import finetune

    cfg = _build_finetune_config(args)
    if args.dry_run:
        return _print_config(cfg)
    from data2vec.train.loop import NonFiniteError, TrainingInterrupted

    try:
        finetune(cfg, args.out, resume=args.resume)
    except NonFiniteError as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return EXIT_COLLAPSE
    except (TrainingInterrupted, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return 0


def cmd_presets(args) -> int:
    from data2vec.config import to_dict
    from data2vec.presets import PRESETS, get_preset

    if args.show:
        print(json.dumps(to_dict(get_preset(args.show)), indent=2))
        return 0
    width = max(len(n) for n in PRESETS)
    for name, (_, desc) in PRESETS.items():
        print(f"{name:<{width}}  {desc}")
    return 0


def _writable_out(args) -> None:
    """``prepare``: refuse an --out that cannot be written before any work (one line, not a traceback later)."""
    from data2vec.train.checkpoint import make_run_dir

    make_run_dir(Path(args.out).parent if args.what == "lm" else Path(args.out))


def cmd_prepare_speech(args) -> int:
    from data2vec.data import prepare_speech

    return prepare_speech.run(args)


def cmd_prepare_images(args) -> int:
    from data2vec.data import prepare_images

    return prepare_images.run(args)


def cmd_prepare_text(args) -> int:
    from data2vec.data import prepare_text

    return prepare_text.run(args)


def cmd_prepare_lm(args) -> int:
    from data2vec.asr.lm import ArpaLM, estimate_arpa

    if args.order < 2:
        raise Data2VecError("--order must be >= 2 (KenLM loads no unigram-only model)")
    lines = []
    for path in args.text:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path} not found")
        lines += [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines:
        raise Data2VecError(f"no sentences in {', '.join(args.text)}")
    out = estimate_arpa(lines, args.out, order=args.order)
    lm = ArpaLM(out)
    print(f"{out}: {args.order}-gram LM from {len(lines):,} sentences, {len(lm.vocab):,} words; "
          f"training perplexity {lm.perplexity(lines):.1f}")
    return 0


def _add_finetune_parsers(sub) -> None:
    """``finetune TASK``, ``evaluate TASK`` and ``transcribe``."""
    ft = sub.add_parser("finetune", help="fine-tune a pretrained (or randomly initialised) encoder on labels")
    ft_sub = ft.add_subparsers(dest="task", required=True, metavar="TASK")
    for task, (help_, data_help) in FINETUNE_TASKS.items():
        t = ft_sub.add_parser(task, help=help_,
                              description=f"{help_}. Writes config.json, metrics.jsonl, tb/, curves.png, "
                                          "checkpoint_last.pt, checkpoint_best.pt (best validation score) and "
                                          "metrics.json (test).")
        t.add_argument("--init", metavar="SRC", help="pretrained weights (any format `data2vec convert` reads)")
        t.add_argument("--preset", help="without --init: random initialisation of this preset's encoder")
        t.add_argument("--data", help=data_help)
        t.add_argument("--recipe", help=RECIPE_HELP[task])
        t.add_argument("--out", required=True, help="run directory")
        t.add_argument("--config", help="YAML/JSON file of overrides")
        t.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override one value, e.g. data.label_fraction=0.1 (repeatable)")
        t.add_argument("--resume", action="store_true")
        t.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
        t.set_defaults(func=cmd_finetune)

    from data2vec.finetune import inference

    ev = sub.add_parser("evaluate", help="evaluate a fine-tuned model on a labelled split")
    ev_sub = ev.add_subparsers(dest="task", required=True, metavar="TASK")
    for task, (help_, data_help) in FINETUNE_TASKS.items():
        e = ev_sub.add_parser(task, help=help_, description=f"Evaluate a fine-tuned {task} model; prints metrics as JSON.")
        inference.add_evaluate_arguments(e)
        if task == "asr":
            inference.add_decoder_arguments(e)
        e.set_defaults(func=inference.cmd_evaluate)

    tr = sub.add_parser("transcribe", help="transcribe audio files with a fine-tuned speech model",
                        description="Prints PATH<TAB>TRANSCRIPT per file (any format libsndfile reads, any rate).")
    tr.add_argument("model", help="`data2vec finetune asr` run directory or checkpoint")
    tr.add_argument("audio", nargs="+", help="audio files")
    tr.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    inference.add_decoder_arguments(tr)
    tr.set_defaults(func=inference.cmd_transcribe)


def _add_prepare_parsers(sub) -> None:
    """``prepare speech|real-speech|text|rt-polarity|images|lm``."""
    prep = sub.add_parser("prepare", help="build a built-in data set")
    prep_sub = prep.add_subparsers(dest="what", required=True, metavar="DATASET")
    sp = prep_sub.add_parser("speech", help="synthesise the built-in English speech corpus (espeak-ng, flite)")
    from data2vec.data import prepare_speech

    prepare_speech.add_arguments(sp)
    sp.set_defaults(func=cmd_prepare_speech)
    tx = prep_sub.add_parser("text", help="build the built-in English text corpus (or tokenize yours) with a BPE")
    from data2vec.data import prepare_text

    prepare_text.add_arguments(tx)
    tx.set_defaults(func=cmd_prepare_text)
    lm = prep_sub.add_parser("lm", help="estimate a word n-gram LM (ARPA, modified Kneser-Ney) from transcripts",
                             description="For beam search with `data2vec evaluate asr --decoder beam --lm FILE`. "
                                         "One sentence per line (e.g. the .wrd labels of the training split).")
    lm.add_argument("--text", nargs="+", required=True, help="text files, one sentence per line")
    lm.add_argument("--out", required=True, help="output .arpa file")
    lm.add_argument("--order", type=int, default=3, help="n-gram order (>= 2; default 3)")
    lm.set_defaults(func=cmd_prepare_lm)
    rs = prep_sub.add_parser("real-speech", help="the real recordings of pocketsphinx-testdata as an ASR test set")
    from data2vec.data import prepare_real_speech

    prepare_real_speech.add_arguments(rs)
    rs.set_defaults(func=prepare_real_speech.run)
    rt = prep_sub.add_parser("rt-polarity", help="write the Rotten Tomatoes review polarity task (SST-2 format TSVs)")
    from data2vec.data import prepare_rt

    prepare_rt.add_arguments(rt)
    rt.set_defaults(func=prepare_rt.run)
    im = prep_sub.add_parser("images", help="write the built-in Fashion-MNIST as train/valid/test image folders")
    from data2vec.data import prepare_images

    prepare_images.add_arguments(im)
    im.set_defaults(func=cmd_prepare_images)


FAIRSEQ_EXACT_HELP = ("switch off our deliberate deviations from fairseq (README): padded frames in the target norm, "
                      "text masks over <s>/</s>, v2 loss on masked padding; reproduces fairseq's numbers")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="data2vec", description="data2vec self-supervised pretraining")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    pt = sub.add_parser("pretrain", help="pretrain a model from a preset",
                        description="Pretrain with data2vec. Writes config.json, metrics.jsonl, tb/, curves.png, "
                                    "checkpoint_last.pt and summary.txt into --out.")
    pt.add_argument("--preset", help="recipe name (see `data2vec presets`)")
    pt.add_argument("--data", help="data directory: speech holds train.tsv (`data2vec prepare speech`), "
                                   "text holds train.npz + vocab (`data2vec prepare text`)")
    pt.add_argument("--out", required=True, help="run directory")
    pt.add_argument("--config", help="YAML/JSON file of overrides, nested like config.json")
    pt.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override one config value, e.g. --set optim.lr=5e-4 (repeatable)")
    pt.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoint_last.pt")
    pt.add_argument("--init", metavar="SRC", help="start from pretrained weights: a HF data2vec directory, a fairseq "
                                                  ".pt, our checkpoint or converted directory (its config is the "
                                                  "base unless --preset is given)")
    pt.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    pt.add_argument("--fairseq-exact", action="store_true", help=FAIRSEQ_EXACT_HELP)
    pt.set_defaults(func=cmd_pretrain)

    _add_finetune_parsers(sub)

    cv = sub.add_parser("convert", help="import a HF directory, fairseq .pt or checkpoint into our pickle-free format",
                        description="Writes DIR/config.json + DIR/model.safetensors (student and EMA teacher); "
                                    "continue pretraining from it with `data2vec pretrain --init DIR`.")
    cv.add_argument("src", help="HF data2vec model directory, fairseq data2vec .pt, checkpoint_last.pt, or a "
                                "train.parallel=fsdp run's DCP checkpoint (run directory or checkpoint_last.dcp)")
    cv.add_argument("--out", required=True, help="output directory")
    cv.add_argument("--fairseq-exact", action="store_true", help=FAIRSEQ_EXACT_HELP)
    cv.add_argument("--student-only", action="store_true",
                    help="leave the EMA teacher out (half the size): enough to fine-tune and extract; it loads "
                         "with teacher = student, so continued pretraining starts its EMA afresh")
    cv.add_argument("--encoder-only", action="store_true",
                    help="keep only the student's encoder (no teacher, decoder or regression head; the smallest): "
                         "enough to fine-tune and extract; continued pretraining starts with a new decoder")
    cv.set_defaults(func=cmd_convert)

    ex = sub.add_parser("export", help="export a model to HF transformers (a pretrained encoder, or a fine-tuned "
                                       "model with its task head)")
    ex.add_argument("src", help="our checkpoint, run or converted directory (or any format `convert` reads)")
    ex.add_argument("--to", choices=["hf"], default="hf", help="target format (default hf)")
    ex.add_argument("--out", required=True, help="output directory")
    ex.set_defaults(func=cmd_export)

    et = sub.add_parser("extract", help="extract features (per frame/token/patch or pooled) from audio, images or text",
                        description="Layers: final, all, or a block number. Writes .safetensors (one tensor per "
                                    "input) or .npy (equal shapes, e.g. with --pool mean).")
    from data2vec import extract

    extract.add_arguments(et)
    et.set_defaults(func=cmd_extract)

    pr = sub.add_parser("presets", help="list presets with one-line descriptions")
    pr.add_argument("--show", metavar="NAME", help="print the full config of one preset")
    pr.set_defaults(func=cmd_presets)

    _add_prepare_parsers(sub)
    _add_shard_parser(sub)
    return p


def cmd_shard(args) -> int:
    from data2vec.data.shards import shard_dataset
    from data2vec.modalities import get_modality
    from data2vec.presets import get_preset

    cfg = _apply_overrides(get_preset(args.preset), args)
    index = shard_dataset(cfg, args.out, source=get_modality(cfg.modality).shard_source,
                          samples_per_shard=args.samples_per_shard, shuffle_buffer=args.buffer,
                          seed=args.seed)
    print(f"{args.out}: {index['num_samples']:,} {index['modality']} samples in {len(index['shards'])} shards; "
          f"pretrain on them with `data2vec pretrain --preset {args.preset} --data {args.out}`")
    return 0


def _add_shard_parser(sub) -> None:
    from data2vec.data.shards import DEFAULT_SAMPLES_PER_SHARD, DEFAULT_SHUFFLE_BUFFER

    sh = sub.add_parser("shard", help="write a training set as WebDataset tar shards for streaming pretraining",
                        description="Reads --data as the preset's modality reads it (speech manifest directory, "
                                    "image folder, prepared text directory), writes OUT/shards.json and "
                                    "OUT/<subset>-NNNNNN.tar; `data2vec pretrain --data OUT` then streams them.")
    sh.add_argument("--preset", required=True, help="recipe whose data settings shape the samples (modality, "
                                                    "sample rate, min length, tokens_per_sample, ...)")
    sh.add_argument("--data", required=True, help="the data directory to shard")
    sh.add_argument("--out", required=True, help="shard directory to write")
    sh.add_argument("--config", help="YAML/JSON file of overrides, nested like config.json")
    sh.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable)")
    sh.add_argument("--samples-per-shard", type=int, default=DEFAULT_SAMPLES_PER_SHARD,
                    help=f"samples per tar file (default {DEFAULT_SAMPLES_PER_SHARD}; at most 1 GiB each)")
    sh.add_argument("--buffer", type=int, default=DEFAULT_SHUFFLE_BUFFER,
                    help=f"samples per shuffle buffer when reading (default {DEFAULT_SHUFFLE_BUFFER}; kept in "
                         "shards.json)")
    sh.add_argument("--seed", type=int, default=0, help="seed of the order the samples are written in (default 0)")
    sh.set_defaults(func=cmd_shard)


def _raised_by_us(e: BaseException) -> bool:
    """Whether ``e`` was raised by a ``raise`` in data2vec's own code (our user-facing ``ValueError``s), rather
    than inside a library we called (a bug in how we called it)."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and str(Path(tb.tb_frame.f_code.co_filename).resolve()).startswith(_PACKAGE_DIR)


def _from_worker(message: str) -> tuple[str, bool] | None:
    """(the original message, raised by our code) of an exception a DataLoader worker raised, which torch re-raises
    in the main process with the worker's traceback as its text; None for any other message."""
    if "Original Traceback (most recent call last)" not in message:
        return None
    lines = [ln for ln in message.splitlines() if ln.strip()]
    frames = [ln.strip() for ln in lines if ln.strip().startswith('File "')]
    ours = bool(frames) and str(Path(frames[-1].split('"')[1]).resolve()).startswith(_PACKAGE_DIR)
    last = lines[-1].strip()
    return (last.split(": ", 1)[1] if ": " in last else last), ours


def user_error(e: BaseException) -> str | None:
    """The one line to print for an error the user can fix, or None for a bug (which keeps its traceback)."""
    worker = _from_worker(str(e))
    if worker is not None:  # raised in a DataLoader worker: judge it by where it was raised there
        message, ours = worker
        return message if ours and isinstance(e, ValueError) else None
    if isinstance(e, Data2VecError):
        return str(e)
    if isinstance(e, OSError) and e.errno in _ENV_ERRNOS:  # from the OS: the disk, a path, permissions
        from data2vec.train.checkpoint import os_reason

        return f"{e.filename}: {os_reason(e)}" if e.filename else os_reason(e)
    if isinstance(e, (ValueError, FileNotFoundError, FileExistsError)) and _raised_by_us(e):
        return str(e)
    if isinstance(e, json.JSONDecodeError):  # a file we read is damaged (loaders should name it; this is the net)
        return f"a JSON file is malformed ({e}); check the config.json of the model or run you named"
    if isinstance(e, UnicodeDecodeError):
        return f"a text file is not UTF-8 ({e}); convert it to UTF-8"
    try:
        from safetensors import SafetensorError
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    if isinstance(e, SafetensorError):
        return f"a .safetensors file is damaged or not a safetensors file ({e}); re-create it (`data2vec convert`)"
    return None


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (``| head``)."""
    import select

    try:
        p = select.poll()
        p.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in p.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "prepare":
            _writable_out(args)
        rc = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return rc
    except BrokenPipeError:
        if not _stdout_closed():
            raise
        devnull = os.open(os.devnull, os.O_WRONLY)  # the reader left (`| head`): nothing more to say
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as e:
        message = user_error(e)
        if message is None or os.environ.get("DATA2VEC_DEBUG"):
            raise
        line = " ".join(part.strip() for part in message.splitlines() if part.strip())
        print(f"data2vec {args.command}: error: {line}", file=sys.stderr)
        return EXIT_USAGE


def _exit(rc: int) -> None:
    """Exit with ``rc``. A rank of a torchrun job (WORLD_SIZE > 1) leaves without interpreter teardown, once its output
    is flushed: the run is complete and its process group destroyed by then, yet torch 2.13's teardown sometimes
    aborted a finished gloo worker ("terminate called without an active exception", exit -6), which torchrun reports as
    a failed job (and ``--max-restarts`` takes for a crash to restart)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    sys.exit(rc)


if __name__ == "__main__":
    _exit(main())
