"""Tests of the linear probes (redundancy.methods.probe), each against an independent reference:
scikit-learn's LogisticRegression, a hand-written torch computation of the reference code's
loss, SciPy's and scikit-learn's metrics."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, recall_score
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import redundancy.methods.probe as probe_module
import redundancy.methods.probe_engine as probe_engine
from redundancy.methods.probe import LinearProbe, LinearProbeRegressor, evaluate, scores


def blobs(n=3000, d=20, k=3, seed=0, sep=1.5, priors=None):
    """A linearly separable (in practice) k-class task: Gaussian blobs around random means."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((k, d)) * sep
    y = rng.choice(k, size=n, p=priors)
    X = (means[y] + rng.standard_normal((n, d))).astype(np.float32)
    return X, y


def linear_targets(n=2000, d=10, seed=0, noise=0.3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    w = rng.standard_normal(d)
    return X, (X @ w + noise * rng.standard_normal(n)).astype(np.float32)


@pytest.fixture(scope="module")
def task3():
    return blobs()


# ---------------------------------------------------------------------------------------------
# against scikit-learn's logistic regression

def test_matches_sklearn_logistic_regression(task3):
    X, y = task3
    Xtr, ytr, Xte, yte = X[:2000], y[:2000], X[2000:], y[2000:]
    probe = LinearProbe().fit(Xtr, ytr)  # the paper's settings
    ref = LogisticRegression(max_iter=1000).fit(Xtr, ytr)
    acc, ref_acc = probe.score(Xte, yte), ref.score(Xte, yte)
    assert ref_acc > 0.98
    assert acc >= ref_acc - 0.015
    assert probe.coef_.shape == ref.coef_.shape == (3, 20)
    assert probe.intercept_.shape == ref.intercept_.shape == (3,)
    assert list(probe.classes_) == list(ref.classes_) == [0, 1, 2]
    assert probe.n_features_in_ == 20
    assert len(probe.loss_curve_) == 10 and probe.loss_curve_[-1] < probe.loss_curve_[0]
    proba = probe.predict_proba(Xte)
    assert proba.shape == (1000, 3) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert np.array_equal(probe.predict(Xte), np.argmax(probe.decision_function(Xte), axis=1))
    assert np.allclose(probe.decision_function(Xte), Xte @ probe.coef_.T + probe.intercept_, atol=1e-4)


def test_binary_follows_sklearn_conventions():
    X, y = blobs(n=600, d=5, k=2, seed=1)
    probe = LinearProbe(learning_rate=1e-2, epochs=50).fit(X, y)
    assert probe.coef_.shape == (2, 5)  # one row per class, as the reference nn.Linear(D, 2)
    z = probe.decision_function(X)
    assert z.shape == (600,)
    assert np.array_equal(probe.predict(X), probe.classes_[(z > 0).astype(int)])
    # as good a fit as scikit-learn's logistic regression on the same rows
    assert probe.score(X, y) >= LogisticRegression().fit(X, y).score(X, y) - 0.01


def test_labels_are_mapped_through_classes(task3):
    X, y = task3
    names = np.array(["NN", "VB", "JJ"])[y]
    shifted = np.array([3, 7, 10])[y]
    p_names = LinearProbe(epochs=2, learning_rate=1e-2).fit(X, names)
    p_shift = LinearProbe(epochs=2, learning_rate=1e-2).fit(X, shifted)
    p_plain = LinearProbe(epochs=2, learning_rate=1e-2).fit(X, y)
    assert list(p_shift.classes_) == [3, 7, 10] and list(p_names.classes_) == ["JJ", "NN", "VB"]
    assert set(p_shift.predict(X)) <= {3, 7, 10}
    # the same classes in the same sorted order -> the same model
    assert np.array_equal(p_shift.coef_, p_plain.coef_)
    assert np.array_equal(p_shift.predict(X), np.array([3, 7, 10])[p_plain.predict(X)])
    assert p_names.score(X, names) > 0.9


# ---------------------------------------------------------------------------------------------
# the loss it minimises: the reference code's, written out by hand

def reference_training(X, y, W0, b0, steps, l1, l2, squared, lr=1e-3):
    """The authors' loop, full batch: nn.Linear + CE + l1*sum|W| + l2*||W||_F, Adam."""
    lin = torch.nn.Linear(X.shape[1], W0.shape[0])
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(W0))
        lin.bias.copy_(torch.from_numpy(b0))
    opt = torch.optim.Adam(lin.parameters(), lr=lr)
    xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    losses = []
    for _ in range(steps):
        W = lin.weight
        l2_term = (W ** 2).sum() if squared else torch.sqrt((W ** 2).sum())
        loss = torch.nn.CrossEntropyLoss()(lin(xt), yt) + l1 * torch.abs(W).sum() + l2 * l2_term
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return lin.weight.detach().numpy(), lin.bias.detach().numpy(), losses


