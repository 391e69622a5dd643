"""Ours beside the peers, interleaved in one run, at identical shapes (issue "Speed").

- **pretraining step vs fairseq** (its own ``examples/data2vec`` code, timed by ``../shared/bench/fairseq``):
  d2v1_audio / d2v1_text / d2v2_audio / d2v2_text against audio-base-v1 / text-base-v1 / audio-base-v2 /
  text-base-v2 at fairseq's base shapes, the recipe's dropout on both sides, layerdrop 0 on both (same work
  every step); skipped, with a message, without ``--fairseq-python``;
- **pretraining step vs the HF-assembled step** (``benchmarks/pretrain_step.py --impls hf``, v1 only: HF has
  no data2vec 2.0 model);
- **fine-tuning step vs HF's task models** (``benchmarks/finetune_step.py``: CTC, sequence and image
  classification on the same random base-size weights, the same work on both sides);
- **feature extraction vs HF's forward** on the same weights (a random HF base model saved to disk and read
  by ``load_pretrained``; ours runs ``data2vec.extract.encode``, what ``data2vec extract`` runs), batch 1
  and batched, outputs compared (max |diff| of the last layer).

Every measurement runs in its own process (so peak RSS is that implementation's alone), peers alternate
within each round, and the matmul limit of the precision is measured in the same run (GEMM GFLOP/s at
n = 2048 on the same threads). Rows: median and min-max step time, ratio ours / peer, peak RSS, achieved
GFLOP/s (FLOPs of *our* step from ``torch.utils.flop_counter``, the same for both sides since the shapes and
the architecture are the same; on CPU the counter has no formula for the fused attention kernel, so it is a
lower bound) and its fraction of the matmul limit.

    python benchmarks/side_by_side.py --fairseq-python /tmp/fairseq-venv/bin/python --rounds 2 \\
        --out docs/side_by_side.jsonl --table docs/side_by_side.md
    python benchmarks/side_by_side.py --sections extract --precision bf16      # extraction only, bf16
    python benchmarks/side_by_side.py --tiny --rounds 1                        # smoke test, tiny shapes

Run it alone on the machine: timings taken while anything else runs are not comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAIRSEQ_BENCH = ROOT.parent / "shared" / "bench" / "fairseq" / "bench_fairseq.py"
# fairseq model -> our preset; shapes are fairseq's base shapes (bench_fairseq --size base)
PRETRAIN = {"d2v1_audio": ("audio-base-v1", 2, 64000), "d2v1_text": ("text-base-v1", 4, 512),
            "d2v2_audio": ("audio-base-v2", 1, 64000), "d2v2_text": ("text-base-v2", 2, 512)}
# modality -> (batch 1 shape, batched shape): audio samples, text tokens, image side
EXTRACT = {"audio": ((1, 64000), (4, 64000)), "text": ((1, 512), (4, 510)), "image": ((1, 224), (8, 224))}
TINY_EXTRACT = {"audio": ((1, 16000), (4, 16000)), "text": ((1, 64), (4, 64)), "image": ((1, 32), (4, 32))}
# fine-tuning: task -> (batch, samples / tokens / image side); HF's task models at base size
FINETUNE = {"audio": (2, 64000), "text": (16, 128), "image": (8, 224)}
TINY_FINETUNE = {"audio": (2, 16000), "text": (2, 64), "image": (2, 32)}
FINETUNE_NAMES = {"audio": "CTC (Data2VecAudioForCTC)", "text": "classification (Data2VecTextForSequenceClassification)",
                  "image": "classification (Data2VecVisionForImageClassification)"}


def gemm_gflops(precision: str, n: int = 2048, reps: int = 5) -> float:
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def _last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON line in the output:\n{text[-2000:]}")


def _run(cmd: list[str], threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    return _last_json(p.stdout)


def ours_pretrain(preset: str, batch: int, length: int, args) -> dict:
    r = _run([sys.executable, "benchmarks/pretrain_step.py", "--presets", preset, "--impls", args.impl_ours,
              "--batch", str(batch), str(length), "--warmup", str(args.warmup), "--steps", str(args.steps),
              "--precision", args.precision, "--keep-dropout", "--threads", str(args.threads)], args.threads)
    return {"median_s": r["step_s_median"], "min_s": r["step_s_min"], "max_s": r["step_s_max"],
            "peak_rss_mib": r["peak_rss_mb"], "gflop": r["gflop_per_step"]}


def hf_pretrain(preset: str, batch: int, length: int, args) -> dict:
    r = _run([sys.executable, "benchmarks/pretrain_step.py", "--presets", preset, "--impls", "hf",
              "--batch", str(batch), str(length), "--warmup", str(args.warmup), "--steps", str(args.steps),
              "--precision", args.precision, "--keep-dropout", "--threads", str(args.threads)], args.threads)
    if "skipped" in r:
        return {"skipped": r["skipped"]}
    return {"median_s": r["step_s_median"], "min_s": r["step_s_min"], "max_s": r["step_s_max"],
            "peak_rss_mib": r["peak_rss_mb"]}


def fairseq_pretrain(model: str, batch: int, length: int, args) -> dict:
    cmd = [args.fairseq_python, str(FAIRSEQ_BENCH), "--model", model, "--size", "tiny" if args.tiny else "base",
           "--batch", str(batch), "--length", str(length), "--layerdrop", "0", "--threads", str(args.threads),
           "--warmup", str(args.warmup), "--steps", str(args.steps), "--no-probe"]
    r = _run(cmd, args.threads)
    return {"median_s": r["median_s"], "min_s": r["min_s"], "max_s": r["max_s"], "peak_rss_mib": r["peak_rss_mib"]}


# ---- extraction: one process per (modality, implementation) -------------------------------------------------
def _hf_base(modality: str, tiny: bool):
    import torch
    from transformers import (Data2VecAudioConfig, Data2VecAudioModel, Data2VecTextConfig, Data2VecTextModel,
                              Data2VecVisionConfig, Data2VecVisionModel)

    torch.manual_seed(0)
    small = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128) if tiny else {}
    if modality == "audio":
        cfg = Data2VecAudioConfig(layerdrop=0.0, **small, **({"conv_dim": (64,) * 7} if tiny else {}))
        return Data2VecAudioModel(cfg)
    if modality == "text":
        cfg = Data2VecTextConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                                 layer_norm_eps=1e-5, **small)
        return Data2VecTextModel(cfg, add_pooling_layer=False)
    cfg = Data2VecVisionConfig(image_size=32 if tiny else 224, use_shared_relative_position_bias=True,
                               use_mean_pooling=False, layer_scale_init_value=0.1, **small)
    return Data2VecVisionModel(cfg, add_pooling_layer=False)


def _inputs(modality: str, batch: int, length: int):
    import torch

    g = torch.Generator().manual_seed(1)
    if modality == "audio":
        return torch.randn(batch, length, generator=g)
    if modality == "text":
        x = torch.randint(5, 50265, (batch, length), generator=g)
        x[:, 0], x[:, -1] = 0, 2
        return x
    return torch.randn(batch, 3, length, length, generator=g)


def extract_worker(args) -> None:
    """Child process: time one implementation's forward on the saved weights; print JSON, save the outputs."""
    import resource

    import torch

    torch.set_num_threads(args.threads)
    model_dir, out = Path(args.model_dir), Path(args.save)
    if args.impl == "hf":
        from transformers import AutoModel

        model = AutoModel.from_pretrained(model_dir, attn_implementation="sdpa").eval()

        def forward(x):
            return model(x).last_hidden_state[:, 1:] if args.modality == "image" else model(x).last_hidden_state
    else:
        from data2vec.extract import encode
        from data2vec.pretrained import load_pretrained

        encoder = load_pretrained(model_dir)[1].student.encoder.eval()

        def forward(x):
            return encode(encoder, x)[0].x

    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if args.precision == "bf16" else torch.no_grad()
    results = {}
    for name, (batch, length) in zip(("batch1", "batched"), json.loads(args.shapes)):
        x = _inputs(args.modality, batch, length)
        times = []
        with torch.no_grad(), ctx:
            for i in range(args.warmup + args.steps):
                t = time.perf_counter()
                y = forward(x)
                if i >= args.warmup:
                    times.append(time.perf_counter() - t)
        torch.save(y.float(), out.with_name(f"{out.stem}-{name}.pt"))
        from torch.utils.flop_counter import FlopCounterMode

        with torch.no_grad(), ctx, FlopCounterMode(display=False) as fc:
            forward(x)
        results[name] = {"shape": [batch, length], "median_s": statistics.median(times), "min_s": min(times),
                         "max_s": max(times), "gflop": fc.get_total_flops() / 1e9}
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(results), flush=True)


