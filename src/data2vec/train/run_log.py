"""Run directory outputs (rank 0 only): metrics JSONL, TensorBoard events, progress bar, PNG plot, summary.

Layout of ``RUN/``: ``config.json`` (resolved config), ``metrics.jsonl`` (one JSON object per logged
update), ``tb/`` (TensorBoard events), ``curves.png`` (loss, lr, target/pred variance), ``summary.json``
and ``summary.txt`` (written at the end), ``checkpoint_last.pt``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from tqdm.auto import tqdm


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
            for line in self.metrics_path.read_text().splitlines():
                rec = json.loads(line)
                if rec.get("step", 0) <= start_step:
                    self.records.append(rec)
            self.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in self.records))
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
        rec = {"step": step, **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()}}
        self.records.append(rec)
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(f"train/{k}", v, step)
        if self.bar is not None and self.bar.disable:  # not a terminal (CI, nohup): a plain line now and then
            if time.time() - self._last_print >= self.print_every_s or step >= self.bar.total:
                self._last_print = time.time()
                print(f"update {step}/{self.bar.total} loss {metrics['loss']:.4f} lr {metrics['lr']:.2e} "
                      f"target_var {metrics['target_var']:.3f} pred_var {metrics['pred_var']:.3f} "
                      f"{metrics.get('samples_per_s', 0):.1f} samples/s", flush=True)
        elif self.bar is not None:
            self.bar.set_postfix(loss=f"{metrics['loss']:.4f}", lr=f"{metrics['lr']:.2e}",
                                 tput=f"{metrics.get('samples_per_s', 0):.1f}/s",
                                 target_var=f"{metrics['target_var']:.3f}", refresh=False)

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def plot(self) -> Path | None:
        if not self.enabled or not self.records:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps = [r["step"] for r in self.records]
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        axes[0].plot(steps, [r["loss"] for r in self.records])
        axes[0].set_title("loss (per masked position)")
        axes[1].plot(steps, [r["lr"] for r in self.records])
        axes[1].set_title("learning rate")
        axes[2].plot(steps, [r["target_var"] for r in self.records], label="target_var")
        axes[2].plot(steps, [r["pred_var"] for r in self.records], label="pred_var")
        axes[2].set_title("std over positions (collapse monitor)")
        axes[2].legend()
        for ax in axes:
            ax.set_xlabel("update")
            ax.grid(alpha=0.3)
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
        first = self.records[0] if self.records else {}
        last = self.records[-1] if self.records else {}
        summary = {**summary, "first_loss": first.get("loss"), "last_loss": last.get("loss"),
                   "last_target_var": last.get("target_var"), "last_pred_var": last.get("pred_var"),
                   "wall_time_s": round(time.time() - self.start_time, 1)}
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        lines = [f"{k}: {v}" for k, v in summary.items()]
        (self.run_dir / "summary.txt").write_text("\n".join(lines) + "\n")
        print("\n".join(["", "== run summary ==", *lines]))
