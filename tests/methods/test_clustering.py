"""Tests of correlation clustering (redundancy.methods.clustering), Dalvi et al. (2020) section 5.2.

References are computed here independently: np.corrcoef on the whole matrix, NaN -> 0,
1 - |corr|, scipy linkage(method="average") and fcluster(criterion="distance"), as the
authors' code does, and brute-force medoids.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from sklearn.base import clone
from sklearn.metrics import adjusted_rand_score

from redundancy.methods.clustering import (CorrelationClustering, cluster_makeup, cluster_representatives,
                                   correlation_clusters, correlation_distance, correlation_linkage,
                                   layer_of_neuron, neuron_correlation)


# --------------------------------------------------------------------------------------
# helpers

def correlated_data(rows=300, neurons=40, factors=6, seed=0, dtype=np.float32):
    """Neurons mixing a few shared factors, so that correlations span a wide range."""
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((rows, factors))
    w = rng.standard_normal((factors, neurons)) * rng.uniform(0.2, 2.0, neurons)
    x = f @ w + rng.standard_normal((rows, neurons)) * rng.uniform(0.3, 2.0, neurons)
    return (x + rng.uniform(-3, 3, neurons)).astype(dtype)


def reference_labels(X, t):
    """The authors' recipe, in float64 on the whole matrix."""
    corr = np.corrcoef(np.asarray(X, dtype=np.float64), rowvar=False)
    corr[np.isnan(corr)] = 0
    d = 1 - np.abs(corr)
    np.fill_diagonal(d, 0)
    d = np.clip((d + d.T) / 2, 0, None)
    return fcluster(linkage(squareform(d, checks=False), method="average"), t=t, criterion="distance")


def partition(labels):
    """A partition as a set of frozensets of neuron indices (label values do not matter)."""
    labels = np.asarray(labels)
    return {frozenset(np.flatnonzero(labels == v).tolist()) for v in np.unique(labels)}