@pytest.mark.parametrize("squared", [False, True])
def test_loss_and_adam_steps_match_reference_code(squared):
    X, y = blobs(n=300, d=8, k=3, seed=2)
    l1, l2 = 0.01, 0.5  # large enough that the penalty moves the weights visibly
    kw = dict(batch_size=len(X), shuffle=False, l1=l1, l2=l2, l2_squared=squared, random_state=7)
    init = LinearProbe(epochs=0, **kw).fit(X, y)  # the seeded initial weights
    W0, b0 = init.coef_.copy(), init.intercept_.copy()

    # one epoch = one Adam step; its recorded loss is the loss at the initial weights
    one = LinearProbe(epochs=1, **kw).fit(X, y)
    W1, b1, losses = reference_training(X, y, W0, b0, 1, l1, l2, squared)
    np.testing.assert_allclose(one.coef_, W1, atol=1e-6, rtol=0)
    np.testing.assert_allclose(one.intercept_, b1, atol=1e-6, rtol=0)
    assert one.loss_curve_[0] == pytest.approx(losses[0], rel=1e-6)

    # Adam's first step is ~lr*sign(grad); later steps depend on the gradient's size
    five = LinearProbe(epochs=5, **kw).fit(X, y)
    W5, b5, losses5 = reference_training(X, y, W0, b0, 5, l1, l2, squared)
    np.testing.assert_allclose(five.coef_, W5, atol=1e-6, rtol=0)
    np.testing.assert_allclose(five.intercept_, b5, atol=1e-6, rtol=0)
    np.testing.assert_allclose(five.loss_curve_, losses5, rtol=1e-6)

    # and the test tells the two L2 forms apart
    Wother, _, other_losses = reference_training(X, y, W0, b0, 5, l1, l2, not squared)
    assert np.abs(five.coef_ - Wother).max() > 1e-4
    assert abs(one.loss_curve_[0] - other_losses[0]) > 1e-3


def test_loss_value_at_init_is_ce_plus_unsquared_frobenius():
    X, y = blobs(n=200, d=6, k=4, seed=3)
    l1, l2 = 0.3, 2.0
    kw = dict(batch_size=len(X), shuffle=False, l1=l1, l2=l2, random_state=11, dtype="float64")
    init = LinearProbe(epochs=0, **kw).fit(X, y)
    W, b = init.coef_, init.intercept_
    z = X.astype(np.float64) @ W.T + b
    ce = np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y])
    expected = ce + l1 * np.abs(W).sum() + l2 * np.sqrt((W ** 2).sum())
    assert LinearProbe(epochs=1, **kw).fit(X, y).loss_curve_[0] == pytest.approx(expected, rel=1e-10)
    expected_sq = ce + l1 * np.abs(W).sum() + l2 * (W ** 2).sum()
    assert LinearProbe(epochs=1, l2_squared=True, **kw).fit(X, y).loss_curve_[0] == pytest.approx(
        expected_sq, rel=1e-10)


def test_bias_is_not_penalised():
    priors = [0.7, 0.2, 0.1]
    X, y = blobs(n=2000, d=5, k=3, seed=4, priors=priors)
    kw = dict(epochs=40, batch_size=200, learning_rate=2e-2)
    free = LinearProbe(l1=0, l2=0, **kw).fit(X, y)
    crushed = LinearProbe(l1=5.0, l2=50.0, **kw).fit(X, y)
    assert np.abs(free.coef_).max() > 1.0
    # the weights collapse to ~0 (Adam keeps them within a few steps of it) ...
    assert np.abs(crushed.coef_).max() < 0.1
    # ... while the unpenalised bias alone fits the class priors
    fitted = torch.softmax(torch.from_numpy(crushed.intercept_.astype(np.float64)), 0).numpy()
    observed = np.bincount(y) / len(y)
    np.testing.assert_allclose(fitted, observed, atol=0.03)
    assert np.abs(crushed.intercept_).max() > 0.5  # far from 0: not shrunk


def test_penalty_is_on_every_batch_and_grows_with_strength(task3):
    X, y = task3
    norms = [np.abs(LinearProbe(l1=l1, l2=l1, epochs=3).fit(X, y).coef_).sum() for l1 in (0.0, 1e-2, 1e-1)]
    assert norms[0] > norms[1] > norms[2]


