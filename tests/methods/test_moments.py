"""Tests of the streamed cross-product (redundancy.methods.moments), the core of CKA and correlation
clustering: against a float64 product of the centred matrix written out here, for both
product precisions, both layouts (square upper triangle and packed condensed), chunks
and float64 flushes of every size, and inputs given as one array or as blocks side by side."""

from __future__ import annotations

import numpy as np
import pytest

from redundancy.methods import moments
from redundancy.methods.moments import streamed_cross_product


def data(rows=300, cols=17, seed=0, offset=50.0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, 4)) @ rng.standard_normal((4, cols)) + rng.standard_normal((rows, cols))
    return (X + offset * rng.uniform(-1, 1, cols)).astype(dtype)


def centred_product(X):
    X = np.asarray(X, dtype=np.float64)
    C = X - X.mean(axis=0)
    return C.T @ C


def from_moments(cp):
    """The centred cross-product from either layout."""
    P = cp.sums.shape[0]
    if cp.packed is not None:
        G = np.zeros((P, P))
        G[np.triu_indices(P, 1)] = cp.packed
        G = G + G.T
        G[np.diag_indices(P)] = cp.diagonal
    else:
        U = np.triu(np.asarray(cp.gram, dtype=np.float64))
        G = U + np.triu(U, 1).T
        np.testing.assert_array_equal(np.diagonal(U), cp.diagonal)
    return G - cp.n_rows * np.outer(cp.mean, cp.mean)


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("chunk, flush", [(7, 10), (64, 1), (64, 10**6), (1000, None)])
def test_equals_centred_product(packed, dtype, tol, chunk, flush):
    X = data()
    cp = streamed_cross_product(lambda a, b: X[a:b], len(X), chunk, dtype=dtype, flush_rows=flush, packed=packed)
    ref = centred_product(X)
    scale = np.sqrt(np.outer(np.diag(ref), np.diag(ref)))
    assert np.abs(from_moments(cp) - ref).max() / scale.max() < tol
    # relative to each entry's own scale too (what a correlation sees)
    assert (np.abs(from_moments(cp) - ref) / scale).max() < tol
    assert cp.sums.dtype == np.float64 and cp.diagonal.dtype == np.float64
    assert (cp.packed is not None) == packed and (cp.gram is None) == packed


def test_float32_gram_stays_float32_until_a_flush():
    X = data(rows=200)
    read = lambda a, b: X[a:b]  # noqa: E731
    assert streamed_cross_product(read, 200, 50, dtype=np.float32).gram.dtype == np.float32
    # more rows than flush_rows: the sums move to float64
    assert streamed_cross_product(read, 200, 50, dtype=np.float32, flush_rows=100).gram.dtype == np.float64
    assert streamed_cross_product(read, 200, 50, dtype=np.float64).gram.dtype == np.float64


def test_module_flush_rows_is_read_at_call_time(monkeypatch):
    X = data(rows=120)
    monkeypatch.setattr(moments, "FLUSH_ROWS", 30)
    cp = streamed_cross_product(lambda a, b: X[a:b], 120, 20, dtype=np.float32)
    assert cp.gram.dtype == np.float64


def test_blocks_side_by_side_equal_one_array():
    X = data(cols=12, dtype=np.float64)
    blocks = [X[:, :5].astype(np.float32), X[:, 5:6], X[:, 6:].astype(np.float16)]
    whole = np.concatenate([b.astype(np.float64) for b in blocks], axis=1)
    for dtype in (np.float32, np.float64):
        a = streamed_cross_product(lambda s, e: [b[s:e] for b in blocks], len(X), 33, dtype=dtype)
        b = streamed_cross_product(lambda s, e: whole[s:e], len(X), 33, dtype=dtype)
        np.testing.assert_allclose(from_moments(a), from_moments(b), atol=1e-3 if dtype == np.float32 else 1e-9)


def test_shift_is_first_rows_mean_and_constant_columns_are_exactly_zero():
    X = data(rows=100, cols=6, dtype=np.float64)
    X[:, 2] = 0.1  # not representable in float32
    X[:, 4] = -3.0
    for dtype in (np.float32, np.float64):
        for packed in (False, True):
            seen = []
            cp = streamed_cross_product(lambda a, b: X[a:b], 100, 40, dtype=dtype, packed=packed,
                                        on_chunk=lambda D: seen.append(D.copy()))
            np.testing.assert_allclose(cp.shift[[0, 1, 3, 5]], X[:40, [0, 1, 3, 5]].mean(axis=0), rtol=1e-6)
            assert cp.shift[2] == X[0, 2] and cp.shift[4] == -3.0
            for k in (2, 4):
                assert cp.sums[k] == 0 and cp.diagonal[k] == 0
                assert all((D[:, k] == 0).all() for D in seen)
            assert [len(D) for D in seen] == [40, 40, 20]
            assert all(D.dtype == dtype for D in seen)


