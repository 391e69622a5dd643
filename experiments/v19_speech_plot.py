"""Valid CER per CTC fine-tuning update, pretrained vs from scratch, one line per seed (docs/results.md, session 19).

    python experiments/v19_speech_plot.py --runs 'runs/v15-asr-M/0.17h-u1500-lr2e-3-clip5-{arm}-s{seed}' \\
        --title '10 min of labels' --out docs/v19-asr-10min-valid-cer.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", required=True, help="run directory pattern with {arm} and {seed}")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--title", default="")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    names = {"pretrained": "pretrained (audio-tiny-mel-v2)", "scratch": "log-mel from scratch"}
    for arm, colour in (("pretrained", "tab:blue"), ("scratch", "tab:orange")):
        for i, seed in enumerate(args.seeds):
            rows = [json.loads(line) for line in open(Path(args.runs.format(arm=arm, seed=seed)) / "metrics.jsonl")]
            pts = [(r["step"], r["valid_cer"]) for r in rows if "valid_cer" in r]
            ax.plot(*zip(*pts), marker="o", color=colour, alpha=0.8, label=names[arm] if i == 0 else None)
    ax.set_xlabel("fine-tuning update")
    ax.set_ylabel("valid CER (greedy)")
    ax.set_ylim(0.45, 1.02)
    ax.set_title(args.title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