# ---------------------------------------------------------------------------------------------
# seeding and determinism

def test_same_seed_same_weights_different_seed_different(task3):
    X, y = task3
    a = LinearProbe(epochs=2, random_state=3).fit(X, y)
    b = LinearProbe(epochs=2, random_state=3).fit(X, y)
    c = LinearProbe(epochs=2, random_state=4).fit(X, y)
    assert np.array_equal(a.coef_, b.coef_) and np.array_equal(a.intercept_, b.intercept_)
    assert a.loss_curve_ == b.loss_curve_
    assert not np.array_equal(a.coef_, c.coef_)


def test_shuffle_on_and_off_both_deterministic(task3):
    X, y = task3
    off = [LinearProbe(epochs=2, shuffle=False).fit(X, y).coef_ for _ in range(2)]
    on = [LinearProbe(epochs=2, shuffle=True).fit(X, y).coef_ for _ in range(2)]
    assert np.array_equal(off[0], off[1])
    assert np.array_equal(on[0], on[1])
    assert not np.array_equal(on[0], off[0])  # shuffling changes the batches


class RowLog(np.ndarray):
    """An array that records which rows every read asks for."""

    def __getitem__(self, key):
        if isinstance(key, slice):
            self.log.append(np.arange(*key.indices(self.shape[0])))
        else:
            self.log.append(np.asarray(key).ravel())
        return np.asarray(self)[key]


@pytest.mark.parametrize("shuffle", [False, True])
def test_every_epoch_reads_every_row_once(shuffle):
    X, y = blobs(n=1000, d=4, k=2, seed=10)
    logged = X.view(RowLog)
    logged.log = []
    LinearProbe(epochs=3, batch_size=96, shuffle=shuffle).fit(logged, y)
    batches = logged.log
    per_epoch = -(-1000 // 96)
    assert len(batches) == 3 * per_epoch and all(len(b) <= 96 for b in batches)
    orders = [np.concatenate(batches[e * per_epoch:(e + 1) * per_epoch]) for e in range(3)]
    for order in orders:
        assert np.array_equal(np.sort(order), np.arange(1000))
    if shuffle:  # a fresh order every epoch
        assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[0], np.arange(1000))
    else:  # the stored order, as the reference code
        assert all(np.array_equal(o, np.arange(1000)) for o in orders)


def test_random_state_none_is_not_fixed(task3):
    X, y = task3
    a = LinearProbe(epochs=1, random_state=None).fit(X[:500], y[:500])
    b = LinearProbe(epochs=1, random_state=None).fit(X[:500], y[:500])
    assert not np.array_equal(a.coef_, b.coef_)


def test_fit_does_not_touch_global_rng(task3):
    X, y = task3
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    LinearProbe(epochs=1).fit(X[:300], y[:300])
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------------------------------------
# the scikit-learn contract

def test_clone_and_params_round_trip():
    probe = LinearProbe(epochs=3, learning_rate=5e-3, l1=0.1, l2_squared=True, shuffle=False,
                        random_state=9, verbose=False)
    params = probe.get_params()
    assert params == {"epochs": 3, "learning_rate": 5e-3, "batch_size": 128, "l1": 0.1, "l2": 1e-5,
                      "l2_squared": True, "shuffle": False, "random_state": 9, "device": "cpu",
                      "dtype": "float32", "verbose": False}
    twin = clone(probe)
    assert twin is not probe and twin.get_params() == params
    assert LinearProbe().set_params(**params).get_params() == params
    assert is_classifier(LinearProbe()) and is_regressor(LinearProbeRegressor())
    assert clone(LinearProbeRegressor(l1=0.5)).get_params()["l1"] == 0.5
    assert "LinearProbe(" in repr(probe)


def test_cross_val_score_and_pipeline_compose(task3):
    X, y = task3
    cv = cross_val_score(LinearProbe(epochs=3, learning_rate=1e-2), X, y, cv=3)
    assert cv.shape == (3,) and cv.min() > 0.95
    pipe = make_pipeline(StandardScaler(), LinearProbe(epochs=3, learning_rate=1e-2)).fit(X, y)
    assert pipe.score(X, y) > 0.95
    Xr, yr = linear_targets(n=900)
    cvr = cross_val_score(LinearProbeRegressor(learning_rate=1e-2, epochs=20), Xr, yr, cv=3)
    assert cvr.min() > 0.95  # Pearson, the regressor's score