def test_large_offsets_of_float64_data_are_removed_before_rounding():
    # float32 cannot hold 1e6 + x to better than 0.06: the shift must come first
    X = data(rows=400, cols=8, dtype=np.float64, offset=0.0) + 1e6
    cp = streamed_cross_product(lambda a, b: X[a:b], 400, 50, dtype=np.float32)
    ref = centred_product(X)
    assert np.abs(from_moments(cp) - ref).max() / np.diag(ref).max() < 1e-5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_name_their_rows(dtype, bad):
    X = data(rows=100, cols=5, dtype=np.float64)
    X[57, 3] = bad
    with pytest.raises(ValueError, match=r"rows 50\.\.74 contain nan or inf"):
        streamed_cross_product(lambda a, b: X[a:b], 100, 25, dtype=dtype)
    X[57, 3] = 0.0
    X[0, 1] = bad  # in the first chunk, which also sets the shift
    with pytest.raises(ValueError, match=r"rows 0\.\.24 contain nan or inf"):
        streamed_cross_product(lambda a, b: X[a:b], 100, 25, dtype=dtype, packed=True)


def test_huge_finite_float64_values_are_not_called_non_finite():
    X = data(rows=50, cols=3, dtype=np.float64)
    X[:, 1] *= 1e300  # sums may overflow; the values are finite
    streamed_cross_product(lambda a, b: X[a:b], 50, 10, dtype=np.float64)


def test_bad_arguments():
    X = data(rows=10, cols=3)
    read = lambda a, b: X[a:b]  # noqa: E731
    with pytest.raises(ValueError, match="dtype"):
        streamed_cross_product(read, 10, dtype=np.float16)
    with pytest.raises(ValueError, match="chunk"):
        streamed_cross_product(read, 10, chunk=0)
    with pytest.raises(ValueError, match="flush_rows"):
        streamed_cross_product(read, 10, dtype=np.float32, flush_rows=0)
    with pytest.raises(ValueError, match="packed"):
        streamed_cross_product(read, 10, packed=True).symmetric()


# --------------------------------------------------------------------------------------
# pages of a memory-mapped file (utils.release_mapped): a pass that reads a mapped
# activation file once keeps one chunk resident, not the file

def _rss_file_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssFile:"):
                return int(line.split()[1]) / 1024
    pytest.skip("no RssFile in /proc/self/status")


@pytest.fixture
def mapped(tmp_path):
    X = np.random.default_rng(5).standard_normal((16384, 1024), dtype=np.float32)  # 64 MiB
    np.save(tmp_path / "a.npy", X)
    return X, tmp_path / "a.npy"


def test_release_mapped_drops_a_read_only_maps_pages_and_leaves_the_rest_alone(mapped):
    from redundancy.utils import release_mapped

    X, path = mapped
    M = np.load(path, mmap_mode="r")
    before = _rss_file_mib()
    assert float(M[:8192].sum(dtype=np.float64)) == pytest.approx(float(X[:8192].sum(dtype=np.float64)))
    assert _rss_file_mib() - before > 24  # the control: 32 MiB read are 32 MiB resident
    assert release_mapped(M[:8192, 3:9])  # any view of the map, strided included
    assert _rss_file_mib() - before < 8  # (code pages of libraries count here too)
    assert np.array_equal(M[:8192], X[:8192])  # read again, the same data
    assert not release_mapped(X) and not release_mapped(np.load(path, mmap_mode="c"))
    assert not release_mapped(M[:0])


def test_streamed_passes_over_a_mapped_file_keep_one_chunk_resident(mapped, tmp_path):
    from redundancy.methods.clustering import CorrelationClustering, _cached_tree
    from redundancy.methods.probe import LinearProbe
    from redundancy.methods.splits import gather as _gather

    X, path = mapped
    M = np.load(path, mmap_mode="r")
    ref = streamed_cross_product(lambda a, b: X[a:b], X.shape[0], 1024)
    before = _rss_file_mib()
    got = streamed_cross_product(lambda a, b: M[a:b], M.shape[0], 1024)
    assert _rss_file_mib() - before < 8  # 64 MiB read, at most a chunk (4 MiB) left mapped
    np.testing.assert_array_equal(got.symmetric(), ref.symmetric())
    cols = np.arange(0, 1024, 7)
    np.testing.assert_array_equal(_gather(M, cols), X[:, cols])
    assert _rss_file_mib() - before < 8
    _cached_tree(M, tmp_path / "trees")  # the clustering cache's key reads all of M
    assert _rss_file_mib() - before < 8
    cc = CorrelationClustering(threshold=0.5, memory=tmp_path / "trees").fit(M)
    np.testing.assert_array_equal(cc.transform(M), X[:, cc.representatives_])
    assert _rss_file_mib() - before < 8
    # a probe trained on the map: the same weights as in memory, the pages released as it goes
    # (the in-memory fit first: the code it loads is file-backed too, and counts in RssFile)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    p_mem = LinearProbe(epochs=1, random_state=0).fit(X, y)
    pred = p_mem.predict(X)
    before = _rss_file_mib()
    p_map = LinearProbe(epochs=1, random_state=0).fit(M, y)
    assert _rss_file_mib() - before < 8
    np.testing.assert_array_equal(p_map.coef_, p_mem.coef_)
    np.testing.assert_array_equal(p_map.predict(M), pred)
    assert _rss_file_mib() - before < 8