def planted(rows=500, seed=0, dead=False):
    """10 independent base signals, each with an exact, a noisy, a negated and a
    rescaled copy; returns X and the expected partition."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((rows, 10))
    cols, groups = [], []
    for k in range(10):
        b = base[:, k]
        copies = [b, b.copy(), b + 0.1 * rng.standard_normal(rows), -b, 3.0 * b - 7.0]
        groups.append(list(range(len(cols), len(cols) + len(copies))))
        cols.extend(copies)
    if dead:
        groups.append([len(cols)])
        cols.append(np.full(rows, 2.5))
    X = np.column_stack(cols).astype(np.float32)
    # shuffle the columns so the clusters are not contiguous
    perm = rng.permutation(X.shape[1])
    inv = np.argsort(perm)
    X = X[:, perm]
    groups = [sorted(inv[g].tolist()) for g in groups]
    return X, {frozenset(g) for g in groups}


# --------------------------------------------------------------------------------------
# correlation

@pytest.mark.parametrize("chunk", [7, 64, 8192, None])
def test_correlation_equals_corrcoef(chunk):
    X = correlated_data(rows=301, neurons=37, seed=1)
    corr, dead = neuron_correlation(X, chunk=chunk)
    ref = np.corrcoef(X.astype(np.float64), rowvar=False)
    assert corr.dtype == np.float32 and corr.shape == (37, 37)
    np.testing.assert_allclose(corr, ref, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(corr, corr.T)
    np.testing.assert_array_equal(np.diag(corr), 1)
    assert dead.size == 0


def test_correlation_float64_and_large_offset():
    # activations with a mean far from 0: the one-pass formula must not lose digits
    X = correlated_data(rows=200, neurons=12, seed=2, dtype=np.float64) + 1e4
    corr, _ = neuron_correlation(X, chunk=33, dtype=np.float64)
    assert corr.dtype == np.float64
    np.testing.assert_allclose(corr, np.corrcoef(X, rowvar=False), atol=1e-10, rtol=0)


def test_correlation_float16_memmap(tmp_path):
    X = correlated_data(rows=250, neurons=20, seed=3).astype(np.float16)
    path = tmp_path / "acts.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    assert isinstance(mm, np.memmap) and mm.dtype == np.float16
    corr, dead = neuron_correlation(mm, chunk=16)
    ref = np.corrcoef(X.astype(np.float64), rowvar=False)
    np.testing.assert_allclose(corr, ref, atol=1e-5, rtol=0)
    assert dead.size == 0


def test_correlation_of_store_layout_flat_view():
    # a (rows, layers, hidden) array flattened as Activations.flat() does
    A = correlated_data(rows=120, neurons=3 * 5, seed=4).reshape(120, 3, 5)
    flat = A.reshape(120, 15)
    corr, _ = neuron_correlation(flat, chunk=50)
    # neuron layer * hidden + unit
    ref = np.corrcoef(A[:, 2, 1].astype(np.float64), A[:, 0, 4].astype(np.float64))[0, 1]
    assert corr[2 * 5 + 1, 0 * 5 + 4] == pytest.approx(ref, abs=1e-5)


def test_dead_neurons_policy():
    X = correlated_data(rows=100, neurons=8, seed=5)
    X[:, 2] = 0.0
    X[:, 6] = 3.25
    corr, dead = neuron_correlation(X, chunk=30)
    np.testing.assert_array_equal(dead, [2, 6])
    for k in (2, 6):
        assert corr[k, k] == 1
        np.testing.assert_array_equal(np.delete(corr[k], k), 0)
        np.testing.assert_array_equal(np.delete(corr[:, k], k), 0)
    # the other entries are np.corrcoef's, whose NaNs are the dead rows/columns
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = np.corrcoef(X.astype(np.float64), rowvar=False)
    live = [0, 1, 3, 4, 5, 7]
    np.testing.assert_allclose(corr[np.ix_(live, live)], ref[np.ix_(live, live)], atol=1e-5)


def test_correlation_rejects_non_finite():
    X = correlated_data(rows=50, neurons=5)
    X[10, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        neuron_correlation(X)


# --------------------------------------------------------------------------------------
# distance

def test_correlation_distance_is_condensed_one_minus_abs():
    rng = np.random.default_rng(6)
    corr = np.corrcoef(rng.standard_normal((30, 9)), rowvar=False).astype(np.float32)
    corr[1, 4] = corr[4, 1] = np.nan
    corr[0, 2] = corr[2, 0] = -1.0000001  # rounding past -1
    d = correlation_distance(corr)
    ref = 1 - np.abs(np.nan_to_num(corr.astype(np.float64), nan=0.0))
    np.fill_diagonal(ref, 0)
    ref = squareform(np.clip(ref, 0, None), checks=False)
    assert d.dtype == np.float64 and d.shape == (36,)
    np.testing.assert_allclose(d, ref, atol=1e-12)
    assert d.min() >= 0 and d.max() <= 1


def reference_distance(X):
    """Condensed 1 - |corr| of np.corrcoef in float64, NaN -> 0 (the reference code)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(np.asarray(X, dtype=np.float64), rowvar=False)
    corr = np.nan_to_num(corr, nan=0.0)
    d = 1 - np.abs(corr)
    np.fill_diagonal(d, 0)
    return squareform(np.clip(d, 0, None), checks=False)


