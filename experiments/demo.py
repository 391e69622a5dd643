"""``make demo``: build the built-in data, pretrain the three tiny models, fine-tune each pretrained and from
scratch, and print one pretrained-vs-scratch table.

    python experiments/demo.py --out runs/demo [--jobs 2] [--dry-run]

Every step is a ``data2vec`` command (printed when it starts, its output in OUT/<step>.log). The steps form a
small graph (data -> pretraining -> fine-tuning; the from-scratch fine-tunes need only the data) run by ``--jobs``
single-thread processes at a time: on these tiny models two one-thread processes get somewhat more done on
2 cores than one two-thread process. To keep it short the pretraining runs stop at about half the tiny
presets' updates (``PRETRAIN``; same recipes otherwise) and the fine-tunes are half-length versions of
``experiments/compare.py``'s grids, one seed: about 30 minutes on this project's 2-core CPU, half of it
pretraining. docs/results.md has the full-length experiments and the numbers of a demo run. Finished steps
are reused and interrupted ones resumed when the script is run again. Writes OUT/table.md and OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

CLI = [sys.executable, "-m", "data2vec.cli"]
DATA = {"speech": "data/speech", "text": "data/text", "images": "data/images", "rt": "data/rt-polarity"}
PREPARE = {"speech": ["prepare", "speech", "--out", DATA["speech"], "--hours", "0.5"],
           "text": ["prepare", "text", "--out", DATA["text"]],
           "images": ["prepare", "images", "--out", DATA["images"]],
           "rt": ["prepare", "rt-polarity", "--out", DATA["rt"]]}
PRETRAIN = {  # modality -> (preset, data, updates: about half the preset's 600 / 500 / 300)
    "audio": ("audio-tiny-v1", "speech", 250),
    "text": ("text-tiny-v1", "text", 250),
    "image": ("image-tiny-v1", "images", 150),
}
FINETUNE = {  # modality -> (task, data, overrides)
    "audio": ("asr", "speech", ["data.label_hours=0.17", "train.max_update=250", "eval_interval=125",
                                "data.num_workers=0"]),
    "text": ("text-classification", "rt", ["data.max_train_examples=1000", "max_epochs=5", "data.num_workers=0",
                                           f"data.tokenizer={DATA['text']}"]),
    "image": ("image-classification", "images", ["data.label_fraction=0.01", "train.max_update=150",
                                                  "eval_interval=150", "data.augment.crop_scale=(0.8, 1.0)",
                                                  "head.layer_decay=0.75"]),
}
ROWS = [  # (modality, metric key in metrics.json's "test", label, higher is better)
    ("audio", "cer", "test CER, 10 min of labels", False),
    ("audio", "loss", "test CTC loss per utterance", False),
    ("text", "accuracy", "test accuracy, 1k labelled reviews", True),
    ("image", "top1", "test top-1, 1% of the labels", True),
]


@dataclass
class Step:
    name: str
    args: list[str]
    deps: list[str] = field(default_factory=list)
    run: Path | None = None  # a training run directory: reused when finished, resumed when interrupted
    done_file: str = ""

    def finished(self) -> bool:
        return self.run is not None and _finished(self.run / self.done_file)

    def command(self) -> list[str]:
        resume = self.run is not None and (self.run / "checkpoint_last.pt").is_file()
        return [*CLI, *self.args, *(["--resume"] if resume else [])]


def _finished(path: Path) -> bool:
    if not path.is_file():
        return False
    return path.name != "summary.json" or json.loads(path.read_text()).get("status") == "done"


def steps(out: Path) -> list[Step]:
    """The demo's steps, in the order a free process picks them (longest chain first)."""
    one = ["--set", "train.threads=1"]
    pre, ft = {}, []
    for mod, (preset, data, updates) in PRETRAIN.items():
        run = out / f"pretrain-{mod}"
        pre[mod] = Step(f"pretrain-{mod}", ["pretrain", "--preset", preset, "--data", DATA[data], "--out", str(run),
                                            "--set", f"train.max_update={updates}", *one],
                        deps=[f"prepare-{data}"], run=run, done_file="summary.json")
    for mod, (task, data, sets) in FINETUNE.items():
        overrides = [a for s in sets for a in ("--set", s)] + one
        for arm in ("pretrained", "scratch"):
            run = out / f"finetune-{mod}-{arm}"
            src = ["--init", str(out / f"pretrain-{mod}" / "checkpoint_last.pt")] if arm == "pretrained" else \
                ["--preset", PRETRAIN[mod][0]]
            deps = [f"prepare-{data}"] + ([f"pretrain-{mod}"] if arm == "pretrained" else [])
            if mod == "text":
                deps.append("prepare-text")  # the tokenizer
            ft.append(Step(f"finetune-{mod}-{arm}", ["finetune", task, *src, "--data", DATA[data], "--out", str(run),
                                                     *overrides], deps=deps, run=run, done_file="metrics.json"))
    prepare = [Step(f"prepare-{k}", v) for k, v in PREPARE.items()]
    by_name = {s.name: s for s in ft}
    order = [pre["audio"], pre["text"], by_name["finetune-audio-pretrained"], pre["image"],
             by_name["finetune-text-pretrained"], by_name["finetune-image-pretrained"]]
    return prepare + order + [s for s in ft if s not in order]


