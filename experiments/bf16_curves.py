"""bf16 autocast vs fp32 on the CPU: loss curves over a few hundred updates, seed noise, seconds per update.

    OMP_NUM_THREADS=1 nohup python experiments/bf16_curves.py run --out runs/exp-bf16 \\
        --pretrain image-tiny-v2:data/images --updates 500 --seeds 1 2 \\
        --finetune image-classification:image-tiny-v1:data/images --ft-updates 300 > runs/exp-bf16.log 2>&1 &
    python experiments/bf16_curves.py report --out runs/exp-bf16        # results.json, table.md, curves.png

``run``: for every preset (``PRESET:DATA``), precision (``fp32``, ``bf16``) and seed, a pretraining run of
``--updates`` updates through the CLI code path (``data2vec pretrain ... --set train.precision=P``), one at a
time (``--jobs 2`` for two), each in its own process with one thread (``train.threads=1``,
``OMP_NUM_THREADS=1``) and no loader worker (``data.num_workers=0``), logging every update. The same for
fine-tuning (``TASK:PRESET:DATA``: from scratch, 1% of the labels for images). Everything is resumable: a
finished run (``summary.json`` with status done) is reused, a stopped one is resumed with ``--resume``.
The two precisions of one seed see the same data, masks and initialisation, so the curves differ only
by the arithmetic; the two seeds give the seed noise to compare that difference with.

``report``: per run the loss curve (``metrics.jsonl``), the final loss (mean over the last ``--tail``
updates), the seconds per update (median over logged intervals, the first 20 updates excluded: start-up);
per preset and precision mean ± sd over seeds; for fine-tuning also the best validation metric. The
reading compares |mean(bf16) - mean(fp32)| of the final loss with the seed spread, and the per-seed
paired differences bf16 - fp32.
Not a test: results go to docs/results.md with the command and commit.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = ("fp32", "bf16")


def _done(run: Path) -> bool:
    s = run / "summary.json"
    return s.is_file() and json.loads(s.read_text()).get("status") == "done"


def _launch(args: list[str], run: Path, log: Path) -> int:
    if _done(run):
        return 0
    if (run / "checkpoint_last.pt").is_file():
        args = args + ["--resume"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    run.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(log, "a") as f:
        f.write(f"\n$ data2vec {' '.join(args)}\n")
        f.flush()
        rc = subprocess.call([sys.executable, "-m", "data2vec.cli", *args], stdout=f, stderr=subprocess.STDOUT,
                             env=env, cwd=ROOT)
    print(f"{run}: rc {rc} in {time.time() - t0:.0f} s", flush=True)
    return rc


def _jobs(a) -> list[tuple[list[str], Path]]:
    out = Path(a.out)
    jobs = []
    common = ["train.threads=1", "data.num_workers=0", "train.log_interval=1"]
    for spec in a.pretrain:
        preset, data = spec.split(":", 1)
        for seed in a.seeds:
            for p in PRECISIONS:
                run = out / "pretrain" / preset / f"{p}-seed{seed}"
                sets = common + [f"train.precision={p}", f"train.seed={seed}", f"train.max_update={a.updates}",
                                 f"train.save_interval_updates={a.save_every}"]
                args = ["pretrain", "--preset", preset, "--data", data, "--out", str(run)]
                jobs.append((args + [x for s in sets for x in ("--set", s)], run))
    for spec in a.finetune:
        task, preset, data = spec.split(":", 2)
        extra = {"image-classification": ["data.label_fraction=0.01"],
                 "text-classification": ["data.max_train_examples=1000"]}.get(task, [])
        for seed in a.seeds:
            for p in PRECISIONS:
                run = out / "finetune" / f"{task}-{preset}" / f"{p}-seed{seed}"
                sets = common + extra + [f"train.precision={p}", f"train.seed={seed}",
                                         f"train.max_update={a.ft_updates}",
                                         f"train.save_interval_updates={a.save_every}"]
                args = ["finetune", task, "--preset", preset, "--data", data, "--out", str(run)]
                jobs.append((args + [x for s in sets for x in ("--set", s)], run))
    return jobs


def cmd_run(a) -> int:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = _jobs(a)
    plan = {"argv": sys.argv, "jobs": [str(r) for _, r in jobs]}
    (out / f"plan-{os.getpid()}.json").write_text(json.dumps(plan, indent=2))
    with ThreadPoolExecutor(a.jobs) as pool:
        rcs = list(pool.map(lambda j: _launch(j[0], j[1], j[1].parent / f"{j[1].name}.log"), jobs))
    bad = [str(r) for (_, r), rc in zip(jobs, rcs) if rc]
    if bad:
        print("failed:", *bad, sep="\n  ")
    cmd_report(a)
    return 1 if bad else 0


def _records(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]


def _summarise_run(run: Path, tail: int, skip: int) -> dict:
    recs = _records(run)
    train = [r for r in recs if "loss" in r]
    steps = [r["step"] for r in train]
    losses = [r["loss"] for r in train]
    walls = {r["step"]: r["wall_s"] for r in recs if "wall_s" in r}
    ws = sorted(walls.items())
    per = [(w2 - w1) / (s2 - s1) for (s1, w1), (s2, w2) in zip(ws, ws[1:]) if s1 >= skip and s2 > s1]
    res = {"run": str(run), "done": _done(run), "steps": steps[-1] if steps else 0, "loss_steps": steps,
           "loss": losses, "final_loss": statistics.mean(losses[-tail:]) if losses else None,
           "s_per_update": statistics.median(per) if per else None}
    if not per and (run / "summary.json").is_file():  # fine-tuning logs no wall_s: whole run incl. validation
        sj = json.loads((run / "summary.json").read_text())
        if sj.get("wall_time_s") and sj.get("steps"):
            res["s_per_update"] = sj["wall_time_s"] / sj["steps"]
            res["s_per_update_includes_validation"] = True
    valid = [r for r in recs if any(k.startswith("valid_") for k in r)]
    if valid:
        res["valid"] = valid
    if (run / "metrics.json").is_file():
        res["metrics"] = json.loads((run / "metrics.json").read_text())
    return res


def _ms(xs: list[float]) -> tuple[float | None, float | None]:
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def _fmt(m, s, d=4) -> str:
    return "-" if m is None else f"{m:.{d}f} ± {s:.{d}f}"


def cmd_report(a) -> int:
    out = Path(a.out)
    groups: dict[str, dict[str, list[dict]]] = {}
    for kind in ("pretrain", "finetune"):
        for gdir in sorted((out / kind).glob("*")) if (out / kind).is_dir() else []:
            if not gdir.is_dir():
                continue
            for p in PRECISIONS:
                for run in sorted(gdir.glob(f"{p}-seed*")):
                    if run.is_dir() and (run / "metrics.jsonl").is_file():
                        groups.setdefault(f"{kind}/{gdir.name}", {}).setdefault(p, []).append(
                            _summarise_run(run, a.tail, a.skip))
    table = ["| run | precision | seeds (updates) | final loss (mean ± sd) | per-seed final | s/update (mean ± sd) |"
             " best valid |", "|---|---|---|---|---|---|---|"]
    summary = {}
    for g, by_p in groups.items():
        summary[g] = {}
        for p, all_runs in by_p.items():
            runs = [r for r in all_runs if r["done"]]  # unfinished runs are plotted, not counted
            if not runs:
                table.append(f"| {g} | {p} | running: {', '.join(str(r['steps']) for r in all_runs)} updates so far "
                             "| - | - | - | - |")
                continue
            fm, fs = _ms([r["final_loss"] for r in runs])
            tm, ts = _ms([r["s_per_update"] for r in runs])
            best = []
            for r in runs:
                bv, test = r.get("metrics", {}).get("best_valid"), r.get("metrics", {}).get("test")
                if bv:
                    metric = r["metrics"]["metric"]
                    best.append(f"{metric} {bv[metric]:.3f}" + (f" (test {test[metric]:.3f})" if test else ""))
            summary[g][p] = {"final_loss_mean": fm, "final_loss_sd": fs, "s_per_update_mean": tm, "best_valid": best,
                             "s_per_update_sd": ts, "seeds": [Path(r["run"]).name for r in runs],
                             "final_losses": [r["final_loss"] for r in runs], "steps": [r["steps"] for r in runs]}
            per_seed = ", ".join(f"{r['final_loss']:.4f}" for r in runs if r["final_loss"] is not None)
            table.append(f"| {g} | {p} | {len(runs)} ({'/'.join(str(r['steps']) for r in runs)}) | {_fmt(fm, fs)} "
                         f"| {per_seed} | {_fmt(tm, ts, 3)} | {'; '.join(best) or '-'} |")
        if "fp32" in summary[g] and "bf16" in summary[g]:
            f32 = {Path(r["run"]).name.split("-")[1]: r["final_loss"] for r in by_p["fp32"] if r["done"]}
            b16 = {Path(r["run"]).name.split("-")[1]: r["final_loss"] for r in by_p["bf16"] if r["done"]}
            paired = {s: b16[s] - f32[s] for s in f32 if s in b16 and None not in (b16[s], f32[s])}
            summary[g]["paired_bf16_minus_fp32"] = paired
            t32, t16 = summary[g]["fp32"]["s_per_update_mean"], summary[g]["bf16"]["s_per_update_mean"]
            summary[g]["speedup_fp32_over_bf16"] = (t32 / t16) if t32 and t16 else None
    (out / "results.json").write_text(json.dumps({"summary": summary, "runs": groups}, indent=1) + "\n")
    lines = table + [""]
    for g, s in summary.items():
        if "paired_bf16_minus_fp32" in s:
            pd = ", ".join(f"{k}: {v:+.4f}" for k, v in s["paired_bf16_minus_fp32"].items())
            sp = s["speedup_fp32_over_bf16"]
            lines.append(f"- {g}: paired final-loss difference bf16 - fp32 per seed: {pd}; "
                         f"fp32/bf16 time per update: {sp:.2f}x" if sp else f"- {g}: {pd}")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _plot(groups, out / "curves.png", a.smooth)
    return 0


def _smooth(xs: list[float], k: int) -> list[float]:
    if k <= 1:
        return xs
    out, acc = [], 0.0
    for i, x in enumerate(xs):
        acc += x
        if i >= k:
            acc -= xs[i - k]
        out.append(acc / min(i + 1, k))
    return out


def _plot(groups: dict, path: Path, smooth: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(groups)
    if n == 0:
        return
    fig, axes = plt.subplots(2, n, figsize=(5.5 * n, 7), squeeze=False, sharex="col")
    colors = {"fp32": "tab:blue", "bf16": "tab:orange"}
    styles = ["-", "--", ":", "-."]
    for ax, (g, by_p) in zip(axes[1], groups.items()):  # bottom row: the differences that matter
        seed = {p: {Path(r["run"]).name.split("-")[1]: r for r in by_p.get(p, [])} for p in PRECISIONS}

        def diff(a, b):
            n_ = min(len(a["loss"]), len(b["loss"]))
            return a["loss_steps"][:n_], _smooth([x - y for x, y in zip(a["loss"][:n_], b["loss"][:n_])], smooth)

        for i, sd in enumerate(sorted(set(seed["fp32"]) & set(seed["bf16"]))):
            ax.plot(*diff(seed["bf16"][sd], seed["fp32"][sd]), styles[i % 4], color="tab:red", lw=1.2,
                    label=f"bf16 - fp32, {sd}")
        for p in PRECISIONS:
            ss = sorted(seed[p])
            if len(ss) >= 2:
                ax.plot(*diff(seed[p][ss[1]], seed[p][ss[0]]), ":", color=colors[p], lw=1.2,
                        label=f"seed noise: {ss[1]} - {ss[0]}, {p}")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlabel("update")
        ax.set_ylabel("loss difference (running mean)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax, (g, by_p) in zip(axes[0], groups.items()):
        for p, runs in by_p.items():
            for i, r in enumerate(runs):
                ax.plot(r["loss_steps"], _smooth(r["loss"], smooth), styles[i % len(styles)], color=colors[p],
                        lw=1.2, label=f"{p} {Path(r['run']).name.split('-')[1]}")
        ax.set_title(g, fontsize=9)
        ax.set_ylabel(f"training loss (running mean of {smooth})" if smooth > 1 else "training loss")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _speed_one(preset: str, data: str, rounds: int, block: int, threads: int) -> dict:
    """CPU seconds per ``train_update`` (compute only: the batches are loaded beforehand) in fp32 and bf16.

    Two models from the same initialisation, one per precision, take turns: ``block`` updates of one,
    then ``block`` of the other, ``rounds`` times, so a change of machine load hits both alike. The first
    round is warm-up and not counted. Returns the median and all per-update times per precision."""
    import torch

    from data2vec.config import merge
    from data2vec.core.data2vec import Data2Vec
    from data2vec.modalities import get_modality
    from data2vec.presets import get_preset
    from data2vec.train.config import pretrain_config_from_dict
    from data2vec.train.distributed import DistInfo
    from data2vec.train.loop import Trainer, seed_everything

    torch.set_num_threads(threads)
    dist = DistInfo(0, 1, 0, torch.device("cpu"))
    trainers = {}
    batches = None
    for p in PRECISIONS:
        cfg = merge(get_preset(preset), {"data": {"path": data, "num_workers": 0},
                                         "train": {"precision": p, "max_update": 1000}})
        cfg = pretrain_config_from_dict(cfg) if isinstance(cfg, dict) else cfg
        spec = get_modality(cfg.modality)
        cfg = spec.resolve_config(cfg)
        seed_everything(1)
        encoder = spec.build_encoder(cfg.encoder)
        model = Data2Vec(encoder, cfg.model)
        if batches is None:
            pdata = spec.build_pretrain_data(cfg, encoder, dist, seed=1)
            it = iter(pdata.make_loader(1, 0))
            batches = [[next(it) for _ in range(cfg.train.update_freq)] for _ in range(block)]
        trainers[p] = Trainer(cfg, model, dist)
    times: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    walls: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for r in range(rounds + 1):
        for p in (PRECISIONS if r % 2 == 0 else PRECISIONS[::-1]):
            for micro in batches:
                c0, t0 = time.process_time(), time.perf_counter()
                trainers[p].train_update(micro)
                if r > 0:
                    times[p].append(time.process_time() - c0)
                    walls[p].append(time.perf_counter() - t0)
    # CPU time of this one-thread process: what an update costs, not how long it waited for a core on a
    # shared machine (the wall times are kept beside it)
    res = {p: {"median_s": statistics.median(v), "mean_s": statistics.mean(v), "n": len(v), "all_s": v,
               "wall_median_s": statistics.median(walls[p]), "wall_all_s": walls[p]} for p, v in times.items()}
    res["speedup_fp32_over_bf16"] = res["fp32"]["median_s"] / res["bf16"]["median_s"]
    res["clock"] = "process_time"
    res["threads"] = threads
    return res


def cmd_speed(a) -> int:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "speed.json"
    res = json.loads(path.read_text()) if path.is_file() else {}
    for spec in a.presets:
        preset, data = spec.split(":", 1)
        key = f"{preset}@{a.threads}t-cpu"
        if key in res:
            continue
        res[key] = _speed_one(preset, data, a.rounds, a.block, a.threads)
        r = res[key]
        print(f"{key}: fp32 {r['fp32']['median_s']:.3f} s, bf16 {r['bf16']['median_s']:.3f} s per update "
              f"(fp32/bf16 {r['speedup_fp32_over_bf16']:.2f}x)", flush=True)
        path.write_text(json.dumps(res, indent=1) + "\n")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("run", "report"):
        p = sub.add_parser(name)
        p.add_argument("--out", default="runs/exp-bf16")
        p.add_argument("--tail", type=int, default=50, help="updates averaged for the final loss")
        p.add_argument("--skip", type=int, default=20, help="first updates left out of the time per update")
        p.add_argument("--smooth", type=int, default=10, help="running mean over this many updates in the plot")
        if name == "run":
            p.add_argument("--pretrain", nargs="*", default=["image-tiny-v2:data/images"], help="PRESET:DATA")
            p.add_argument("--finetune", nargs="*", default=[], help="TASK:PRESET:DATA")
            p.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
            p.add_argument("--updates", type=int, default=500)
            p.add_argument("--ft-updates", type=int, default=300)
            p.add_argument("--save-every", type=int, default=100)
            p.add_argument("--jobs", type=int, default=1)
    p = sub.add_parser("speed", help="compute-only CPU seconds per update, fp32 and bf16 interleaved")
    p.add_argument("--out", default="runs/exp-bf16")
    p.add_argument("--presets", nargs="+", default=["image-tiny-v2:data/images"], help="PRESET:DATA")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--block", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    return {"run": cmd_run, "report": cmd_report, "speed": cmd_speed}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
