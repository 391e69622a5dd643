"""How long pretraining waits for data, per built-in corpus and tiny preset (issue "Speed": under 5% of the step).

Runs ``data2vec pretrain`` with each preset's defaults (loader workers, prefetch, precision) on the built-in data
for ``--updates`` updates and reads ``data_wait_s`` / ``data_wait_frac`` from the run's ``metrics.jsonl``: the
time the loop waits for the next batch, as a share of waiting + ``train_update``. The first log interval
(workers starting, first batches) is reported apart from the steady state (the rest).

    data2vec prepare speech --out data/speech --hours 0.5; data2vec prepare images --out data/images
    data2vec prepare text --out data/text
    python benchmarks/data_wait.py --out docs/data_wait.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPORA = {"audio": "data/speech", "image": "data/images", "text": "data/text"}


def run(preset: str, data: str, updates: int, interval: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "data2vec.cli", "pretrain", "--preset", preset, "--data", data, "--out",
               f"{tmp}/run", "--set", f"train.max_update={updates}", "--set", f"train.log_interval={interval}"]
        for kv in extra:
            cmd += ["--set", kv]
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if p.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
        recs = [json.loads(x) for x in Path(f"{tmp}/run/metrics.jsonl").read_text().splitlines()]
        cfg = json.loads(Path(f"{tmp}/run/config.json").read_text())
    steady = recs[1:]
    return {"preset": preset, "data": data, "updates": updates, "num_workers": cfg["data"].get("num_workers"),
            "precision": cfg["train"]["precision"], "first_interval_wait_frac": round(recs[0]["data_wait_frac"], 4),
            "wait_frac": round(statistics.mean(r["data_wait_frac"] for r in steady), 4),
            "wait_s_per_update": round(statistics.mean(r["data_wait_s"] for r in steady), 5),
            "step_s": round(statistics.mean(r["data_wait_s"] / max(r["data_wait_frac"], 1e-9) for r in steady
                                            if r["data_wait_frac"] > 0) if any(r["data_wait_frac"] > 0 for r in steady)
                            else float("nan"), 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=["audio-tiny-v1", "audio-tiny-v2", "image-tiny-v1",
                                                    "image-tiny-v2", "text-tiny-v1", "text-tiny-v2"])
    p.add_argument("--updates", type=int, default=60)
    p.add_argument("--interval", type=int, default=10)
    p.add_argument("--set", nargs="*", default=[], help="extra overrides for every run (KEY=VALUE)")
    p.add_argument("--out", help="also write the rows as JSON lines here")
    args = p.parse_args()
    rows = []
    for preset in args.presets:
        data = CORPORA[preset.split("-")[0]]
        if not (ROOT / data).exists():
            print(json.dumps({"preset": preset, "skipped": f"{data} not built (see this file's docstring)"}))
            continue
        rows.append(run(preset, data, args.updates, args.interval, args.set))
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
