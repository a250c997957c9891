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

from collections.abc import Mapping
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_regressor
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

__all__ = ["LinearProbe", "LinearProbeRegressor", "elastic_net_penalty", "scores", "evaluate"]

#: dtypes a probe can train in
TRAIN_DTYPES = {"float32": (torch.float32, np.float32), "float64": (torch.float64, np.float64)}

#: bytes of converted input held at once when predicting
PREDICT_CHUNK_BYTES = 64 * 2**20


def elastic_net_penalty(weight: torch.Tensor, l1: float, l2: float, l2_squared: bool = False) -> torch.Tensor:
    """The reference code's elastic-net penalty on a weight matrix (never on the bias).

    Parameters
    ----------
    weight : torch.Tensor, shape (n_outputs, n_features)
    l1, l2 : float
        Strengths of the L1 and L2 terms.
    l2_squared : bool, default False
        False: ``l2 * ||W||_F = l2 * sqrt(sum W^2)``, as in the authors' code.
        True: the usual squared penalty ``l2 * sum W^2``.

    Returns
    -------
    torch.Tensor
        A scalar, ``l1 * sum|W| + l2 * (||W||_F or ||W||_F^2)``.
    """
    penalty = weight.new_zeros(())
    if l1:
        penalty = penalty + l1 * weight.abs().sum()
    if l2:
        # vector_norm's gradient at W = 0 is 0, where sqrt(sum W^2) would give NaN
        penalty = penalty + l2 * (weight.pow(2).sum() if l2_squared else torch.linalg.vector_norm(weight))
    return penalty


def _check_X(X, name: str) -> np.ndarray:
    """A 2-D numeric array, left as it is (a memmap stays a memmap: nothing is read here)."""
    if hasattr(X, "tocsr") or hasattr(X, "toarray"):
        raise TypeError(f"{name} does not take sparse input; pass a dense array")
    if not isinstance(X, np.ndarray):
        X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name} expects a 2-D array (samples x features), got shape {X.shape}")
    if X.dtype.kind not in "fiub":
        raise ValueError(f"{name} expects numeric features, got dtype {X.dtype}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} got an empty array of shape {X.shape}")
    return X


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

    def _generator(self) -> torch.Generator:
        g = torch.Generator(device="cpu")
        rs = self.random_state
        if rs is None:
            g.seed()  # fresh, non-reproducible (scikit-learn's meaning of None)
        elif isinstance(rs, Integral):
            g.manual_seed(int(rs))
        else:  # a NumPy RandomState / Generator: draw a seed from it
            g.manual_seed(int(rs.integers(2**63 - 1) if isinstance(rs, np.random.Generator)
                              else rs.randint(2**31 - 1)))
        return g

    # training ----------------------------------------------------------------------------
    def _train(self, X: np.ndarray, target: np.ndarray, n_outputs: int, loss_fn):
        """Adam on ``loss_fn(X_b W^T + b, t_b) + penalty(W)``, mini-batch by mini-batch.

        Returns ``(W, b)`` as NumPy arrays and sets ``loss_curve_`` and ``n_iter_``.
        """
        self._check_params()
        torch_dtype, np_dtype = TRAIN_DTYPES[self.dtype]
        device = torch.device(self.device)
        n, d = X.shape
        g = self._generator()
        # nn.Linear's default initialisation, U(-1/sqrt(d), 1/sqrt(d)), drawn on the CPU from
        # the seeded generator so that it does not depend on the device
        bound = 1.0 / np.sqrt(d)
        weight = ((torch.rand(n_outputs, d, generator=g, dtype=torch_dtype) * 2 - 1) * bound).to(device)
        bias = ((torch.rand(n_outputs, generator=g, dtype=torch_dtype) * 2 - 1) * bound).to(device)
        weight.requires_grad_(True)
        bias.requires_grad_(True)
        optimiser = torch.optim.Adam([weight, bias], lr=self.learning_rate)

        bs = int(self.batch_size)
        n_batches = -(-n // bs)
        # an in-memory array of the training dtype is shared with torch (no copy) and batches
        # are gathered by torch; a memmap or another dtype is read and converted batch by batch
        shared = (type(X) is np.ndarray and X.dtype == np_dtype and X.flags.c_contiguous)
        Xt = torch.from_numpy(X) if shared else None
        self.loss_curve_ = []
        for epoch in range(int(self.epochs)):
            order = torch.randperm(n, generator=g).numpy() if self.shuffle else None
            total = torch.zeros((), dtype=torch_dtype, device=device)
            for start in range(0, n, bs):
                if order is None:
                    rows = slice(start, min(start + bs, n))
                else:
                    # sorted: a memmap is read front to back; a batch's loss is a mean over its rows
                    rows = np.sort(order[start:start + bs])
                if Xt is not None:
                    xb = (Xt[rows] if order is None else Xt[torch.from_numpy(rows)]).to(device)
                else:
                    xb = torch.from_numpy(_read_rows(X, rows, np_dtype)).to(device)
                if epoch == 0 and not bool(torch.isfinite(xb).all()):
                    raise ValueError(f"{type(self).__name__}.fit: X contains NaN or infinity "
                                     f"(in the batch starting at row {start})")
                tb = torch.from_numpy(np.ascontiguousarray(target[rows])).to(device)
                loss = loss_fn(F.linear(xb, weight, bias), tb) + elastic_net_penalty(
                    weight, self.l1, self.l2, self.l2_squared)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total += loss.detach()
            self.loss_curve_.append(float(total) / n_batches)
            if self.verbose:
                print(f"[{type(self).__name__}] epoch {epoch + 1}/{self.epochs}: "
                      f"mean loss {self.loss_curve_[-1]:.6f}", flush=True)
        self.n_iter_ = int(self.epochs)
        self.n_features_in_ = d
        return weight.detach().cpu().numpy(), bias.detach().cpu().numpy()

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
                             f"labels is {classes[0]!r}: a probe cannot learn a one-class task")
        self.classes_ = classes
        self.coef_, self.intercept_ = self._train(X, encoded.astype(np.int64), len(classes), F.cross_entropy)
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
        coef, intercept = self._train(X, y, 1, lambda out, t: F.mse_loss(out.squeeze(-1), t))
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


def _name(label, label_names):
    if label_names is None:
        return label.item() if hasattr(label, "item") else label
    if isinstance(label_names, Mapping):
        return label_names[label.item() if hasattr(label, "item") else label]
    return label_names[int(label)]


def scores(y_true, y_pred, label_names=None, regression=False) -> dict:
    """The paper's metrics of a set of predictions (scikit-learn and SciPy implementations).

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
        import warnings

        from scipy.stats import pearsonr, spearmanr

        with warnings.catch_warnings():  # constant input: NaN, said in the docstring
            warnings.simplefilter("ignore")
            return {"pearson": float(pearsonr(y_true, y_pred).statistic),
                    "spearman": float(spearmanr(y_true, y_pred).statistic)}
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, recall_score

    present = np.unique(y_true)
    recalls = recall_score(y_true, y_pred, labels=present, average=None, zero_division=0)
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "per_class_accuracy": {_name(c, label_names): float(r) for c, r in zip(present, recalls)},
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
            "matthews_corrcoef": float(matthews_corrcoef(y_true, y_pred))}


def evaluate(probe, X, y, label_names=None) -> dict:
    """:func:`scores` of a fitted probe's predictions on ``X`` against ``y``.

    Regression metrics are used when ``probe`` is a regressor (``sklearn.base.is_regressor``).
    """
    return scores(y, probe.predict(X), label_names=label_names, regression=is_regressor(probe))
