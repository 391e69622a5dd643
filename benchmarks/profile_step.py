"""Where one pretraining update's time goes: ``torch.profiler`` self time per operator class (issue "Speed").

Runs the same update as ``benchmarks/pretrain_step.py`` (ours: ``Trainer.train_update``; ``--impl hf``: the
HF-assembled step) for ``--warmup`` updates, then profiles ``--steps`` updates and prints one JSON line per
preset: the wall time per update, the self CPU time of every operator class (GEMM, attention, convolution,
normalisation, element-wise, optimizer + EMA, copies/indexing, other) as a share of the profiled operator time,
the FLOPs of the update (``torch.utils.flop_counter``) with the GFLOP/s they imply, and the top operators.

    python benchmarks/profile_step.py --presets audio-tiny-v1 text-tiny-v1 image-tiny-v1 --precision bf16
    python benchmarks/profile_step.py --presets text-base-v1 --impl hf --batch 2 512 --keep-dropout
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.profiler import ProfilerActivity, profile

# operator name (substring, lower case) -> class; first match wins
CLASSES = [
    ("attention", ("scaled_dot_product", "flash_attention", "_efficient_attention", "softmax", "baddbmm")),
    ("gemm", ("addmm", "::mm", "bmm", "matmul", "linear", "mkldnn_rnn")),
    ("convolution", ("conv", "mkldnn_convolution")),
    ("normalisation", ("layer_norm", "group_norm", "instance_norm", "batch_norm", "native_norm")),
    ("optimizer+ema", ("_foreach", "adam", "lerp", "addcdiv", "addcmul", "sqrt")),
    ("copies/indexing", ("copy", "cat", "index", "masked", "gather", "scatter", "clone", "contiguous", "stack",
                         "nonzero", "repeat", "expand", "to_copy", "_to", "select", "slice", "embedding", "pad",
                         "unfold", "im2col", "col2im", "transpose", "permute", "view", "reshape", "empty", "zeros",
                         "ones", "fill", "full")),
    ("element-wise", ("gelu", "relu", "silu", "add", "mul", "sub", "div", "dropout", "bernoulli", "where", "pow",
                      "mean", "sum", "norm", "exp", "log", "neg", "abs", "tanh", "rsub", "clamp", "max", "min",
                      "var", "std", "rand", "threshold", "sigmoid", "smooth_l1", "mse", "square", "erf")),
]


def op_class(name: str) -> str:
    n = name.lower()
    for cls, keys in CLASSES:
        if any(k in n for k in keys):
            return cls
    return "other"


def profile_preset(preset: str, args) -> dict:
    from pretrain_step import build_step  # benchmarks/ is on sys.path when this runs as a script

    step, batch, _ = build_step(preset, args.impl, args)
    for _ in range(args.warmup):
        step(batch)
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        step(batch)
    flops = fc.get_total_flops()
    t = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step(batch)
    wall = (time.perf_counter() - t) / args.steps
    rows = [(e.key, e.self_cpu_time_total / args.steps / 1e6, e.count // args.steps) for e in prof.key_averages()]
    total = sum(r[1] for r in rows)
    shares: dict[str, float] = {}
    for name, s, _ in rows:
        shares[op_class(name)] = shares.get(op_class(name), 0.0) + s
    top = sorted(rows, key=lambda r: -r[1])[: args.top]
    return {"preset": preset, "impl": args.impl, "precision": args.precision, "threads": torch.get_num_threads(),
            "step_s": round(wall, 4), "op_self_s": round(total, 4), "gflop": round(flops / 1e9, 2),
            "gflop_s": round(flops / 1e9 / wall, 1),
            "share": {k: round(v / total, 3) for k, v in sorted(shares.items(), key=lambda kv: -kv[1])},
            "top": [{"op": n, "self_s": round(s, 4), "calls": c, "class": op_class(n)} for n, s, c in top]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=["audio-tiny-v1", "text-tiny-v1", "image-tiny-v1",
                                                    "audio-tiny-v2", "text-tiny-v2", "image-tiny-v2"])
    p.add_argument("--impl", default="data2vec", choices=["data2vec", "hf"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--batch", type=int, nargs=2, metavar=("B", "LEN"), help="default: pretrain_step.py's BATCH")
    p.add_argument("--keep-dropout", action="store_true", help="the recipe's dropout (default: off, same work)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for preset in args.presets:
        print(json.dumps(profile_preset(preset, args)), flush=True)


if __name__ == "__main__":
    main()
