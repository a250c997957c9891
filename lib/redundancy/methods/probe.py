"""Linear probes (paper section 3.2): logistic regression with elastic-net regularisation.

Dalvi et al. (2020), *Analyzing Redundancy in Pretrained Transformer Models*, section 3.2
("Classifier Settings"): "a logistic regression classifier with ElasticNet regularization
[...] for 10 epochs with a learning rate of 1e-3, batch size of 128 and a value of 1e-5 for
both L1 and L2 lambda regularization parameters". The authors' reference code trains
``nn.Linear(D, C)`` with Adam on every mini-batch's loss::

    loss = cross_entropy(X_b W^T + b, y_b) + l1 * sum|W| + l2 * sqrt(sum W^2)

The L2 term there is the Frobenius norm of ``W``, *not* its square, and the bias is not
penalised. :class:`LinearProbe` minimises exactly this loss (``l2_squared=False``, the
default); :class:`LinearProbeRegressor` swaps cross-entropy for the mean squared error
(STS-B). Both follow the scikit-learn estimator contract, so ``clone``, pipelines,
``cross_val_score`` and grid searches work on them.

Deviations from the reference code, each a parameter:

* ``shuffle=True`` by default (the reference code does not shuffle; ``shuffle=False``
  walks the rows in their stored order, as it did);
* every random draw (initialisation, shuffling) comes from a ``torch.Generator`` seeded
  with ``random_state`` (the reference code does not seed), so two fits with the same seed
  give identical weights on CPU (with the same number of torch threads).

Inputs may be large memory-mapped activation arrays (``Activations.flat()``, float16 or
float32): mini-batches are read from them and converted one at a time, so memory stays
bounded by the batch (and, for prediction, by a chunk of about 64 MiB).

Metrics (:func:`scores`, :func:`evaluate`) come from scikit-learn and SciPy: accuracy,
per-class accuracy (recall of each class), macro F1 and Matthews' correlation for
classification; Pearson and Spearman correlation for regression.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_regressor
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from .probe_engine import TRAIN_DTYPES, train_probes
from ..utils import release_mapped

__all__ = ["LinearProbe", "LinearProbeRegressor", "train_probes", "fit_probes", "scores", "evaluate"]

#: bytes of converted input held at once when predicting
PREDICT_CHUNK_BYTES = 64 * 2**20


def _check_X(X, name: str) -> np.ndarray:
    """A 2-D numeric array, left as it is (a memmap stays a memmap: nothing is read here).
    The messages carry scikit-learn's words too, so its estimator checks recognise them."""
    if hasattr(X, "tocsr") or hasattr(X, "toarray"):
        raise TypeError(f"{name} does not take sparse input; pass a dense array")
    if not isinstance(X, np.ndarray):
        X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name} expects a 2-D array (samples x features), got shape {X.shape}. Reshape your "
                         "data with X.reshape(-1, 1) for one feature or X.reshape(1, -1) for one sample")
    if X.dtype.kind == "c":
        raise ValueError(f"{name} expects real features, got dtype {X.dtype}: Complex data not supported")
    if X.dtype.kind == "O":
        X = X.astype(np.float64)  # numbers held as objects; anything else raises numpy's TypeError here
    if X.dtype.kind not in "fiub":
        raise ValueError(f"{name} expects numeric features, got dtype {X.dtype}")
    for n, what in ((X.shape[0], "sample"), (X.shape[1], "feature")):
        if n == 0:
            raise ValueError(f"{name} got an empty array: 0 {what}(s) (shape={X.shape}) while a minimum of 1 is "
                             "required.")
    return X


def _check_finite_outputs(out: np.ndarray, X, rows: slice, name: str) -> None:
    """Raise when a chunk's outputs are not finite because its input holds NaN or infinity (the
    outputs are small: checking them costs nothing; the input is read only then)."""
    if np.isfinite(out).all():
        return
    bad = np.flatnonzero(~np.isfinite(np.asarray(X[rows], dtype=np.float64)).all(1))
    if bad.size:
        raise ValueError(f"{name}: X contains NaN or infinity (row {rows.start + int(bad[0])} is the first); "
                         "remove or impute those values")