def extraction(args, rows: list) -> None:
    import torch

    shapes = TINY_EXTRACT if args.tiny else EXTRACT
    with tempfile.TemporaryDirectory() as tmp:
        for modality, shp in shapes.items():
            model_dir = Path(tmp) / modality
            _hf_base(modality, args.tiny).eval().save_pretrained(model_dir)
            # (implementation, precision): ours and HF at the run's precision; with bf16 also HF in fp32 (what a
            # HF user runs by default), the reference of the bf16 target
            impls = [("data2vec", args.precision), ("hf", args.precision)]
            if args.precision == "bf16":
                impls.append(("hf", "fp32"))
            rounds: dict[tuple, list] = {k: [] for k in impls}
            for _ in range(args.rounds):
                for impl, prec in impls:
                    save = Path(tmp) / f"{modality}-{impl}-{prec}.pt"
                    rounds[impl, prec].append(_run([sys.executable, __file__, "_extract", "--impl", impl,
                                                    "--modality", modality, "--model-dir", str(model_dir), "--save",
                                                    str(save), "--shapes", json.dumps(shp), "--precision", prec,
                                                    "--threads", str(args.threads), "--warmup", str(args.warmup),
                                                    "--steps", str(args.steps)], args.threads))
            mine = rounds["data2vec", args.precision]
            for name in ("batch1", "batched"):
                a = torch.load(Path(tmp) / f"{modality}-data2vec-{args.precision}-{name}.pt")
                ours = [r[name]["median_s"] for r in mine]
                for impl, prec in impls[1:]:
                    b = torch.load(Path(tmp) / f"{modality}-{impl}-{prec}-{name}.pt")
                    peer = [r[name]["median_s"] for r in rounds[impl, prec]]
                    gflop = mine[0][name]["gflop"]
                    rows.append({"section": "extract", "what": f"{modality} {name} {mine[0][name]['shape']}",
                                 "peer": f"HF forward ({prec})", "ours_s": ours, "peer_s": peer,
                                 "peer_over_ours": [round(p / o, 3) for o, p in zip(ours, peer)],
                                 "max_abs_diff": float((a - b).abs().max()), "gflop": gflop,
                                 "ours_gflop_s": round(gflop / statistics.median(ours), 1),
                                 "ours_rss_mib": max(r["peak_rss_mib"] for r in mine),
                                 "peer_rss_mib": max(r["peak_rss_mib"] for r in rounds[impl, prec])})
                    print(json.dumps(rows[-1]), flush=True)


