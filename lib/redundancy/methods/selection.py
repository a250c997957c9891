"""Task-specific redundancy (paper section 6) and efficient transfer learning (section 7).

Everything here trains linear probes on subsets of neurons through one
:class:`ProbeEvaluator`, which holds the train/dev/test activations of one task and one
model, the probe's settings and the metric, and (optionally) a cache folder so that an
interrupted analysis resumes where it stopped. On top of it:

* :func:`layer_analysis` (6.1, Figure 4, Table 7): a probe per layer and an oracle on all
  layers concatenated; the layers within ``delta`` of the oracle; per-class scores
  (Figures 7-9).
* :func:`minimal_neuron_set` (6.2, Tables 1, 2, 8): LCA ranking of the oracle's neurons and
  the smallest top-k (on the reference code's grid of percentages of *all* neurons) whose
  dev score beats ``(1 - delta)`` times the oracle's.
* :func:`layer_selector` and :func:`ccfs` (7, Tables 3, 9, 10): the lowest layer ``l`` such
  that layers ``0..l`` score within ``delta_ls`` of the oracle; then correlation
  clustering on those layers, LCA and the grid again within ``delta_ccfs`` of the
  clustered set's score. :func:`ls_ccfs` runs both and returns the table row.

Thresholds are *relative*, as in the paper's tables and the reference code: a score
``s`` is within ``delta`` of ``s_ref`` when ``s > (1 - delta) * s_ref`` (strictly greater,
as the reference code). Neurons are indexed over the flattened activations: neuron
``layer * hidden + unit`` (layer 0 = embeddings), as ``Activations.flat()``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone, is_regressor

from .clustering import CorrelationClustering
from .probe import LinearProbe, LinearProbeRegressor, fit_probes, scores
from .ranking import NeuronRanking, lca_ranking
from .splits import Split, as_split, gather, shared_columns, standardize as standardize_splits
from ..cache import load_arrays, save_arrays
from ..utils import fault_point, stable_hash

__all__ = [
    "MAX_FEATURES_GRID", "PIPELINE_GRID", "METRICS", "ProbeEvaluator", "ProbeResult", "grid_sizes",
    "layer_neurons", "layer_analysis", "incremental_layer_analysis", "minimal_neuron_set",
    "MinimalSet", "layer_selector", "ccfs", "ls_ccfs", "within",
]

#: Tables 1, 2 and 8 (reference ``run_max_features.py``): 0.1% to 10% of all neurons in
#: 0.1% steps, then 15% to 50% in 5% steps and 60% to 90% in 10% steps
MAX_FEATURES_GRID = (tuple(round(0.001 * i, 3) for i in range(1, 101))
                     + tuple(round(0.05 * i, 2) for i in range(3, 11)) + (0.6, 0.7, 0.8, 0.9))
#: LS + CCFS (reference ``run_pipeline_all.py``): 0.1% to 0.5%, 1% to 10% in 1% steps, then as above
PIPELINE_GRID = (tuple(round(0.001 * i, 3) for i in range(1, 6)) + tuple(round(0.01 * i, 2) for i in range(1, 11))
                 + tuple(round(0.05 * i, 2) for i in range(3, 11)) + (0.6, 0.7, 0.8, 0.9))

#: metric name -> (key in :func:`redundancy.methods.probe.scores`, regression?)
METRICS = {"accuracy": ("accuracy", False), "macro_f1": ("macro_f1", False),
           "matthews_corrcoef": ("matthews_corrcoef", False), "pearson": ("pearson", True),
           "spearman": ("spearman", True)}


def _check_delta(delta, name="delta") -> float:
    if isinstance(delta, bool) or not isinstance(delta, Real) or not 0 <= delta <= 1:
        raise ValueError(f"{name} must be a fraction in [0, 1] (0.01 = 1% below the reference score), "
                         f"got {delta!r}")
    return float(delta)


def within(score: float, reference: float, delta: float) -> bool:
    """``score > (1 - delta) * reference``: the paper's (and reference code's) relative threshold."""
    return bool(score > (1.0 - _check_delta(delta)) * reference)


def grid_sizes(grid, n_total: int, n_available: int | None = None) -> list[tuple[float, int]]:
    """``(percentage, k)`` for every grid point, ``k = int(percentage * n_total)`` as the reference.

    Points with ``k = 0`` or ``k > n_available`` are skipped (the reference skips the latter
    and would fail on the former), as are repeated ``k``.
    """
    n_available = n_total if n_available is None else n_available
    out, seen = [], set()
    for p in grid:
        p = float(p)
        if not 0 < p <= 1:
            raise ValueError(f"grid percentages must be fractions in (0, 1], got {p!r}")
        k = int(p * n_total)
        if 0 < k <= n_available and k not in seen:
            out.append((p, k))
            seen.add(k)
    return out


def layer_neurons(layers, hidden: int) -> np.ndarray:
    """Flat neuron indices of whole layers (``layer * hidden + unit``), in the given order."""
    layers = np.atleast_1d(np.asarray(layers, dtype=np.int64))
    return (layers[:, None] * hidden + np.arange(hidden)[None, :]).ravel()


# --------------------------------------------------------------------------------------
# data and evaluation

@dataclass
class ProbeResult:
    """A probe trained on some neurons and scored on dev (and test).

    Attributes
    ----------
    neurons : numpy.ndarray of int64
        The flat indices of the neurons used, in the order of the probe's features.
    dev, test : float
        The metric on dev and test (test is NaN without a test split).
    dev_scores, test_scores : dict
        All metrics of :func:`redundancy.methods.probe.scores` (per-class accuracy included).
    coef, intercept : numpy.ndarray
        The probe's weights (``coef_``, ``intercept_``).
    fit_seconds : float
        Training time (0 when read from the cache).
    cached : bool
    """

    neurons: np.ndarray
    dev: float
    test: float
    dev_scores: dict
    test_scores: dict
    coef: np.ndarray
    intercept: np.ndarray
    fit_seconds: float
    cached: bool = False

    @property
    def n_neurons(self) -> int:
        return int(self.neurons.size)

    def __repr__(self) -> str:  # scores, not the weights
        test = "" if self.test != self.test else f", test {self.test:.4f}"
        return (f"ProbeResult({self.n_neurons:,} neurons, dev {self.dev:.4f}{test}"
                f"{', from the cache' if self.cached else f', trained in {self.fit_seconds:.1f}s'})")


class ProbeEvaluator:
    """Train a probe on a subset of neurons and score it: the unit of every task analysis.

    Parameters
    ----------
    train, dev : Activations or (X, y)
        ``X`` of shape (rows, layers, hidden) or (rows, neurons) (then give ``n_layers``).
    test : Activations or (X, y), optional
    probe : estimator, optional
        A template cloned for every fit; default :class:`~redundancy.methods.probe.LinearProbe`
        (or :class:`~redundancy.methods.probe.LinearProbeRegressor` for real-valued labels) with the
        paper's settings and ``random_state``.
    metric : str, optional
        One of :data:`METRICS`; default ``accuracy`` (classification) or ``pearson``.
    random_state : int, default 0
        Seed of the default probe.
    n_layers : int, optional
        Layers of a 2-D ``X`` (ignored for store entries and 3-D arrays).
    label_names : sequence, optional
        Class names for per-class scores (default: from the store entry).
    cache_dir : path, optional
        Where finished probes are kept (scores and weights, keyed by the data, the neurons
        and the probe's settings). Only store entries have a data key; with plain arrays
        pass ``data_key`` to enable it.
    data_key : str, optional
    progress : bool, optional
        Print a line when training starts (how many probes, rows, neurons), each epoch's
        mean loss, and one line per trained probe. Default: on in an interactive session (a
        terminal or a Jupyter kernel), off otherwise; the book's notebooks turn it off.
    standardize : bool, default False
        Z-score every neuron with the training split's mean and standard deviation before
        probing (the paper does not). Vectors that barely vary (a frozen model's [CLS] in low
        layers) can otherwise leave a probe with the paper's settings at the majority class.
        The standardized splits are held in memory (rows x neurons x 4 bytes each).
    """

    def __init__(self, train, dev, test=None, *, probe=None, metric=None, random_state=0, n_layers=None,
                 label_names=None, cache_dir=None, data_key=None, progress=None, standardize=False):
        self.train = as_split(train, "train", n_layers)
        self.dev = as_split(dev, "dev", n_layers)
        self.test = as_split(test, "test", n_layers) if test is not None else None
        self.standardize = bool(standardize)
        for s, name in ((self.dev, "dev"), (self.test, "test")):
            if s is not None and s.X.shape[1] != self.train.X.shape[1]:
                raise ValueError(f"{name} has {s.X.shape[1]} neurons but train has {self.train.X.shape[1]}")
        if self.standardize:
            (self.train, self.dev, self.test), self.standardization = standardize_splits([self.train, self.dev, self.test])
            if data_key is not None:
                data_key = f"{data_key}+standardized"
        self.n_layers, self.hidden = self.train.n_layers, self.train.hidden
        self.n_neurons = self.train.X.shape[1]
        regression = self.train.y.dtype.kind == "f" and not np.all(np.mod(self.train.y, 1) == 0)
        if probe is None:
            probe = (LinearProbeRegressor if regression else LinearProbe)(random_state=random_state)
        self.probe = probe
        self.regression = is_regressor(probe)
        if metric is None:
            metric = "pearson" if self.regression else "accuracy"
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {sorted(METRICS)}")
        if METRICS[metric][1] != self.regression:
            raise ValueError(f"metric {metric!r} is for {'regression' if METRICS[metric][1] else 'classification'}"
                             f" but the probe is a {'regressor' if self.regression else 'classifier'}")
        self.metric = metric
        if label_names is None:
            label_names = getattr(train, "label_names", None)
        self.label_names = label_names
        self.progress = _interactive() if progress is None else bool(progress)
        if data_key is None and all(s is None or s.key for s in (self.train, self.dev, self.test)):
            data_key = stable_hash([self.train.key, self.dev.key, self.test.key if self.test else None])
        self.data_key = data_key
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.n_fits = 0  # probes actually trained (not read from the cache)

    # ------------------------------------------------------------------------------------
    def _key(self, neurons: np.ndarray) -> str | None:
        if self.cache_dir is None or self.data_key is None:
            return None
        params = {k: v for k, v in self.probe.get_params().items() if k not in ("verbose", "device")}
        return stable_hash({"data": self.data_key, "neurons": stable_hash(neurons.tolist(), 32),
                            "probe": type(self.probe).__name__, "params": params, "metric": self.metric,
                            "version": 3}, 24)

    def _load(self, key: str, neurons: np.ndarray) -> ProbeResult | None:
        hit = load_arrays(self.cache_dir, key, what="probe cache entry")
        if hit is None:
            return None
        meta, arrays = hit
        return ProbeResult(neurons, meta["dev"], meta["test"], meta["dev_scores"], meta["test_scores"],
                           arrays["coef"], arrays["intercept"], 0.0, cached=True)

    def _save(self, key: str, r: ProbeResult) -> None:
        save_arrays(self.cache_dir, key, {"coef": r.coef, "intercept": np.atleast_1d(r.intercept)},
                    {"dev": r.dev, "test": r.test, "dev_scores": r.dev_scores, "test_scores": r.test_scores,
                     "n_neurons": r.n_neurons, "fit_seconds": r.fit_seconds})
        fault_point("probe-save")

    def _template(self, n_probes: int, width: int, name: str = ""):
        """A fresh copy of the probe for one pass, which reports its epochs when ``progress``."""
        probe = clone(self.probe)
        if self.progress:
            epochs = probe.get_params().get("epochs", "?")
            what = name or f"{n_probes:,} probe{'s' if n_probes > 1 else ''} in one pass"
            print(f"[probe] training {what}: {self.train.X.shape[0]:,} rows x {'up to ' if n_probes > 1 else ''}"
                  f"{width:,} neurons, {epochs} epochs", flush=True)
            if "verbose" in probe.get_params():
                probe.set_params(verbose=True)
        return probe

    def _scores(self, probe, split: Split, neurons, X=None) -> dict:
        X = gather(split.X, neurons) if X is None else X
        return scores(split.y, probe.predict(X), label_names=self.label_names, regression=self.regression)

    def check_neurons(self, neurons) -> np.ndarray | None:
        """Validated flat neuron indices (None = all)."""
        if neurons is None:
            return None
        idx = np.asarray(neurons)
        if idx.size == 0:
            raise ValueError("empty neuron set: a probe needs at least one neuron")
        if idx.dtype.kind not in "iu":
            raise ValueError(f"neuron indices must be integers, got dtype {idx.dtype}")
        idx = idx.astype(np.int64).ravel()
        if idx.min() < 0 or idx.max() >= self.n_neurons:
            raise ValueError(f"neuron index out of range: this model has neurons 0..{self.n_neurons - 1}, "
                             f"got {int(idx.min())}..{int(idx.max())}")
        if np.unique(idx).size != idx.size:
            raise ValueError("neuron indices repeat; pass each neuron once")
        return idx

    def evaluate(self, neurons=None, name: str = "") -> ProbeResult:
        """Train the probe on ``neurons`` (flat indices; None = all) and score it on dev and test."""
        idx = self.check_neurons(neurons)
        full = np.arange(self.n_neurons, dtype=np.int64) if idx is None else idx
        key = self._key(full)
        if key is not None:
            hit = self._load(key, full)
            if hit is not None:
                return hit
        probe = self._template(1, full.size, name)
        t0 = time.perf_counter()
        probe.fit(gather(self.train.X, idx), self.train.y)
        seconds = time.perf_counter() - t0
        self.n_fits += 1
        return self._finish(probe, full, idx, seconds, name)

    def _finish(self, probe, full: np.ndarray, idx, seconds: float, name: str, X_dev=None,
                X_test=None) -> ProbeResult:
        """Score a fitted probe on dev and test (columns ``idx`` of theirs, or ``X_dev`` and
        ``X_test`` when given), report it and keep it in the cache."""
        dev_scores = self._scores(probe, self.dev, idx, X_dev)
        test_scores = self._scores(probe, self.test, idx, X_test) if self.test is not None else {}
        metric = METRICS[self.metric][0]
        r = ProbeResult(full, float(dev_scores[metric]), float(test_scores.get(metric, np.nan)), dev_scores,
                        test_scores, np.asarray(probe.coef_), np.asarray(probe.intercept_), seconds)
        if self.progress:
            print(f"[probe] {name or f'{full.size} neurons'}: dev {self.metric} {r.dev:.4f}"
                  f"{'' if self.test is None else f', test {r.test:.4f}'} ({seconds:.1f}s)", flush=True)
        key = self._key(full)
        if key is not None:
            self._save(key, r)
        return r

    def test_interval(self, neurons=None, n_boot: int = 1000, confidence: float = 0.95,
                      seed: int = 0) -> tuple[float, float]:
        """95% percentile-bootstrap interval of the test score of the probe on ``neurons`` (the
        probe as trained, read from the cache when it was; the test items resampled; see
        :mod:`redundancy.methods.uncertainty`). The predictions are recomputed from the probe's weights
        and checked against its recorded test score."""
        from .uncertainty import bootstrap_interval

        if self.test is None:
            raise ValueError("test_interval needs a test split")
        r = self.evaluate(neurons)
        idx = self.check_neurons(neurons)
        p = clone(self.probe)
        p.coef_, p.n_features_in_ = r.coef, r.n_neurons
        if self.regression:
            p.intercept_ = float(np.ravel(r.intercept)[0])
        else:
            p.classes_, p.intercept_ = np.unique(self.train.y), np.ravel(r.intercept)
        pred = p.predict(gather(self.test.X, idx))
        got = scores(self.test.y, pred, label_names=self.label_names, regression=self.regression)[METRICS[self.metric][0]]
        if not (np.isclose(got, r.test, atol=1e-6) or (np.isnan(got) and np.isnan(r.test))):
            raise RuntimeError(f"recomputed test {self.metric} {got} differs from the probe's record {r.test}")
        return bootstrap_interval(self.test.y, pred, self.metric, n_boot, confidence, seed)

    def evaluate_many(self, neuron_sets, names=None) -> list[ProbeResult]:
        """:meth:`evaluate` for several neuron sets, the missing ones trained together.

        With the library's probes, the sets not in the cache are trained in one pass by
        :func:`~redundancy.methods.probe.fit_probes` (each as if alone: same initialisation, same
        mini-batches; the results equal :meth:`evaluate`'s up to the order of floating-point
        sums); any other estimator is fitted set by set. A probe's weights depend on the
        request, never on what happened to be cached: when only some of a request's sets are
        cached (a run killed while saving them), the pass trains the whole request again and
        keeps the missing ones, bit for bit what the uninterrupted run made.

        Parameters
        ----------
        neuron_sets : list of (array of int or None)
            None is the oracle (all neurons).
        names : list of str, optional
            For the progress lines.
        """
        idxs = [self.check_neurons(n) for n in neuron_sets]
        names = list(names) if names is not None else [""] * len(idxs)
        fulls = [np.arange(self.n_neurons, dtype=np.int64) if i is None else i for i in idxs]
        results, todo = [None] * len(idxs), []
        for j, full in enumerate(fulls):
            key = self._key(full)
            hit = self._load(key, full) if key is not None else None
            if hit is not None:
                results[j] = hit
            elif not any(np.array_equal(full, fulls[t]) for t in todo):
                todo.append(j)
        bank = isinstance(self.probe, (LinearProbe, LinearProbeRegressor))
        if bank and todo and len(todo) < len(idxs):
            # partly cached (a run killed while saving this request's probes): the pass
            # trains the whole request again, so that the missing probes share it with the
            # same probes as in an uninterrupted run (their floating-point sums depend on
            # it); the cached ones are kept as they were
            group = [j for j in range(len(fulls)) if not any(np.array_equal(fulls[j], fulls[t]) for t in range(j))]
        else:
            group = todo
        if len(group) > 1 and bank:
            t0 = time.perf_counter()
            template = self._template(len(group), max(fulls[j].size for j in group))
            fitted = fit_probes(template, self.train.X, self.train.y, [fulls[j] for j in group], gather=gather)
            each = (time.perf_counter() - t0) / len(group)  # the pass's time, shared out
            self.n_fits += len(group)
            views = shared_columns([fulls[j] for j in group], self.n_neurons)
            dev_u = gather(self.dev.X, views[0])
            test_u = gather(self.test.X, views[0]) if self.test is not None else None
            for j, probe, cols in zip(group, fitted, views[1]):
                if j in todo:
                    results[j] = self._finish(probe, fulls[j], idxs[j], each, names[j], X_dev=cols(dev_u),
                                              X_test=None if test_u is None else cols(test_u))
        else:
            for j in todo:
                results[j] = self.evaluate(idxs[j], name=names[j])
        for j, r in enumerate(results):  # repeated sets (a copy of a set trained or read at another position)
            if r is None:
                results[j] = next(results[t] for t in range(len(fulls))
                                  if results[t] is not None and np.array_equal(fulls[t], fulls[j]))
        return results

    def oracle(self) -> ProbeResult:
        """The probe on all neurons of all layers (the paper's oracle)."""
        return self.evaluate(None, name="oracle (all layers)")

    def layers(self, layers) -> ProbeResult:
        """The probe on whole layers concatenated (layer 0 = embeddings)."""
        layers = [int(l) for l in np.atleast_1d(layers)]
        for l in layers:
            if not 0 <= l < self.n_layers:
                raise ValueError(f"layer {l} out of range: this model has layers 0..{self.n_layers - 1}")
        return self.evaluate(layer_neurons(layers, self.hidden), name=f"layers {layers}")


def _interactive() -> bool:
    """A person is watching: standard error is a terminal, or this runs in a Jupyter kernel."""
    import sys

    if getattr(sys.stderr, "isatty", lambda: False)():
        return True
    try:  # a running Jupyter kernel (not merely ipykernel imported, as by papermill's client)
        from IPython import get_ipython
    except ImportError:
        return False
    return type(get_ipython()).__name__ == "ZMQInteractiveShell"


# --------------------------------------------------------------------------------------
# 6.1 layer-level task-specific redundancy

@dataclass
class LayerAnalysis:
    """Per-layer probes against the oracle (Figure 4, Table 7).

    Attributes
    ----------
    table : pandas.DataFrame
        One row per layer: ``layer``, ``dev``, ``test``, ``within_dev`` and ``within_test``
        (score > (1 - delta) * the oracle's on the same split), ``fit_seconds``.
    oracle : ProbeResult
    per_class : pandas.DataFrame
        Long form: ``probe`` ("oracle" or the layer), ``class``, ``split``, ``accuracy``
        (classification only; Figures 7-9).
    delta : float
    """

    table: pd.DataFrame
    oracle: ProbeResult
    per_class: pd.DataFrame
    delta: float
    results: dict = field(default_factory=dict, repr=False)

    @property
    def redundant_layers(self) -> list[int]:
        """Layers within ``delta`` of the oracle on test (the bold entries of Table 7)."""
        return [int(l) for l in self.table.loc[self.table.within_test, "layer"]]


def _per_class_rows(label, r: ProbeResult) -> list[dict]:
    rows = []
    for split, sc in (("dev", r.dev_scores), ("test", r.test_scores)):
        for cls, acc in sc.get("per_class_accuracy", {}).items():
            rows.append({"probe": label, "class": cls, "split": split, "accuracy": acc})
    return rows


def layer_analysis(ev: ProbeEvaluator, delta: float = 0.01, layers=None, prefixes: bool = False) -> LayerAnalysis:
    """A probe on every layer alone and the oracle on all layers (paper section 6.1).

    All of them are trained in one pass over the data (:meth:`ProbeEvaluator.evaluate_many`).

    Parameters
    ----------
    ev : ProbeEvaluator
    delta : float, default 0.01
        A layer is redundant for the task when it keeps ``1 - delta`` of the oracle's score
        (the paper: 99%, "within 1%").
    layers : iterable of int, optional
        Default: every layer.
    prefixes : bool, default False
        Also train layers ``0..l`` for every ``l`` in the same pass, so that
        :func:`layer_selector` and :func:`incremental_layer_analysis` find them in the cache.
    """
    delta = _check_delta(delta)
    layers = range(ev.n_layers) if layers is None else [int(l) for l in layers]
    for l in layers:
        if not 0 <= l < ev.n_layers:
            raise ValueError(f"layer {l} out of range: this model has layers 0..{ev.n_layers - 1}")
    sets = [None] + [layer_neurons([l], ev.hidden) for l in layers]
    names = ["oracle (all layers)"] + [f"layer {l}" for l in layers]
    if prefixes:  # layers 0..l, for LayerSelector: trained in the same pass
        sets += [layer_neurons(range(l + 1), ev.hidden) for l in range(ev.n_layers - 1)]
        names += [f"layers 0..{l}" for l in range(ev.n_layers - 1)]
    trained = ev.evaluate_many(sets, names)
    oracle = trained[0]
    rows, per_class, results = [], _per_class_rows("oracle", oracle), {"oracle": oracle}
    for l, r in zip(layers, trained[1:]):
        results[l] = r
        rows.append({"layer": l, "n_neurons": r.n_neurons, "dev": r.dev, "test": r.test,
                     "within_dev": within(r.dev, oracle.dev, delta),
                     "within_test": bool(np.isfinite(r.test) and within(r.test, oracle.test, delta)),
                     "fit_seconds": r.fit_seconds})
        per_class += _per_class_rows(l, r)
    return LayerAnalysis(pd.DataFrame(rows), oracle, pd.DataFrame(per_class), delta, results)


def incremental_layer_analysis(ev: ProbeEvaluator, upto=None) -> pd.DataFrame:
    """Probes on layers ``0..l`` concatenated, for every ``l`` (the reference's "incremental layerwise").

    Returns a DataFrame with ``top_layer``, ``n_neurons``, ``dev``, ``test``, ``fit_seconds``.
    """
    upto = ev.n_layers - 1 if upto is None else int(upto)
    rows = []
    trained = ev.evaluate_many([layer_neurons(range(l + 1), ev.hidden) for l in range(upto + 1)],
                               [f"layers 0..{l}" for l in range(upto + 1)])
    for l, r in enumerate(trained):
        rows.append({"top_layer": l, "n_neurons": r.n_neurons, "dev": r.dev, "test": r.test,
                     "fit_seconds": r.fit_seconds})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# 6.2 minimal neuron sets

@dataclass
class MinimalSet:
    """The smallest top-ranked neuron set on the grid that keeps the target score.

    Attributes
    ----------
    neurons : numpy.ndarray of int64
        Flat indices of the selected neurons, in rank order.
    k : int
    percentage : float or None
        The grid point (fraction of ``n_total``); None when no grid point reached the
        target and the whole candidate set is kept.
    dev, test : float
        Scores of the probe retrained on the selected neurons.
    reference_dev, reference_test : float
        Scores of the probe on all candidates (the oracle, or the clustered set in CCFS).
    target : float
        ``(1 - delta) * reference_dev``.
    found : bool
        Whether a grid point beat the target (False: all candidates are kept).
    trials : pandas.DataFrame
        Every grid point tried: ``percentage``, ``k``, ``dev``, ``test``, ``passed``.
    ranking : NeuronRanking
        The ranking of the candidates (indices into ``candidates``).
    candidates : numpy.ndarray
    """

    neurons: np.ndarray
    k: int
    percentage: float | None
    dev: float
    test: float
    reference_dev: float
    reference_test: float
    target: float
    delta: float
    found: bool
    trials: pd.DataFrame
    ranking: NeuronRanking
    candidates: np.ndarray
    result: ProbeResult | None = field(default=None, repr=False)


def minimal_neuron_set(ev: ProbeEvaluator, candidates=None, delta: float = 0.03, grid=MAX_FEATURES_GRID,
                       n_total: int | None = None, reference: ProbeResult | None = None,
                       search_stride: int = 1000, batch: int = 16) -> MinimalSet:
    """LCA ranking of ``candidates`` and the smallest top-k on ``grid`` within ``delta`` (section 6.2).

    A probe on all ``candidates`` (the *reference*: the oracle when the candidates are all
    neurons) gives the ranking and the reference dev score; then for every grid point
    ``p``, ``k = int(p * n_total)`` top neurons are retrained and the first ``k`` whose dev
    score beats ``(1 - delta) * reference_dev`` wins. If none does, all candidates are
    kept (``found=False``), as in the reference code.

    Parameters
    ----------
    ev : ProbeEvaluator
    candidates : array of int, optional
        Flat neuron indices to choose from (default: all neurons).
    delta : float, default 0.03
        Allowed relative drop on dev: the paper's text keeps 97% of the oracle (0.03); the
        reference code's pipeline uses 1% (0.01).
    grid : sequence of float, default MAX_FEATURES_GRID
        Percentages of ``n_total`` to try, in order.
    n_total : int, optional
        Neurons the percentages refer to; default all neurons of the network (as the
        reference code, also when the candidates are fewer).
    reference : ProbeResult, optional
        An already trained probe on exactly ``candidates`` (saves one fit).
    search_stride : int, default 1000
        Steps of the LCA ranking.
    batch : int, default 16
        Grid points trained together in one pass. The chosen ``k`` is the one-by-one
        search's (the first passing point in grid order); ``trials`` lists the points up to
        it, and the few trained beyond it stay in the probe cache.
    """
    delta = _check_delta(delta)
    cand = np.arange(ev.n_neurons, dtype=np.int64) if candidates is None else ev.check_neurons(candidates)
    n_total = ev.n_neurons if n_total is None else int(n_total)
    if reference is None:
        reference = ev.evaluate(None if candidates is None else cand, name="reference (all candidates)")
    elif not np.array_equal(reference.neurons, cand):
        raise ValueError("reference was trained on other neurons than candidates")
    ranking = lca_ranking(reference.coef, search_stride=search_stride)
    target = (1.0 - delta) * reference.dev
    trials, chosen = [], None
    sizes = grid_sizes(grid, n_total, cand.size)
    batch = max(1, int(batch))
    trained = {}
    for i, (p, k) in enumerate(sizes):
        neurons = cand[ranking.order[:k]]
        if k == cand.size:
            r = reference
        else:
            if k not in trained:  # the next few grid points, trained together in one pass
                chunk = [(pp, kk) for pp, kk in sizes[i:i + batch] if kk != cand.size]
                got = ev.evaluate_many([cand[ranking.order[:kk]] for _, kk in chunk],
                                       [f"top {kk} ({100 * pp:.1f}%)" for pp, kk in chunk])
                trained.update(zip([kk for _, kk in chunk], got))
            r = trained[k]
        passed = r.dev > target
        trials.append({"percentage": p, "k": k, "dev": r.dev, "test": r.test, "passed": passed,
                       "fit_seconds": r.fit_seconds})
        if passed:
            chosen = (p, k, neurons, r)
            break
    if chosen is None:
        chosen = (None, cand.size, cand[ranking.order], reference)
    p, k, neurons, r = chosen
    return MinimalSet(neurons=np.asarray(neurons), k=int(k), percentage=p, dev=r.dev, test=r.test,
                      reference_dev=reference.dev, reference_test=reference.test, target=target, delta=delta,
                      found=p is not None,
                      trials=pd.DataFrame(trials, columns=["percentage", "k", "dev", "test", "passed",
                                                           "fit_seconds"]),
                      ranking=ranking, candidates=cand, result=r)


# --------------------------------------------------------------------------------------
# 7 LayerSelector + CCFS

@dataclass
class LayerSelection:
    """LayerSelector's choice: layers ``0..top_layer``.

    Attributes
    ----------
    top_layer : int
    dev, test : float
        Scores of the probe on layers ``0..top_layer``.
    oracle : ProbeResult
    curve : pandas.DataFrame
        The incremental probes evaluated (``top_layer``, ``dev``, ``test``, ``passed``).
    found : bool
        False when no prefix beat the target and all layers are kept (as the reference).
    """

    top_layer: int
    dev: float
    test: float
    oracle: ProbeResult
    target: float
    delta: float
    curve: pd.DataFrame
    found: bool

    @property
    def n_layers(self) -> int:
        return self.top_layer + 1


def layer_selector(ev: ProbeEvaluator, delta: float = 0.01, oracle: ProbeResult | None = None,
                   full_curve: bool = False, batch: int = 4) -> LayerSelection:
    """The lowest layer ``l`` whose prefix ``0..l`` beats ``(1 - delta)`` times the oracle on dev.

    Parameters
    ----------
    ev : ProbeEvaluator
    delta : float, default 0.01
        The paper's LS threshold (1%).
    oracle : ProbeResult, optional
        The probe on all layers, if already trained.
    full_curve : bool, default False
        Train every prefix (the reference code does, for its report); by default stop at
        the first that passes.
    batch : int, default 4
        Prefixes trained together in one pass (the choice is the same as one by one; a
        larger batch may train a few prefixes beyond the chosen one).
    """
    delta = _check_delta(delta)
    oracle = ev.oracle() if oracle is None else oracle
    target = (1.0 - delta) * oracle.dev
    rows, chosen = [], None
    prefixes = list(range(ev.n_layers - 1))
    # prefixes are trained a few at a time (one pass each), in order, until one passes
    batch = len(prefixes) if full_curve else max(1, int(batch))
    trained = {}
    for l in range(ev.n_layers):
        if l == ev.n_layers - 1:
            r = oracle
        else:
            if l not in trained:
                chunk = prefixes[l:l + batch]
                got = ev.evaluate_many([layer_neurons(range(c + 1), ev.hidden) for c in chunk],
                                       [f"layers 0..{c}" for c in chunk])
                trained.update(zip(chunk, got))
            r = trained[l]
        passed = r.dev > target
        rows.append({"top_layer": l, "n_neurons": r.n_neurons, "dev": r.dev, "test": r.test, "passed": passed})
        if passed and chosen is None:
            chosen = (l, r)
            if not full_curve:
                break
    found = chosen is not None
    if not found:
        chosen = (ev.n_layers - 1, oracle)
    l, r = chosen
    return LayerSelection(l, r.dev, r.test, oracle, target, delta, pd.DataFrame(rows), found)


@dataclass
class CCFSResult:
    """Correlation clustering + feature selection on LayerSelector's layers."""

    top_layer: int
    threshold: float
    clustered: np.ndarray          # flat indices of the cluster representatives
    clustered_result: ProbeResult  # the probe on them (the CCFS reference score)
    selection: MinimalSet
    clustering: CorrelationClustering = field(repr=False)

    @property
    def neurons(self) -> np.ndarray:
        return self.selection.neurons


def ccfs(ev: ProbeEvaluator, top_layer: int, threshold: float = 0.3, delta: float = 0.01, grid=PIPELINE_GRID,
         representative: str = "random", random_state=0, n_total: int | None = None,
         search_stride: int = 1000, memory=None) -> CCFSResult:
    """CCFS (section 7): cluster layers ``0..top_layer``, keep one neuron per cluster, then LCA + grid.

    The clustering runs on the training activations of the selected layers only; its
    representatives index *those* columns, which this function maps back to flat neuron
    indices before anything else is read. (The reference code clusters, in a loop over
    thresholds, whatever matrix the previous iteration left in its variable, and applies
    the resulting indices to the layer-selected matrix: right only for its default
    threshold list ``[-1, 0.3]``. See the methods page.)

    Parameters
    ----------
    ev : ProbeEvaluator
    top_layer : int
        LayerSelector's layer (layers ``0..top_layer`` are used).
    threshold : float, default 0.3
        ``c_t`` of the correlation clustering.
    delta : float, default 0.01
        Allowed relative drop from the clustered set's dev score (the paper: 1%).
    grid : sequence of float, default PIPELINE_GRID
        Percentages of ``n_total`` (all neurons of the network, as the reference).
    representative, random_state, memory
        Passed to :class:`~redundancy.methods.clustering.CorrelationClustering` (``memory``: a
        folder that caches the clustering tree).
    """
    if not 0 <= int(top_layer) < ev.n_layers:
        raise ValueError(f"top_layer {top_layer} out of range 0..{ev.n_layers - 1}")
    layer_idx = layer_neurons(range(int(top_layer) + 1), ev.hidden)
    cc = CorrelationClustering(threshold=threshold, representative=representative, random_state=random_state,
                               memory=memory)
    cc.fit(gather(ev.train.X, layer_idx))
    clustered = layer_idx[cc.representatives_]
    base = ev.evaluate(clustered, name=f"clustered (c_t={threshold}, {clustered.size} neurons)")
    sel = minimal_neuron_set(ev, clustered, delta=delta, grid=grid, n_total=n_total, reference=base,
                             search_stride=search_stride)
    return CCFSResult(int(top_layer), float(threshold), clustered, base, sel, cc)


def ls_ccfs(ev: ProbeEvaluator, delta_ls: float = 0.01, delta_ccfs: float = 0.01, threshold: float = 0.3,
            grid=PIPELINE_GRID, representative: str = "random", random_state=0,
            oracle: ProbeResult | None = None, memory=None) -> dict:
    """LayerSelector then CCFS (section 7): one row of Tables 9 and 10.

    Returns
    -------
    dict
        ``oracle_dev``, ``oracle_test``, ``oracle_neurons``; ``ls_layers`` (number of layers
        kept, embeddings included), ``ls_top_layer``, ``ls_dev``, ``ls_test``, ``ls_neurons``;
        ``cc_neurons`` (after clustering), ``cc_dev``, ``cc_test``; ``ccfs_neurons``,
        ``ccfs_dev``, ``ccfs_test``, ``ccfs_found``; ``reduction`` (1 - ccfs_neurons /
        oracle_neurons); and the objects under ``"_layer_selection"`` and ``"_ccfs"``.
    """
    sel = layer_selector(ev, delta=delta_ls, oracle=oracle)
    c = ccfs(ev, sel.top_layer, threshold=threshold, delta=delta_ccfs, grid=grid,
             representative=representative, random_state=random_state, memory=memory)
    return {"oracle_dev": sel.oracle.dev, "oracle_test": sel.oracle.test, "oracle_neurons": ev.n_neurons,
            "ls_layers": sel.n_layers, "ls_top_layer": sel.top_layer, "ls_dev": sel.dev, "ls_test": sel.test,
            "ls_neurons": sel.n_layers * ev.hidden, "ls_found": sel.found,
            "cc_neurons": int(c.clustered.size), "cc_dev": c.clustered_result.dev,
            "cc_test": c.clustered_result.test,
            "ccfs_neurons": c.selection.k, "ccfs_dev": c.selection.dev, "ccfs_test": c.selection.test,
            "ccfs_found": c.selection.found, "reduction": 1.0 - c.selection.k / ev.n_neurons,
            "delta_ls": sel.delta, "delta_ccfs": c.selection.delta, "threshold": c.threshold,
            "_layer_selection": sel, "_ccfs": c}