def _read_rows(X: np.ndarray, rows, np_dtype) -> np.ndarray:
    """Rows of ``X`` (a slice or sorted indices) as a fresh, writable, C-ordered array."""
    return np.array(X[rows], dtype=np_dtype, order="C", copy=True)


class _LinearProbeBase(BaseEstimator):
    """Shared hyper-parameters and training loop of the classifier and the regressor."""

    def __init__(self, epochs=10, learning_rate=1e-3, batch_size=128, l1=1e-5, l2=1e-5, l2_squared=False,
                 shuffle=True, random_state=0, device="cpu", dtype="float32", verbose=False):
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.l1 = l1
        self.l2 = l2
        self.l2_squared = l2_squared
        self.shuffle = shuffle
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.verbose = verbose

    # checks --------------------------------------------------------------------------------
    def _check_params(self):
        name = type(self).__name__
        if not isinstance(self.epochs, Integral) or isinstance(self.epochs, bool) or self.epochs < 0:
            raise ValueError(f"{name}: epochs must be an integer >= 0, got {self.epochs!r}")
        if not isinstance(self.batch_size, Integral) or isinstance(self.batch_size, bool) or self.batch_size < 1:
            raise ValueError(f"{name}: batch_size must be an integer >= 1, got {self.batch_size!r}")
        if not isinstance(self.learning_rate, Real) or not self.learning_rate > 0:
            raise ValueError(f"{name}: learning_rate must be > 0, got {self.learning_rate!r}")
        for p in ("l1", "l2"):
            v = getattr(self, p)
            if not isinstance(v, Real) or not v >= 0:
                raise ValueError(f"{name}: {p} must be a number >= 0, got {v!r}")
        if self.dtype not in TRAIN_DTYPES:
            raise ValueError(f"{name}: dtype must be one of {sorted(TRAIN_DTYPES)}, got {self.dtype!r}")
        if self.random_state is not None and not isinstance(self.random_state, (Integral, np.random.RandomState,
                                                                                   np.random.Generator)):
            raise ValueError(f"{name}: random_state must be an int, None, or a NumPy random state; "
                             f"got {self.random_state!r}")

    def _check_fit_input(self, X, y):
        X = _check_X(X, f"{type(self).__name__}.fit")
        y = column_or_1d(y, warn=True)
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"{type(self).__name__}.fit: X has {X.shape[0]} rows but y has {y.shape[0]} "
                             "values; they must match one to one")
        return X, y

    def _check_predict_input(self, X):
        check_is_fitted(self, "coef_")
        X = _check_X(X, f"{type(self).__name__}.predict")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input")
        return X

    # training ----------------------------------------------------------------------------
    def _train(self, X: np.ndarray, target: np.ndarray, n_outputs: int, regression: bool):
        """Adam on ``loss(X_b W^T + b, t_b) + penalty(W)``, mini-batch by mini-batch.

        Returns ``(W, b)`` as NumPy arrays and sets ``loss_curve_`` and ``n_iter_``.
        """
        self._check_params()
        (w, b, curve), = train_probes(X, target, n_outputs, [np.arange(X.shape[1])], regression=regression,
                                      name=f"{type(self).__name__}.fit", **self._engine_params())
        self.loss_curve_ = curve
        self.n_iter_ = int(self.epochs)
        self.n_features_in_ = X.shape[1]
        return w, b

    def _engine_params(self) -> dict:
        """The hyper-parameters as :func:`train_probes` takes them."""
        return dict(epochs=int(self.epochs), learning_rate=self.learning_rate, batch_size=int(self.batch_size),
                    l1=self.l1, l2=self.l2, l2_squared=self.l2_squared, shuffle=self.shuffle,
                    random_state=self.random_state, device=self.device, dtype=self.dtype, verbose=self.verbose)

    def _outputs(self, X) -> np.ndarray:
        """``X W^T + b`` for every row, computed chunk by chunk (n_samples x n_outputs)."""
        X = self._check_predict_input(X)
        torch_dtype, np_dtype = TRAIN_DTYPES[self.dtype]
        device = torch.device(self.device)
        weight = torch.as_tensor(np.atleast_2d(self.coef_), dtype=torch_dtype).to(device)
        bias = torch.as_tensor(np.atleast_1d(self.intercept_), dtype=torch_dtype).to(device)
        chunk = max(1, PREDICT_CHUNK_BYTES // (X.shape[1] * np.dtype(np_dtype).itemsize))
        out = np.empty((X.shape[0], weight.shape[0]), dtype=np_dtype)
        with torch.no_grad():
            for s in range(0, X.shape[0], chunk):
                xb = torch.from_numpy(_read_rows(X, slice(s, s + chunk), np_dtype)).to(device)
                out[s:s + chunk] = F.linear(xb, weight, bias).cpu().numpy()
                _check_finite_outputs(out[s:s + chunk], X, slice(s, s + chunk), f"{type(self).__name__}.predict")
                release_mapped(X[s:s + chunk])  # a mapped file is read once here
        return out


_PARAMETERS_DOC = """
    Parameters
    ----------
    epochs : int, default 10
        Passes over the training rows (paper: 10). ``0`` leaves the seeded initialisation.
    learning_rate : float, default 1e-3
        Adam's learning rate (paper: 1e-3; Adam's other settings are torch's defaults).
    batch_size : int, default 128
        Rows per mini-batch (paper: 128). The penalty is added to every mini-batch's loss.
    l1 : float, default 1e-5
        Strength of ``sum|W|`` (paper: 1e-5).
    l2 : float, default 1e-5
        Strength of the L2 term (paper: 1e-5).
    l2_squared : bool, default False
        False reproduces the authors' code, whose L2 term is the unsquared Frobenius norm
        ``sqrt(sum W^2)``; True gives the usual squared penalty ``sum W^2``.
    shuffle : bool, default True
        Visit the rows in a fresh seeded order each epoch. The reference code does not
        shuffle: ``shuffle=False`` reproduces its order.
    random_state : int, numpy RandomState/Generator or None, default 0
        Seeds the ``torch.Generator`` behind the initialisation and the shuffling: equal
        seeds give identical weights on CPU. None gives a fresh, unrepeatable seed.
    device : str, default "cpu"
        torch device to train and predict on ("cpu", "cuda", "cuda:1", ...).
    dtype : {"float32", "float64"}, default "float32"
        Precision of training; float16 input is converted to it batch by batch.
    verbose : bool, default False
        Print the mean loss of every epoch."""


class LinearProbe(ClassifierMixin, _LinearProbeBase):
    __doc__ = """Logistic-regression probe with the reference code's elastic-net penalty (section 3.2).

    Minimises, with Adam, on every mini-batch,
    ``cross_entropy(X_b W^T + b, y_b) + l1 * sum|W| + l2 * ||W||_F``
    (``||W||_F^2`` with ``l2_squared=True``); the bias ``b`` is not penalised.
    The model is multinomial with one row of weights per class, also for two classes,
    as the reference code's ``nn.Linear(D, C)``: ``coef_`` is (n_classes, n_features), so
    every class has its own weights for the neuron ranking.

    ``ClassifierMixin`` comes before the base estimator in the class's bases, as
    scikit-learn requires (in the opposite order ``is_classifier`` is False and
    ``cross_val_score`` would not stratify).
""" + _PARAMETERS_DOC + """

    Attributes
    ----------
    classes_ : numpy.ndarray, shape (n_classes,)
        The sorted distinct labels of ``y`` (``np.unique``); class ``k`` of the model
        predicts ``classes_[k]``.
    coef_ : numpy.ndarray, shape (n_classes, n_features)
        The weights ``W``.
    intercept_ : numpy.ndarray, shape (n_classes,)
        The bias ``b``.
    n_features_in_ : int
    loss_curve_ : list of float
        The mean of the mini-batch losses (penalty included) of every epoch.
    n_iter_ : int
        Epochs run.

    References
    ----------
    Dalvi, Sajjad, Durrani, Belinkov (2020), section 3.2 and Appendix A.

    Examples
    --------
    >>> probe = LinearProbe().fit(acts.flat(), acts.labels)   # doctest: +SKIP
    >>> probe.score(dev.flat(), dev.labels)                     # doctest: +SKIP
    """

    def fit(self, X, y):
        """Train on activations ``X`` and labels ``y``.

        Parameters
        ----------
        X : array-like or numpy.memmap, shape (n_samples, n_features)
            float16/float32/float64; a memmap is read one mini-batch at a time.
        y : array-like, shape (n_samples,)
            Class labels, any sortable values (mapped to 0..C-1 through ``classes_``).

        Returns
        -------
        self
        """
        X, y = self._check_fit_input(X, y)
        check_classification_targets(y)
        classes, encoded = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"LinearProbe needs at least two classes in y, but every one of its {len(y)} "
                             f"labels is {classes[0]!r} (1 class): a probe cannot learn a one-class task")
        self.classes_ = classes
        self.coef_, self.intercept_ = self._train(X, encoded.astype(np.int64), len(classes), regression=False)
        return self

    def _logits(self, X) -> np.ndarray:
        return self._outputs(X)

    def decision_function(self, X):
        """Class scores ``X W^T + b``.

        Parameters
        ----------
        X : array-like or numpy.memmap, shape (n_samples, n_features)

        Returns
        -------
        numpy.ndarray, shape (n_samples, n_classes), or (n_samples,) with two classes
            With two classes, scikit-learn's convention: the log-odds of ``classes_[1]``,
            ``z_1 - z_0``.
        """
        z = self._logits(X)
        return z[:, 1] - z[:, 0] if z.shape[1] == 2 else z

    def predict_proba(self, X):
        """Softmax of the class scores.

        Returns
        -------
        numpy.ndarray, shape (n_samples, n_classes)
            Columns in the order of ``classes_``.
        """
        z = torch.from_numpy(self._logits(X))
        return torch.softmax(z, dim=1).numpy()

    def predict_log_proba(self, X):
        """Log-softmax of the class scores, shape (n_samples, n_classes)."""
        return torch.log_softmax(torch.from_numpy(self._logits(X)), dim=1).numpy()

    def predict(self, X):
        """The most probable label of every row (values from ``classes_``)."""
        z = self._logits(X)
        return self.classes_[np.argmax(z, axis=1)]

    # score: ClassifierMixin.score, the accuracy (the paper's metric for every classification task)