@pytest.mark.parametrize("dtype, atol", [(np.float32, 2e-6), (np.float64, 1e-12)])
@pytest.mark.parametrize("chunk, flush", [(13, 30), (64, None), (None, None)])
def test_linkage_distances_come_straight_from_the_moments(dtype, atol, chunk, flush, monkeypatch):
    # correlation_linkage sums the products into the condensed triangle and turns it into
    # distances in place (no N x N correlation matrix); it must equal the reference's
    # 1 - |np.corrcoef|, dead neurons included, with float64 flushes of the float32 sums
    from redundancy.methods import moments

    if flush is not None:
        monkeypatch.setattr(moments, "FLUSH_ROWS", flush)
    X = correlated_data(rows=211, neurons=23, seed=12)
    X[:, 5] = 7.0
    X[:, 17] = 0.0
    Z, dead, d = correlation_linkage(X, chunk=chunk, dtype=dtype, return_distances=True)
    ref = reference_distance(X)
    assert d.dtype == np.float64 and d.shape == ref.shape
    np.testing.assert_allclose(d, ref, atol=atol, rtol=0)
    np.testing.assert_array_equal(dead, [5, 17])
    assert d.min() >= 0 and d.max() <= 1
    np.testing.assert_array_equal(squareform(d)[5, np.arange(23) != 5], 1.0)
    np.testing.assert_allclose(Z, linkage(ref, method="average"), atol=10 * atol)
    # the square correlation matrix (another code path) agrees with the distances
    corr, _ = neuron_correlation(X, chunk=chunk, dtype=dtype)
    np.testing.assert_allclose(correlation_distance(corr), d, atol=atol)


def test_float32_products_of_float64_data_with_large_means():
    X = correlated_data(rows=500, neurons=15, seed=13, dtype=np.float64) + 1e6
    corr, _ = neuron_correlation(X, chunk=64)
    ref = np.corrcoef(X, rowvar=False)
    np.testing.assert_allclose(corr, ref, atol=2e-6, rtol=0)
    _, _, d = correlation_linkage(X, chunk=64, return_distances=True)
    np.testing.assert_allclose(d, reference_distance(X), atol=2e-6, rtol=0)


def test_product_precision_must_be_float32_or_float64():
    X = correlated_data(rows=30, neurons=4)
    for f in (neuron_correlation, correlation_linkage):
        with pytest.raises(ValueError, match="float32 or float64"):
            f(X, dtype=np.float16)


# --------------------------------------------------------------------------------------
# clusters against scipy

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_labels_match_scipy_reference(seed):
    X = correlated_data(rows=400, neurons=60, seed=seed)
    Z, _ = correlation_linkage(X, chunk=128)
    for t in (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0):
        ours = correlation_clusters(X, threshold=t, chunk=128)
        ref = reference_labels(X, t)
        assert partition(ours) == partition(ref), t
        assert adjusted_rand_score(ref, ours) == 1.0
        # 0-based, numbered 0 .. k-1
        assert ours.min() == 0 and set(ours.tolist()) == set(range(ours.max() + 1))
        # reusing one tree gives the same labels
        np.testing.assert_array_equal(correlation_clusters(threshold=t, linkage=Z), ours)
    # at the extremes: c_t = 1 is one cluster
    assert np.unique(correlation_clusters(X, threshold=1.0)).size == 1


def test_grouped_neurons_match_reference_at_paper_threshold():
    # many neurons in correlated groups (signed loadings: anti-correlated neurons cluster
    # through |corr|), a shared weak signal, offsets: the benchmark's data, small
    rng = np.random.default_rng(21)
    rows, n, groups = 3000, 240, 60
    group = rng.integers(0, groups, n)
    load = rng.uniform(0.3, 1.0, n) * rng.choice([-1.0, 1.0], n)
    X = (rng.standard_normal((rows, groups))[:, group] * load + rng.standard_normal((rows, n)) * rng.uniform(0.1, 1, n)
         + rng.standard_normal((rows, 4)) @ (0.25 * rng.standard_normal((4, n))) + rng.normal(0, 5, n))
    X = X.astype(np.float32)
    ref = reference_labels(X, 0.3)
    cc = CorrelationClustering(threshold=0.3, chunk=700).fit(X)
    assert adjusted_rand_score(ref, cc.labels_) == 1.0
    assert cc.n_clusters_ == ref.max()
    sizes = np.bincount(cc.labels_)
    assert 1 < sizes.max() and (sizes == 1).any()  # non-trivial: singletons and groups


