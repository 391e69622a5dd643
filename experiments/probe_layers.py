"""Linear probes on every layer of an image encoder, pretrained vs randomly initialised, vs raw pixels.

    python experiments/probe_layers.py --pretrained runs/demo-image-tiny-v1/checkpoint_last.pt \\
        --data data/images --label-fraction 0.01 --seed 1

Features: each block's patch tokens, mean-pooled or flattened (and the pretraining target, the average
of the top-K instance-normalised blocks, flattened), standardised; an L2-regularised multinomial logistic regression
(L-BFGS, weight decay picked on the validation split from a small grid) per feature set. Prints JSON.
Not a test: a diagnostic, see docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F


def fit_logreg(xtr, ytr, xva, yva, xte, yte, num_classes: int) -> dict:
    """probe_readouts.logreg (weight decay chosen on validation), test top-1 of the chosen one."""
    from probe_readouts import logreg  # this script's directory is on sys.path when it runs

    return logreg(xtr, ytr, xva, yva, xte, yte)


@torch.no_grad()
def layer_features(encoder, images, k_top: int, batch: int = 500) -> dict[str, torch.Tensor]:
    feats: dict[str, list] = {}
    encoder.eval()
    for i in range(0, len(images), batch):
        out = encoder(images[i:i + batch])
        layers = out.layer_outputs if hasattr(out, "layer_outputs") else out
        for j, h in enumerate(layers):  # patch tokens (the cls token is not in them)
            feats.setdefault(f"block{j + 1}/mean", []).append(h.mean(1))
            feats.setdefault(f"block{j + 1}/flat", []).append(h.flatten(1))
        # the pretraining target (instance-normalised over positions) has a zero mean by construction: flat only
        top = [F.instance_norm(h.transpose(1, 2)).transpose(1, 2) for h in layers[-k_top:]]
        feats.setdefault(f"target(top{k_top})/flat", []).append(sum(top).div(k_top).flatten(1))
    return {k: torch.cat(v) for k, v in feats.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pretrained", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--label-fraction", type=float, default=0.01)
    p.add_argument("--valid", type=int, default=2000)
    p.add_argument("--test", type=int, default=5000)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    from pathlib import Path

    from data2vec.finetune.loop import label_subset
    from data2vec.modalities.image.dataset import ImageFolder
    from data2vec.pretrained import build_model, load_pretrained

    torch.manual_seed(args.seed)
    cfg, model = load_pretrained(args.pretrained)
    sets = {}
    for name in ("train", "valid", "test"):
        ds = ImageFolder(Path(args.data) / name, channels=cfg.encoder.in_chans, augment_cfg=cfg.data.augment,
                         seed=0, train=False)
        labels = [c for _, c in ds.files]
        idx = (label_subset(labels, args.label_fraction, args.seed) if name == "train"
               else np.random.default_rng(0).permutation(len(labels))[: getattr(args, name)].tolist())
        x = torch.stack([ds[i]["image"] for i in idx])
        sets[name] = (x, torch.tensor([labels[i] for i in idx]))
    n_cls = int(sets["train"][1].max()) + 1
    k = cfg.model.targets.average_top_k_layers
    results = {"pixels": fit_logreg(*(t for n in ("train", "valid", "test")
                                      for t in (sets[n][0].flatten(1), sets[n][1])), n_cls)}
    random_model = build_model(cfg)
    for arm, m in (("pretrained", model), ("random", random_model)):
        f = {n: layer_features(m.student.encoder, sets[n][0], k) for n in sets}
        for layer in f["train"]:
            results[f"{arm}/{layer}"] = fit_logreg(f["train"][layer], sets["train"][1], f["valid"][layer],
                                                   sets["valid"][1], f["test"][layer], sets["test"][1], n_cls)
            print(arm, layer, results[f"{arm}/{layer}"], flush=True)
    print(json.dumps({"args": vars(args), "train_examples": len(sets["train"][1]), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
