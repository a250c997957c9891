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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_regressor
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from . import kernels
from .utils import release_mapped

__all__ = ["LinearProbe", "LinearProbeRegressor", "train_probes", "fit_probes", "scores", "evaluate"]

#: dtypes a probe can train in
TRAIN_DTYPES = {"float32": (torch.float32, np.float32), "float64": (torch.float64, np.float64)}

#: bytes of converted input held at once when predicting
PREDICT_CHUNK_BYTES = 64 * 2**20


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
                             f"labels is {classes[0]!r}: a probe cannot learn a one-class task")
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


# ------------------------------------------------------------------------------------------
# the training engine: many probes at once, each exactly as if trained alone

#: columns below which neighbouring blocks of a bank are merged (masked) into one matmul
MIN_BLOCK_WIDTH = 64


def _seeds(random_state) -> tuple[int, int]:
    """(initialisation seed, shuffling seed) of a ``random_state``.

    The two streams are separate so that the order of the mini-batches does not depend on
    the number of features: probes of different widths trained with the same seed see the
    same batches, which is what lets :func:`fit_probes` train them side by side.
    """
    rs = random_state
    if rs is None:
        init = int(torch.Generator().seed()) & (2**63 - 1)  # fresh, non-reproducible (scikit-learn's None)
    elif isinstance(rs, Integral):
        init = int(rs)
    elif isinstance(rs, np.random.Generator):
        init = int(rs.integers(2**63 - 1))
    else:  # a NumPy RandomState
        init = int(rs.randint(2**31 - 1))
    shuffle = int(np.random.SeedSequence([init & (2**63 - 1), 1]).generate_state(2, np.uint32).view(np.uint64)[0]
                  & np.uint64(2**63 - 1))
    return init, shuffle


