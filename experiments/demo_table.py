"""The short pretrained-vs-scratch comparison of ``make demo``: one fine-tune per modality and arm, one table.

    python experiments/demo_table.py --out runs/demo-finetune

Uses the demo's pretraining runs (``runs/demo-{audio,text,image}-tiny-v1``) and data (``data/speech``,
``data/rt-polarity``, ``data/images``); the pretrained and the from-scratch arm of a modality run side by
side, one thread each. One seed and short schedules (about 13 minutes in all on 2 cores): a smoke-level
version of ``experiments/compare.py``; docs/results.md has the real experiments. Reruns reuse finished runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

SETUPS = {  # modality -> (task, pretrained run, preset, data, overrides, metric, label)
    "speech": ("asr", "runs/demo-audio-tiny-v1", "audio-tiny-v1", "data/speech",
               ["data.label_hours=0.17", "train.max_update=300", "eval_interval=150", "data.num_workers=0"],  # half the tiny recipe
               "cer", "test CER (10 min of labels)"),
    "text": ("text-classification", "runs/demo-text-tiny-v1", "text-tiny-v1", "data/rt-polarity",
             ["data.max_train_examples=1000", "max_epochs=5", "data.tokenizer=data/text", "data.num_workers=0"],
             "accuracy", "test accuracy (1k labelled reviews)"),
    "vision": ("image-classification", "runs/demo-image-tiny-v1", "image-tiny-v1", "data/images",
               ["data.label_fraction=0.01", "train.max_update=150", "eval_interval=150",
                "data.augment.crop_scale=(0.8, 1.0)", "head.layer_decay=0.75"],
               "top1", "test top-1 (1% of the labels)"),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/demo-finetune")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for modality, (task, pre, preset, data, sets, metric, label) in SETUPS.items():
        ckpt = Path(pre) / "checkpoint_last.pt"
        if not ckpt.is_file() or not Path(data).exists():
            print(f"{modality}: skipped ({ckpt} or {data} missing)", flush=True)
            continue
        procs, runs = [], {}
        for arm, src in (("pretrained", ["--init", str(ckpt)]), ("scratch", ["--preset", preset])):
            run = out / f"{modality}-{arm}"
            runs[arm] = run
            if (run / "metrics.json").is_file():
                continue
            cmd = [sys.executable, "-m", "data2vec.cli", "finetune", task, *src, "--data", data, "--out", str(run),
                   *(["--resume"] if (run / "checkpoint_last.pt").is_file() else []),
                   *[a for s in [*sets, "train.threads=1"] for a in ("--set", s)]]
            print(f"{modality} {arm}: {' '.join(cmd[2:])}", flush=True)
            procs.append(subprocess.Popen(cmd, stdout=open(out / f"{modality}-{arm}.log", "w"), stderr=subprocess.STDOUT))
        if any(p.wait() != 0 for p in procs):
            print(f"{modality}: a fine-tune failed, see {out}/{modality}-*.log", flush=True)
            continue
        vals = {arm: json.loads((run / "metrics.json").read_text()).get("test", {}).get(metric) for arm, run in runs.items()}
        rows.append((modality, label, vals["pretrained"], vals["scratch"]))
    lines = ["| modality | metric | pretrained | scratch |", "|---|---|---|---|"]
    lines += [f"| {m} | {lab} | {a:.3f} | {b:.3f} |" for m, lab, a, b in rows if a is not None and b is not None]
    table = "\n".join(lines)
    (out / "table.md").write_text(table + "\n")
    print("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