def test_not_fitted_and_feature_count_checks(task3):
    X, y = task3
    with pytest.raises(NotFittedError):
        LinearProbe().predict(X)
    probe = LinearProbe(epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        probe.predict(X[:, :5])


def test_bad_hyper_parameters_raise_at_fit(task3):
    X, y = task3
    for bad in (dict(epochs=-1), dict(batch_size=0), dict(learning_rate=0), dict(l1=-1), dict(dtype="int8")):
        probe = LinearProbe(**bad)  # __init__ only stores
        with pytest.raises(ValueError):
            probe.fit(X, y)


# ---------------------------------------------------------------------------------------------
# memory-mapped input

def _mapped(path, X, dtype):
    """``X`` written to an .npy file as ``dtype`` and mapped back read-only (as activations are)."""
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=X.shape)
    mm[:] = X
    mm.flush()
    del mm
    return np.load(path, mmap_mode="r")


def test_float16_memmap_close_to_float32_and_memory_bounded(tmp_path, monkeypatch):
    X, y = blobs(n=20000, d=200, k=5, seed=5, sep=0.3)
    X16 = _mapped(tmp_path / "acts.npy", X, np.float16)
    assert isinstance(X16, np.memmap) and X16.dtype == np.float16

    kw = dict(epochs=1, random_state=1)
    ref = LinearProbe(**kw).fit(X, y)
    # prediction converts chunks of PREDICT_CHUNK_BYTES (64 MiB, more than this whole array)
    monkeypatch.setattr(probe_module, "PREDICT_CHUNK_BYTES", 2**20)
    tracemalloc.start()
    try:
        probe = LinearProbe(**kw).fit(X16, y)
        _, fit_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        pred16 = probe.predict(X16)
        _, predict_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a float32 copy of the whole array would be 16 MB; batches and chunks stay far below
    # (the predictions themselves, 20000 x 5 scores, are 0.4 MB)
    assert fit_peak < 4 * 2**20, f"fit peak {fit_peak / 2**20:.1f} MiB"
    assert predict_peak < 5 * 2**20, f"predict peak {predict_peak / 2**20:.1f} MiB"
    np.testing.assert_allclose(probe.coef_, ref.coef_, atol=5e-3)
    assert np.mean(pred16 == ref.predict(X)) > 0.99
    assert abs(probe.score(X16, y) - ref.score(X, y)) < 0.01
    assert np.array_equal(X16, X.astype(np.float16))  # input untouched


def test_float32_memmap_and_its_layer_views_train_as_in_memory(tmp_path):
    """A mapped float32 activation file, and a column range of it (one layer), are read by the
    engine in place (no copy of the array): the probes equal those trained on in-memory copies."""
    X, y = blobs(n=3000, d=200, k=5, seed=6, sep=0.3)
    Xm = _mapped(tmp_path / "acts.npy", X, np.float32)
    kw = dict(epochs=2, random_state=3)
    for cols in (slice(None), slice(50, 150)):
        view = Xm[:, cols]
        assert isinstance(view, np.memmap) and not view.flags.writeable
        tracemalloc.start()
        try:
            probe = LinearProbe(**kw).fit(view, y)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        ref = LinearProbe(**kw).fit(np.ascontiguousarray(X[:, cols]), y)
        np.testing.assert_allclose(probe.coef_, ref.coef_, atol=1e-6, rtol=0)
        np.testing.assert_allclose(probe.loss_curve_, ref.loss_curve_, rtol=1e-6)
        assert peak < view.shape[0] * view.shape[1] * 4 / 2, f"fit copied the array ({peak} bytes)"


