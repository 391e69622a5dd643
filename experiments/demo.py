"""``make demo``: build the built-in data, watch data2vec 2.0 train on each modality, then fine-tune the shipped
pretrained encoders (``models/<preset>``) and the same encoders from scratch on few labels, 3 seeds each, and
print one table with the seed spread.

    python experiments/demo.py --out runs/demo [--jobs 2] [--dry-run] [--recreate]

Every step is a ``data2vec`` command (printed when it starts, its output in OUT/<step>.log), run by ``--jobs``
one-thread processes at a time once the steps it needs are done (on these tiny models two one-thread
processes get more done on 2 cores than one two-thread process):

1. data: Fashion-MNIST (``data/images``), Rotten Tomatoes (``data/rt-polarity``), 1 h of synthetic speech
   (``data/speech-1h``: the same seed as the 4 h corpus the speech encoder was pretrained on, so the same
   voices and sentences per split; its test voices were never heard in pretraining) and the small text corpus
   (``data/text``);
2. ``watch-*``: a short data2vec 2.0 pretraining from scratch of each tiny preset (``WATCH`` updates), to see
   the method train: loss, the spread of targets and predictions, and the front end's ``feature_spread`` in
   OUT/watch-*/curves.png. These runs are not used afterwards;
3. ``finetune-*``: each shipped encoder and the same architecture from random initialisation, fine-tuned on
   few labels with each arm's learning rate as tuned in docs/results.md, seeds 1-3 (the seed picks the
   labelled subset and the fine-tuning's randomness); the test split is read once per run. The budgets
   (``FINETUNE``) are much shorter than docs/results.md's, so that the demo takes about 20 minutes on the 2
   cores (14 to 21 by instance, measured runs in docs/results.md, "make demo", beside the full-budget results);
   at 200 CTC updates the speech lr is each arm's own, chosen on validation at that budget.

``--recreate`` first re-creates the shipped encoders from scratch with the exact commands in their MODEL.md
(1.5-2.5 h on 2 cores; needs the large text corpus of ``make data``) and fine-tunes those instead.
Finished steps are reused and interrupted ones resumed when the script is run again. Writes OUT/table.md and
OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

CLI = [sys.executable, "-m", "data2vec.cli"]
ROOT = Path(__file__).resolve().parents[1]  # the steps' paths (data/, models/) are relative to the repository
ROOT_MODELS = ROOT / "models"
SEEDS = (1, 2, 3)
DATA = {"images": "data/images", "rt": "data/rt-polarity", "speech": "data/speech-1h", "text": "data/text",
        "speech-4h": "data/speech-4h", "text-large": "data/text-large"}
PREPARE = {"images": ["prepare", "images", "--out", DATA["images"]],
           "rt": ["prepare", "rt-polarity", "--out", DATA["rt"]],
           "speech": ["prepare", "speech", "--out", DATA["speech"], "--hours", "1", "--workers", "1"],
           "text": ["prepare", "text", "--out", DATA["text"]]}
PREPARE_RECREATE = {"speech-4h": ["prepare", "speech", "--out", DATA["speech-4h"], "--hours", "4", "--workers", "1"],
                    "text-large": ["prepare", "text", "--corpus", "large", "--out", DATA["text-large"]]}
PRESET = {"image": "image-tiny-v2", "text": "text-tiny-v2", "audio": "audio-tiny-mel-v2"}
WATCH = {"image": ("images", 30), "text": ("text", 20), "audio": ("speech", 60)}  # modality -> (data, updates)
# modality -> (task, data, overrides of both arms, {arm: overrides of that arm}). A fixed budget is tested on its
# final model (validate=false: a validation pass would choose nothing), except text, which keeps its best epoch.
FINETUNE = {
    "image": ("image-classification", "images",
              ["data.label_fraction=0.01", "train.max_update=50", "data.batch_size=32", "validate=false",
               "data.augment.crop_scale=(0.8, 1.0)", "head.layer_decay=0.75", "optim.lr=1e-3"], {}),
    "text": ("text-classification", "rt", ["data.max_train_examples=1000", "max_epochs=2"],
             {"pretrained": ["optim.lr=1e-3"], "scratch": ["optim.lr=3e-4"]}),
    # speech: each arm's lr chosen on validation at this budget (experiments/v15_demo_speech_lr.sh, docs/results.md)
    "audio": ("asr", "speech", ["data.label_hours=0.17", "train.max_update=200", "validate=false"],
              {"pretrained": ["optim.lr=1e-3"], "scratch": ["optim.lr=2e-3"]}),
}
# the commands that made models/<preset> (their MODEL.md), for --recreate: (data, updates, extra overrides)
RECREATE = {
    "image": ("images", 1500, ["masking.mask_prob=0.8", "masking.clone_batch=8"]),  # session 17's m8c8 recipe
    "text": ("text-large", 2200, ["optim.warmup_updates=150"]),
    "audio": ("speech-4h", 3000, []),
}
ROWS = [  # (modality, metric key in metrics.json's "test", label, higher is better)
    ("image", "top1", "Fashion-MNIST test top-1, 1% of the labels", True),
    ("text", "accuracy", "Rotten Tomatoes test accuracy, 1k labels", True),
    ("audio", "cer", "test CER on unseen voices, 10 min of labels", False),
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


def _sets(overrides: list[str]) -> list[str]:
    return [a for s in overrides for a in ("--set", s)]


ONE = ["train.threads=1", "data.num_workers=0"]


def encoder_source(out: Path, mod: str, recreate: bool) -> tuple[list[str], list[str]]:
    """(the fine-tuning's --init arguments, the steps it needs) for the pretrained arm of ``mod``."""
    if not recreate:
        return ["--init", f"models/{PRESET[mod]}"], []
    return ["--init", str(out / f"recreate-{mod}" / "checkpoint_last.pt")], [f"recreate-{mod}"]


def steps(out: Path, recreate: bool = False) -> list[Step]:
    """The demo's steps, in the order a free process picks them (longest first)."""
    prepare = {**PREPARE, **(PREPARE_RECREATE if recreate else {})}
    todo = [Step(f"prepare-{k}", v) for k, v in prepare.items()]
    if recreate:
        for mod, (data, updates, extra) in RECREATE.items():
            run = out / f"recreate-{mod}"
            todo.append(Step(f"recreate-{mod}", ["pretrain", "--preset", PRESET[mod], "--data", DATA[data],
                                                 "--out", str(run), *_sets([f"train.max_update={updates}",
                                                                            "train.seed=1", *extra, *ONE])],
                             deps=[f"prepare-{data}"], run=run, done_file="summary.json"))
    ft = []
    for mod, (task, data, both, per_arm) in FINETUNE.items():
        for seed in SEEDS:
            for arm in ("pretrained", "scratch"):
                run = out / f"finetune-{mod}-{arm}-s{seed}"
                if arm == "pretrained":
                    src, deps = encoder_source(out, mod, recreate)
                else:
                    src, deps = ["--preset", PRESET[mod]], []
                    if mod == "text":  # the pretrained encoder's tokenizer, so both arms read the same tokens
                        tok = DATA["text-large"] if recreate else f"models/{PRESET[mod]}"
                        src += ["--set", f"data.tokenizer={tok}"]
                        deps = ["prepare-text-large"] if recreate else []
                ft.append(Step(f"finetune-{mod}-{arm}-s{seed}",
                               ["finetune", task, *src, "--data", DATA[data], "--out", str(run),
                                *_sets([*both, *per_arm.get(arm, []), f"train.seed={seed}", *ONE])],
                               deps=[f"prepare-{data}", *deps], run=run, done_file="metrics.json"))
    watch = []
    for mod, (data, updates) in WATCH.items():
        run = out / f"watch-{mod}"
        watch.append(Step(f"watch-{mod}", ["pretrain", "--preset", PRESET[mod], "--data", DATA[data], "--out",
                                           str(run), *_sets([f"train.max_update={updates}", "train.log_interval=5",
                                                             "train.seed=1", *ONE])],
                          deps=[f"prepare-{data}"], run=run, done_file="summary.json"))
    return todo + watch + ft


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


def _mean_sd(xs: list[float]) -> str:
    if not xs:
        return "-"
    sd = f" ± {statistics.stdev(xs):.3f}" if len(xs) > 1 else ""
    return f"{statistics.mean(xs):.3f}{sd}" + (f" (n={len(xs)})" if len(xs) != len(SEEDS) else "")


def table(out: Path) -> tuple[str, list[dict]]:
    """The pretrained-vs-scratch table: mean ± sample sd over seeds, and the paired difference."""
    lines = ["| modality | test metric | pretrained (shipped encoder) | from scratch | pretrained - scratch, per seed |",
             "|---|---|---|---|---|"]
    rows = []
    for mod, key, label, higher in ROWS:
        vals = {}
        for arm in ("pretrained", "scratch"):
            vals[arm] = {}
            for seed in SEEDS:
                m = out / f"finetune-{mod}-{arm}-s{seed}" / "metrics.json"
                v = json.loads(m.read_text()).get("test", {}).get(key) if m.is_file() else None
                if v is not None:
                    vals[arm][seed] = v
        diffs = [vals["pretrained"][s] - vals["scratch"][s] for s in SEEDS if s in vals["pretrained"]
                 and s in vals["scratch"]]
        better = [d > 0 if higher else d < 0 for d in diffs]
        verdict = f"{_mean_sd(diffs)}; pretrained better on {sum(better)} of {len(diffs)}" if diffs else "-"
        lines.append(f"| {mod} | {label} ({'higher' if higher else 'lower'} is better) | "
                     f"{_mean_sd(list(vals['pretrained'].values()))} | {_mean_sd(list(vals['scratch'].values()))} | "
                     f"{verdict} |")
        rows.append({"modality": mod, "metric": key, "label": label, "higher_is_better": higher,
                     "pretrained": vals["pretrained"], "scratch": vals["scratch"], "difference": diffs})
    return "\n".join(lines), rows


def watch_summary(out: Path) -> list[str]:
    lines = []
    for mod in WATCH:
        p = out / f"watch-{mod}" / "summary.json"
        if p.is_file():
            s = json.loads(p.read_text())
            lines.append(f"watch-{mod} ({PRESET[mod]}): {s.get('steps')} updates in {s.get('wall_time_s')} s, loss "
                         f"{s.get('first_loss')} -> {s.get('last_loss')}, target std {s.get('last_target_var')}, "
                         f"prediction std {s.get('last_pred_var')}, feature spread {s.get('last_feature_spread')} "
                         f"(curves: {out / f'watch-{mod}' / 'curves.png'})")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--jobs", type=int, default=2, help="processes at a time (one thread each)")
    p.add_argument("--dry-run", action="store_true", help="print the steps and exit")
    p.add_argument("--recreate", action="store_true",
                   help="re-create the shipped encoders from scratch first (1.5-2.5 h on 2 cores)")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    os.chdir(ROOT)
    todo = steps(out, args.recreate)
    if args.dry_run:
        for s in todo:
            print(f"{s.name} (after {', '.join(s.deps) or 'nothing'}): data2vec {' '.join(s.command()[3:])}")
        return 0
    missing = [m for m in PRESET if not args.recreate and not (ROOT_MODELS / PRESET[m] / "config.json").is_file()]
    if missing:
        print(f"no shipped encoder for {', '.join(missing)} in {ROOT_MODELS}: pass --recreate to make them",
              file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    outcome = run_all(todo, out, args.jobs)
    text, rows = table(out)
    wall = time.time() - t0
    (out / "table.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps({"rows": rows, "steps": outcome, "wall_s": round(wall),
                                                  "recreate": args.recreate}, indent=2) + "\n")
    print("\n".join(["", *watch_summary(out)]))
    source = "the re-created encoders" if args.recreate else "the shipped encoders, models/*/MODEL.md"
    print(f"\npretrained ({source}) vs from scratch, test split, seeds {', '.join(map(str, SEEDS))} "
          f"({wall / 60:.1f} min; {out}/table.md; the full-budget results: docs/results.md):\n{text}")
    return 1 if any(v.startswith(("FAILED", "skipped")) for v in outcome.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