def _init_weights(n_outputs: int, d: int, seed: int, torch_dtype):
    """nn.Linear's default initialisation, U(-1/sqrt(d), 1/sqrt(d)), from a seeded CPU generator."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    bound = 1.0 / np.sqrt(d)
    weight = (torch.rand(n_outputs, d, generator=g, dtype=torch_dtype) * 2 - 1) * bound
    bias = (torch.rand(n_outputs, generator=g, dtype=torch_dtype) * 2 - 1) * bound
    return weight, bias


@dataclass
class _Block:
    start: int            # columns start:stop of the gathered matrix
    stop: int
    probes: torch.Tensor  # (S,) probe indices using (part of) this block
    weight: torch.Tensor  # (S * C, stop - start)
    mask: torch.Tensor | None  # (S * C, stop - start), 1 where the probe has the column; None: all


def _blocks(columns: list[np.ndarray], n_cols: int, min_width: int) -> list[tuple[int, int, list[int]]]:
    """Runs of gathered columns used by the same probes, merged until ``min_width`` wide."""
    use = np.zeros((n_cols, len(columns)), dtype=bool)
    for p, c in enumerate(columns):
        use[c, p] = True
    runs, start = [], 0
    for j in range(1, n_cols + 1):
        if j == n_cols or not np.array_equal(use[j], use[start]):
            runs.append([start, j])
            start = j
    merged = []
    for s, e in runs:
        if merged and (merged[-1][1] - merged[-1][0] < min_width or e - s < min_width):
            merged[-1][1] = e
        else:
            merged.append([s, e])
    out = [(s, e, np.flatnonzero(use[s:e].any(0)).tolist()) for s, e in merged]
    return [b for b in out if b[2]]  # columns no probe uses are never multiplied


def _first_non_finite_row(X, chunk: int = 4096):
    """The first row of ``X`` holding a NaN or an infinity, or None."""
    for s in range(0, X.shape[0], chunk):
        bad = np.flatnonzero(~np.isfinite(np.asarray(X[s:s + chunk])).all(1))
        if bad.size:
            return s + int(bad[0])
    return None


def train_probes(X, target, n_outputs: int, feature_sets, *, regression: bool = False, epochs: int = 10,
                 learning_rate: float = 1e-3, batch_size: int = 128, l1: float = 1e-5, l2: float = 1e-5,
                 l2_squared: bool = False, shuffle: bool = True, random_state=0, device="cpu",
                 dtype: str = "float32", verbose: bool = False, min_block_width: int | None = None,
                 name: str = "train_probes"):
    """Train several linear probes on column subsets of ``X`` at once, each as if alone.

    Every probe ``p`` minimises the reference loss on ``X[:, feature_sets[p]]`` (columns in
    that order) with its own Adam state, its own seeded initialisation (the one a single
    probe of that width gets from ``random_state``) and the same mini-batches (the
    shuffling stream does not depend on the width). The probes only share the work: each
    mini-batch is read once, and the columns are cut into blocks used by the same probes,
    so that one matrix product per block serves all of them (a probe's logits are the sum
    of its blocks' products). The arithmetic per probe is the single probe's, up to the
    order of floating-point sums. This is how every layer (and every prefix of layers), or
    every candidate size of the minimal-set search, is trained in one pass.

    Parameters
    ----------
    X : numpy.ndarray or memmap, shape (n_samples, n_columns)
    target : numpy.ndarray
        Class ids 0..n_outputs-1 (int64), or real targets (``regression=True``).
    n_outputs : int
    feature_sets : list of array of int
        Column indices of each probe, in the probe's feature order.
    min_block_width : int
        Narrower runs of columns are merged with a neighbour into one product, the probes
        that lack some of its columns masked (their weights there stay exactly 0).

    Returns
    -------
    list of (weight, bias, loss_curve)
        NumPy ``weight`` (n_outputs, len(features)), ``bias`` (n_outputs,) and the mean
        mini-batch loss of every epoch, per probe.
    """
    kw = dict(regression=regression, epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, l1=l1,
              l2=l2, l2_squared=l2_squared, shuffle=shuffle, random_state=random_state, device=device, dtype=dtype,
              verbose=verbose, min_block_width=min_block_width, name=name)
    n_threads = _threads_for(batch_size, feature_sets, n_outputs, device)
    before = torch.get_num_threads()
    if n_threads is not None:
        torch.set_num_threads(n_threads)
    try:
        return _train_probes(X, target, n_outputs, feature_sets, **kw)
    finally:
        torch.set_num_threads(before)


#: multiply-adds per mini-batch below which a bank trains on one thread: a second thread's
#: start and join cost more than it saves on products this small (and much more when
#: another process holds the other core)
SMALL_STEP_MACS = 2_000_000


#: classification on the CPU computes its loss and gradient in one compiled pass
#: (:func:`redundancy.kernels.softmax_xent`); False uses torch's operations, as the GPU does
FUSED_LOSS = True

#: bytes of mini-batches read from a memory-mapped X between releases of its pages
RELEASE_BYTES = 256 * 2**20

#: weights from which the compiled update of a step is split between two threads
SPLIT_UPDATE_WEIGHTS = 1_000_000


def _threads_for(batch_size, feature_sets, n_outputs, device):
    """1 for small problems on the CPU, else None (torch's setting)."""
    if torch.device(device).type != "cpu":
        return None
    macs = int(batch_size) * int(n_outputs) * sum(int(np.size(f)) for f in feature_sets)
    return 1 if macs < SMALL_STEP_MACS else None


def _train_probes(X, target, n_outputs, feature_sets, *, regression, epochs, learning_rate, batch_size, l1, l2,
                  l2_squared, shuffle, random_state, device, dtype, verbose, min_block_width, name):
    torch_dtype, np_dtype = TRAIN_DTYPES[dtype]
    dev = torch.device(device)
    n, n_cols = X.shape
    sets = [np.asarray(f, dtype=np.int64).ravel() for f in feature_sets]
    P, C = len(sets), int(n_outputs)
    init_seed, shuffle_seed = _seeds(random_state)
    # gathered-column position of every probe feature, and the probe's initial weights there
    layout = _blocks(sets, n_cols, max(1, int(MIN_BLOCK_WIDTH if min_block_width is None else min_block_width)))
    full = [torch.zeros(C, n_cols, dtype=torch_dtype) for _ in range(P)]
    bias = torch.empty(P, C, dtype=torch_dtype)
    for p, cols in enumerate(sets):
        w, b = _init_weights(C, cols.size, init_seed, torch_dtype)
        full[p][:, torch.from_numpy(cols)] = w
        bias[p] = b
    blocks = []
    for s, e, probes in layout:
        wt = torch.cat([full[p][:, s:e] for p in probes], 0)
        have = np.zeros((len(probes), e - s), dtype=bool)
        for i, p in enumerate(probes):
            c = sets[p]
            have[i, c[(c >= s) & (c < e)] - s] = True
        mask = None
        if not have.all():
            mask = torch.from_numpy(np.repeat(have, C, axis=0)).to(torch_dtype).to(dev)
        blocks.append(_Block(s, e, torch.tensor(probes, dtype=torch.long, device=dev), wt.to(dev).contiguous(),
                             mask))
    del full
    bias = bias.to(dev).reshape(P * C)  # (P * C,): probe-major, as the rows of the block weights
    everyone = [len(b.probes) == P for b in blocks]
    # the probes of a block, and their rows in the (P * C, m) outputs; None where all probes
    rows_of = [None if alle else (blk.probes.unsqueeze(1) * C + torch.arange(C, device=dev)).reshape(-1)
               for blk, alle in zip(blocks, everyone)]
    # outputs are kept transposed, (P * C, m): a probe's outputs are rows, and the forward
    # product W X_b^T was 1.7x faster here than X_b W^T for a probe of 42 outputs (the backward
    # G^T X_b 1.2x faster from a contiguous G^T). The blocks that only some probes use write
    # their products one above the other into one buffer, routed to those probes' output rows
    # by one index_add_; their gradients' rows are gathered by one index_select (not one
    # routing operation per block and direction)
    part = [i for i, alle in enumerate(everyone) if not alle]
    part_span, at = {}, 0
    for i in part:
        part_span[i] = (at, at + rows_of[i].numel())
        at += rows_of[i].numel()
    part_rows = torch.cat([rows_of[i] for i in part]) if part else None
    # outputs, partial products and the loss's -1s of one mini-batch size m (at most two sizes:
    # the batch size and the last batch), reused like the other buffers below
    per_m = {}

    def buffers(m):
        if m not in per_m:
            per_m[m] = (torch.empty(P * C, m, dtype=torch_dtype, device=dev),
                        torch.empty(at, m, dtype=torch_dtype, device=dev) if part else None,
                        torch.full((P, 1, m), -1.0, dtype=torch_dtype, device=dev))
        return per_m[m]
    params = [b.weight for b in blocks] + [bias]
    # the update: one compiled pass per block (penalty gradient, Adam, the next step's norms)
    # on the CPU; torch's operations elsewhere (a GPU, or REDUNDANCY_ENGINE=torch)
    fused = dev.type == "cpu" and kernels.available()
    exp_avg = [torch.zeros_like(t) for t in params]
    exp_avg_sq = [torch.zeros_like(t) for t in params]
    steps = [torch.zeros((), dtype=torch.float32, device=dev) for _ in params]
    grads = [torch.empty_like(t) for t in params]
    adam = dict(lr=float(learning_rate), beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8, amsgrad=False,
                maximize=False)

    g = torch.Generator(device="cpu").manual_seed(shuffle_seed)
    bs = int(batch_size)
    n_batches = -(-n // bs)
    if type(X) is np.ndarray and not (X.dtype == np_dtype and X.flags.c_contiguous) and X.dtype.itemsize >= 4:
        # an in-memory array in another layout (X[:, idx] is Fortran-ordered) or wider type:
        # one C-ordered copy, not a strided gather per mini-batch (3x slower here); memmaps
        # are read in place below, narrower types (float16) converted batch by batch
        X = np.ascontiguousarray(X, dtype=np_dtype)
    # read through torch without a copy: in-memory arrays and memory-mapped activation files
    # (np.memmap; pages are read as batches touch them) whose rows are contiguous, also the
    # column-range views of them that single layers are; other subclasses keep numpy's reads
    shared = (type(X) in (np.ndarray, np.memmap) and X.dtype == np_dtype and X.ndim == 2
              and X.strides[1] == X.itemsize and X.strides[0] >= X.shape[1] * X.itemsize)
    with warnings.catch_warnings():  # a read-only array (a mapped activation file) is only ever read here
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        Xt = torch.from_numpy(X) if shared else None
    tt = torch.from_numpy(np.ascontiguousarray(target)).to(dev)
    curves = torch.zeros(int(epochs), P, dtype=torch.float64)
    norm2, abs1 = torch.empty(P, dtype=torch_dtype, device=dev), torch.empty(P, dtype=torch_dtype, device=dev)
    # buffers reused by every step: a fresh multi-megabyte tensor per mini-batch is a fresh
    # mapping from the allocator, paid for in page faults (the batch and sign(W) at 9,984
    # neurons are 5 and 2 MB: half the time of a step here)
    xbuf = torch.empty(min(bs, n), n_cols, dtype=torch_dtype) if Xt is not None and shuffle else None
    signs = [torch.empty_like(b.weight) for b in blocks] if l1 else []
    # the batches of an epoch: row indices (sorted within a batch: a memmap is read front to
    # back, and a batch's loss is a mean over its rows) and targets, cut once per epoch
    bounds = [(s, min(s + bs, n)) for s in range(0, n, bs)]
    # a memory-mapped X (a read-only activation file): the pages the batches have read leave
    # the resident set every RELEASE_BYTES of batches (the kernel keeps them in its page cache,
    # so the next epoch maps them again at no read cost); else the process's resident memory
    # grows to the whole file every epoch (6 GB at 150,000 tokens x 9,984 float32 neurons)
    release_every = max(1, RELEASE_BYTES // max(1, bs * X.strides[0])) if release_mapped(X) else 0
    if fused:
        npv = [[t.numpy() for t in ts] for ts in (params, grads, exp_avg, exp_avg_sq)]
        masks_np = [None if b.mask is None else b.mask.numpy() for b in blocks]
        # every block row's probe, and its sum W^2 and sum |W| (written by the kernel), all
        # blocks' rows end to end so that one bincount gives every probe's norms
        probe_of_row = [np.repeat(b.probes.numpy(), C) for b in blocks]
        row_probe = np.concatenate(probe_of_row)
        sq_all, ab_all = np.empty(row_probe.size), np.empty(row_probe.size)
        cut = np.cumsum([0] + [r.size for r in probe_of_row])
        sq_rows = [sq_all[a:b] for a, b in zip(cut[:-1], cut[1:])]
        ab_rows = [ab_all[a:b] for a, b in zip(cut[:-1], cut[1:])]
        for w, sq, ab in zip(npv[0], sq_rows, ab_rows):
            w64 = w.astype(np.float64)
            sq[:] = np.einsum("rk,rk->r", w64, w64)
            ab[:] = np.abs(w64).sum(1)
        penalty = np.zeros(P)  # the penalty's share of every probe's loss, summed over an epoch
        t_step = 0
        # the update's work: every block's rows; with two threads and enough weights, each
        # block's rows are halved between this thread and a helper (the kernel releases the GIL)
        n_weights = sum(w.size for w in npv[0][:-1])
        halves = 2 if torch.get_num_threads() >= 2 and n_weights >= SPLIT_UPDATE_WEIGHTS else 1
        parts = [[] for _ in range(halves)]
        for i in range(len(blocks)):
            R = npv[0][i].shape[0]
            cuts = np.linspace(0, R, halves + 1).round().astype(int)
            for h, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
                if b > a:
                    parts[h].append(kernels.prepare(
                        npv[0][i][a:b], npv[1][i][a:b], npv[2][i][a:b], npv[3][i][a:b], probe_of_row=probe_of_row[i][a:b],
                        mask=None if masks_np[i] is None else masks_np[i][a:b], sq_rows=sq_rows[i][a:b],
                        ab_rows=ab_rows[i][a:b]))
        helper = ThreadPoolExecutor(1, thread_name_prefix="probe-update") if halves == 2 else None
        # the bias: Adam alone (no penalty)
        bias_task = kernels.prepare(*(v[-1][None] for v in npv))
        no_scale = np.zeros(1, dtype=np_dtype)

        def update(tasks, scale_np, sc):
            for task in tasks:
                kernels.run(task, scale_np, sc)

        def epoch_scalars(first_step):
            # Adam's scalars for every step of an epoch, the bias's without the L1 term, computed
            # at the epoch's start (computing them inside the step cost 8 us each)
            out = []
            for t in range(first_step, first_step + n_batches):
                sc = kernels.scalars(t, np_dtype, lr=adam["lr"], l1=l1)
                out.append((sc, (no_scale[0],) + sc[1:]))
            return out
        # classification: the loss and its gradient in one compiled pass (softmax_xent), on
        # numpy views of the outputs, the bias and its gradient
        xent = not regression and FUSED_LOSS
        if xent:
            scale_np = np.zeros(P, dtype=np_dtype)
            bias_np, gbias_np = npv[0][-1], npv[1][-1]
            outT_np, work_np = {}, {}
    else:
        xent = False
    for epoch in range(int(epochs)):
        if shuffle:
            order = torch.randperm(n, generator=g).numpy()
            full = (n // bs) * bs
            order = np.concatenate([np.sort(order[:full].reshape(-1, bs), axis=1).ravel(), np.sort(order[full:])])
            order_t = torch.from_numpy(order).to(dev)
            t_epoch = tt[order_t]
        else:
            order, t_epoch = None, tt
        total = torch.zeros(P, dtype=torch_dtype, device=dev)
        if fused:
            step_scalars = epoch_scalars(t_step + 1)
        if xent:
            total_np = np.zeros(P)
            t_epoch_np = t_epoch.numpy()
        for ib, (s, e) in enumerate(bounds):
            if release_every and ib % release_every == release_every - 1:
                release_mapped(X)
            m = e - s
            tb = None if xent else t_epoch[s:e]
            if order is None:
                xb = Xt[s:e].to(dev) if Xt is not None else torch.from_numpy(
                    np.array(X[s:e], dtype=np_dtype, order="C")).to(dev)
            elif Xt is not None:
                idx = torch.from_numpy(order[s:e])
                xb = (torch.index_select(Xt, 0, idx, out=xbuf[:m]) if dev.type == "cpu"
                      else Xt.index_select(0, idx).to(dev))
            else:
                xb = torch.from_numpy(np.array(X[order[s:e]], dtype=np_dtype, order="C")).to(dev)
            # forward: every probe's outputs, transposed (P * C, m), block by block
            outT, part_buf, minus_one = buffers(m)
            first = True
            for i, (blk, alle) in enumerate(zip(blocks, everyone)):
                xs = xb[:, blk.start:blk.stop]
                if not alle:
                    a, b = part_span[i]
                    torch.mm(blk.weight, xs.t(), out=part_buf[a:b])
                elif first:
                    torch.mm(blk.weight, xs.t(), out=outT)
                    first = False
                else:
                    outT.addmm_(blk.weight, xs.t())
            if xent:
                # one compiled pass: the bias, the loss, its gradient G^T in place, the bias's
                # gradient, and the penalty's bookkeeping (in place of about 20 small operations)
                if first:
                    outT.zero_()
                if part:
                    outT.index_add_(0, part_rows, part_buf)
                if m not in work_np:
                    outT_np[m], work_np[m] = outT.numpy(), np.empty((3, m), dtype=np_dtype)
                kernels.softmax_xent(outT_np[m], bias_np, t_epoch_np[s:e], C, total_np, gbias_np, work_np[m],
                                     row_probe, sq_all, ab_all, penalty, scale_np, l1=l1, l2=l2,
                                     l2_squared=bool(l2_squared))
                GT = outT
            else:
                if first:
                    outT.copy_(bias.unsqueeze(1).expand(P * C, m))
                else:
                    outT.add_(bias.unsqueeze(1))
                if part:
                    outT.index_add_(0, part_rows, part_buf)
                out3 = outT.view(P, C, m)
                # the loss's gradient with respect to the outputs (transposed, G^T), and the loss
                if regression:
                    diff = out3[:, 0, :] - tb.unsqueeze(0)  # (P, m)
                    total += diff.square().mean(1)
                    GT = diff.mul_(2.0 / m)  # (P * C, m), C = 1
                else:
                    logp = torch.log_softmax(out3, 1)
                    pick = tb.view(1, 1, m).expand(P, 1, m)
                    total -= logp.gather(1, pick).mean(2).view(P)
                    G3 = logp.exp_()
                    G3.scatter_add_(1, pick, minus_one)
                    GT = G3.view(P * C, m).mul_(1.0 / m)
            if fused and not xent:
                # the weights' norms are those the last update left (or the initial ones)
                nrm2 = np.bincount(row_probe, sq_all, minlength=P)
                nrm = np.sqrt(nrm2)
                penalty += l1 * np.bincount(row_probe, ab_all, minlength=P) + l2 * (nrm2 if l2_squared else nrm)
                if l2_squared:
                    scale_np = np.full(P, 2.0 * l2, dtype=np_dtype)
                else:  # d||W||/dW = W / ||W||, and 0 at W = 0
                    scale_np = np.divide(l2, nrm, out=np.zeros(P), where=nrm > 0).astype(np_dtype)
            if fused:
                GpT = GT.index_select(0, part_rows) if part else None
                for i, (blk, alle, gw) in enumerate(zip(blocks, everyone, grads)):
                    GTb = GT if alle else GpT[part_span[i][0]:part_span[i][1]]
                    torch.mm(GTb, xb[:, blk.start:blk.stop], out=gw)
                if not xent:
                    torch.sum(GT, 1, out=grads[-1])
                sc, sc_bias = step_scalars[t_step % n_batches]
                t_step += 1
                other = helper.submit(update, parts[1], scale_np, sc) if helper else None
                update(parts[0], scale_np, sc)
                kernels.run(bias_task, no_scale, sc_bias)  # the bias: no L1 term
                if other is not None:
                    other.result()
                continue
            # the penalty: l1 * sum|W| + l2 * ||W||_F (or its square), per probe over its blocks
            norm2.zero_()
            abs1.zero_()
            for blk, alle in zip(blocks, everyone):
                S = len(blk.probes)
                w = blk.weight.view(S, -1)
                # per-probe reductions, no temporaries: sum W^2, sum |W| (a batched dot product,
                # torch.bmm of (1 x K)(K x 1), was 30x slower here for 16 probes of 500 neurons)
                sq = torch.linalg.vector_norm(w, 2, dim=1).square_()
                ab = torch.linalg.vector_norm(w, 1, dim=1) if l1 else None
                if alle:
                    norm2.add_(sq)
                    if l1:
                        abs1.add_(ab)
                else:
                    norm2.index_add_(0, blk.probes, sq)
                    if l1:
                        abs1.index_add_(0, blk.probes, ab)
            norm = norm2.sqrt()
            total += l1 * abs1 + l2 * (norm2 if l2_squared else norm)
            if l2_squared:
                scale = torch.full_like(norm, 2.0 * l2)
            else:  # d||W||/dW = W / ||W||, and 0 at W = 0 (torch's vector_norm)
                scale = torch.where(norm > 0, l2 / norm, 0.0)
            # backward: per block, all its probes' weight gradients in one product
            GpT = GT.index_select(0, part_rows) if part else None
            for i, (blk, alle, gw) in enumerate(zip(blocks, everyone, grads)):
                S = len(blk.probes)
                GTb = GT if alle else GpT[part_span[i][0]:part_span[i][1]]
                torch.mm(GTb, xb[:, blk.start:blk.stop], out=gw)
                if l1:
                    gw.add_(torch.sign(blk.weight, out=signs[i]), alpha=l1)
                if l2:
                    gw.view(S, -1).addcmul_(blk.weight.view(S, -1), (scale if alle else scale[blk.probes]).unsqueeze(1))
                if blk.mask is not None:
                    gw.mul_(blk.mask)
            torch.sum(GT, 1, out=grads[-1])
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(params, grads, exp_avg, exp_avg_sq, [], steps, **adam)
        curves[epoch] = (torch.from_numpy(total_np) if xent else total.double().cpu()) / n_batches
        if fused:
            curves[epoch] += torch.from_numpy(penalty) / n_batches
            penalty[:] = 0
        if epoch == 0 and not bool(torch.isfinite(curves[0]).all()):
            # a NaN or infinity in X reaches every loss (its weight is never 0 at the start);
            # looked for once, after the first epoch, instead of in every batch
            bad = _first_non_finite_row(X)
            if bad is not None:
                raise ValueError(f"{name}: X contains NaN or infinity (row {bad})")
        if verbose:
            print(f"[{name}] epoch {epoch + 1}/{epochs}: mean loss " + ", ".join(
                f"{v:.6f}" for v in curves[epoch, :8].tolist()) + (" ..." if P > 8 else ""), flush=True)
    if fused and helper is not None:
        helper.shutdown()
    if release_every:
        release_mapped(X)
    # each probe's weights back in its own feature order
    out = []
    for p, cols in enumerate(sets):
        w = torch.zeros(C, n_cols, dtype=torch_dtype)
        for blk in blocks:
            hit = (blk.probes == p).nonzero()
            if hit.numel():
                i = int(hit[0, 0])
                w[:, blk.start:blk.stop] = blk.weight[i * C:(i + 1) * C].cpu()
        out.append((w[:, torch.from_numpy(cols)].numpy().copy(), bias[p * C:(p + 1) * C].cpu().numpy().copy(),
                    curves[:, p].tolist()))
    return out


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
        :mod:`redundancy.selection` passes its chunked reader). Skipped when the union of the
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
        import warnings

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