def test_non_finite_input_raises(task3):
    X, y = task3
    X = X.copy()
    X[1500, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        LinearProbe(epochs=1).fit(X, y)


# ---------------------------------------------------------------------------------------------
# regression

def test_regressor_fits_linear_targets():
    X, y = linear_targets()
    reg = LinearProbeRegressor(learning_rate=1e-2, epochs=20).fit(X[:1500], y[:1500])
    assert reg.coef_.shape == (10,) and isinstance(reg.intercept_, float)
    pred = reg.predict(X[1500:])
    assert pred.shape == (500,)
    r = reg.score(X[1500:], y[1500:])
    assert r > 0.95
    assert r == pytest.approx(pearsonr(y[1500:], pred).statistic, abs=1e-6)
    assert np.allclose(pred, X[1500:] @ reg.coef_ + reg.intercept_, atol=1e-4)
    assert len(reg.loss_curve_) == 20 and reg.loss_curve_[-1] < reg.loss_curve_[0]


def test_regressor_loss_is_mse_plus_penalty():
    X, y = linear_targets(n=300, d=6, seed=6)
    kw = dict(batch_size=len(X), shuffle=False, l1=0.2, l2=0.7, random_state=2, dtype="float64")
    init = LinearProbeRegressor(epochs=0, **kw).fit(X, y)
    w, b = init.coef_, init.intercept_
    mse = np.mean((X.astype(np.float64) @ w + b - y) ** 2)
    expected = mse + 0.2 * np.abs(w).sum() + 0.7 * np.sqrt((w ** 2).sum())
    assert LinearProbeRegressor(epochs=1, **kw).fit(X, y).loss_curve_[0] == pytest.approx(expected, rel=1e-9)


# ---------------------------------------------------------------------------------------------
# metrics

def test_scores_match_sklearn_on_classification():
    rng = np.random.default_rng(8)
    y_true = rng.integers(0, 4, 500)
    y_pred = np.where(rng.random(500) < 0.7, y_true, rng.integers(0, 4, 500))
    names = ["DT", "NN", "VB", "JJ"]
    s = scores(y_true, y_pred, label_names=names)
    assert s["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert s["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert s["matthews_corrcoef"] == pytest.approx(matthews_corrcoef(y_true, y_pred))
    recalls = recall_score(y_true, y_pred, average=None)
    assert s["per_class_accuracy"] == pytest.approx(dict(zip(names, recalls)))
    for k, name in enumerate(names):  # recall = accuracy on the rows of that class
        assert s["per_class_accuracy"][name] == pytest.approx(np.mean(y_pred[y_true == k] == k))
    assert set(scores(y_true, y_pred)["per_class_accuracy"]) == {0, 1, 2, 3}


@pytest.mark.parametrize("case", ["absent_in_pred", "extra_in_pred", "one_class_pred", "perfect", "strings",
                                  "many_classes"])
def test_scores_match_sklearn_in_edge_cases(case):
    rng = np.random.default_rng(9)
    y_true = rng.integers(0, 5, 300)
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.integers(0, 5, 300))
    if case == "absent_in_pred":  # a class never predicted: recall 0, F1 0
        y_pred = np.where(y_pred == 3, 2, y_pred)
    elif case == "extra_in_pred":  # a predicted class that is not in y_true counts in macro F1
        y_pred = np.where(rng.random(300) < 0.1, 7, y_pred)
    elif case == "one_class_pred":  # Matthews' correlation undefined: 0
        y_pred = np.full(300, 1)
    elif case == "perfect":
        y_pred = y_true.copy()
    elif case == "strings":
        y_true, y_pred = np.array(list("abcde"))[y_true], np.array(list("abcde"))[y_pred]
    else:
        y_true = rng.integers(0, 45, 2000)
        y_pred = np.where(rng.random(2000) < 0.8, y_true, rng.integers(0, 45, 2000))
    s = scores(y_true, y_pred)
    assert s["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    assert s["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0), abs=1e-12)
    assert s["matthews_corrcoef"] == pytest.approx(matthews_corrcoef(y_true, y_pred), abs=1e-12)
    present = np.unique(y_true)
    recalls = recall_score(y_true, y_pred, labels=present, average=None, zero_division=0)
    assert s["per_class_accuracy"] == pytest.approx(dict(zip(present.tolist(), recalls)), abs=1e-12)


def test_scores_and_evaluate_match_scipy_on_regression():
    X, y = linear_targets(n=600, seed=9, noise=1.0)
    reg = LinearProbeRegressor(learning_rate=1e-2, epochs=10).fit(X, y)
    pred = reg.predict(X)
    s = evaluate(reg, X, y)
    assert s == scores(y, pred, regression=True)
    assert s["pearson"] == pytest.approx(pearsonr(y, pred).statistic, abs=1e-6)
    assert s["spearman"] == pytest.approx(spearmanr(y, pred).statistic, abs=1e-6)


def test_evaluate_classifier(task3):
    X, y = task3
    probe = LinearProbe(epochs=2).fit(X, y)
    s = evaluate(probe, X, y, label_names={0: "a", 1: "b", 2: "c"})
    assert s["accuracy"] == pytest.approx(probe.score(X, y))
    assert set(s["per_class_accuracy"]) == {"a", "b", "c"}


# ---------------------------------------------------------------------------------------------
# errors

def test_single_class_raises(task3):
    X, _ = task3
    with pytest.raises(ValueError, match="at least two classes"):
        LinearProbe().fit(X[:50], np.full(50, 2))


