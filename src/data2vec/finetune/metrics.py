"""Classification and regression metrics of the GLUE benchmark, in numpy (no scipy / scikit-learn).

- ``accuracy``; ``f1_binary`` (positive class 1, as GLUE scores MRPC and QQP); ``macro_f1``;
- ``mcc``: Matthews correlation, the multi-class form (Gorodkin's R_K, scikit-learn's
  ``matthews_corrcoef``), which is the binary phi coefficient for two classes (GLUE scores CoLA with it);
- ``pearson``; ``spearman`` = Pearson correlation of the average ranks (ties share their mean rank,
  ``scipy.stats.rankdata(method="average")``), as GLUE scores STS-B.

Degenerate inputs give 0.0, not NaN (a constant prediction has no correlation with anything, an empty
class has no F1): a fine-tuning loop compares scores with ``>`` to keep the best checkpoint, and NaN would
never compare better.
"""

from __future__ import annotations

import numpy as np


def _ints(a) -> np.ndarray:
    return np.asarray(a, dtype=np.int64).reshape(-1)


def accuracy(pred, gold) -> float:
    pred, gold = _ints(pred), _ints(gold)
    return float((pred == gold).mean()) if len(gold) else 0.0


def confusion_matrix(pred, gold, num_classes: int | None = None) -> np.ndarray:
    """``[num_classes, num_classes]`` counts; row = gold class, column = predicted class."""
    pred, gold = _ints(pred), _ints(gold)
    if pred.shape != gold.shape:
        raise ValueError(f"{len(pred)} predictions for {len(gold)} labels")
    k = num_classes or int(max(pred.max(initial=-1), gold.max(initial=-1)) + 1)
    return np.bincount(gold * k + pred, minlength=k * k).reshape(k, k)


def _f1(tp: float, fp: float, fn: float) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else 0.0


def f1_binary(pred, gold, positive: int = 1) -> float:
    pred, gold = _ints(pred), _ints(gold)
    tp = float(((pred == positive) & (gold == positive)).sum())
    fp = float(((pred == positive) & (gold != positive)).sum())
    fn = float(((pred != positive) & (gold == positive)).sum())
    return _f1(tp, fp, fn)


def macro_f1(pred, gold, num_classes: int | None = None) -> float:
    """Unweighted mean of the per-class F1 over all ``num_classes`` classes."""
    cm = confusion_matrix(pred, gold, num_classes).astype(np.float64)
    tp = np.diag(cm)
    f1 = [_f1(t, fp, fn) for t, fp, fn in zip(tp, cm.sum(0) - tp, cm.sum(1) - tp)]
    return float(np.mean(f1)) if f1 else 0.0


def mcc(pred, gold, num_classes: int | None = None) -> float:
    """(c s - sum_k p_k t_k) / sqrt((s^2 - sum_k p_k^2)(s^2 - sum_k t_k^2)): c correct, s total, p_k / t_k
    the number of predictions / gold labels of class k."""
    cm = confusion_matrix(pred, gold, num_classes).astype(np.float64)
    t, p = cm.sum(1), cm.sum(0)
    c, s = np.trace(cm), cm.sum()
    den = np.sqrt((s * s - p @ p) * (s * s - t @ t))
    return float((c * s - p @ t) / den) if den > 0 else 0.0


def pearson(x, y) -> float:
    x, y = np.asarray(x, dtype=np.float64).reshape(-1), np.asarray(y, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"{len(x)} predictions for {len(y)} labels")
    x, y = x - x.mean(), y - y.mean()
    den = np.sqrt((x @ x) * (y @ y))
    return float(np.clip((x @ y) / den, -1.0, 1.0)) if den > 0 else 0.0


def rankdata(x) -> np.ndarray:
    """1-based ranks; tied values get the mean of the ranks they span."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    order = np.argsort(x, kind="stable")
    xs = x[order]
    new_run = np.r_[True, xs[1:] != xs[:-1]]
    bounds = np.r_[np.flatnonzero(new_run), len(x)]  # start of each run of equal values, then n
    mean_rank = (bounds[:-1] + bounds[1:] - 1) / 2 + 1
    ranks = np.empty(len(x))
    ranks[order] = mean_rank[np.cumsum(new_run) - 1]
    return ranks


def spearman(x, y) -> float:
    return pearson(rankdata(x), rankdata(y))


def classification_metrics(pred, gold, num_classes: int) -> dict[str, float]:
    """accuracy and mcc, plus f1 (positive class 1) for two classes or macro_f1 for more."""
    out = {"accuracy": accuracy(pred, gold), "mcc": mcc(pred, gold, num_classes)}
    if num_classes == 2:
        out["f1"] = f1_binary(pred, gold)
    else:
        out["macro_f1"] = macro_f1(pred, gold, num_classes)
    return out


def regression_metrics(pred, gold) -> dict[str, float]:
    p, s = pearson(pred, gold), spearman(pred, gold)
    return {"pearson": p, "spearman": s, "pearson_spearman": (p + s) / 2}
