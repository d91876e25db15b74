"""Scoring metrics marketing teams read: AUC, KS, lift and gain, audience size vs precision.

The scoring functions take plain arrays (``y`` in {0, 1}, ``score`` any real order) and are
computed by whichever party holds the labels; only their aggregate results are released.
The intervals and warnings need counts only (an AUC and how many positives and negatives
it rests on; hits in an audience of a size), so that a party that learns a figure from
aggregates, as the lookalike's brand does, can say how sure it is.
"""

import math

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

AUDIENCE_FRACTIONS = (0.01, 0.05, 0.10, 0.20, 0.50)
"""Audience sizes (share of the scored population, highest scores first) that reports show."""

Z_95 = 1.959963984540054
"""The standard normal's 97.5 % quantile: two-sided 95 % intervals."""

MIN_POSITIVES = 50
"""A figure resting on fewer positives than this is flagged: its 95 % interval is wide
(an AUC of 0.75 on 50 positives and 500 negatives has the interval 0.67–0.83)."""


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
        One row per size: ``size`` (as given), ``count``, ``precision``, ``recall``,
        ``lift``, and the 95 % ``precision_interval`` and ``lift_interval``.
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
            "precision_interval": list(proportion_interval(hits, count)),
            "lift_interval": list(lift_interval(hits, count, y.mean())),
        })
    return rows


def auc_interval(value, positives, negatives, z=Z_95):
    """95 % interval of an AUC from its value and class counts (Hanley & McNeil, Radiology 1982).

    The standard error ``sqrt((A(1-A) + (P-1)(Q1-A²) + (N-1)(Q2-A²)) / (P N))`` with
    ``Q1 = A/(2-A)`` and ``Q2 = 2A²/(1+A)`` needs only the AUC and the counts, which the
    party reporting it holds. Slightly conservative near 0.5, where it matters least.

    Returns
    -------
    tuple of float
        ``(low, high)``, clipped to [0, 1]; NaNs when the AUC or either class is missing.
    """
    if not (math.isfinite(value) and positives >= 1 and negatives >= 1):
        return (float("nan"), float("nan"))
    q1, q2 = value / (2 - value), 2 * value**2 / (1 + value)
    variance = (value * (1 - value) + (positives - 1) * (q1 - value**2)
                + (negatives - 1) * (q2 - value**2)) / (positives * negatives)
    half = z * math.sqrt(max(variance, 0.0))
    return (max(0.0, value - half), min(1.0, value + half))


def proportion_interval(hits, count, z=Z_95):
    """95 % Wilson score interval of a proportion ``hits / count`` (a precision, a recall).

    Wilson's interval (JASA 1927) stays inside [0, 1] and keeps its coverage for the small
    counts and extreme shares a top-1 % audience has, where the normal approximation does not.
    """
    if count <= 0:
        return (float("nan"), float("nan"))
    share = hits / count
    centre = (share + z**2 / (2 * count)) / (1 + z**2 / count)
    half = z * math.sqrt(share * (1 - share) / count + z**2 / (4 * count**2)) / (1 + z**2 / count)
    return (max(0.0, centre - half), min(1.0, centre + half))


def lift_interval(hits, count, rate, z=Z_95):
    """95 % interval of a lift ``(hits / count) / rate``: the precision's Wilson interval over the base rate.

    The base rate is that of the whole scored population, far larger than an audience, and
    is taken as known.
    """
    if not rate > 0:
        return (float("nan"), float("nan"))
    low, high = proportion_interval(hits, count, z)
    return (low / rate, high / rate)


def reliability_warnings(positives, lift_at_10pct, what="the held-out figures"):
    """Plain-words warnings for a scoring section: few positives, or a top 10 % no better than chance."""
    warnings = []
    if positives is not None and positives < MIN_POSITIVES:
        warnings.append(f"{what} rest on {positives} positives (fewer than {MIN_POSITIVES}): "
                        "read them with their 95 % intervals, which are wide")
    if lift_at_10pct is not None and math.isfinite(lift_at_10pct) and lift_at_10pct < 1:
        warnings.append(f"the top 10 % holds fewer positives than a random 10 % would (lift {lift_at_10pct:.2f}): "
                        "the ranking is no better than chance there; do not act on the top list without checking")
    return warnings


def score_report(y, score):
    """The headline numbers of a scoring model: AUC with its interval, KS, lift at 10% and the audience table."""
    y, score = _check(y, score)
    positives = int(y.sum())
    value = auc(y, score)
    return {
        "auc": value,
        "auc_interval": list(auc_interval(value, positives, len(y) - positives)),
        "ks": ks(y, score),
        "lift_at_10pct": lift_at(y, score, 0.10),
        "audiences": audience_table(y, score),
        "rows": int(len(y)),
        "positives": positives,
    }
