"""Which frozen-feature readout of a pretrained image encoder makes the best linear probe (issue 15, vision).

    python experiments/probe_readouts.py --ckpt runs/v15-img-A/checkpoint_1500.pt --data data/images \\
        --label-fraction 0.1 --seeds 1 2 3 --out runs/v15-img-A/readouts.json
    python experiments/probe_readouts.py --ckpt ... --readouts last4/pool2x2 --seeds 1 2 3 --test   # once, at the end

Readouts (all linear in the frozen encoder's outputs, no fine-tuning):
- ``lastK/mean``: the patch tokens of each of the top K blocks, averaged over positions, concatenated;
- ``lastK/pool2x2``: the same averaged over each quarter of the patch grid (layout kept at 2 x 2);
- ``lastK/flat``: every patch token of the top K blocks concatenated (the layout a pixel probe keeps);
- ``cls``: the extra (CLS) token of the final output, where the encoder has one;
- ``random:<readout>``: the same readout of a randomly initialised encoder of the same config (same seed);
- ``pixels``: the raw pixels (the baseline).
Each is an L2 logistic regression on standardised features of a seeded ``--label-fraction`` of the training
labels (seed s picks the subset), weight decay picked from a grid on ``--valid`` images of the validation split.
Without ``--test`` only validation accuracy is computed: readouts are chosen on it. ``--test`` also scores the
``--test`` images of the test split, to be used once for the chosen readout. Prints and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

READOUTS = ("last1/mean", "last2/mean", "last4/mean", "last1/pool2x2", "last2/pool2x2", "last4/pool2x2",
            "last1/flat", "cls", "random:last1/mean", "random:last2/pool2x2", "pixels")


def logreg(xtr, ytr, xva, yva, xte=None, yte=None, wds=(1e-4, 1e-3, 1e-2, 1e-1, 1.0)) -> dict:
    """L2 multinomial logistic regression (L-BFGS); weight decay chosen on the validation accuracy."""
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xva = (xtr - mu) / sd, (xva - mu) / sd
    n_cls = int(ytr.max()) + 1
    onehot = F.one_hot(ytr, n_cls).to(xtr.dtype)
    best = None
    for wd in wds:
        w = torch.zeros(xtr.size(1), n_cls)
        b = torch.zeros(n_cls)
        opt = torch.optim.LBFGS([w, b], lr=1, max_iter=200, line_search_fn="strong_wolfe")

        @torch.no_grad()
        def closure():
            # the gradient by hand: autograd's xtr.t() @ g runs 17x slower on one core than (g.t() @ xtr).t()
            logits = xtr @ w + b
            g = (logits.softmax(1) - onehot) / len(xtr)
            w.grad = (g.t() @ xtr).t().contiguous() + wd * w
            b.grad = g.sum(0)
            return F.cross_entropy(logits, ytr) + wd * (w ** 2).sum() / 2

        opt.step(closure)
        with torch.no_grad():
            va = ((xva @ w + b).argmax(1) == yva).float().mean().item()
        if best is None or va > best["valid_top1"]:
            best = {"weight_decay": wd, "valid_top1": va, "w": w.clone(), "b": b.clone()}
    out = {"weight_decay": best["weight_decay"], "valid_top1": best["valid_top1"]}
    if xte is not None:
        with torch.no_grad():
            out["test_top1"] = ((((xte - mu) / sd) @ best["w"] + best["b"]).argmax(1) == yte).float().mean().item()
    return out


def _one(o, name: str, grid: int) -> torch.Tensor:
    if name == "cls":
        return o.x[:, 0]
    top, how = name.split("/")
    hs = o.layer_outputs[-int(top.removeprefix("last")):]
    if how == "mean":
        return torch.cat([h.mean(1) for h in hs], 1)
    if how == "flat":
        return torch.cat([h.flatten(1) for h in hs], 1)
    B, T, C = hs[0].shape  # pool2x2: average each quarter of the patch grid
    return torch.cat([F.adaptive_avg_pool2d(h.transpose(1, 2).reshape(B, C, grid, grid), 2).flatten(1)
                      for h in hs], 1)


@torch.no_grad()
def readouts(encoder, images: torch.Tensor, names: list[str], grid: int, batch: int = 500) -> dict[str, torch.Tensor]:
    """Every readout in ``names`` of one encoder, from one forward pass over ``images``."""
    out = {n: [] for n in names}
    if names == ["pixels"]:
        return {"pixels": images.flatten(1)}
    encoder.eval()
    for i in range(0, len(images), batch):
        o = encoder(images[i:i + batch])
        for n in names:
            out[n].append(images[i:i + batch].flatten(1) if n == "pixels" else _one(o, n, grid))
    return {n: torch.cat(v).float() for n, v in out.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--label-fraction", type=float, default=0.1)
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--readouts", nargs="+", default=list(READOUTS))
    p.add_argument("--valid", type=int, default=2000)
    p.add_argument("--wds", type=float, nargs="+", default=[1e-4, 1e-3, 1e-2, 1e-1, 1.0],
                   help="the weight decays tried per readout (picked on the validation images)")
    p.add_argument("--test", action="store_true", help="also score the test split (once, for the chosen readout)")
    p.add_argument("--n-test", type=int, default=10000)
    p.add_argument("--out")
    args = p.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).parent))
    from v1_vs_v2 import probe_sets  # noqa: E402

    from data2vec.pretrained import build_model, load_pretrained

    cfg, model = load_pretrained(args.ckpt)
    encoder = model.student.encoder
    torch.manual_seed(1)
    rand = build_model(cfg).student.encoder
    grid = cfg.encoder.image_size // cfg.encoder.patch_size
    results: dict = {"args": vars(args), "runs": []}
    for seed in args.seeds:
        sets = probe_sets(args.data, cfg, args.label_fraction, seed, args.valid, args.n_test if args.test else 1)
        groups = {"": [n for n in args.readouts if not n.startswith("random:")],
                  "random:": [n.removeprefix("random:") for n in args.readouts if n.startswith("random:")]}
        feats = {}
        for prefix, names in groups.items():
            if names:
                enc = rand if prefix else encoder
                by_split = {s: readouts(enc, sets[s][0], names, grid) for s in ("train", "valid", "test")}
                feats |= {prefix + n: {s: by_split[s][n] for s in by_split} for n in names}
        for name in args.readouts:
            f = feats[name]
            r = logreg(f["train"], sets["train"][1], f["valid"], sets["valid"][1],
                       *((f["test"], sets["test"][1]) if args.test else ()), wds=tuple(args.wds))
            r.update(seed=seed, readout=name, dim=f["train"].shape[1])
            results["runs"].append(r)
            print(json.dumps(r), flush=True)
    summary = {}
    for name in args.readouts:
        rs = [r for r in results["runs"] if r["readout"] == name]
        for k in ("valid_top1", "test_top1"):
            v = np.array([r[k] for r in rs if k in r])
            if len(v):
                summary.setdefault(name, {})[k] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1
                                                   else None, "n": len(v)}
    results["summary"] = summary
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
