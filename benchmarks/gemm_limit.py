"""The matmul throughput this CPU reaches at the GEMM shapes of our models, fp32 and bf16 (issue "Speed").

    python benchmarks/gemm_limit.py --threads 2

The "matmul limit" of side_by_side.py is a square n=2048 GEMM: the most this CPU does. A Transformer block of
width C over R rows runs [R, C] x [C, C] (attention projections) and [R, C] x [C, 4C] / [R, 4C] x [4C, C] (MLP)
forward, and twice that in the backward pass; at the tiny presets' widths (192-256) these GEMMs are too thin to
reach the square limit. Each row: shape, precision, median seconds of a forward GEMM and its GFLOP/s. One JSON
line per measurement.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

SHAPES = {  # name -> (rows, in, out): the block GEMMs of each preset at its benchmark batch
    "square 2048": [(2048, 2048, 2048)],
    "text-tiny-v1 (32 x 128 tokens, C 256)": [(4096, 256, 256), (4096, 256, 1024), (4096, 1024, 256)],
    "image-tiny-v1 (128 x 50 tokens, C 192)": [(6400, 192, 192), (6400, 192, 768), (6400, 768, 192)],
    "text-base-v1 (4 x 512 tokens, C 768)": [(2048, 768, 768), (2048, 768, 3072), (2048, 3072, 768)],
}


def time_gemm(m: int, k: int, n: int, dtype: torch.dtype, reps: int) -> float:
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=20)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for name, gemms in SHAPES.items():
        for dtype in (torch.float32, torch.bfloat16):
            flops = sum(2 * m * k * n for m, k, n in gemms)
            secs = sum(time_gemm(m, k, n, dtype, args.reps) for m, k, n in gemms)
            print(json.dumps({"shapes": name, "gemms": gemms, "precision": str(dtype).split(".")[-1],
                              "threads": args.threads, "seconds": round(secs, 6),
                              "gflop_s": round(flops / secs / 1e9, 1)}), flush=True)


if __name__ == "__main__":
    main()
