"""Linear probes on a frozen text encoder, pretrained vs randomly initialised (issue 15, text at 1k labels).

    python experiments/text_probe.py --pretrained models/text-tiny-v2 --data data/rt-polarity --seeds 1 2 3 \\
        --out runs/text-probe/valid.json             # dev split only: picks the layer per arm
    python experiments/text_probe.py ... --test      # once, at the end: the test split of the chosen layer

Features: each block's output mean-pooled over the non-pad tokens (``data2vec extract --layer all --pool mean``),
and all blocks concatenated; standardised on the training subset; an L2 multinomial logistic regression
(probe_readouts.logreg: L-BFGS, weight decay picked on the dev split). The labelled subsets are the ones
``data2vec finetune text-classification --set data.max_train_examples=N --set train.seed=S`` trains on
(``train_subset``), so the probe sees the same 1,000 reviews as the fine-tuned arms and the TF-IDF baseline.
Per arm, the feature set with the best mean dev accuracy over the seeds is the one ``--test`` scores; no other
is read on test. Not a test: a diagnostic, see docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

WDS = (1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0)


def features(encoder_dir: str, texts: list[str], random_init: bool, seed: int) -> torch.Tensor:
    """[N, L, C]: every block's output, mean-pooled over each text's tokens."""
    from data2vec.extract import Extractor
    from data2vec.pretrained import build_model

    ex = Extractor(encoder_dir, tokenizer=encoder_dir)
    if random_init:
        torch.manual_seed(seed)
        ex.encoder = build_model(ex.cfg).student.encoder.eval()
    with torch.inference_mode():
        return torch.stack(ex.text(texts, layer="all", pool="mean", batch_size=256))


def feature_sets(f: torch.Tensor) -> dict[str, torch.Tensor]:
    out = {f"block{j + 1}": f[:, j] for j in range(f.size(1))}
    out["all blocks"] = f.flatten(1)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pretrained", default="models/text-tiny-v2", help="encoder directory (with its tokenizer)")
    p.add_argument("--data", default="data/rt-polarity")
    p.add_argument("--max-train-examples", type=int, default=1000)
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--test", action="store_true", help="score the dev-chosen feature set of each arm on test")
    p.add_argument("--out")
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from probe_readouts import logreg
    from tfidf_baseline import load

    from data2vec.modalities.text.finetune import train_subset

    torch.set_num_threads(1)
    text, y = load(Path(args.data))
    splits = ("train", "dev", "test") if args.test else ("train", "dev")
    ys = {s: torch.from_numpy(y[s]) for s in splits}
    keeps = {seed: torch.tensor(train_subset(y["train"], 1.0, args.max_train_examples, seed, regression=False))
             for seed in args.seeds}
    results: dict = {}
    for arm in ("pretrained", "random"):
        feats = {s: feature_sets(features(args.pretrained, text[s], arm == "random", 0)) for s in splits}
        runs = {}
        for seed, keep in keeps.items():
            for name in feats["train"]:
                xs = [feats["train"][name][keep], ys["train"][keep], feats["dev"][name], ys["dev"]]
                r = logreg(*xs, wds=WDS)
                runs.setdefault(name, []).append({"seed": seed, **r})
                print(arm, name, seed, r, flush=True)
        mean_dev = {n: statistics.mean(r["valid_top1"] for r in rs) for n, rs in runs.items()}
        chosen = max(mean_dev, key=mean_dev.get)
        results[arm] = {"dev_mean": mean_dev, "chosen": chosen, "runs": runs}
        if args.test:
            test = []
            for keep in keeps.values():
                f = feats["train"][chosen]
                r = logreg(f[keep], ys["train"][keep], feats["dev"][chosen], ys["dev"], feats["test"][chosen],
                           ys["test"], wds=WDS)
                test.append(r["test_top1"])
            results[arm]["test"] = test
            sd = statistics.stdev(test) if len(test) > 1 else 0.0
            print(f"{arm} ({chosen}): test {statistics.mean(test):.4f} ± {sd:.4f} {test}", flush=True)
        print(f"{arm}: chosen {chosen}, dev {mean_dev[chosen]:.4f}", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"args": vars(args), "wds": WDS, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
