"""data2vec 1.0 vs 2.0 at small scale: pretraining wall-clock to reach the same downstream quality.

    python experiments/v1_vs_v2.py quality --data data/images --out runs/exp-v1v2-image --updates 300 \
        --updates-v2 600 --save-every 50
    python experiments/v1_vs_v2.py quality --modality text --data data/text --probe-data data/rt-polarity \
        --out runs/exp-v1v2-text --updates 500 --updates-v2 1000 --save-every 100
    python experiments/v1_vs_v2.py quality --modality audio --data data/speech --out runs/exp-v1v2-audio \
        --updates 300 --updates-v2 300 --save-every 50
    python experiments/v1_vs_v2.py speed --out runs/exp-v1v2-speed --updates 30 \\
        --data-audio data/speech --data-text data/text --data-images data/images

``quality`` (images, Fashion-MNIST): pretrains ``image-tiny-v1`` and ``image-tiny-v2`` (same CPU, same data),
keeping a checkpoint every ``--save-every`` updates; every checkpoint (and the random initialisation) is
scored with the same protocol: a linear probe (L2 logistic regression, weight decay picked on the
validation split) on the mean-pooled output of the last block, trained on ``--label-fraction`` of the
training labels. The pretraining time of each checkpoint is the run's own ``wall_s`` (data + compute,
checkpoint writes excluded). Writes ``results.json``, ``table.md`` and ``curves.png`` and prints the time
each version needs to reach the final probe accuracy of v1, and their ratio.

``quality --modality text``: the same with ``text-tiny-v1``/``-v2`` on the built-in text corpus, the probe on
Rotten Tomatoes polarity (``data2vec prepare rt-polarity``; all training reviews, mean over tokens).

``quality --modality audio``: ``audio-tiny-v1``/``-v2`` on the built-in speech corpus; the probe is a linear CTC
layer on the frozen last-block frames (features standardised, full-batch Adam, 100 steps) trained on
160 training clips (a fixed seeded subset; CTC on CPU is the probe's cost); quality is its CTC loss per
letter on the test split (unseen voices; lower is better),
with the greedy CER beside it. The tiny models are far from usable ASR, so the loss, not the CER, is the
measure that moves.

``speed``: a short pretraining run of every tiny preset (v1 and v2, all three modalities) through the CLI
code path; reports seconds per update and examples per second from the run logs.
Not a test: results go to docs/results.md with the command and commit.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from probe_layers import fit_logreg  # noqa: E402


def pretrain(preset: str, data: str, out: Path, sets: list[str]) -> Path:
    from data2vec.cli import main as cli

    if (out / "summary.json").is_file() and json.loads((out / "summary.json").read_text()).get("status") == "done":
        return out  # finished before: reuse (delete the directory to retrain)
    args = ["pretrain", "--preset", preset, "--data", data, "--out", str(out)]
    for s in sets:
        args += ["--set", s]
    if (out / "checkpoint_last.pt").is_file():
        args.append("--resume")
    rc = cli(args)
    if rc:
        raise SystemExit(f"pretraining {preset} failed ({rc})")
    return out


def wall_at(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {r["step"]: r["wall_s"] for r in rows if "wall_s" in r}


@torch.no_grad()
def pooled(encoder, inputs: torch.Tensor, batch: int = 500, pad: int | None = None) -> torch.Tensor:
    """Mean over positions of the last block's output (image patches without CLS; text tokens without padding)."""
    encoder.eval()
    order = torch.arange(len(inputs))
    if pad is not None:  # text: batches of similar length, cut to their longest review (padding costs compute)
        order = torch.argsort((inputs != pad).sum(1), stable=True)
    out = []
    for i in range(0, len(inputs), batch):
        x = inputs[order[i:i + batch]]
        if pad is None:
            out.append(encoder(x).layer_outputs[-1].mean(1))
            continue
        x = x[:, : int((x != pad).sum(1).max())]
        h = encoder(x).layer_outputs[-1]
        keep = (x != pad).unsqueeze(-1).to(h.dtype)
        out.append((h * keep).sum(1) / keep.sum(1))
    feats = torch.empty(len(inputs), out[0].shape[1])
    feats[order] = torch.cat(out)
    return feats