def run_all(todo: list[Step], out: Path, jobs: int) -> dict[str, str]:
    """Run the steps, ``jobs`` processes at a time, each once its dependencies succeeded; name -> outcome."""
    outcome = {s.name: "reused" for s in todo if s.finished()}
    pending = [s for s in todo if s.name not in outcome]
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    while pending or running:
        for name, (proc, t0) in list(running.items()):
            if proc.poll() is not None:
                ok = proc.returncode == 0
                outcome[name] = f"done in {time.time() - t0:.0f} s" if ok else f"FAILED (see {out / name}.log)"
                print(f"[{time.strftime('%H:%M:%S')}] {name}: {outcome[name]}", flush=True)
                del running[name]
        for s in list(pending):
            if any(outcome.get(d, "").startswith("FAILED") or outcome.get(d) == "skipped" for d in s.deps):
                outcome[s.name] = "skipped"
                pending.remove(s)
                print(f"{s.name}: skipped (a step it needs failed)", flush=True)
            elif len(running) < jobs and all(d in outcome for d in s.deps):
                cmd = s.command()
                print(f"[{time.strftime('%H:%M:%S')}] {s.name}: data2vec {' '.join(cmd[3:])}", flush=True)
                with open(out / f"{s.name}.log", "w") as log:  # the child keeps its own copy of the file
                    running[s.name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), time.time())
                pending.remove(s)
        time.sleep(0.5)
    return outcome


def table(out: Path) -> tuple[str, list[dict]]:
    rows, lines = [], ["| modality | metric | pretrained | scratch |", "|---|---|---|---|"]
    for mod, key, label, higher in ROWS:
        vals = {}
        for arm in ("pretrained", "scratch"):
            m = out / f"finetune-{mod}-{arm}" / "metrics.json"
            vals[arm] = json.loads(m.read_text()).get("test", {}).get(key) if m.is_file() else None
        cell = {a: "-" if v is None else f"{v:.3f}" for a, v in vals.items()}
        lines.append(f"| {mod} | {label} ({'higher' if higher else 'lower'} is better) | "
                     f"{cell['pretrained']} | {cell['scratch']} |")
        rows.append({"modality": mod, "metric": key, "label": label, **vals})
    return "\n".join(lines), rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--jobs", type=int, default=2, help="processes at a time (one thread each)")
    p.add_argument("--dry-run", action="store_true", help="print the steps and exit")
    args = p.parse_args(argv)
    out = Path(args.out)
    todo = steps(out)
    if args.dry_run:
        for s in todo:
            print(f"{s.name} (after {', '.join(s.deps) or 'nothing'}): data2vec {' '.join(s.command()[3:])}")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    outcome = run_all(todo, out, args.jobs)
    for mod in PRETRAIN:
        summary = out / f"pretrain-{mod}" / "summary.json"
        if summary.is_file():
            sm = json.loads(summary.read_text())
            print(f"pretrain-{mod}: {sm.get('steps')} updates, loss {sm.get('first_loss')} -> {sm.get('last_loss')}, "
                  f"target_var {sm.get('last_target_var')}, pred_var {sm.get('last_pred_var')}")
    text, rows = table(out)
    wall = time.time() - t0
    (out / "table.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps({"rows": rows, "steps": outcome, "wall_s": round(wall)}, indent=2)
                                      + "\n")
    print(f"\npretrained vs from scratch ({wall / 60:.1f} min; {out}/table.md):\n{text}")
    return 1 if any(v.startswith(("FAILED", "skipped")) for v in outcome.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