def finetuning(args, rows: list) -> None:
    """Fine-tuning step vs HF's task model on the same random weights (``benchmarks/finetune_step.py``)."""
    shapes = TINY_FINETUNE if args.tiny else FINETUNE
    script = str(ROOT / "benchmarks" / "finetune_step.py")
    with tempfile.TemporaryDirectory() as tmp:
        for task, (batch, length) in shapes.items():
            _run([sys.executable, script, "--make", tmp, "--task", task] + (["--tiny"] if args.tiny else []),
                 args.threads)
            got: dict[str, list[dict]] = {"data2vec": [], "hf": []}
            for _ in range(args.rounds):
                for impl in got:
                    got[impl].append(_run([sys.executable, script, "--impl", impl, "--task", task, "--model-dir",
                                           str(Path(tmp) / task), "--batch", str(batch), "--length", str(length),
                                           "--precision", args.precision, "--threads", str(args.threads),
                                           "--warmup", str(args.warmup), "--steps", str(args.steps)], args.threads))
            ours = [r["median_s"] for r in got["data2vec"]]
            peer = [r["median_s"] for r in got["hf"]]
            rows.append({"section": "finetune", "what": f"{FINETUNE_NAMES[task]} {batch} x {length}",
                         "peer": "HF task model", "ours_s": ours, "peer_s": peer,
                         "ours_spread_s": [[r["min_s"], r["max_s"]] for r in got["data2vec"]],
                         "peer_spread_s": [[r["min_s"], r["max_s"]] for r in got["hf"]],
                         "ours_over_peer": [round(o / p, 3) for o, p in zip(ours, peer)],
                         "ours_rss_mib": max(r["peak_rss_mib"] for r in got["data2vec"]),
                         "peer_rss_mib": max(r["peak_rss_mib"] for r in got["hf"])})
            print(json.dumps(rows[-1]), flush=True)


