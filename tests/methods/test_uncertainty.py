"""The bootstrap interval of a test score against scipy.stats.bootstrap, and an evaluator's
interval recomputed from its cached probe."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from redundancy.methods.uncertainty import bootstrap_interval


def _scipy(y, p, fn, n=4000):
    return stats.bootstrap((y, p), fn, paired=True, vectorized=False, n_resamples=n, method="percentile",
                           random_state=1).confidence_interval


def test_accuracy_interval_matches_scipy_and_the_normal_approximation():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 800)
    p = np.where(rng.random(800) < 0.8, y, (y + 1) % 3)
    lo, hi = bootstrap_interval(y, p, "accuracy", n_boot=4000)
    ref = _scipy(y, p, lambda a, b: np.mean(a == b))
    assert lo == pytest.approx(ref.low, abs=0.006) and hi == pytest.approx(ref.high, abs=0.006)
    acc = np.mean(y == p)
    se = np.sqrt(acc * (1 - acc) / y.size)
    assert lo == pytest.approx(acc - 1.96 * se, abs=0.006) and hi == pytest.approx(acc + 1.96 * se, abs=0.006)
    assert bootstrap_interval(y, p, "accuracy", seed=3) == bootstrap_interval(y, p, "accuracy", seed=3)


def test_pearson_and_generic_metrics_match_scipy():
    rng = np.random.default_rng(1)
    y = rng.normal(size=400)
    p = y + rng.normal(scale=1.0, size=400)
    lo, hi = bootstrap_interval(y, p, "pearson", n_boot=4000)
    ref = _scipy(y, p, lambda a, b: stats.pearsonr(a, b).statistic)
    assert lo == pytest.approx(ref.low, abs=0.01) and hi == pytest.approx(ref.high, abs=0.01)
    yc = rng.integers(0, 2, 300)
    pc = np.where(rng.random(300) < 0.7, yc, 1 - yc)
    from sklearn.metrics import f1_score

    lo, hi = bootstrap_interval(yc, pc, "macro_f1", n_boot=1000)
    ref = _scipy(yc, pc, lambda a, b: f1_score(a, b, average="macro"), n=1000)
    assert lo == pytest.approx(ref.low, abs=0.02) and hi == pytest.approx(ref.high, abs=0.02)


def test_bad_input_and_undefined_metric():
    with pytest.raises(ValueError, match="as many predictions"):
        bootstrap_interval([1, 2], [1])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_interval([1, 2], [1, 2], confidence=1.5)
    lo, hi = bootstrap_interval(np.arange(10.0), np.ones(10), "pearson")  # constant prediction: r undefined
    assert np.isnan(lo) and np.isnan(hi)


def test_evaluator_interval_from_the_cached_probe(tmp_path):
    from redundancy.methods.selection import ProbeEvaluator

    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 8)).astype(np.float32)
    y = (X[:, 0] + 0.5 * rng.normal(size=600) > 0).astype(np.int64) + 2 * (X[:, 1] > 1)
    ev = ProbeEvaluator((X[:400], y[:400]), (X[400:500], y[400:500]), (X[500:], y[500:]), cache_dir=tmp_path,
                        data_key="k")
    r = ev.evaluate([0, 1, 2])
    lo, hi = ev.test_interval([0, 1, 2])
    assert lo <= r.test <= hi and hi - lo > 0.02 and ev.n_fits == 1   # the probe came from the cache
    yr = X[:, 0] * 2 + rng.normal(size=600)
    evr = ProbeEvaluator((X[:400], yr[:400]), (X[400:500], yr[400:500]), (X[500:], yr[500:]))
    lo, hi = evr.test_interval()
    assert lo <= evr.oracle().test <= hi
