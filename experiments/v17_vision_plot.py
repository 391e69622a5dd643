"""Plot session 17's probe curve: linear-probe valid top-1 (seed 1) against pretraining minutes on this machine.

    python experiments/v17_vision_plot.py --out docs/v17-img-probe-curve.png
"""
import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def minutes(run: str) -> dict[int, float]:
    recs = [json.loads(line) for line in Path(f"runs/v17-img-{run}/metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["wall_s"] / 60 for r in recs if "wall_s" in r and "step" in r}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    args = p.parse_args()
    fig, ax = plt.subplots(figsize=(6, 4))
    for run, label in (("m8c8", "mask 0.8, 8 clones, 1,500 updates"), ("u3000", "mask 0.6, 4 clones, 3,000 updates")):
        wall = minutes(run)
        pts = sorted((int(f.stem.split("-")[1]), json.loads(f.read_text())["runs"][0]["valid_top1"])
                     for f in Path("runs/v17-probe").glob(f"{run}-*.json"))
        ax.plot([wall.get(u, 0) for u, _ in pts], [v for _, v in pts], "o-", label=label)
        for u, v in pts:
            ax.annotate(str(u), (wall.get(u, 0), v), fontsize=7, textcoords="offset points", xytext=(3, -9))
    ax.axhline(0.868, color="gray", ls="--", lw=1,
               label="v15-img-A, shipped until session 18 (mask 0.6, 4 clones, 1,500 updates)")
    ax.axhline(0.847, color="black", ls=":", lw=1, label="raw pixels")
    ax.set(xlabel="pretraining minutes (one core, this instance, with other jobs)",
           ylabel="linear probe valid top-1 (seed 1)", title="image-tiny-v2: probe on all 49 patch tokens")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)


if __name__ == "__main__":
    main()