def test_estimator_sweep_matches_refits():
    X = correlated_data(rows=300, neurons=50, seed=7)
    for rep in ("random", "medoid"):
        cc = CorrelationClustering(threshold=0.3, representative=rep, random_state=3).fit(X)
        np.testing.assert_array_equal(cc.representatives_at(0.3), cc.representatives_)
        for t in (0.2, 0.5, 0.8):
            other = CorrelationClustering(threshold=t, representative=rep, random_state=3).fit(X)
            np.testing.assert_array_equal(cc.labels_at(t), other.labels_)
            np.testing.assert_array_equal(cc.representatives_at(t), other.representatives_)
        assert partition(cc.labels_) == partition(reference_labels(X, 0.3))


# --------------------------------------------------------------------------------------
# planted redundancy

def test_planted_duplicates_collapse():
    X, expected = planted(dead=False)
    cc = CorrelationClustering(threshold=0.3).fit(X)
    assert partition(cc.labels_) == expected
    assert cc.n_clusters_ == 10
    assert len(cc.representatives_) == 10
    # one representative in every planted cluster
    assert sorted(cc.labels_[cc.representatives_].tolist()) == list(range(10))
    assert cc.dead_neurons_.size == 0
    reduced = cc.transform(X)
    assert reduced.shape == (X.shape[0], 10)
    np.testing.assert_array_equal(reduced, X[:, cc.representatives_])
    np.testing.assert_array_equal(cc.fit_transform(X), reduced)


def test_planted_with_dead_neuron():
    X, expected = planted(dead=True, seed=1)
    dead = [next(iter(g)) for g in expected if len(g) == 1][0]
    cc = CorrelationClustering(threshold=0.3, representative="medoid").fit(X)
    assert partition(cc.labels_) == expected
    np.testing.assert_array_equal(cc.dead_neurons_, [dead])
    assert np.sum(cc.labels_ == cc.labels_[dead]) == 1
    assert dead in cc.representatives_
    assert len(cc.representatives_) == 10 + 1  # 10 base signals + the dead singleton
    # only c_t = 1 merges the dead neuron with anything
    assert np.sum(cc.labels_at(0.99) == cc.labels_at(0.99)[dead]) == 1
    assert np.unique(cc.labels_at(1.0)).size == 1


# --------------------------------------------------------------------------------------
# representatives

def test_random_representative_is_seeded():
    X, _ = planted(seed=2)
    a = CorrelationClustering(random_state=11).fit(X).representatives_
    b = CorrelationClustering(random_state=11).fit(X).representatives_
    np.testing.assert_array_equal(a, b)
    assert np.all(np.diff(a) > 0)
    others = [CorrelationClustering(random_state=s).fit(X).representatives_ for s in range(5)]
    assert any(not np.array_equal(a, o) for o in others)
    # a seeded pick is also stable through the function
    labels = correlation_clusters(X, 0.3)
    np.testing.assert_array_equal(cluster_representatives(labels, random_state=4),
                                  cluster_representatives(labels, random_state=4))


def test_random_pick_covers_members():
    labels = np.array([0, 0, 0, 1, 1, 2])
    seen = {tuple(cluster_representatives(labels, random_state=s)) for s in range(60)}
    firsts = {r[0] for r in seen}
    assert firsts == {0, 1, 2}  # every member of cluster 0 gets picked for some seed
    assert all(r[-1] == 5 for r in seen)


