"""The classical text baseline of issue 15: TF-IDF (word and character n-grams) + logistic regression.

    pip install scikit-learn            # or: pip install -e '.[experiments]'
    python experiments/tfidf_baseline.py --data data/rt-polarity --budgets 1k=1000 all=0 --seeds 1 2 3 \\
        --out runs/tfidf-rt.json            # validation only: how the baseline is tuned
    python experiments/tfidf_baseline.py ... --test    # once, at the end: the test split of the tuned models

Same files, label vocabulary and seeded training subsets as ``data2vec finetune text-classification`` with
``data.max_train_examples=N`` and ``train.seed=S`` (``train_subset``), so each seed sees the reviews the
fine-tuned encoders see. The features are the union of word 1-2-grams and character 2-5-grams (within word
boundaries), sublinear tf, idf, L2-normalised per document, fitted on the training subset only. Tuned on the
dev split, per budget and seed: the n-gram sets (word, char, both), ``min_df`` and the inverse regularisation
C of the L2 logistic regression (liblinear). The test split is scored only with ``--test``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

import numpy as np

GRID = {"features": ("word", "char", "word+char"), "min_df": (1, 2), "C": (0.25, 1.0, 4.0, 16.0, 64.0, 256.0, 1024.0)}


def load(data: Path):
    from data2vec.data.glue import label_vocabulary, read_tsv

    files = {s: read_tsv(data / f"{s}.tsv") for s in ("train", "dev", "test")}
    labels = label_vocabulary(e.label for e in files["train"].examples)
    text = {s: [e.text_a for e in f.examples] for s, f in files.items()}
    y = {s: np.array([labels.index(e.label) for e in f.examples]) for s, f in files.items()}
    return text, y


def vectoriser(features: str, min_df: int):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    parts = []
    if "word" in features:
        parts.append(("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), min_df=min_df, sublinear_tf=True,
                                              lowercase=True, token_pattern=r"(?u)\b\w+\b|[!?]")))
    if "char" in features:
        parts.append(("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=min_df,
                                              sublinear_tf=True, lowercase=True)))
    return FeatureUnion(parts)


def fit_one(text, y, keep, features, min_df, C):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import normalize

    vec = vectoriser(features, min_df)
    xtr = normalize(vec.fit_transform([text["train"][i] for i in keep]))
    clf = LogisticRegression(C=C, solver="liblinear", max_iter=1000, random_state=0).fit(xtr, y["train"][keep])
    return vec, clf


def accuracy(vec, clf, text, y, split) -> float:
    from sklearn.preprocessing import normalize

    return float((clf.predict(normalize(vec.transform(text[split]))) == y[split]).mean())


def run(text, y, n_max: int, seed: int, test: bool) -> dict:
    from data2vec.modalities.text.finetune import train_subset

    keep = train_subset(y["train"], 1.0, n_max, seed, regression=False)
    trials = []
    for features, min_df, C in itertools.product(*GRID.values()):
        vec, clf = fit_one(text, y, keep, features, min_df, C)
        trials.append({"features": features, "min_df": min_df, "C": C, "valid": accuracy(vec, clf, text, y, "dev")})
    best = max(trials, key=lambda t: t["valid"])  # first of the best on ties: the grid's order
    out = {"train_examples": len(keep), "seed": seed, "best": best, "trials": trials}
    if test:
        vec, clf = fit_one(text, y, keep, best["features"], best["min_df"], best["C"])
        out["test"] = accuracy(vec, clf, text, y, "test")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data/rt-polarity", help="GLUE-format directory (`data2vec prepare rt-polarity`)")
    p.add_argument("--budgets", nargs="+", default=["1k=1000", "all=0"], help="NAME=max_train_examples (0 = all)")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--test", action="store_true", help="also score the test split (once, after tuning)")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    try:
        import sklearn  # noqa: F401
    except ImportError:
        sys.exit("this baseline needs scikit-learn: pip install -e '.[experiments]'")
    text, y = load(Path(args.data))
    results = {}
    for budget in args.budgets:
        name, _, n = budget.partition("=")
        runs = [run(text, y, int(n), s, args.test) for s in args.seeds]
        # with all labels the subset does not depend on the seed, and neither does liblinear: one run is enough
        summary = {k: [r["best"]["valid"] if k == "valid" else r.get("test") for r in runs] for k in ("valid", "test")}
        results[name] = {"runs": runs, "summary": summary}
        for k, v in summary.items():
            if v and v[0] is not None:
                sd = statistics.stdev(v) if len(v) > 1 else 0.0
                print(f"{name}: {k} accuracy {statistics.mean(v):.4f} ± {sd:.4f} (n={len(v)}); "
                      f"chosen {[(r['best']['features'], r['best']['min_df'], r['best']['C']) for r in runs]}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"args": vars(args), "grid": GRID, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
