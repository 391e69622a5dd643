"""Pretrained vs from-scratch fine-tuning at several label budgets and seeds, as one table.

    python experiments/compare.py --task image-classification --data data/images \\
        --pretrained runs/demo-image-tiny-v1/checkpoint_last.pt --preset image-tiny-v1 \\
        --budget 1%=data.label_fraction=0.01 --budget 10%=data.label_fraction=0.1 \\
        --seeds 1 2 --out runs/exp-fmnist [--set KEY=VALUE ...] [--linear-probe]

For every budget x seed it runs ``data2vec finetune TASK`` twice: ``--init PRETRAINED`` and ``--preset
PRESET`` (the same encoder, randomly initialised), with ``train.seed=SEED`` (the labelled subset, the head
and the data order all follow it). ``--linear-probe`` adds a third arm: the pretrained encoder frozen.
Runs that finished before are reused (the script can be stopped and rerun). Writes OUT/results.json,
OUT/table.md (mean and spread over seeds of the task's test metric) and OUT/curves.png (validation metric
against updates, one line per run). Not a test: a learning experiment, see docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

SPLIT = re.compile(r",(?![^()\[\]]*[)\]])")  # commas between overrides, not inside a tuple like (0.8, 1.0)
METRIC = {"image-classification": ("top1", "test top-1", True), "asr": ("wer", "test WER", False),
          "text-classification": ("score", "test score", True)}


def run_one(args, arm: str, budget: str, budget_set: list[str], seed: int) -> dict:
    out = Path(args.out) / f"{budget.replace('%', 'pct')}-{arm}-s{seed}"
    metrics = out / "metrics.json"
    if not metrics.is_file():
        src = ["--init", args.pretrained] if arm in ("pretrained", "probe") else ["--preset", args.preset]
        sets = [*args.set, *budget_set, f"train.seed={seed}"] + (["head.linear_probe=true"] if arm == "probe" else [])
        cmd = [sys.executable, "-m", "data2vec.cli", "finetune", args.task, *src, "--data", args.data, "--out", str(out),
               *(["--recipe", args.recipe] if args.recipe else []), *[a for s in sets for a in ("--set", s)]]
        if (out / "checkpoint_last.pt").is_file():
            cmd.append("--resume")
        print("$", " ".join(cmd), flush=True)
        t0 = time.time()
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out.with_suffix(".log"), "a") as log:
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
        print(f"  done in {time.time() - t0:.0f} s", flush=True)
    m = json.loads(metrics.read_text())
    return {"arm": arm, "budget": budget, "seed": seed, "run": str(out), "test": m.get("test", {}),
            "best_valid": m["best_valid"]}


def summarise(rows: list[dict], task: str) -> str:
    key, label, higher = METRIC[task]
    budgets = list(dict.fromkeys(r["budget"] for r in rows))
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    lines = ["| labels | " + " | ".join(f"{a} ({label})" for a in arms) + " |",
             "|---|" + "---|" * len(arms)]
    for b in budgets:
        cells = []
        for a in arms:
            vals = [r["test"][key] for r in rows if r["budget"] == b and r["arm"] == a and key in r["test"]]
            if not vals:
                cells.append("-")
                continue
            spread = f" ± {statistics.stdev(vals):.3f}" if len(vals) > 1 else ""
            cells.append(f"{statistics.mean(vals):.3f}{spread} (n={len(vals)})")
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Mean ± sample standard deviation over seeds; {'higher' if higher else 'lower'} is better.")
    return "\n".join(lines)


def plot(rows: list[dict], task: str, path: Path) -> None:
    """Validation metric (left) and training loss (right, mean over 5 log points) against updates, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    key = METRIC[task][0]
    fig, (ax, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.5))
    colors = {"pretrained": "tab:blue", "scratch": "tab:orange", "probe": "tab:green"}
    styles = ["-", "--", ":", "-."]
    budgets = list(dict.fromkeys(r["budget"] for r in rows))
    for r in rows:
        recs = [json.loads(x) for x in (Path(r["run"]) / "metrics.jsonl").read_text().splitlines()]
        style = dict(color=colors.get(r["arm"], "k"), alpha=0.8, label=f"{r['arm']} {r['budget']} s{r['seed']}")
        pts = [(x["step"], x[f"valid_{key}"]) for x in recs if f"valid_{key}" in x]
        if pts:
            ax.plot(*zip(*pts), styles[budgets.index(r["budget"]) % 4], marker="o", ms=3, **style)
        train = [(x["step"], x["loss"]) for x in recs if "loss" in x and "valid_loss" not in x]
        if len(train) >= 5:
            steps, loss = np.array(train).T
            smooth = np.convolve(loss, np.ones(5) / 5, mode="valid")
            ax_loss.plot(steps[4:], smooth, styles[budgets.index(r["budget"]) % 4], **style)
    ax.set(xlabel="update", ylabel=f"valid {key}", title=f"{task}: pretrained vs scratch")
    ax_loss.set(xlabel="update", ylabel="training loss", title="training loss (mean of 5 log points)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", required=True, choices=list(METRIC))
    p.add_argument("--data", required=True)
    p.add_argument("--pretrained", required=True, help="pretrained checkpoint (any format `data2vec convert` reads)")
    p.add_argument("--preset", required=True, help="preset of the same encoder, for the from-scratch arm")
    p.add_argument("--budget", action="append", required=True, metavar="NAME=KEY=VALUE[,KEY=VALUE]",
                   help="a label budget: its name and the overrides that select it")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="overrides for every run")
    p.add_argument("--recipe")
    p.add_argument("--linear-probe", action="store_true", help="add a frozen-encoder arm")
    p.add_argument("--arms", nargs="+", choices=["pretrained", "scratch", "probe"],
                   help="run only these arms (e.g. to split a grid over processes; summarise with all of them)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    arms = args.arms or ["pretrained", "scratch"] + (["probe"] if args.linear_probe else [])
    rows = []
    for spec in args.budget:
        name, _, sets = spec.partition("=")
        for seed in args.seeds:
            for arm in arms:
                rows.append(run_one(args, arm, name, [s for s in SPLIT.split(sets) if s], seed))
    out = Path(args.out)
    (out / "results.json").write_text(json.dumps({"args": vars(args), "runs": rows}, indent=2) + "\n")
    table = summarise(rows, args.task)
    (out / "table.md").write_text(table + "\n")
    plot(rows, args.task, out / "curves.png")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