def test_medoid_is_brute_force_medoid():
    rng = np.random.default_rng(8)
    rows = 400
    base = rng.standard_normal((rows, 6))
    cols = []
    for k in range(6):  # copies with different noise levels: the medoid is well defined
        for s in (0.2, 0.35, 0.5, 0.7):
            cols.append(base[:, k] + s * rng.standard_normal(rows))
    # shuffled, so that the least noisy copy (the likely medoid) is not the first member
    X = np.column_stack(cols).astype(np.float32)[:, rng.permutation(len(cols))]
    cc = CorrelationClustering(threshold=0.6, representative="medoid").fit(X)
    d = 1 - np.abs(np.corrcoef(X.astype(np.float64), rowvar=False))
    expected = []
    sizes = []
    for v in np.unique(cc.labels_):
        idx = np.flatnonzero(cc.labels_ == v)
        sizes.append(idx.size)
        if idx.size == 1:
            expected.append(idx[0])
            continue
        sub = d[np.ix_(idx, idx)]
        mean_to_others = (sub.sum(axis=1) - np.diag(sub)) / (idx.size - 1)
        expected.append(idx[np.argmin(mean_to_others)])
    assert max(sizes) >= 3
    firsts = [np.flatnonzero(cc.labels_ == v)[0] for v in np.unique(cc.labels_)]
    assert sorted(firsts) != sorted(expected)  # the check can tell a medoid from the first member
    np.testing.assert_array_equal(cc.representatives_, np.sort(expected))


# --------------------------------------------------------------------------------------
# Figure 3 makeup

def test_layer_of_neuron():
    np.testing.assert_array_equal(layer_of_neuron(3, 2), [0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError):
        layer_of_neuron(0, 5)


def test_cluster_makeup_hand_computed():
    layers = layer_of_neuron(5, 3)  # layer of neuron i is i // 3
    # clusters (neurons -> layers -> span):
    #   A {0,1}     -> {0}      span 0 (window 1)
    #   B {2,9}     -> {0,3}    span 3 (">3")
    #   C {3,4,5}   -> {1}      span 0
    #   D {6,10}    -> {2,3}    span 1 (window 2)
    #   E {7,12}    -> {2,4}    span 2 (window 3)
    #   F {8}       -> singleton
    #   G {11,13,14}-> {3,4}    span 1
    name = {"A": 40, "B": 7, "C": -2, "D": 100, "E": 3, "F": 0, "G": 55}  # arbitrary label values
    members = {"A": [0, 1], "B": [2, 9], "C": [3, 4, 5], "D": [6, 10], "E": [7, 12], "F": [8],
               "G": [11, 13, 14]}
    labels = np.empty(15, dtype=int)
    for c, idx in members.items():
        labels[idx] = name[c]
    m = cluster_makeup(labels, layers)
    assert isinstance(m, pd.DataFrame)
    assert list(m.index) == ["1", "2", "3", ">3"]
    assert m["clusters"].tolist() == [2, 2, 1, 1]
    np.testing.assert_allclose(m["share"], [2 / 6, 2 / 6, 1 / 6, 1 / 6])
    np.testing.assert_allclose(m["cumulative_share"], [2 / 6, 4 / 6, 5 / 6, 1])
    assert m["clusters_with_singletons"].tolist() == [3, 2, 1, 1]
    np.testing.assert_allclose(m["share_with_singletons"], [3 / 7, 2 / 7, 1 / 7, 1 / 7])


def test_cluster_makeup_only_singletons_and_errors():
    m = cluster_makeup(np.arange(4), [0, 0, 1, 1])
    assert m["clusters"].sum() == 0 and m["share"].isna().all()
    assert m["clusters_with_singletons"].tolist() == [4, 0, 0, 0]
    with pytest.raises(ValueError, match="one value per neuron"):
        cluster_makeup([0, 0, 1], [0, 1])


# --------------------------------------------------------------------------------------
# errors and the estimator contract

@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.3", None, True])
def test_bad_thresholds(bad):
    X = correlated_data(rows=30, neurons=5)
    with pytest.raises(ValueError, match="threshold"):
        CorrelationClustering(threshold=bad).fit(X)
    with pytest.raises(ValueError, match="threshold"):
        correlation_clusters(X, threshold=bad)
    cc = CorrelationClustering().fit(X)
    with pytest.raises(ValueError, match="threshold"):
        cc.representatives_at(bad)


@pytest.mark.parametrize("shape, message", [((0, 5), "empty"), ((5, 0), "empty"), ((0, 0), "empty"),
                                            ((1, 5), "at least 2 rows"), ((10, 1), "at least 2 neurons")])
def test_empty_or_too_small_input(shape, message):
    X = np.ones(shape, dtype=np.float32)
    with pytest.raises(ValueError, match=message):
        CorrelationClustering().fit(X)
    with pytest.raises(ValueError, match=message):
        neuron_correlation(X)


def test_other_bad_input():
    X = correlated_data(rows=30, neurons=6)
    with pytest.raises(ValueError, match="2-D"):
        CorrelationClustering().fit(X.reshape(30, 2, 3))
    with pytest.raises(ValueError, match="representative"):
        CorrelationClustering(representative="centroid").fit(X)
    with pytest.raises(ValueError, match="chunk"):
        neuron_correlation(X, chunk=0)
    with pytest.raises(ValueError, match="linkage"):
        correlation_clusters(threshold=0.3)
    Z, _ = correlation_linkage(X)
    with pytest.raises(ValueError, match="neurons"):
        correlation_clusters(correlated_data(rows=30, neurons=7), threshold=0.3, linkage=Z)
    cc = CorrelationClustering().fit(X)
    with pytest.raises(ValueError, match="X has 5 features, but CorrelationClustering is expecting 6"):
        cc.transform(X[:, :5])


def test_clone_and_params():
    cc = CorrelationClustering(threshold=0.5)
    c2 = clone(cc)
    assert c2 is not cc and c2.get_params() == cc.get_params()
    assert c2.get_params() == {"threshold": 0.5, "representative": "random", "random_state": 0, "chunk": None,
                               "memory": None}
    fitted = CorrelationClustering(threshold=0.5).fit(correlated_data(rows=40, neurons=8))
    assert not hasattr(clone(fitted), "labels_")
    assert fitted.n_features_in_ == 8 and fitted.linkage_.shape == (7, 4)
    assert fitted.n_clusters_ == len(fitted.representatives_) == np.unique(fitted.labels_).size


def test_same_inputs_same_outputs():
    X = correlated_data(rows=200, neurons=30, seed=9)
    a = CorrelationClustering(threshold=0.4, random_state=5).fit(X)
    b = CorrelationClustering(threshold=0.4, random_state=5).fit(X.copy())
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.linkage_, b.linkage_)
    np.testing.assert_array_equal(a.representatives_, b.representatives_)


