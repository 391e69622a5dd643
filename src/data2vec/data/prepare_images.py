"""The built-in image set: Fashion-MNIST (Debian ``dataset-fashion-mnist``) as an ImageFolder tree.

    data2vec prepare images --out data/images

Writes ``train/`` (first 55,000 training images after a seeded shuffle), ``valid/`` (the other 5,000) and
``test/`` (the official 10,000), each ``<class>/<index>.png`` (28x28 grey), and ``dataset.json``.
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import numpy as np

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot")


def read_idx(path: str | Path) -> np.ndarray:
    """IDX file (MNIST format, optionally gzipped) -> numpy array (magic: 0 0 dtype ndim, then dims)."""
    path = Path(path)
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file")
    dtype = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[raw[2]]
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim).reshape(dims)


def prepare_images(out_dir: str | Path, *, valid: int = 5000, seed: int = 0, source: str | Path = FASHION_DIR) -> dict:
    from PIL import Image

    src, out = Path(source), Path(out_dir).resolve()
    info_path = out / "dataset.json"
    if info_path.exists():
        info = json.loads(info_path.read_text())
        if info.get("valid") == valid and info.get("seed") == seed:
            print(f"{out} already holds Fashion-MNIST; nothing to do")
            return info
        raise ValueError(f"{out} holds another split; choose another --out or delete it")
    files = {k: src / f"{k}-ubyte.gz" for k in ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3",
                                                "t10k-labels-idx1")}
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        raise ValueError(f"Fashion-MNIST not found ({missing[0]}): install it with `apt-get install dataset-fashion-mnist`")
    t0 = time.time()
    x_train, y_train = read_idx(files["train-images-idx3"]), read_idx(files["train-labels-idx1"])
    x_test, y_test = read_idx(files["t10k-images-idx3"]), read_idx(files["t10k-labels-idx1"])
    order = np.random.default_rng([seed, 8]).permutation(len(x_train))
    splits = {"train": order[valid:], "valid": order[:valid]}
    counts = {}
    for split, (xs, ys, idx) in {"train": (x_train, y_train, splits["train"]), "valid": (x_train, y_train, splits["valid"]),
                                 "test": (x_test, y_test, np.arange(len(x_test)))}.items():
        for c in CLASSES:
            (out / split / c).mkdir(parents=True, exist_ok=True)
        for i in idx:
            Image.fromarray(xs[i], mode="L").save(out / split / CLASSES[ys[i]] / f"{i:05d}.png", optimize=False)
        counts[split] = len(idx)
    info = {"dataset": "fashion-mnist", "classes": list(CLASSES), "counts": counts, "valid": valid, "seed": seed,
            "seconds_to_make": round(time.time() - t0, 1)}
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    print(f"wrote Fashion-MNIST: {counts['train']:,} train / {counts['valid']:,} valid / {counts['test']:,} test "
          f"images in 10 classes -> {out}")
    return info


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--valid", type=int, default=5000, help="training images held out for validation")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    prepare_images(args.out, valid=args.valid, seed=args.seed)
    return 0