def test_mismatched_lengths_raise(task3):
    X, y = task3
    with pytest.raises(ValueError, match="rows"):
        LinearProbe().fit(X, y[:-1])
    with pytest.raises(ValueError, match="rows"):
        LinearProbeRegressor().fit(X[:10], np.zeros(11))
    with pytest.raises(ValueError):
        scores(y, y[:-1])


def test_continuous_labels_rejected_by_classifier(task3):
    X, _ = task3
    with pytest.raises(ValueError):
        LinearProbe().fit(X, np.linspace(0, 1, len(X)))


# ---------------------------------------------------------------------------------------------
# many probes in one pass (fit_probes / train_probes): each as if trained alone

def _families(d_layers=6, hidden=16, seed=0):
    """Feature sets as the analyses use them: oracle, single layers, layer prefixes, and
    top-k prefixes of a ranking (columns out of order, narrow blocks that get masked)."""
    rng = np.random.default_rng(seed)
    D = d_layers * hidden
    order = rng.permutation(D)
    return ([np.arange(D)] + [np.arange(l * hidden, (l + 1) * hidden) for l in range(d_layers)]
            + [np.arange((l + 1) * hidden) for l in range(d_layers - 1)]
            + [order[:k] for k in (3, 9, 20, 50)])


@pytest.mark.parametrize("shuffle", [True, False])
def test_fit_probes_equals_one_by_one_fits(shuffle):
    from redundancy.methods.probe import fit_probes

    X, y = blobs(n=1500, d=96, k=4, seed=5)
    sets = _families()
    template = LinearProbe(epochs=3, random_state=3, shuffle=shuffle, l1=1e-3, l2=1e-2)
    bank = fit_probes(template, X, y, sets)
    for f, b in zip(sets, bank):
        alone = clone(template).fit(X[:, f], y)
        np.testing.assert_allclose(b.coef_, alone.coef_, atol=2e-6, rtol=0)
        np.testing.assert_allclose(b.intercept_, alone.intercept_, atol=2e-6, rtol=0)
        np.testing.assert_allclose(b.loss_curve_, alone.loss_curve_, rtol=1e-5)
        assert np.array_equal(b.predict(X[:, f]), alone.predict(X[:, f]))
        assert b.n_features_in_ == f.size and list(b.classes_) == list(alone.classes_)


def test_fit_probes_regressor_and_float64_equal_one_by_one():
    from redundancy.methods.probe import fit_probes

    X, t = linear_targets(n=800, d=96, seed=2)
    sets = _families()[:8]
    for template in (LinearProbeRegressor(epochs=2, random_state=1),
                     LinearProbe(epochs=2, random_state=1, dtype="float64")):
        target = t if is_regressor(template) else (t > 0).astype(int)
        for f, b in zip(sets, fit_probes(template, X, target, sets)):
            alone = clone(template).fit(X[:, f], target)
            np.testing.assert_allclose(b.coef_, alone.coef_, atol=2e-6 if template.dtype == "float32" else 1e-12)


def test_bank_blocks_share_products_and_mask_narrow_runs():
    from redundancy.methods.probe_engine import _blocks

    # nested prefixes of widths 10, 20, 200: the two narrow runs merge into one masked block
    sets = [np.arange(10), np.arange(20), np.arange(200)]
    assert _blocks(sets, 200, min_width=64) == [(0, 200, [0, 1, 2])]
    assert _blocks(sets, 200, min_width=1) == [(0, 10, [0, 1, 2]), (10, 20, [1, 2]), (20, 200, [2])]
    # single layers and the oracle: one block per layer, each used by its layer and the oracle
    layers = [np.arange(300)] + [np.arange(l * 100, (l + 1) * 100) for l in range(3)]
    assert _blocks(layers, 300, min_width=64) == [(0, 100, [0, 1]), (100, 200, [0, 2]), (200, 300, [0, 3])]
    # columns no probe uses are never multiplied
    assert _blocks([np.arange(100, 200)], 300, min_width=64) == [(100, 200, [0])]


def test_shuffling_does_not_depend_on_width():
    """Probes of different widths with one seed see the same mini-batches (what lets a bank
    train them together), and the initialisation is nn.Linear's for each width."""
    X, y = blobs(n=1000, d=30, k=2, seed=8)
    seen = []
    for d in (5, 30):
        logged = X[:, :d].copy().view(RowLog)
        logged.log = []
        LinearProbe(epochs=2, batch_size=100, random_state=4).fit(logged, y)
        seen.append([b.tolist() for b in logged.log])
    assert seen[0] == seen[1]
    w = LinearProbe(epochs=0, random_state=4).fit(X, y).coef_
    assert np.abs(w).max() <= 1 / np.sqrt(30) and np.abs(w).max() > 0.8 / np.sqrt(30)