def test_memory_caches_the_tree_and_rejects_damage(tmp_path, monkeypatch, capsys):
    import redundancy.methods.clustering as C

    rng = np.random.default_rng(5)
    X = rng.standard_normal((300, 40)).astype(np.float32)
    X[:, 20:] = X[:, :20] + 0.1 * rng.standard_normal((300, 20)).astype(np.float32)
    ref = CorrelationClustering(threshold=0.3).fit(X)
    first = CorrelationClustering(threshold=0.3, memory=tmp_path).fit(X)
    assert len(list(tmp_path.glob("tree-*.npz"))) == 1
    calls = []
    real = C.correlation_linkage
    monkeypatch.setattr(C, "correlation_linkage", lambda *a, **k: calls.append(1) or real(*a, **k))
    second = CorrelationClustering(threshold=0.5, memory=tmp_path).fit(X)  # another cut of the same tree
    assert calls == []
    np.testing.assert_array_equal(second.linkage_, ref.linkage_)
    np.testing.assert_array_equal(first.labels_, ref.labels_)
    np.testing.assert_array_equal(second.labels_, ref.labels_at(0.5))
    # other data is another tree
    X2 = X.copy()
    X2[0, 0] += 1.0
    CorrelationClustering(memory=tmp_path).fit(X2)
    assert calls == [1] and len(list(tmp_path.glob("tree-*.npz"))) == 2
    # a damaged file is reported and recomputed
    for f in tmp_path.glob("tree-*.npz"):
        f.write_bytes(f.read_bytes()[:50])
    again = CorrelationClustering(threshold=0.3, memory=tmp_path).fit(X)
    assert "rejected" in capsys.readouterr().out and len(calls) == 2
    np.testing.assert_array_equal(again.labels_, ref.labels_)