class LinearProbeRegressor(RegressorMixin, _LinearProbeBase):
    __doc__ = """Linear-regression probe with the same training and penalty (STS-B-like tasks).

    Minimises, with Adam, on every mini-batch,
    ``mean((X_b w + b - y_b)^2) + l1 * sum|w| + l2 * ||w||_2`` (squared with
    ``l2_squared=True``); the bias is not penalised. ``y`` is used as given (not
    standardised), as in the reference code.

    :meth:`score` is the **Pearson correlation** between predictions and targets (the
    usual STS-B metric), not scikit-learn's R^2, so ``cross_val_score`` and grid searches
    rank regressors by Pearson's r. (The authors' code README names ``matthews_corrcoef``
    for STS-B, which is undefined for real-valued targets.)
""" + _PARAMETERS_DOC + """

    Attributes
    ----------
    coef_ : numpy.ndarray, shape (n_features,)
        The weights, one-dimensional like ``sklearn.linear_model.Ridge`` for a 1-D target;
        ``coef_[None, :]`` is the (1, n_features) matrix of the reference ``nn.Linear(D, 1)``.
    intercept_ : float
    n_features_in_ : int
    loss_curve_ : list of float
        The mean of the mini-batch losses (penalty included) of every epoch.
    n_iter_ : int
    """

    def fit(self, X, y):
        """Train on activations ``X`` and real-valued targets ``y``.

        Parameters
        ----------
        X : array-like or numpy.memmap, shape (n_samples, n_features)
        y : array-like, shape (n_samples,)

        Returns
        -------
        self
        """
        X, y = self._check_fit_input(X, y)
        np_dtype = TRAIN_DTYPES[self.dtype if self.dtype in TRAIN_DTYPES else "float32"][1]
        try:
            y = y.astype(np_dtype)
        except (TypeError, ValueError):
            raise ValueError(f"LinearProbeRegressor.fit expects numeric targets, got dtype {y.dtype}") from None
        if not np.isfinite(y).all():
            raise ValueError("LinearProbeRegressor.fit: y contains NaN or infinity")
        coef, intercept = self._train(X, y, 1, regression=True)
        self.coef_, self.intercept_ = coef[0], float(intercept[0])
        return self

    def predict(self, X):
        """Predicted targets, shape (n_samples,)."""
        return self._outputs(X)[:, 0]

    def score(self, X, y, sample_weight=None):
        """Pearson correlation of ``predict(X)`` with ``y`` (not R^2; see the class notes).

        Returns
        -------
        float
            NaN when the predictions or the targets are constant.
        """
        if sample_weight is not None:
            raise NotImplementedError("LinearProbeRegressor.score does not take sample weights")
        return scores(y, self.predict(X), regression=True)["pearson"]