def text_probe_sets(data: str, text_data: str, max_len: int = 128):
    """Rotten Tomatoes (``data2vec prepare rt-polarity``) tokenised with the pretraining corpus's BPE."""
    from data2vec.data.text import Tokenizer

    tok = Tokenizer(Path(text_data))
    sets = {}
    for name, split in (("train", "train"), ("valid", "dev"), ("test", "test")):
        rows = [line.split("\t") for line in (Path(data) / f"{split}.tsv").read_text().splitlines()[1:] if line]
        ids = tok.encode_batch([r[0] for r in rows])
        x = torch.full((len(ids), max_len), tok.pad, dtype=torch.long)
        for i, t in enumerate(ids):
            t = [tok.bos, *t[: max_len - 2], tok.eos]
            x[i, : len(t)] = torch.tensor(t)
        sets[name] = (x, torch.tensor([int(r[1]) for r in rows]))
    return sets, tok.pad


def probe_sets(data: str, cfg, fraction: float, seed: int, n_valid: int, n_test: int):
    from data2vec.finetune.loop import label_subset
    from data2vec.modalities.image.dataset import ImageFolder

    sets = {}
    for name in ("train", "valid", "test"):
        ds = ImageFolder(Path(data) / name, channels=cfg.encoder.in_chans, augment_cfg=cfg.data.augment, seed=0,
                         train=False)
        labels = [c for _, c in ds.files]
        idx = (label_subset(labels, fraction, seed) if name == "train"
               else np.random.default_rng(0).permutation(len(labels))[: n_valid if name == "valid" else n_test].tolist())
        sets[name] = (torch.stack([ds[i]["image"] for i in idx]), torch.tensor([labels[i] for i in idx]))
    return sets


def audio_probe_sets(data: str) -> dict:
    """Letter targets of the speech corpus's train and test (unseen voices) splits, for a linear CTC probe."""
    from data2vec.asr.dictionary import LetterDictionary

    root = Path(data)
    d = LetterDictionary.load(root / "dict.ltr.txt")
    sets = {}
    for split in ("train", "test"):
        lines = (root / f"{split}.tsv").read_text().splitlines()
        paths = [str(Path(lines[0]) / line.split("\t")[0]) for line in lines[1:] if line.strip()]
        ltr = [x for x in (root / f"{split}.ltr").read_text().splitlines() if x.strip()]
        if len(ltr) != len(paths):
            raise SystemExit(f"{root}/{split}.ltr has {len(ltr)} lines for {len(paths)} clips")
        keep = sorted(np.random.default_rng(0).permutation(len(paths))[:160].tolist()) if split == "train" else None
        if keep is not None:
            paths, ltr = [paths[i] for i in keep], [ltr[i] for i in keep]
        sets[split] = (paths, [torch.tensor(d.encode(x)) for x in ltr])
    sets["dictionary"] = d
    return sets


@torch.no_grad()
def audio_features(encoder, cfg, paths: list[str]) -> list[torch.Tensor]:
    """Last block's output per clip ([T, C], one clip at a time: no padding)."""
    from data2vec.modalities.audio.dataset import audio_files

    encoder.eval()
    ds = audio_files(paths, sample_rate=cfg.data.sample_rate, normalize=cfg.data.normalize)
    feats = []
    for i in range(len(paths)):
        e = encoder.embed(ds[i]["source"][None], None)
        out = encoder.context_encoder(e.x, e.padding_mask)
        feats.append(out.x[0, getattr(out, "num_extra", 0):])
    return feats


def ctc_probe(train, test, d, steps: int = 100, lr: float = 3e-2, seed: int = 0) -> dict:
    """Linear CTC probe on frozen features (standardised with train statistics), full-batch Adam.
    Returns the test CTC loss per target character and the greedy-decoding CER (unseen voices)."""
    import torch.nn.functional as F

    from data2vec.asr.decode import greedy_decode, word_error_rate

    def pack(feats):
        lengths = torch.tensor([f.shape[0] for f in feats])
        x = torch.zeros(len(feats), int(lengths.max()), feats[0].shape[1])
        for i, f in enumerate(feats):
            x[i, : len(f)] = f
        return x, lengths

    cat = torch.cat(train[0])
    mu, sd = cat.mean(0), cat.std(0) + 1e-5
    (xtr, ltr), (xte, lte) = pack([(f - mu) / sd for f in train[0]]), pack([(f - mu) / sd for f in test[0]])
    ytr, yte = torch.cat(train[1]), torch.cat(test[1])
    ntr, nte = torch.tensor([len(y) for y in train[1]]), torch.tensor([len(y) for y in test[1]])
    torch.manual_seed(seed)
    lin = torch.nn.Linear(xtr.shape[-1], len(d))
    opt = torch.optim.Adam(lin.parameters(), lr=lr)

    def loss(x, lx, y, ly):
        return F.ctc_loss(lin(x).log_softmax(-1).transpose(0, 1), y, lx, ly, blank=d.blank, reduction="mean",
                          zero_infinity=True)

    for _ in range(steps):
        opt.zero_grad()
        loss(xtr, ltr, ytr, ntr).backward()
        opt.step()
    with torch.no_grad():
        test_loss = loss(xte, lte, yte, nte).item()
        hyp_text = greedy_decode(lin(xte), lte, d.tokens, d.blank)
    refs = [d.decode(y.tolist()) for y in test[1]]
    return {"ctc_loss": test_loss, "cer": word_error_rate(refs, hyp_text)["cer"]}