def pretraining(args, rows: list) -> None:
    if not args.fairseq_python:
        print(json.dumps({"section": "pretrain", "skipped": "no --fairseq-python given: build fairseq with "
                          "../shared/bench/fairseq/setup_venv.sh DIR and pass DIR/bin/python"}), flush=True)
    for model, (preset, batch, length) in PRETRAIN.items():
        if args.tiny:
            batch, length = (2, 16000) if "audio" in model else (2, 32)
            preset = preset.replace("base", "tiny")
        peers = {"fairseq": fairseq_pretrain} if args.fairseq_python else {}
        if preset.endswith("v1"):
            peers["HF-assembled"] = hf_pretrain
        got: dict[str, list[dict]] = {"ours": [], **{k: [] for k in peers}}
        for _ in range(args.rounds):
            got["ours"].append(ours_pretrain(preset, batch, length, args))
            for name, fn in peers.items():
                got[name].append(fn(model if name == "fairseq" else preset, batch, length, args))
        gflop = got["ours"][0]["gflop"]
        for name in peers:
            ours = [r["median_s"] for r in got["ours"]]
            peer = [r["median_s"] for r in got[name]]
            rows.append({"section": "pretrain", "what": f"{preset} ({model}) {batch} x {length}", "peer": name,
                         "ours_s": ours, "ours_spread_s": [[r["min_s"], r["max_s"]] for r in got["ours"]],
                         "peer_s": peer, "peer_spread_s": [[r["min_s"], r["max_s"]] for r in got[name]],
                         "ours_over_peer": [round(o / p, 3) for o, p in zip(ours, peer)],
                         "ours_rss_mib": max(r["peak_rss_mib"] for r in got["ours"]),
                         "peer_rss_mib": max(r["peak_rss_mib"] for r in got[name]),
                         "gflop_per_step": gflop,
                         "ours_gflop_s": round(gflop / statistics.median(ours), 1),
                         "peer_gflop_s": round(gflop / statistics.median(peer), 1)})
            print(json.dumps(rows[-1]), flush=True)


