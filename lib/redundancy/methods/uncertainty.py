"""Intervals for test scores: a percentile bootstrap over test items.

A probe's test score is one draw from the test set; resampling the test items with
replacement (the probe and its predictions fixed) gives the spread that comes from the test
set's size alone. The interval is the percentile interval of the resampled scores, as
``scipy.stats.bootstrap(..., method="percentile")`` computes it (the tests check the two
agree); accuracy and Pearson's r are vectorised, other metrics go through
:func:`redundancy.methods.probe.scores`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bootstrap_interval"]


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(1) / den


def bootstrap_interval(y_true, y_pred, metric: str = "accuracy", n_boot: int = 1000, confidence: float = 0.95,
                       seed: int = 0, chunk: int = 100) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric(y_true, y_pred)`` over the items.

    Parameters
    ----------
    y_true, y_pred : array-like, shape (n,)
    metric : str
        ``accuracy`` or ``pearson`` (vectorised), or any key of :func:`redundancy.methods.probe.scores`.
    n_boot : int
        Resamples (each draws n items with replacement, from a generator seeded with ``seed``).
    confidence : float

    Returns
    -------
    (low, high)
        NaN where the metric is undefined on most resamples (a constant prediction's r).
    """
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    n = y_true.size
    if n == 0 or y_pred.size != n:
        raise ValueError(f"bootstrap needs as many predictions as items, got {y_pred.size} and {n}")
    if not 0 < confidence < 1 or n_boot < 2:
        raise ValueError(f"confidence must be in (0, 1) and n_boot >= 2, got {confidence}, {n_boot}")
    rng = np.random.default_rng(seed)
    stats = []
    for done in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - done), n))
        if metric == "accuracy":
            stats.append((y_true[idx] == y_pred[idx]).mean(1))
        elif metric == "pearson":
            stats.append(_pearson_rows(y_true[idx].astype(np.float64), y_pred[idx].astype(np.float64)))
        else:
            from .probe import scores

            regression = metric in ("pearson", "spearman")
            stats.append(np.array([scores(y_true[i], y_pred[i], regression=regression)[metric] for i in idx]))
    s = np.concatenate(stats)
    if np.isnan(s).mean() > 0.5:
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    lo, hi = np.nanpercentile(s, [100 * alpha, 100 * (1 - alpha)])
    return float(lo), float(hi)
