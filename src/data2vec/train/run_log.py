"""Run directory outputs (rank 0 only): metrics JSONL, TensorBoard events, progress bar, PNG plot, summary.

Layout of ``RUN/``: ``config.json`` (resolved config), ``metrics.jsonl`` (one JSON object per logged
update), ``tb/`` (TensorBoard events), ``curves.png`` (loss, lr, target/pred variance), ``summary.json``
and ``summary.txt`` (written at the end), ``checkpoint_last.pt``, ``run.lock`` (held by the running process;
it names its pid and host).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from tqdm.auto import tqdm


def read_metrics(path: Path, up_to_step: int) -> list[dict]:
    """The records of ``metrics.jsonl`` up to ``up_to_step`` (the checkpoint being resumed). A torn last line (the
    run was killed while appending it) is dropped with a note; a damaged line elsewhere is dropped and counted."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    records, bad = [], []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError
        except ValueError:
            bad.append(i + 1)
            continue
        if isinstance(rec.get("step", 0), (int, float)) and rec.get("step", 0) <= up_to_step:
            records.append(rec)
    if bad == [len(lines)]:
        print(f"{path}: dropped its torn last line (the run was stopped while writing it)", flush=True)
    elif bad:
        print(f"{path}: dropped {len(bad)} unreadable line(s) (line {', '.join(map(str, bad[:5]))}"
              f"{', ...' if len(bad) > 5 else ''})", flush=True)
    return records


class RunLog:
    def __init__(self, run_dir: Path, total_steps: int, start_step: int, enabled: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.start_time = time.time()
        self.records: list[dict] = []
        self.tb = None
        self.bar = None
        self.print_every_s = 15.0
        self._last_print = 0.0
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        if self.metrics_path.exists():  # resume: keep the history up to the checkpoint
            self.records = read_metrics(self.metrics_path, start_step)
            tmp = self.metrics_path.with_name(f"metrics.jsonl.{os.getpid()}.tmp")  # atomic: a kill loses nothing
            tmp.write_text("".join(json.dumps(r) + "\n" for r in self.records))
            os.replace(tmp, self.metrics_path)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=start_step + 1 if start_step else None)
        except ImportError:  # tensorboard is a declared dependency; tolerate its absence at runtime
            self.tb = None
        self.bar = tqdm(total=total_steps, initial=start_step, desc="pretrain", dynamic_ncols=True,
                        mininterval=1.0, disable=None)

    def log(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        rec = {"step": step, **{k: ((round(v, 6) if math.isfinite(v) else None) if isinstance(v, float) else v)
                                for k, v in metrics.items()}}  # undefined values are null (valid JSON)
        self.records.append(rec)
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(f"train/{k}", v, step)
        shown = {k: metrics[k] for k in ("loss", "lr", "target_var", "pred_var", "acc", "valid_top1", "samples_per_s")
                 if isinstance(metrics.get(k), (int, float)) and math.isfinite(metrics[k])}
        text = " ".join(f"{k} {v:.2e}" if k == "lr" else f"{k} {v:.4g}" for k, v in shown.items())
        if self.bar is not None and self.bar.disable:  # not a terminal (CI, nohup): a plain line now and then
            if time.time() - self._last_print >= self.print_every_s or step >= self.bar.total:
                self._last_print = time.time()
                print(f"update {step}/{self.bar.total} {text}", flush=True)
        elif self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def plot(self) -> Path | None:
        if not self.enabled or not self.records:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        counts = ("valid_examples", "valid_utterances", "valid_words", "valid_chars", "valid_step")
        valid = sorted({k for r in self.records for k, v in r.items()
                        if k.startswith("valid_") and k not in counts and isinstance(v, (int, float))})
        panels = [("loss", ["loss"], "loss (per unit)"), ("lr", ["lr"], "learning rate"),
                  ("var", ["target_var", "pred_var"], "std over positions (collapse monitor)"),
                  ("spread", ["feature_spread"], "local features: std in a sequence / overall"),
                  ("acc", ["acc"], "training accuracy"),
                  ("valid", [k for k in valid if k != "valid_loss"], "validation"),
                  ("valid_loss", ["valid_loss"], "validation loss")]
        panels = [p for p in panels if any(k in r for r in self.records for k in p[1])]
        if not panels:
            return None
        fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.6), squeeze=False)
        for ax, (_, keys, title) in zip(axes[0], panels):
            for k in keys:
                pts = [(r["step"], r[k]) for r in self.records if isinstance(r.get(k), (int, float))
                       and math.isfinite(r[k])]
                if pts:
                    ax.plot(*zip(*pts), label=k)
            ax.set_title(title)
            ax.set_xlabel("update")
            ax.grid(alpha=0.3)
            if len(keys) > 1:
                ax.legend()
        fig.tight_layout()
        path = self.run_dir / "curves.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        return path

    def finish(self, summary: dict) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
        self.plot()
        train = [r for r in self.records if "loss" in r]
        first = train[0] if train else {}
        last = train[-1] if train else {}
        summary = {**summary, "first_loss": first.get("loss"), "last_loss": last.get("loss"),
                   **({"last_target_var": last.get("target_var"), "last_pred_var": last.get("pred_var"),
                       "last_feature_spread": last.get("feature_spread")} if "target_var" in last else {}),
                   "wall_time_s": round(time.time() - self.start_time, 1)}
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        lines = [f"{k}: {v}" for k, v in summary.items()]
        (self.run_dir / "summary.txt").write_text("\n".join(lines) + "\n")
        print("\n".join(["", "== run summary ==", *lines]))