def table(rows: list, meta: dict) -> str:
    lim = meta["matmul_gflop_s"]
    out = [f"Matmul limit ({meta['precision']}, {meta['threads']} threads, n=2048): {lim:.0f} GFLOP/s "
           f"(before/after: {meta['matmul_before']:.0f}/{meta['matmul_after']:.0f}).", ""]
    if meta.get("tiny"):
        out += ["**--tiny: a smoke test of the benchmark. fairseq's tiny shapes (its fixtures) are not our tiny "
                "presets, so the pretraining ratios mean nothing.**", ""]
    pre = [r for r in rows if r["section"] == "pretrain"]
    if pre:
        out += ["| pretraining step | peer | ours s (per round) | peer s | ours / peer | RSS MiB ours / peer | "
                "GFLOP/s ours (of limit) |", "|---|---|---|---|---|---|---|"]
        for r in pre:
            out.append(f"| {r['what']} | {r['peer']} | {', '.join(f'{x:.3f}' for x in r['ours_s'])} | "
                       f"{', '.join(f'{x:.3f}' for x in r['peer_s'])} | "
                       f"{', '.join(f'{x:.2f}' for x in r['ours_over_peer'])} | "
                       f"{r['ours_rss_mib']:.0f} / {r['peer_rss_mib']:.0f} | "
                       f"{r['ours_gflop_s']:.0f} ({r['ours_gflop_s'] / lim:.0%}) |")
        out.append("")
    fin = [r for r in rows if r["section"] == "finetune"]
    if fin:
        out += ["| fine-tuning step (base) | ours s (per round) | HF s | ours / HF | RSS MiB ours / HF |",
                "|---|---|---|---|---|"]
        for r in fin:
            out.append(f"| {r['what']} | {', '.join(f'{x:.3f}' for x in r['ours_s'])} | "
                       f"{', '.join(f'{x:.3f}' for x in r['peer_s'])} | "
                       f"{', '.join(f'{x:.2f}' for x in r['ours_over_peer'])} | "
                       f"{r['ours_rss_mib']:.0f} / {r['peer_rss_mib']:.0f} |")
        out.append("")
    ext = [r for r in rows if r["section"] == "extract"]
    if ext:
        out += ["| extraction | peer | ours s | peer s | peer / ours | max abs diff | RSS MiB ours / peer | "
                "GFLOP/s ours (of limit) |", "|---|---|---|---|---|---|---|---|"]
        for r in ext:
            flops = (f"{r['ours_gflop_s']:.0f} ({r['ours_gflop_s'] / lim:.0%})" if "ours_gflop_s" in r else "-")
            out.append(f"| {r['what']} | {r['peer']} | {', '.join(f'{x:.4f}' for x in r['ours_s'])} | "
                       f"{', '.join(f'{x:.4f}' for x in r['peer_s'])} | "
                       f"{', '.join(f'{x:.2f}' for x in r['peer_over_ours'])} | {r['max_abs_diff']:.1e} | "
                       f"{r['ours_rss_mib']:.0f} / {r['peer_rss_mib']:.0f} | {flops} |")
    return "\n".join(out) + "\n"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_extract":
        p = argparse.ArgumentParser()
        for a in ("--impl", "--modality", "--model-dir", "--save", "--shapes", "--precision"):
            p.add_argument(a, required=True)
        for a in ("--threads", "--warmup", "--steps"):
            p.add_argument(a, type=int, required=True)
        return extract_worker(p.parse_args(sys.argv[2:]))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fairseq-python", help="python of a fairseq venv (../shared/bench/fairseq/setup_venv.sh)")
    p.add_argument("--sections", nargs="+", default=["pretrain", "finetune", "extract"],
                   choices=["pretrain", "finetune", "extract"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (ours, peer, ours, peer, ...)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tiny", action="store_true", help="tiny shapes: a smoke test of the benchmark itself")
    p.add_argument("--out", help="also write the rows as JSON lines here")
    p.add_argument("--table", help="also write the markdown tables here")
    args = p.parse_args()
    args.impl_ours = "data2vec"
    if args.precision == "bf16" and args.fairseq_python:
        print(json.dumps({"note": "fairseq's step is fp32 only (bench_fairseq); bf16 rows compare our bf16 "
                                  "step with fairseq's fp32 step"}), flush=True)
    import torch

    torch.set_num_threads(args.threads)
    before = gemm_gflops(args.precision)
    rows: list[dict] = []
    if "pretrain" in args.sections:
        pretraining(args, rows)
    if "finetune" in args.sections:
        finetuning(args, rows)
    if "extract" in args.sections:
        extraction(args, rows)
    after = gemm_gflops(args.precision)
    meta = {"precision": args.precision, "threads": args.threads, "tiny": args.tiny, "matmul_before": before, "matmul_after": after,
            "matmul_gflop_s": max(before, after), "torch": torch.__version__,
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                     cwd=ROOT).stdout.strip(), "command": " ".join(sys.argv)}
    print(json.dumps(meta), flush=True)
    if args.out:
        Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in [meta, *rows]))
    if args.table:
        Path(args.table).write_text(table(rows, meta))
    print(table(rows, meta))


if __name__ == "__main__":
    main()
