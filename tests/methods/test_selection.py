"""Task-specific analyses on synthetic data with known answers: layers, minimal sets, LS + CCFS."""

import numpy as np
import pytest

from redundancy.methods.probe import LinearProbe, LinearProbeRegressor
from redundancy.methods.selection import (MAX_FEATURES_GRID, PIPELINE_GRID, ProbeEvaluator, ccfs, grid_sizes,
                                  incremental_layer_analysis, layer_analysis, layer_neurons, layer_selector,
                                  ls_ccfs, minimal_neuron_set, within)

FAST = LinearProbe(epochs=8, learning_rate=1e-2, random_state=0)


def split(rng, n, d, informative, weights):
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = (X[:, informative] @ weights > 0).astype(np.int64)
    return X, y


@pytest.fixture(scope="module")
def k_signal():
    """100 neurons (one 'layer'), of which exactly 5 carry the label, with equal weights."""
    rng = np.random.default_rng(0)
    informative = np.array([3, 17, 42, 66, 90])
    w = np.ones(5)
    return [split(rng, n, 100, informative, w) for n in (4000, 2000, 2000)], informative


def layered(seed=0, n_layers=6, hidden=8, signal_from=3, n=(3000, 1500, 1500)):
    """Layers 0..signal_from-1 are noise; from ``signal_from`` on, every layer encodes the label."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(4)
    out = []
    for rows in n:
        z = rng.standard_normal((rows, 4))
        y = (z @ w > 0).astype(np.int64)
        X = np.empty((rows, n_layers, hidden), dtype=np.float32)
        for l in range(n_layers):
            if l < signal_from:
                X[:, l] = rng.standard_normal((rows, hidden))
            else:
                A = np.random.default_rng(100 + l).standard_normal((4, hidden))
                X[:, l] = z @ A + 0.01 * rng.standard_normal((rows, hidden))
        out.append((X, y))
    return out


def test_grids_are_the_reference_code_grids():
    assert len(MAX_FEATURES_GRID) == 100 + 8 + 4 and MAX_FEATURES_GRID[:3] == (0.001, 0.002, 0.003)
    assert MAX_FEATURES_GRID[99] == 0.1 and MAX_FEATURES_GRID[100:] == (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45,
                                                                      0.5, 0.6, 0.7, 0.8, 0.9)
    assert PIPELINE_GRID[:6] == (0.001, 0.002, 0.003, 0.004, 0.005, 0.01) and len(PIPELINE_GRID) == 27
    # k = int(p * N) as the reference: 0.3% of BERT's 9,984 neurons is 29, not 30
    assert dict(grid_sizes(MAX_FEATURES_GRID, 9984))[0.003] == 29
    sizes = grid_sizes(PIPELINE_GRID, 9984, n_available=2304)
    assert max(k for _, k in sizes) <= 2304 and len({k for _, k in sizes}) == len(sizes)
    assert all(k > 0 for _, k in grid_sizes(MAX_FEATURES_GRID, 100))


def test_within_is_relative_and_strict():
    assert within(0.95, 0.96, 0.02) and not within(0.9503, 0.96, 0.01)
    assert not within(0.99, 1.0, 0.01)  # exactly (1 - delta) * ref does not pass (reference: '>')
    with pytest.raises(ValueError, match="fraction in"):
        within(0.5, 0.5, 1.5)


def test_minimal_set_finds_about_k(k_signal):
    (tr, dv, te), informative = k_signal
    ev = ProbeEvaluator(tr, dv, te, probe=FAST)
    ms = minimal_neuron_set(ev, delta=0.03)
    assert ms.found and ms.reference_dev > 0.95
    assert 4 <= ms.k <= 6, ms.trials
    assert set(informative) <= set(ms.neurons.tolist()) or ms.k == 4
    assert ms.dev > ms.target == pytest.approx(0.97 * ms.reference_dev)
    # every trial before the winner failed, and k grows along the grid
    assert not ms.trials.passed.iloc[:-1].any() and ms.trials.passed.iloc[-1]
    assert ms.trials.k.is_monotonic_increasing


def test_minimal_set_keeps_all_when_target_unreachable(k_signal):
    (tr, dv, te), _ = k_signal
    ev = ProbeEvaluator(tr, dv, te, probe=FAST)
    ms = minimal_neuron_set(ev, delta=0.0, grid=(0.01, 0.02))
    assert not ms.found and ms.k == 100 and ms.percentage is None
    assert len(ms.trials) == 2


def test_layer_selector_picks_the_layer_where_signal_appears():
    tr, dv, te = layered(signal_from=3)
    ev = ProbeEvaluator(tr, dv, te, probe=FAST)
    sel = layer_selector(ev, delta=0.01, full_curve=True)
    assert sel.found and sel.top_layer == 3 and sel.n_layers == 4
    assert sel.curve.loc[sel.curve.top_layer < 3, "dev"].max() < 0.7
    assert len(sel.curve) == 6
    # without the full curve it stops at the first prefix that passes
    assert len(layer_selector(ev, delta=0.01).curve) == 4


def test_layer_analysis_flags_the_informative_layers():
    tr, dv, te = layered(signal_from=3)
    ev = ProbeEvaluator(tr, dv, te, probe=FAST)
    la = layer_analysis(ev, delta=0.02)
    assert la.table.layer.tolist() == list(range(6))
    assert la.table.within_dev.tolist() == [False, False, False, True, True, True]
    assert la.redundant_layers == [3, 4, 5]
    # per-class scores: two classes x (oracle + 6 layers) x (dev, test), equal to recall
    assert len(la.per_class) == 2 * 7 * 2
    o = la.per_class[(la.per_class.probe == "oracle") & (la.per_class.split == "dev")]
    assert set(o["class"]) == {0, 1} and o.accuracy.between(0, 1).all()
    inc = incremental_layer_analysis(ev, upto=3)
    assert inc.n_neurons.tolist() == [8, 16, 24, 32]


def test_ccfs_collapses_planted_duplicates_and_ls_ccfs_reports():
    tr, dv, te = layered(signal_from=1, n_layers=3, hidden=8)
    # layer 2 duplicates layer 1 exactly: clustering keeps one of each pair
    for X, _ in (tr, dv, te):
        X[:, 2] = X[:, 1]
    ev = ProbeEvaluator(tr, dv, te, probe=FAST)
    c = ccfs(ev, top_layer=2, threshold=0.05, delta=0.01, grid=(0.05, 0.1, 0.2, 0.3, 0.5))
    dup_pairs = [(8 + u, 16 + u) for u in range(8)]
    kept = set(c.clustered.tolist())
    assert all(len(kept & set(p)) == 1 for p in dup_pairs)
    assert set(range(8)) <= kept  # noise neurons are not correlated: all kept
    assert set(c.neurons.tolist()) <= kept
    rep = ls_ccfs(ev, threshold=0.05, grid=(0.05, 0.1, 0.2, 0.3, 0.5))
    assert rep["ls_top_layer"] == 1 and rep["ls_neurons"] == 16
    assert rep["ccfs_neurons"] <= rep["cc_neurons"] <= rep["ls_neurons"] <= rep["oracle_neurons"] == 24
    assert rep["reduction"] == pytest.approx(1 - rep["ccfs_neurons"] / 24)
    if rep["ccfs_found"]:
        assert rep["ccfs_dev"] > 0.99 * rep["cc_dev"]


def test_evaluator_on_store_entries_and_cache_resumes(tmp_path, k_signal):
    (tr, dv, te), _ = k_signal
    ev = ProbeEvaluator(tr, dv, te, probe=FAST, cache_dir=tmp_path / "probes", data_key="k-signal")
    a = ev.evaluate([3, 17, 42])
    assert ev.n_fits == 1 and not a.cached
    ev2 = ProbeEvaluator(tr, dv, te, probe=FAST, cache_dir=tmp_path / "probes", data_key="k-signal")
    b = ev2.evaluate([3, 17, 42])
    assert ev2.n_fits == 0 and b.cached and b.dev == a.dev and np.array_equal(b.coef, a.coef)
    # another seed is another key
    ev3 = ProbeEvaluator(tr, dv, te, probe=LinearProbe(epochs=8, learning_rate=1e-2, random_state=1),
                         cache_dir=tmp_path / "probes", data_key="k-signal")
    ev3.evaluate([3, 17, 42])
    assert ev3.n_fits == 1
    # a damaged cache file is recomputed, not trusted
    for f in (tmp_path / "probes").glob("*.npz"):
        f.write_bytes(b"garbage")
    ev4 = ProbeEvaluator(tr, dv, te, probe=FAST, cache_dir=tmp_path / "probes", data_key="k-signal")
    assert ev4.evaluate([3, 17, 42]).dev == a.dev and ev4.n_fits == 1


@pytest.mark.parametrize("damage", ["edited metadata", "same-size npz edit", "truncated npz"])
def test_damaged_probe_cache_is_detected_and_recomputed(tmp_path, k_signal, damage, capsys, plant_damage):
    (tr, dv, te), _ = k_signal
    ev = ProbeEvaluator(tr, dv, te, probe=FAST, cache_dir=tmp_path, data_key="k-signal")
    a = ev.evaluate([3, 17, 42])
    plant_damage(next(tmp_path.glob("*.json")), next(tmp_path.glob("*.npz")), damage, field="dev")
    ev2 = ProbeEvaluator(tr, dv, te, probe=FAST, cache_dir=tmp_path, data_key="k-signal")
    b = ev2.evaluate([3, 17, 42])
    assert ev2.n_fits == 1 and not b.cached and b.dev == a.dev
    assert "probe cache entry" in capsys.readouterr().out
    ev3 = ProbeEvaluator(tr, dv, te, probe=FAST, cache_dir=tmp_path, data_key="k-signal")
    assert ev3.evaluate([3, 17, 42]).cached and ev3.n_fits == 0  # the recomputed entry is whole again


def test_same_seed_same_selection(k_signal):
    (tr, dv, te), _ = k_signal
    runs = [minimal_neuron_set(ProbeEvaluator(tr, dv, te, probe=FAST), delta=0.03) for _ in range(2)]
    assert runs[0].k == runs[1].k and np.array_equal(runs[0].neurons, runs[1].neurons)
    assert runs[0].dev == runs[1].dev


def test_regression_uses_pearson():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((1500, 2, 5)).astype(np.float32)
    y = X[:, 1, 0] * 2.0 + 0.1 * rng.standard_normal(1500)
    ev = ProbeEvaluator((X[:1000], y[:1000]), (X[1000:], y[1000:]),
                        probe=LinearProbeRegressor(epochs=30, learning_rate=1e-2))
    assert ev.regression and ev.metric == "pearson"
    assert ProbeEvaluator((X[:1000], y[:1000]), (X[1000:], y[1000:])).regression  # chosen from the labels
    assert ev.layers([1]).dev > 0.95 > ev.layers([0]).dev


def test_bad_parameters_give_clear_errors(k_signal):
    (tr, dv, te), _ = k_signal
    ev = ProbeEvaluator(tr, dv, te, probe=FAST)
    with pytest.raises(ValueError, match="empty neuron set"):
        ev.evaluate([])
    with pytest.raises(ValueError, match="out of range"):
        ev.evaluate([5, 100])
    with pytest.raises(ValueError, match="repeat"):
        ev.evaluate([5, 5])
    with pytest.raises(ValueError, match="delta must be a fraction"):
        minimal_neuron_set(ev, delta=-0.1)
    with pytest.raises(ValueError, match="delta must be a fraction"):
        layer_selector(ev, delta=2)
    with pytest.raises(ValueError, match="layer 3 out of range"):
        ev.layers([3])
    with pytest.raises(ValueError, match="unknown metric"):
        ProbeEvaluator(tr, dv, metric="auc")
    with pytest.raises(ValueError, match="for regression"):
        ProbeEvaluator(tr, dv, metric="pearson")
    with pytest.raises(ValueError, match="neurons but train"):
        ProbeEvaluator(tr, (dv[0][:, :50], dv[1]))
    with pytest.raises(ValueError, match="n_layers=3"):
        ProbeEvaluator(tr, dv, n_layers=3)
    one_class = (tr[0], np.zeros_like(tr[1]))
    with pytest.raises(ValueError, match="one-class task"):
        ProbeEvaluator(one_class, dv).evaluate([1, 2])
    with pytest.raises(ValueError, match="fractions in"):
        grid_sizes([0.0, 0.5], 100)


def test_layer_neurons_are_flat_indices():
    assert layer_neurons([0, 2], 3).tolist() == [0, 1, 2, 6, 7, 8]


# ---------------------------------------------------------------------------------------------
# training together gives what training one by one gives

def _one_by_one(ev):
    """The same evaluator with a probe fit_probes does not batch: every set fitted alone."""
    from sklearn.base import BaseEstimator, ClassifierMixin, clone as _clone

    class Alone(ClassifierMixin, BaseEstimator):
        def __init__(self, inner=None):
            self.inner = inner

        def fit(self, X, y):
            self.probe_ = _clone(self.inner).fit(X, y)
            self.coef_, self.intercept_, self.classes_ = (self.probe_.coef_, self.probe_.intercept_,
                                                          self.probe_.classes_)
            return self

        def predict(self, X):
            return self.probe_.predict(X)

    return ProbeEvaluator((ev.train.X, ev.train.y), (ev.dev.X, ev.dev.y), (ev.test.X, ev.test.y),
                          probe=Alone(ev.probe), n_layers=ev.n_layers)


def test_evaluate_many_equals_evaluate_and_uses_the_cache(tmp_path):
    tr, dv, te = layered(signal_from=3)
    ev = ProbeEvaluator(tr, dv, te, probe=FAST, cache_dir=tmp_path, data_key="layered")
    sets = [None, layer_neurons([2], 8), layer_neurons([0, 1, 2, 3], 8), np.array([47, 3, 30]), None]
    many = ev.evaluate_many(sets)
    assert ev.n_fits == 4  # the repeated oracle is trained once
    assert many[0] is many[4]
    alone = _one_by_one(ev)
    for s, r in zip(sets, many):
        a = alone.evaluate(s)
        assert r.dev == pytest.approx(a.dev, abs=1e-3) and r.test == pytest.approx(a.test, abs=1e-3)
        np.testing.assert_allclose(r.coef, a.coef, atol=1e-5)
    again = ProbeEvaluator(tr, dv, te, probe=FAST, cache_dir=tmp_path, data_key="layered")
    assert [r.dev for r in again.evaluate_many(sets)] == [r.dev for r in many] and again.n_fits == 0


def test_batched_searches_choose_what_one_by_one_searches_choose(k_signal):
    (tr, dv, te), _ = k_signal
    ev = ProbeEvaluator(tr, dv, te, probe=FAST)
    batched = minimal_neuron_set(ev, delta=0.03, batch=16)
    single = minimal_neuron_set(_one_by_one(ev), delta=0.03)
    assert batched.k == single.k and np.array_equal(batched.neurons, single.neurons)
    pd_cols = ["percentage", "k", "passed"]
    assert batched.trials[pd_cols].equals(single.trials[pd_cols])
    np.testing.assert_allclose(batched.trials.dev, single.trials.dev, atol=2e-3)

    lt = layered(signal_from=3)
    lev = ProbeEvaluator(*lt, probe=FAST)
    for b in (1, 2, 4):
        sel = layer_selector(lev, delta=0.01, batch=b)
        assert sel.top_layer == 3 and len(sel.curve) == 4
    ref = layer_selector(_one_by_one(lev), delta=0.01)
    assert ref.top_layer == 3 and sel.dev == pytest.approx(ref.dev, abs=2e-3)


def test_layer_analysis_with_prefixes_fills_the_cache_for_layer_selector(tmp_path):
    tr, dv, te = layered(signal_from=3)
    ev = ProbeEvaluator(tr, dv, te, probe=FAST, cache_dir=tmp_path, data_key="layered")
    layer_analysis(ev, prefixes=True)
    fits = ev.n_fits
    assert fits == 1 + 6 + 4  # oracle, six layers, prefixes 0..1 .. 0..4 (0..0 is layer 0)
    layer_selector(ev, full_curve=True)
    incremental_layer_analysis(ev)
    assert ev.n_fits == fits


def test_standardized_probe_equals_a_probe_on_sklearn_scaled_features(tmp_path):
    """standardize=True is StandardScaler fitted on train, applied to every split; the cache
    keeps the two kinds of probe apart."""
    from sklearn.preprocessing import StandardScaler

    from redundancy.methods.selection import ProbeEvaluator

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 12)).astype(np.float32) * np.linspace(1e-3, 3, 12, dtype=np.float32) + 5
    X[:, 3] = 2.0  # a constant neuron: centred, not divided by zero
    y = (X[:, 0] * 1000 + X[:, 5] > 5000 + 5).astype(np.int64)
    tr, dv, te = slice(0, 200), slice(200, 250), slice(250, 300)
    sc = StandardScaler().fit(X[tr])
    Z = sc.transform(X).astype(np.float32)
    ours = ProbeEvaluator((X[tr], y[tr]), (X[dv], y[dv]), (X[te], y[te]), standardize=True, random_state=3)
    ref = ProbeEvaluator((Z[tr], y[tr]), (Z[dv], y[dv]), (Z[te], y[te]), random_state=3)
    np.testing.assert_allclose(ours.standardization["mean"], sc.mean_, rtol=1e-6)
    np.testing.assert_allclose(ours.standardization["std"], np.sqrt(sc.var_), rtol=1e-5, atol=1e-9)
    a, b = ours.oracle(), ref.oracle()
    assert a.dev == pytest.approx(b.dev) and a.test == pytest.approx(b.test)
    np.testing.assert_allclose(a.coef, b.coef, atol=1e-4)
    # cached apart: the same data with and without standardization give two entries
    raw = ProbeEvaluator((X[tr], y[tr]), (X[dv], y[dv]), (X[te], y[te]), cache_dir=tmp_path, data_key="d")
    std = ProbeEvaluator((X[tr], y[tr]), (X[dv], y[dv]), (X[te], y[te]), cache_dir=tmp_path, data_key="d",
                         standardize=True)
    raw.oracle(), std.oracle()
    assert raw.n_fits == 1 and std.n_fits == 1 and len(list(tmp_path.glob("*.npz"))) == 2


def test_a_result_prints_its_scores_not_its_weights_and_ranks_like_its_weights(k_signal):
    from redundancy.methods.ranking import lca_ranking

    (tr, dv, te), _ = k_signal
    r = ProbeEvaluator(tr, dv, te, probe=FAST).evaluate([3, 17, 42])
    text = repr(r)
    assert text.startswith("ProbeResult(3 neurons, dev ") and "trained in" in text and "[" not in text
    np.testing.assert_array_equal(lca_ranking(r).order, lca_ranking(r.coef).order)


def test_a_resumed_request_trains_every_probe_in_the_grouping_of_an_uninterrupted_one(tmp_path):
    """Nested prefixes share column blocks in one pass, so a probe's floating-point sums
    depend on which probes trained beside it. A request whose probes are partly cached (a run
    killed while saving them) trains the whole request again, in the grouping an
    uninterrupted run used: the missing probes' weights are bit for bit the uninterrupted
    run's, and the cached ones are kept as they were."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((1200, 300)).astype(np.float32)
    y = (X[:, :40].sum(1) + X[:, 150:190].sum(1) > 0).astype(np.int64)
    data = (X[:800], y[:800]), (X[800:1000], y[800:1000]), (X[1000:], y[1000:])
    sets = [np.arange(100), np.arange(200), np.arange(300)]

    def evaluator(folder):
        return ProbeEvaluator(*data, probe=FAST, cache_dir=folder, data_key="prefixes", n_layers=1)

    whole = evaluator(tmp_path / "whole").evaluate_many(sets)
    alone = evaluator(tmp_path / "alone").evaluate(sets[2])
    assert not np.array_equal(alone.coef, whole[2].coef)  # the grouping matters to the last bits
    resumed_cache = tmp_path / "resumed"
    evaluator(resumed_cache).evaluate_many(sets)
    key = evaluator(resumed_cache)._key(sets[2])
    for f in resumed_cache.glob(key + ".*"):  # killed before the third probe was saved
        f.unlink()
    ev = evaluator(resumed_cache)
    resumed = ev.evaluate_many(sets)
    assert ev.n_fits == 3  # the whole request trained again, in its own grouping
    assert [r.cached for r in resumed] == [True, True, False]
    for a, b in zip(resumed, whole):
        assert np.array_equal(a.coef, b.coef) and np.array_equal(a.intercept, b.intercept)


