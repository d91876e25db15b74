"""Scoring metrics marketing teams read: AUC, KS, lift and gain, audience size vs precision.

All functions take plain arrays (``y`` in {0, 1}, ``score`` any real order) and are
computed by whichever party holds the labels; only their aggregate results are released.
"""

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

AUDIENCE_FRACTIONS = (0.01, 0.05, 0.10, 0.20, 0.50)
"""Audience sizes (share of the scored population, highest scores first) that reports show."""


def _check(y, score):
    y = np.asarray(y, dtype=float)
    score = np.asarray(score, dtype=float)
    if y.shape != score.shape or y.ndim != 1:
        raise ValueError("labels and scores must be 1-d arrays of the same length")
    return y, score


def auc(y, score):
    """Area under the ROC curve; NaN when only one class is present."""
    y, score = _check(y, score)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, score))


def ks(y, score):
    """Kolmogorov–Smirnov statistic: the largest gap between the positive and negative CDFs."""
    y, score = _check(y, score)
    if len(np.unique(y)) < 2:
        return float("nan")
    fpr, tpr, _ = roc_curve(y, score)
    return float(np.max(tpr - fpr))


def _ranked(y, score):
    order = np.argsort(-score, kind="stable")
    return y[order]


def gain_curve(y, score, points=100):
    """Cumulative share of positives captured against share of the population targeted.

    Returns
    -------
    fraction, gain : numpy.ndarray
        ``gain[i]`` is the share of all positives among the top ``fraction[i]`` of scores.
    """
    y, score = _check(y, score)
    ranked = _ranked(y, score)
    total = max(ranked.sum(), 1.0)
    fraction = np.linspace(1.0 / points, 1.0, points)
    counts = np.maximum(1, np.round(fraction * len(ranked)).astype(int))
    captured = np.cumsum(ranked)[counts - 1]
    return fraction, captured / total


def lift_at(y, score, fraction):
    """Precision among the top ``fraction`` of scores divided by the overall positive rate."""
    y, score = _check(y, score)
    base = y.mean()
    if base == 0:
        return float("nan")
    top = _ranked(y, score)[: max(1, int(round(fraction * len(y))))]
    return float(top.mean() / base)


def audience_table(y, score, sizes=AUDIENCE_FRACTIONS):
    """Precision, recall and lift for audiences of the given sizes (fractions or counts).

    Parameters
    ----------
    sizes : iterable of float or int
        A float in (0, 1] is a share of the population; an int > 1 an absolute count.

    Returns
    -------
    list of dict
        One row per size: ``size`` (as given), ``count``, ``precision``, ``recall``, ``lift``.
    """
    y, score = _check(y, score)
    ranked = _ranked(y, score)
    positives = ranked.sum()
    rows = []
    for size in sizes:
        count = int(size) if (isinstance(size, int) and size > 1) else max(1, int(round(float(size) * len(y))))
        count = min(count, len(y))
        hits = ranked[:count].sum()
        precision = hits / count
        rows.append({
            "size": size,
            "count": count,
            "precision": float(precision),
            "recall": float(hits / positives) if positives else float("nan"),
            "lift": float(precision / y.mean()) if y.mean() else float("nan"),
        })
    return rows


def score_report(y, score):
    """The headline numbers of a scoring model: AUC, KS, lift at 10% and the audience table."""
    return {
        "auc": auc(y, score),
        "ks": ks(y, score),
        "lift_at_10pct": lift_at(y, score, 0.10),
        "audiences": audience_table(y, score),
        "rows": int(len(y)),
        "positives": int(np.asarray(y).sum()),
    }