def test_fit_probes_checks_its_input():
    from redundancy.methods.probe import fit_probes

    X, y = blobs(n=200, d=10, k=2, seed=1)
    with pytest.raises(ValueError, match="feature set"):
        fit_probes(LinearProbe(), X, y, [np.arange(5), np.array([3, 10])])
    with pytest.raises(TypeError, match="LinearProbe"):
        fit_probes(LogisticRegression(), X, y, [np.arange(5)])
    with pytest.raises(ValueError, match="two classes"):
        fit_probes(LinearProbe(), X, np.zeros(200, dtype=int), [np.arange(5)])
    assert fit_probes(LinearProbe(), X, y, []) == []


def test_compiled_kernels_are_in_use_on_the_cpu():
    # numba is a dependency: the fast path is what CI tests, not a silent fallback
    from redundancy.methods import probe_kernels as kernels

    assert kernels.available()


def test_adam_step_kernel_matches_torch_adam_with_the_penalty_gradient():
    """The compiled step against torch.optim.Adam given g = G + l1 sign(W) + s_p W (masked)."""
    from redundancy.methods import probe_kernels as kernels

    rng = np.random.default_rng(4)
    R, K, C = 12, 37, 3  # 4 probes of 3 rows each
    W0 = rng.uniform(-0.1, 0.1, (R, K)).astype(np.float32)
    W0[0, :5] = 0.0  # sign(0) = 0, as torch.sign
    mask = (rng.random((R, K)) > 0.2).astype(np.float32)
    W0 *= mask
    probe_of_row = np.repeat(np.arange(4), C)
    scale = np.array([0.5, 0.0, 2.0, 1e-3], dtype=np.float32)
    l1 = 0.01
    W, M, V = W0.copy(), np.zeros_like(W0), np.zeros_like(W0)
    Wt = torch.nn.Parameter(torch.from_numpy(W0.copy()))
    opt = torch.optim.Adam([Wt], lr=1e-2)
    sq, ab = np.empty(R), np.empty(R)
    for step in range(1, 8):
        G = rng.standard_normal((R, K)).astype(np.float32)
        with torch.no_grad():
            g = (torch.from_numpy(G) + l1 * torch.sign(Wt) + torch.from_numpy(scale[probe_of_row])[:, None] * Wt)
            Wt.grad = g * torch.from_numpy(mask)
        opt.step()
        kernels.adam_step(W, G, M, V, step, lr=1e-2, l1=l1, scale=scale, probe_of_row=probe_of_row, mask=mask,
                          sq_rows=sq, ab_rows=ab)
        np.testing.assert_allclose(W, Wt.detach().numpy(), atol=1e-7, rtol=0)
    assert np.all(W[mask == 0] == 0)  # a masked weight never moves
    np.testing.assert_allclose(sq, (W.astype(np.float64) ** 2).sum(1), rtol=1e-12)
    np.testing.assert_allclose(ab, np.abs(W.astype(np.float64)).sum(1), rtol=1e-12)
    np.testing.assert_allclose(M, opt.state[Wt]["exp_avg"].numpy(), atol=1e-7, rtol=0)
    np.testing.assert_allclose(V, opt.state[Wt]["exp_avg_sq"].numpy(), atol=1e-9, rtol=1e-5)