def score(encoder, sets, pad: int | None = None, cfg=None) -> dict:
    if "dictionary" in sets:  # audio: linear CTC probe
        tr = (audio_features(encoder, cfg, sets["train"][0]), sets["train"][1])
        te = (audio_features(encoder, cfg, sets["test"][0]), sets["test"][1])
        r = ctc_probe(tr, te, sets["dictionary"])
        return {"probe": r["ctc_loss"], "probe_cer": r["cer"]}
    f = {n: pooled(encoder, sets[n][0], pad=pad) for n in sets}
    n_cls = int(sets["train"][1].max()) + 1
    return {"probe": fit_logreg(f["train"], sets["train"][1], f["valid"], sets["valid"][1], f["test"],
                                sets["test"][1], n_cls)["test_top1"]}


def time_to_reach(points: list[tuple[float, float]], target: float, lower_better: bool = False) -> float | None:
    """First wall time at which the (linearly interpolated) quality curve reaches ``target``."""
    if lower_better:
        points, target = [(t, -a) for t, a in points], -target
    if points[0][1] >= target:  # already there at the first point (e.g. the random initialisation)
        return points[0][0]
    for (t0, a0), (t1, a1) in zip(points, points[1:]):
        if a1 >= target:
            return t1 if a1 == a0 or a0 >= target else t0 + (target - a0) / (a1 - a0) * (t1 - t0)
    return None


METRIC = {"image": "linear probe top-1", "text": "linear probe accuracy (Rotten Tomatoes)",
          "audio": "linear CTC probe test loss per letter (unseen voices)"}