def fit_probes(template, X, y, feature_sets, gather=None) -> list:
    """Fit a copy of ``template`` on each column subset of ``X``, all in one pass (:func:`train_probes`).

    Each returned probe equals ``clone(template).fit(X[:, features], y)`` up to the order of
    floating-point sums: same initialisation, same mini-batches, same Adam steps.

    Parameters
    ----------
    template : LinearProbe or LinearProbeRegressor
    X : numpy.ndarray or memmap, shape (n_samples, n_columns)
    y : array-like, shape (n_samples,)
    feature_sets : list of array of int
        Columns of each probe, in its feature order (a probe's ``coef_`` columns follow it).
    gather : callable, optional
        ``gather(X, columns)`` returns those columns as an array (default: fancy indexing;
        :mod:`redundancy.methods.selection` passes its chunked reader). Skipped when the union of the
        sets is every column in order.

    Returns
    -------
    list of fitted estimators, one per feature set
    """
    from sklearn.base import clone

    if not isinstance(template, _LinearProbeBase):
        raise TypeError(f"fit_probes trains LinearProbe / LinearProbeRegressor, not {type(template).__name__}")
    template._check_params()
    X, y = template._check_fit_input(X, y)
    sets = [np.asarray(f, dtype=np.int64).ravel() for f in feature_sets]
    if not sets:
        return []
    for f in sets:
        if f.size == 0 or f.min() < 0 or f.max() >= X.shape[1]:
            raise ValueError(f"fit_probes: every feature set needs columns in 0..{X.shape[1] - 1}")
    # the columns grouped by the probes that use them, so that each group is one contiguous
    # block and one matrix product (nested sets such as layer prefixes or the top k of a
    # ranking keep their order); the data are gathered in that order unless that would copy
    # more than GATHER_BYTES of a matrix whose every column is used anyway
    union = _grouped_columns(sets, X.shape[1])
    natural = np.arange(X.shape[1])
    every = union.size == X.shape[1]
    if every and (np.array_equal(union, natural)
                  or X.shape[0] * X.shape[1] * np.dtype(TRAIN_DTYPES[template.dtype][1]).itemsize > GATHER_BYTES):
        Xg, pos = X, sets
    else:
        Xg = gather(X, union) if gather is not None else np.ascontiguousarray(X[:, union], dtype=np.float32)
        where = np.empty(X.shape[1], dtype=np.int64)
        where[union] = np.arange(union.size)
        pos = [where[f] for f in sets]
    regression = isinstance(template, LinearProbeRegressor)
    if regression:
        target, n_out = np.asarray(y, dtype=TRAIN_DTYPES[template.dtype][1]), 1
        if not np.isfinite(target).all():
            raise ValueError("fit_probes: y contains NaN or infinity")
    else:
        check_classification_targets(y)
        classes, target = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"fit_probes needs at least two classes in y, got only {classes[0]!r}")
        target, n_out = target.astype(np.int64), len(classes)
    trained = train_probes(Xg, target, n_out, pos, regression=regression, name="fit_probes",
                           **template._engine_params())
    out = []
    for f, (w, b, curve) in zip(sets, trained):
        p = clone(template)
        if regression:
            p.coef_, p.intercept_ = w[0], float(b[0])
        else:
            p.classes_, p.coef_, p.intercept_ = classes, w, b
        p.n_features_in_, p.loss_curve_, p.n_iter_ = f.size, curve, int(template.epochs)
        out.append(p)
    return out