def test_softmax_xent_kernel_matches_torch_log_softmax():
    """The compiled loss pass against torch: loss, gradient (softmax - onehot) / m, bias gradient
    and the penalty bookkeeping, for 3 probes of 5 classes, with logits up to +-60."""
    from redundancy.methods import probe_kernels as kernels

    rng = np.random.default_rng(7)
    P, C, m = 3, 5, 37
    logits = (rng.standard_normal((P * C, m)) * 20).astype(np.float32)
    bias = rng.standard_normal(P * C).astype(np.float32)
    tb = rng.integers(0, C, m)
    row_probe = np.repeat(np.arange(P), C)
    sq_all, ab_all = rng.random(P * C), rng.random(P * C)
    sq_all[row_probe == 1] = 0.0  # a probe at W = 0: its L2 scale is 0, not a division by 0
    outT = logits.copy()
    loss, gbias, penalty = np.zeros(P), np.empty(P * C, dtype=np.float32), np.zeros(P)
    scale = np.empty(P, dtype=np.float32)
    kernels.softmax_xent(outT, bias, tb, C, loss, gbias, np.empty((3, m), dtype=np.float32), row_probe, sq_all,
                         ab_all, penalty, scale, l1=0.1, l2=0.01, l2_squared=False)
    z = torch.from_numpy(logits.astype(np.float64) + bias[:, None]).view(P, C, m)
    logp = torch.log_softmax(z, 1)
    ref_loss = -logp.gather(1, torch.from_numpy(tb).view(1, 1, m).expand(P, 1, m)).mean(2).view(P)
    ref_g = logp.exp()
    ref_g.scatter_add_(1, torch.from_numpy(tb).view(1, 1, m).expand(P, 1, m), -torch.ones(P, 1, m, dtype=torch.float64))
    ref_g = (ref_g / m).view(P * C, m).numpy()
    np.testing.assert_allclose(loss, ref_loss.numpy(), rtol=1e-6)
    np.testing.assert_allclose(outT, ref_g, atol=2e-8, rtol=0)
    np.testing.assert_allclose(gbias, ref_g.sum(1), atol=1e-7, rtol=0)
    nrm2 = np.bincount(row_probe, sq_all)
    np.testing.assert_allclose(penalty, 0.1 * np.bincount(row_probe, ab_all) + 0.01 * np.sqrt(nrm2), rtol=1e-12)
    np.testing.assert_allclose(scale, np.where(nrm2 > 0, 0.01 / np.sqrt(np.where(nrm2 > 0, nrm2, 1)), 0),
                               rtol=1e-6)
    assert scale[1] == 0.0
    # the float32 exponential inside it, within 5e-7 of the exact value from 1 down to exp(-75):
    # two classes, softmax([0, x]) of class 1 is exp(x) / (1 + exp(x)), its gradient that / m
    m = 1024
    for x in np.split(-np.linspace(0, 75, 64 * m).astype(np.float32), 64):
        out = np.vstack([np.zeros((1, m), dtype=np.float32), x[None]])
        kernels.softmax_xent(out, np.zeros(2, dtype=np.float32), np.zeros(m, dtype=np.int64), 2, np.zeros(1),
                             np.empty(2, dtype=np.float32), np.empty((3, m), dtype=np.float32), np.zeros(2, int),
                             np.zeros(2), np.zeros(2), np.zeros(1), np.zeros(1, dtype=np.float32), l1=0.0, l2=0.0,
                             l2_squared=False)
        ex = np.exp(x.astype(np.float64))
        np.testing.assert_allclose(out[1].astype(np.float64) * m, ex / (1 + ex), rtol=5e-7, atol=0)


def test_compiled_loss_pass_trains_the_same_probes_as_torchs_loss(monkeypatch):
    """FUSED_LOSS off (torch's log_softmax and friends) and on: the same probes, blocks shared by
    some probes only and a last short batch included."""
    from redundancy.methods.probe import fit_probes

    X, y = blobs(n=1130, d=96, k=5, seed=3)
    sets = _families()
    template = LinearProbe(epochs=3, random_state=1, l1=1e-3, l2=1e-2)
    fused = fit_probes(template, X, y, sets)
    monkeypatch.setattr(probe_engine, "FUSED_LOSS", False)
    plain = fit_probes(template, X, y, sets)
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a.coef_, b.coef_, atol=2e-6, rtol=0)
        np.testing.assert_allclose(a.intercept_, b.intercept_, atol=2e-6, rtol=0)
        np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-5)


@pytest.mark.parametrize("shuffle", [True, False])
def test_compiled_and_torch_engines_agree(monkeypatch, shuffle):
    """The compiled update (CPU default) and torch's operations (the GPU path) train the same probes."""
    from redundancy.methods.probe import fit_probes

    X, y = blobs(n=1200, d=96, k=4, seed=6)
    sets = _families()  # with masked narrow blocks
    template = LinearProbe(epochs=3, random_state=2, shuffle=shuffle, l1=1e-3, l2=1e-2)
    compiled = fit_probes(template, X, y, sets)
    monkeypatch.setenv("REDUNDANCY_ENGINE", "torch")
    plain = fit_probes(template, X, y, sets)
    for a, b in zip(compiled, plain):
        np.testing.assert_allclose(a.coef_, b.coef_, atol=2e-6, rtol=0)
        np.testing.assert_allclose(a.intercept_, b.intercept_, atol=2e-6, rtol=0)
        np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-5)
    # and they are not the same code: a squared L2 on one side only shows
    monkeypatch.delenv("REDUNDANCY_ENGINE")
    other = fit_probes(clone(template).set_params(l2_squared=True), X, y, sets)
    assert max(np.abs(a.coef_ - b.coef_).max() for a, b in zip(other, plain)) > 1e-4