def quality(args) -> int:
    from data2vec.pretrained import build_model, load_pretrained

    out = Path(args.out)
    lower_better = args.modality == "audio"
    probe, pad = None, None
    results = {}
    for version in args.versions:
        preset = f"{args.modality}-tiny-{version}"
        updates = args.updates if version == "v1" else (args.updates_v2 or args.updates)
        sets_cfg = [f"train.max_update={updates}", f"train.save_interval_updates={args.save_every}",
                    "train.keep_interval_checkpoints=true", f"train.log_interval={args.save_every}",
                    f"train.seed={args.seed}", *(args.set_v2 if version == "v2" else [])]
        run = pretrain(preset, args.data, out / version, sets_cfg)
        wall = wall_at(run)
        cfg, _ = load_pretrained(run / f"checkpoint_{args.save_every}.pt")  # the run's resolved config
        if probe is None and args.modality == "image":
            probe = probe_sets(args.data, cfg, args.label_fraction, args.seed, args.valid, args.test)
        elif probe is None and args.modality == "text":
            probe, pad = text_probe_sets(args.probe_data, args.data)
        elif probe is None:
            probe = audio_probe_sets(args.data)
        rows = []
        for step in range(0, updates + 1, args.save_every):
            cache = run / f"probe_{step}.json"  # a rerun reuses the scores (delete to rescore)
            if cache.is_file():
                rows.append(json.loads(cache.read_text()))
                continue
            if step == 0:  # a random initialisation of the same model: the probe's floor at 0 s
                torch.manual_seed(args.seed)
                encoder = build_model(cfg).student.encoder
            else:
                encoder = load_pretrained(run / f"checkpoint_{step}.pt")[1].student.encoder
            rows.append({"step": step, "wall_s": wall.get(step, 0.0), **score(encoder, probe, pad, cfg)})
            cache.write_text(json.dumps(rows[-1]))
            print(version, rows[-1], flush=True)
        results[version] = rows
    target = results["v1"][-1]["probe"] if "v1" in results else None  # --versions v2: a recipe variant alone
    summary = {"metric": METRIC[args.modality], "lower_is_better": lower_better}
    for v, rows in results.items():
        t = time_to_reach([(r["wall_s"], r["probe"]) for r in rows], target, lower_better) if target is not None else None
        best = (min if lower_better else max)(r["probe"] for r in rows)
        summary[v] = {"final_probe": rows[-1]["probe"], "best_probe": best, "time_to_v1_final_s": t,
                      "s_per_update": rows[-1]["wall_s"] / rows[-1]["step"]}
    if args.modality == "image":  # the same probe on the raw pixels: the floor any image feature should beat
        f = {n: probe[n][0].flatten(1) for n in probe}
        summary["raw_pixels_probe"] = fit_logreg(f["train"], probe["train"][1], f["valid"], probe["valid"][1],
                                                 f["test"], probe["test"][1], int(probe["train"][1].max()) + 1)["test_top1"]
    t1, t2 = (summary.get(v, {}).get("time_to_v1_final_s") for v in ("v1", "v2"))
    # None when either never reaches it, or v2 reaches it at initialisation (then no pretraining time is needed)
    summary["speedup_v2_over_v1"] = (t1 / t2) if t1 and t2 else None
    run_args = {k: v for k, v in vars(args).items() if k != "func"}
    (out / "results.json").write_text(json.dumps({"args": run_args, "curves": results, "summary": summary}, indent=2))
    extra = " | probe CER |" if lower_better else " |"
    lines = [f"| version | updates | pretraining wall s | {METRIC[args.modality]}{extra}",
             "|---|---|---|---|" + ("---|" if lower_better else "")]
    for v, rows in results.items():
        lines += [f"| {v} | {r['step']} | {r['wall_s']:.0f} | {r['probe']:.3f} |"
                  + (f" {r['probe_cer']:.3f} |" if lower_better else "") for r in rows]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for v, rows in results.items():
        ax.plot([r["wall_s"] / 60 for r in rows], [r["probe"] for r in rows], marker="o", label=f"data2vec {v[1]}.0")
    if target is not None:
        ax.axhline(target, ls=":", c="grey", label="v1 final")
    ax.set_xlabel("pretraining wall-clock (min, 2 CPU cores)")
    ax.set_ylabel(f"{METRIC[args.modality]}" + (f" ({args.label_fraction:.0%} labels)" if args.modality == "image" else ""))
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)
    print("\n".join(lines))
    print(json.dumps(summary, indent=2))
    return 0


def speed(args) -> int:
    out = Path(args.out)
    data = {"audio": args.data_audio, "text": args.data_text, "image": args.data_images}
    rows = []
    for mod in ("audio", "text", "image"):
        for v in ("v1", "v2"):
            preset = f"{mod}-tiny-{v}"
            run = pretrain(preset, data[mod], out / preset, [f"train.max_update={args.updates}",
                                                             f"train.log_interval={args.updates}",
                                                             f"train.save_interval_updates={args.updates}"])
            last = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()][-1]
            rows.append({"preset": preset, "updates": last["step"], "s_per_update": last["wall_s"] / last["step"],
                         "examples_per_s": last["samples_per_s"], "loss": last["loss"]})
            print(json.dumps(rows[-1]), flush=True)
    (out / "speed.json").write_text(json.dumps(rows, indent=2))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--modality", choices=["image", "text", "audio"], default="image")
    q.add_argument("--data", required=True, help="pretraining data (images: also the probe's labelled images; "
                   "speech: also the probe's transcripts)")
    q.add_argument("--probe-data", default="data/rt-polarity", help="text: the labelled probe set")
    q.add_argument("--out", required=True)
    q.add_argument("--updates", type=int, default=300)
    q.add_argument("--updates-v2", type=int, default=0, help="v2 updates (default: --updates); v2 updates are cheaper")
    q.add_argument("--save-every", type=int, default=50)
    q.add_argument("--label-fraction", type=float, default=0.1)
    q.add_argument("--valid", type=int, default=2000)
    q.add_argument("--test", type=int, default=5000)
    q.add_argument("--seed", type=int, default=1)
    q.add_argument("--versions", nargs="+", choices=["v1", "v2"], default=["v1", "v2"])
    q.add_argument("--set-v2", action="append", default=[], metavar="KEY=VALUE",
                   help="override of the v2 preset (a recipe variant), repeatable")
    q.set_defaults(func=quality)
    s = sub.add_parser("speed")
    s.add_argument("--out", required=True)
    s.add_argument("--updates", type=int, default=30)
    s.add_argument("--data-audio", default="data/speech")
    s.add_argument("--data-text", default="data/text")
    s.add_argument("--data-images", default="data/images")
    s.set_defaults(func=speed)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