def test_progress_says_when_training_starts_and_each_epoch(capsys, k_signal):
    (tr, dv, te), _ = k_signal
    ev = ProbeEvaluator(tr, dv, te, probe=FAST, n_layers=1, progress=True)
    ev.evaluate_many([np.arange(10), np.arange(20)], ["a", "b"])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "[probe] training 2 probes in one pass: 4,000 rows x up to 20 neurons, 8 epochs"
    assert sum(" epoch " in line and "/8: mean loss" in line for line in out) == 8
    assert out[-2].startswith("[probe] a: dev accuracy") and out[-1].startswith("[probe] b: dev accuracy")
    # off by default where nobody watches (pytest's captured output is no terminal)
    quiet = ProbeEvaluator(tr, dv, te, probe=FAST, n_layers=1)
    assert not quiet.progress
    quiet.evaluate(np.arange(5))
    assert capsys.readouterr().out == ""


def test_repeated_sets_in_a_request_get_one_result(tmp_path):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((600, 40)).astype(np.float32)
    y = (X[:, :5].sum(1) > 0).astype(np.int64)
    ev = ProbeEvaluator((X[:400], y[:400]), (X[400:500], y[400:500]), (X[500:], y[500:]), probe=FAST,
                        cache_dir=tmp_path, data_key="rep", n_layers=1)
    a, b = np.arange(10), np.arange(20)
    first = ev.evaluate_many([a, b, a])
    assert first[0] is first[2] and ev.n_fits == 2
    again = ev.evaluate_many([a, b, a])  # from the cache
    assert all(r is not None and r.cached for r in again) and np.array_equal(again[2].coef, first[0].coef)
