"""Tests of linear CKA (redundancy.methods.cka): the Gram and feature-space forms agree, the
invariances of Kornblith et al. (2019) hold (and a general linear map is not one of them),
the debiased form is Song et al.'s unbiased HSIC, the streamed all-pairs matrix equals
pairwise CKA, and minibatch CKA (Nguyen et al., 2021) is the ratio of averaged estimates."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from redundancy.methods.cka import (ConstantInputWarning, MinibatchCKA, center_gram, cka, feature_space_linear_cka,
                            gram_linear, linear_cka_matrix, minibatch_cka, unbiased_hsic)
from redundancy.representations.store import ActivationStore


def related_pair(n, p, q, seed=0, noise=1.0):
    """X and Y sharing a 3-dimensional latent, so their CKA is well inside (0, 1)."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, 3))
    X = Z @ rng.standard_normal((3, p)) + noise * rng.standard_normal((n, p))
    Y = Z @ rng.standard_normal((3, q)) + noise * rng.standard_normal((n, q))
    return X, Y


def layered(n=500, n_layers=5, hidden=8, seed=0, offset=0.0):
    """rows x layers x hidden, layers mixing one latent (plus noise) in different ways."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, 4))
    out = np.stack([Z @ rng.standard_normal((4, hidden)) + 0.7 * rng.standard_normal((n, hidden)) + 3.0 * l
                    for l in range(n_layers)], axis=1)
    return out + offset


def pairwise(layers, debiased):
    L = len(layers)
    return np.array([[feature_space_linear_cka(layers[i], layers[j], debiased) for j in range(L)]
                     for i in range(L)])


def random_orthogonal(d, seed):
    Q, R = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return Q * np.sign(np.diag(R))


# --------------------------------------------------------------------------------------------
# written-out references (no code shared with the module)

def hsic_biased_reference(K, L):
    """tr(K H L H) / (n-1)^2 (Kornblith et al., 2019, eq. 2)."""
    n = K.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    return np.trace(K @ H @ L @ H) / (n - 1) ** 2


def hsic_unbiased_reference(K, L):
    """Song et al. (2012): 1/(n(n-3)) [tr(K~L~) + 1'K~1 1'L~1/((n-1)(n-2)) - 2/(n-2) 1'K~L~1]."""
    n = K.shape[0]
    Kt, Lt = K.copy(), L.copy()
    np.fill_diagonal(Kt, 0.0)
    np.fill_diagonal(Lt, 0.0)
    one = np.ones(n)
    return (np.trace(Kt @ Lt) + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * (one @ Kt @ Lt @ one)) / (n * (n - 3))


def cka_reference(X, Y, hsic):
    K, L = X @ X.T, Y @ Y.T
    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


# --------------------------------------------------------------------------------------------
# the two forms

@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("n,p,q", [(50, 3, 4), (120, 10, 25), (30, 40, 7), (8, 2, 2)])
def test_feature_space_form_equals_gram_form(n, p, q, debiased):
    X, Y = related_pair(n, p, q, seed=n + p)
    X = X + 5.0  # uncentred input: both forms centre
    gram = cka(gram_linear(X), gram_linear(Y), debiased=debiased)
    feature = feature_space_linear_cka(X, Y, debiased=debiased)
    assert abs(gram - feature) < 1e-6
    assert abs(feature) > 1e-3  # a non-trivial value


@pytest.mark.parametrize("debiased", [False, True])
def test_matches_written_out_hsic_formulas(debiased):
    X, Y = related_pair(40, 6, 9, seed=3)
    X = X + 2.0
    ref = cka_reference(X, Y, hsic_unbiased_reference if debiased else hsic_biased_reference)
    assert feature_space_linear_cka(X, Y, debiased) == pytest.approx(ref, abs=1e-10)
    assert cka(gram_linear(X), gram_linear(Y), debiased) == pytest.approx(ref, abs=1e-10)


def test_unbiased_hsic_is_song_estimator():
    X, Y = related_pair(25, 4, 5, seed=11)
    X = X - 7.0  # HSIC_1 is translation invariant, and the reference does not centre
    ref = hsic_unbiased_reference(X @ X.T, Y @ Y.T)
    assert unbiased_hsic(X, Y) == pytest.approx(ref, rel=1e-10)
    # the U-centred Gram matrices' inner product is n(n-3) HSIC_1
    n = X.shape[0]
    Gc, Hc = center_gram(gram_linear(X), unbiased=True), center_gram(gram_linear(Y), unbiased=True)
    assert np.sum(Gc * Hc) / (n * (n - 3)) == pytest.approx(ref, rel=1e-10)
    assert np.allclose(np.diag(Gc), 0.0)


# --------------------------------------------------------------------------------------------
# invariances

@pytest.mark.parametrize("debiased", [False, True])
def test_self_similarity_is_one(debiased):
    X, _ = related_pair(60, 7, 2, seed=5)
    assert feature_space_linear_cka(X, X, debiased) == pytest.approx(1.0, abs=1e-12)
    assert cka(gram_linear(X), gram_linear(X), debiased) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
def test_invariant_to_orthogonal_maps_scaling_and_translation(debiased):
    X, Y = related_pair(80, 6, 5, seed=7)
    base = feature_space_linear_cka(X, Y, debiased)
    Q = random_orthogonal(6, seed=8)
    assert np.allclose(Q.T @ Q, np.eye(6))
    assert feature_space_linear_cka(X @ Q, Y, debiased) == pytest.approx(base, abs=1e-10)
    assert feature_space_linear_cka(X, 3.7 * Y, debiased) == pytest.approx(base, abs=1e-10)
    assert feature_space_linear_cka(0.01 * X @ Q + 4.0, Y - 2.0, debiased) == pytest.approx(base, abs=1e-10)
    assert cka(gram_linear(X @ Q), gram_linear(3.7 * Y), debiased) == pytest.approx(base, abs=1e-10)


@pytest.mark.parametrize("debiased", [False, True])
def test_not_invariant_to_general_invertible_maps(debiased):
    X, Y = related_pair(80, 6, 5, seed=7)
    base = feature_space_linear_cka(X, Y, debiased)
    A = random_orthogonal(6, seed=1) @ np.diag([10.0, 3.0, 1.0, 0.3, 0.1, 0.05]) @ random_orthogonal(6, seed=2)
    assert abs(np.linalg.det(A)) > 1e-6  # invertible
    assert abs(feature_space_linear_cka(X @ A, Y, debiased) - base) > 0.02
    assert feature_space_linear_cka(X, X @ A, debiased) < 0.99


# --------------------------------------------------------------------------------------------
# all pairs of layers, streamed

@pytest.mark.parametrize("debiased", [False, True])
def test_matrix_equals_pairwise_cka(debiased):
    data = layered()
    M = linear_cka_matrix(data, debiased=debiased, chunk=37, dtype=np.float64)
    ref = pairwise([data[:, l] for l in range(data.shape[1])], debiased)
    assert M.shape == (5, 5)
    assert np.allclose(M, ref, atol=1e-10, rtol=0)
    assert np.array_equal(M, M.T)
    assert np.allclose(np.diag(M), 1.0, atol=1e-12)
    assert np.ptp(M[np.triu_indices(5, 1)]) > 0.05  # the layers really differ
    assert np.allclose(linear_cka_matrix(data, debiased=debiased, chunk=10**6, dtype=np.float64), M,
                       atol=1e-12, rtol=0)
    # the default float32 products of nearly centred chunks
    M32 = linear_cka_matrix(data, debiased=debiased, chunk=37)
    assert np.allclose(M32, ref, atol=1e-6, rtol=0)
    assert np.array_equal(M32, M32.T)


def test_matrix_float32_products_and_progress():
    data = layered(n=300).astype(np.float32)
    ref = linear_cka_matrix(data, chunk=64)
    assert np.allclose(linear_cka_matrix(data, chunk=64, dtype=np.float32, progress=True), ref, atol=1e-5)
    assert np.allclose(linear_cka_matrix(data, debiased=True, dtype=np.float32),
                       linear_cka_matrix(data, debiased=True), atol=1e-5)


@pytest.mark.parametrize("debiased", [False, True])
def test_matrix_is_accurate_with_large_means(debiased):
    # C - n mu mu^T would lose most digits without the shift by the first row
    data = layered(n=400, seed=2, offset=1e5)
    data[:, :, 0] += 1e6
    ref = pairwise([data[:, l] for l in range(data.shape[1])], debiased)
    assert np.allclose(linear_cka_matrix(data, debiased=debiased, chunk=50, dtype=np.float64), ref,
                       atol=1e-9, rtol=0)
    # float32 products: the shift (first chunk's means) leaves what float32 can hold
    assert np.allclose(linear_cka_matrix(data, debiased=debiased, chunk=50), ref, atol=1e-6, rtol=0)


def test_matrix_of_layers_with_different_widths():
    X, Y = related_pair(90, 4, 11, seed=4)
    W, _ = related_pair(90, 2, 1, seed=5)
    for debiased in (False, True):
        M = linear_cka_matrix([X, Y, W], debiased=debiased, chunk=16, dtype=np.float64)
        assert np.allclose(M, pairwise([X, Y, W], debiased), atol=1e-10, rtol=0)
        assert np.allclose(linear_cka_matrix([X, Y, W], debiased=debiased, chunk=16), M, atol=1e-6, rtol=0)


def test_matrix_of_an_activation_store_entry(tmp_path):
    data = layered(n=200, n_layers=4, hidden=6, seed=9).astype(np.float32)

    def fill(w):
        w.array[:] = data
        w.labels = np.arange(len(data)) % 3
        w.sentence_ids = np.arange(len(data)) // 10

    config = {"model": {"name": "org/tiny"}, "task": "toy", "split": "train", "aggregation": "none"}
    acts = ActivationStore(root=tmp_path).get_or_create(config, lambda: data.shape, fill)
    assert acts.array.shape == data.shape
    for debiased in (False, True):
        M = linear_cka_matrix(acts, debiased=debiased, chunk=33, dtype=np.float64)
        ref = pairwise([acts.layer(l) for l in range(acts.n_layers)], debiased)
        assert np.allclose(M, ref, atol=1e-10, rtol=0)
        assert np.allclose(M, linear_cka_matrix(data, debiased=debiased, dtype=np.float64), atol=1e-12, rtol=0)
        assert np.allclose(linear_cka_matrix(acts, debiased=debiased, chunk=33), ref, atol=1e-6, rtol=0)


def test_matrix_constant_layer_is_nan_with_warning():
    data = layered(n=100, n_layers=3)
    data[:, 1, :] = 0.3
    with pytest.warns(ConstantInputWarning, match=r"layer\(s\) 1"):
        M = linear_cka_matrix(data, chunk=7)
    assert np.isnan(M[1]).all() and np.isnan(M[:, 1]).all()
    assert np.isfinite(M[[0, 2]][:, [0, 2]]).all()
    assert M[0, 2] == pytest.approx(feature_space_linear_cka(data[:, 0], data[:, 2]), abs=1e-6)
    # a constant float64 layer that float32 cannot hold exactly is still exactly constant
    data[:, 1, :] = 0.1
    for dtype in (np.float32, np.float64):
        with pytest.warns(ConstantInputWarning, match=r"layer\(s\) 1"):
            M = linear_cka_matrix(data, chunk=7, dtype=dtype)
        assert np.isnan(M[1]).all() and np.isfinite(M[0, 2])


# --------------------------------------------------------------------------------------------
# minibatch CKA

def test_minibatch_cka_approaches_full_data_cka():
    X, Y = related_pair(20000, 12, 10, seed=21, noise=0.5)
    full = feature_space_linear_cka(X, Y)
    batches = np.array_split(np.arange(len(X)), 100)
    est = MinibatchCKA()
    for b in batches:
        assert est.update(X[b], Y[b]) is est
    assert est.n_batches_ == 100 and est.n_rows_ == len(X)
    assert abs(est.value() - full) < 0.02
    assert abs(est.value() - feature_space_linear_cka(X, Y, debiased=True)) < 0.02
    # few, small batches: a noisier estimate of the same quantity (biased CKA of one small batch
    # is inflated, which the unbiased per-batch estimates avoid)
    assert abs(minibatch_cka((X[b] for b in batches[:5]), (Y[b] for b in batches[:5])) - full) < 0.1


def test_minibatch_cka_is_ratio_of_mean_unbiased_estimates():
    rng = np.random.default_rng(4)
    X, Y = related_pair(600, 5, 6, seed=13)
    splits = np.array_split(rng.permutation(600), [50, 130, 300, 310])  # unequal sizes, one of 10
    xy, xx, yy = (np.mean([hsic_unbiased_reference(A[s] @ A[s].T, B[s] @ B[s].T) for s in splits])
                  for A, B in ((X, Y), (X, X), (Y, Y)))
    est = MinibatchCKA()
    for s in splits:
        est.update(X[s], Y[s])
    assert est.hsic_xy_ == pytest.approx(xy, rel=1e-9)
    assert est.hsic_xx_ == pytest.approx(xx, rel=1e-9)
    assert est.hsic_yy_ == pytest.approx(yy, rel=1e-9)
    assert est.value() == pytest.approx(xy / np.sqrt(xx * yy), rel=1e-9)
    assert minibatch_cka([X[s] for s in splits], [Y[s] for s in splits]) == est.value()
    # one batch: minibatch CKA is debiased CKA
    one = MinibatchCKA().update(X, Y).value()
    assert one == pytest.approx(feature_space_linear_cka(X, Y, debiased=True), abs=1e-10)


# --------------------------------------------------------------------------------------------
# bad inputs

def test_different_numbers_of_rows_name_both_shapes():
    X, Y = np.ones((10, 3)), np.ones((11, 4))
    with pytest.raises(ValueError, match=r"\(10, 3\).*\(11, 4\)"):
        feature_space_linear_cka(X, Y)
    with pytest.raises(ValueError, match=r"\(10, 3\).*\(11, 4\)"):
        MinibatchCKA().update(X, Y)
    with pytest.raises(ValueError, match=r"\(10, 10\).*\(11, 11\)"):
        cka(np.eye(10), np.eye(11))
    with pytest.raises(ValueError, match=r"\(10, 3\).*\(11, 4\)"):
        linear_cka_matrix([X, Y])


def test_too_few_rows_for_debiased():
    X, Y = related_pair(3, 2, 2)
    with pytest.raises(ValueError, match="at least 4"):
        feature_space_linear_cka(X, Y, debiased=True)
    with pytest.raises(ValueError, match="at least 4"):
        cka(gram_linear(X), gram_linear(Y), debiased=True)
    with pytest.raises(ValueError, match="at least 4"):
        linear_cka_matrix(np.stack([X, Y], axis=1), debiased=True)
    with pytest.raises(ValueError, match="at least 4"):
        MinibatchCKA().update(X, Y)
    assert np.isfinite(feature_space_linear_cka(X, Y))  # the biased form is defined


def test_constant_inputs_give_nan_with_warning():
    X, _ = related_pair(20, 3, 3)
    const = np.full((20, 4), 0.1)
    for debiased in (False, True):
        with pytest.warns(ConstantInputWarning, match="constant"):
            assert np.isnan(feature_space_linear_cka(X, const, debiased))
        with pytest.warns(ConstantInputWarning):
            assert np.isnan(cka(gram_linear(const), gram_linear(X), debiased))
    with pytest.warns(ConstantInputWarning):
        assert np.isnan(MinibatchCKA().update(X, const).value())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no division warnings on the way
        with pytest.raises(ConstantInputWarning):
            feature_space_linear_cka(const, X)


def test_other_bad_inputs():
    X, Y = related_pair(20, 3, 3)
    with pytest.raises(ValueError, match="2-D"):
        feature_space_linear_cka(X[:, 0], Y)
    with pytest.raises(ValueError, match="nan or inf"):
        feature_space_linear_cka(np.where(X > 1, np.nan, X), Y)
    with pytest.raises(ValueError, match="nan or inf"):
        linear_cka_matrix(np.stack([X, np.where(Y > 1, np.inf, Y)], axis=1), chunk=4)
    with pytest.raises(ValueError, match="3-D"):
        linear_cka_matrix(X)
    with pytest.raises(ValueError, match="dtype"):
        linear_cka_matrix([X, Y], dtype=np.int64)
    with pytest.raises(ValueError, match="symmetric"):
        center_gram(np.arange(16.0).reshape(4, 4))
    with pytest.raises(ValueError, match="no batches"):
        MinibatchCKA().value()
    with pytest.raises(ValueError, match="same number of batches"):
        minibatch_cka([X, X], [Y])