#: largest copy of a training matrix :func:`fit_probes` makes to regroup columns it uses all of
GATHER_BYTES = 2**30


def _grouped_columns(sets: list[np.ndarray], n_cols: int) -> np.ndarray:
    """The columns used by any set, grouped by which sets use them (groups in order of first
    appearance, columns in order of first appearance within a group)."""
    seen = np.concatenate(sets)
    _, first = np.unique(seen, return_index=True)
    cols = seen[np.sort(first)]  # first appearance
    use = np.zeros((n_cols, len(sets)), dtype=bool)
    for p, f in enumerate(sets):
        use[f, p] = True
    _, group = np.unique(np.packbits(use[cols], axis=1), axis=0, return_inverse=True)
    group = group.ravel()
    _, group_first = np.unique(group, return_index=True)
    rank = np.empty(group_first.size, dtype=np.int64)
    rank[np.argsort(group_first)] = np.arange(group_first.size)
    return cols[np.argsort(rank[group], kind="stable")]


def _name(label, label_names):
    if label_names is None:
        return label.item() if hasattr(label, "item") else label
    if isinstance(label_names, Mapping):
        return label_names[label.item() if hasattr(label, "item") else label]
    return label_names[int(label)]


def scores(y_true, y_pred, label_names=None, regression=False) -> dict:
    """The paper's metrics of a set of predictions (scikit-learn's definitions; SciPy's correlations).

    Parameters
    ----------
    y_true, y_pred : array-like, shape (n_samples,)
    label_names : sequence or mapping, optional
        Names of the classes for ``per_class_accuracy``: ``label_names[label]`` (a sequence
        is indexed by integer class id, as ``Activations.label_names``). Default: the labels.
    regression : bool, default False

    Returns
    -------
    dict
        Classification: ``accuracy``; ``per_class_accuracy``, a dict name -> recall of that
        class (the fraction of its rows predicted correctly), for every class present in
        ``y_true``; ``macro_f1``; ``matthews_corrcoef``.
        Regression: ``pearson`` and ``spearman`` correlations (NaN for constant input).
    """
    y_true = column_or_1d(y_true)
    y_pred = column_or_1d(y_pred)
    if y_true.shape[0] != y_pred.shape[0]:
        raise ValueError(f"y_true has {y_true.shape[0]} values but y_pred has {y_pred.shape[0]}")
    if regression:
        from scipy.stats import pearsonr, spearmanr

        with warnings.catch_warnings():  # constant input: NaN, said in the docstring
            warnings.simplefilter("ignore")
            return {"pearson": float(pearsonr(y_true, y_pred).statistic),
                    "spearman": float(spearmanr(y_true, y_pred).statistic)}
    # every metric from one confusion matrix over the labels of y_true and y_pred (scikit-learn's
    # definitions, which the tests hold these to; its input validation cost 30 ms a call, a
    # third of the minimal-set search's scoring)
    n = y_true.shape[0]
    labels, codes = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
    L = labels.size
    cm = np.bincount(codes[:n] * L + codes[n:], minlength=L * L).reshape(L, L).astype(np.float64)
    tp, t_sum, p_sum = np.diag(cm), cm.sum(1), cm.sum(0)
    present = t_sum > 0
    denom = 2 * tp + (p_sum - tp) + (t_sum - tp)  # 2 TP + FP + FN: F1 = 2 TP / that (0 where 0)
    f1 = np.divide(2 * tp, denom, out=np.zeros(L), where=denom > 0)
    # Matthews' correlation, multiclass (Gorodkin's R_K), as sklearn computes it; 0 when undefined
    cov_tp = tp.sum() * n - t_sum @ p_sum
    cov_pp = n * n - p_sum @ p_sum
    cov_tt = n * n - t_sum @ t_sum
    mcc = 0.0 if cov_pp * cov_tt == 0 else cov_tp / np.sqrt(cov_tt * cov_pp)
    return {"accuracy": float(tp.sum() / n) if n else float("nan"),
            "per_class_accuracy": {_name(c, label_names): float(r)
                                   for c, r in zip(labels[present], tp[present] / t_sum[present])},
            "macro_f1": float(f1.mean()) if L else 0.0,
            "matthews_corrcoef": float(mcc)}


def evaluate(probe, X, y, label_names=None) -> dict:
    """:func:`scores` of a fitted probe's predictions on ``X`` against ``y``.

    Regression metrics are used when ``probe`` is a regressor (``sklearn.base.is_regressor``).
    """
    return scores(y, probe.predict(X), label_names=label_names, regression=is_regressor(probe))
