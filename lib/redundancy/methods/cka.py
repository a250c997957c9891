"""Linear centered kernel alignment (CKA) between layers.

Dalvi et al. (2020), section 5.1 and appendix A.6, compare every pair of layers of a
model with linear CKA (Kornblith et al., 2019): a layer-level redundancy is a pair of
layers whose token representations are similar up to rotation and scale.

For representations ``X`` (n x p) and ``Y`` (n x q) of the same n rows (tokens),
with linear kernels ``K = X X^T`` and ``L = Y Y^T`` and the centring matrix
``H = I - 11^T / n``, Kornblith et al. (2019) define

* eq. (1), the dot-product identity  ``<vec(XX^T), vec(YY^T)> = tr(XX^T YY^T) = ||Y^T X||_F^2``;
* eq. (2), ``HSIC(K, L) = tr(KHLH) / (n - 1)^2``;
* eq. (3), ``CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))``,

so that for column-centred X and Y, linear CKA is
``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)``. The *debiased* variant replaces HSIC by
the unbiased estimator HSIC_1 of Song et al. (2012)::

    HSIC_1(K, L) = 1/(n(n-3)) [ tr(K~ L~) + (1^T K~ 1)(1^T L~ 1) / ((n-1)(n-2))
                                - 2/(n-2) 1^T K~ L~ 1 ],

where ``K~`` and ``L~`` are K and L with their diagonals set to zero.

The module holds, from the most literal to the most scalable:

* :func:`gram_linear`, :func:`center_gram`, :func:`cka`: the Gram-matrix form, as in
  Kornblith et al.'s published demo; n x n memory, the reference for small data and tests;
* :func:`feature_space_linear_cka`: the same numbers from p x q cross-products, no n x n
  matrix (the demo's feature-space form, debiased variant included);
* :func:`linear_cka_matrix`: CKA for every pair of layers in one streamed pass over the
  rows (memory ``(L*H)^2``, never rows x rows), for activations on disk;
* :class:`MinibatchCKA` / :func:`minibatch_cka`: the minibatch estimator of Nguyen et al.
  (2021), an average of per-batch HSIC_1 estimates.

References
----------
Dalvi, Sajjad, Durrani, Belinkov (2020). Analyzing Redundancy in Pretrained Transformer
Models. EMNLP.
Kornblith, Norouzi, Lee, Hinton (2019). Similarity of Neural Network Representations
Revisited. ICML. Demo: github.com/google-research/google-research, ``representation_similarity``.
Song, Smola, Gretton, Bedo, Borgwardt (2012). Feature Selection via Dependence
Maximization. JMLR 13.
Nguyen, Raghu, Kornblith (2021). Do Wide and Deep Networks Learn the Same Things?
Uncovering How Neural Network Representations Vary with Width and Depth. ICLR.
"""

from __future__ import annotations

import warnings

import numpy as np

from .moments import fill_upper_from_lower, streamed_cross_product

__all__ = ["ConstantInputWarning", "gram_linear", "center_gram", "cka", "feature_space_linear_cka",
           "unbiased_hsic", "linear_cka_matrix", "MinibatchCKA", "minibatch_cka"]


class ConstantInputWarning(RuntimeWarning):
    """A representation has no variance (or a non-positive HSIC estimate), so CKA is nan."""


def _warn_nan(message: str, stacklevel: int = 3) -> float:
    warnings.warn(message + "; CKA is undefined there and returned as nan", ConstantInputWarning,
                  stacklevel=stacklevel)
    return float("nan")


def _min_rows(debiased: bool) -> int:
    # HSIC_1 divides by n(n-3) and (n-1)(n-2); the biased form needs two rows to centre.
    return 4 if debiased else 2


def _check_rows(n: int, debiased: bool, what: str) -> None:
    need = _min_rows(debiased)
    if n < need:
        kind = "the debiased (unbiased HSIC) estimator" if debiased else "CKA"
        raise ValueError(f"{what} has {n} rows; {kind} needs at least {need}")


def _check_pair(X, Y, debiased: bool, names=("X", "Y")):
    """Both 2-D, finite, with the same number of rows (enough for the estimator)."""
    X, Y = np.asarray(X), np.asarray(Y)
    for a, name in zip((X, Y), names):
        if a.ndim != 2:
            raise ValueError(f"{name} must be a 2-D array (rows x features), got shape {a.shape}")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"{names[0]} and {names[1]} must have the same number of rows (the same examples), "
                         f"got {names[0]} of shape {X.shape} and {names[1]} of shape {Y.shape}")
    _check_rows(X.shape[0], debiased, f"{names[0]} of shape {X.shape}")
    for a, name in zip((X, Y), names):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains nan or inf values")
    return X, Y


# ----------------------------------------------------------------------------------------------
# Gram-matrix form (reference)

def gram_linear(X) -> np.ndarray:
    """Gram matrix of the linear kernel, ``K = X X^T`` (Kornblith et al., 2019, eq. 1).

    Parameters
    ----------
    X : array_like, shape (n, p)
        One row per example.

    Returns
    -------
    numpy.ndarray, shape (n, n), float64
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array (rows x features), got shape {X.shape}")
    return X @ X.T


def center_gram(G, unbiased: bool = False) -> np.ndarray:
    """Centre a symmetric Gram matrix.

    ``unbiased=False`` gives ``H G H`` with ``H = I - 11^T/n`` (Kornblith et al., 2019,
    eq. 2), the Gram matrix of the column-centred features. ``unbiased=True`` gives the
    U-centred matrix of Székely & Rizzo (2014), whose Frobenius inner products are
    ``n(n-3)`` times the unbiased HSIC_1 of Song et al. (2012); its diagonal is zero.
    Both follow Kornblith et al.'s demo.

    Parameters
    ----------
    G : array_like, shape (n, n)
        A symmetric Gram matrix.
    unbiased : bool
        U-centre (for debiased CKA) instead of double-centre.

    Returns
    -------
    numpy.ndarray, shape (n, n), float64
        A new matrix; ``G`` is not modified.
    """
    G = np.array(G, dtype=np.float64)  # a copy: centred in place below
    if G.ndim != 2 or G.shape[0] != G.shape[1]:
        raise ValueError(f"a Gram matrix must be square, got shape {G.shape}")
    scale = max(np.abs(G).max(initial=0.0), 1.0)
    if not np.allclose(G, G.T, rtol=1e-7, atol=1e-10 * scale):
        raise ValueError("a Gram matrix must be symmetric")
    n = G.shape[0]
    if unbiased:
        _check_rows(n, True, f"a Gram matrix of shape {G.shape}")
        np.fill_diagonal(G, 0.0)
        means = G.sum(axis=0) / (n - 2)
        means -= means.sum() / (2 * (n - 1))
        G -= means[:, None]
        G -= means[None, :]
        np.fill_diagonal(G, 0.0)
    else:
        means = G.mean(axis=0)
        means -= means.mean() / 2
        G -= means[:, None]
        G -= means[None, :]
    return G


def cka(G, H, debiased: bool = False) -> float:
    """CKA between two Gram matrices (Kornblith et al., 2019, eq. 3).

    ``CKA = <Gc, Hc>_F / (||Gc||_F ||Hc||_F)`` with ``Gc``, ``Hc`` the centred (or, when
    ``debiased``, U-centred) Gram matrices: the HSIC normalisations ``1/(n-1)^2`` and
    ``1/(n(n-3))`` cancel in the ratio.

    Parameters
    ----------
    G, H : array_like, shape (n, n)
        Gram matrices of the same n examples, e.g. from :func:`gram_linear`.
    debiased : bool
        Use the unbiased HSIC_1 estimator of Song et al. (2012). CKA, a ratio of unbiased
        estimates, is still not exactly unbiased, and may be negative.

    Returns
    -------
    float
        nan, with a :class:`ConstantInputWarning`, when a representation has no variance.
    """
    G, H = np.asarray(G), np.asarray(H)
    if G.shape != H.shape:
        raise ValueError(f"Gram matrices of the same examples must have the same shape, "
                         f"got G of shape {G.shape} and H of shape {H.shape}")
    Gc, Hc = center_gram(G, unbiased=debiased), center_gram(H, unbiased=debiased)
    norm_g, norm_h = np.linalg.norm(Gc), np.linalg.norm(Hc)
    # Centring a constant representation's Gram matrix leaves only rounding error.
    for norm, M, name in ((norm_g, G, "G"), (norm_h, H, "H")):
        if not norm > 1e-12 * np.linalg.norm(M):
            return _warn_nan(f"the centred Gram matrix {name} is zero (a constant representation)")
    return float(Gc.ravel() @ Hc.ravel() / (norm_g * norm_h))


# ----------------------------------------------------------------------------------------------
# feature-space form

def _debiased_dot_product_similarity_helper(xty, sum_squared_rows_x, sum_squared_rows_y,
                                            squared_norm_x, squared_norm_y, n):
    """``n(n-3) HSIC_1`` of two column-centred linear representations, in feature space.

    For centred features ``1^T K 1 = 0``, so ``1^T K~ 1 = -tr K = -||X||_F^2`` and
    ``(K~ 1)_i = -K_ii = -||x_i||^2``; substituting into Song et al.'s HSIC_1 gives
    ``||Y^T X||_F^2 - n/(n-2) sum_i ||x_i||^2 ||y_i||^2 + ||X||_F^2 ||Y||_F^2 / ((n-1)(n-2))``
    (Kornblith et al.'s demo, same name).
    """
    return (xty - n / (n - 2.0) * np.dot(sum_squared_rows_x, sum_squared_rows_y)
            + squared_norm_x * squared_norm_y / ((n - 1.0) * (n - 2.0)))


def feature_space_linear_cka(X, Y, debiased: bool = False) -> float:
    """Linear CKA from the features, without an n x n matrix.

    ``CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` on column-centred X and Y
    (Kornblith et al., 2019, eqs. 1-3); with ``debiased`` each of the three dot-product
    similarities is replaced by ``n(n-3) HSIC_1`` (Song et al., 2012) written in feature
    space (Kornblith et al.'s demo, ``_debiased_dot_product_similarity_helper``). Equals
    ``cka(gram_linear(X), gram_linear(Y), debiased)``; cost O(n p q), memory O(p q).

    Parameters
    ----------
    X : array_like, shape (n, p)
    Y : array_like, shape (n, q)
        Two representations of the same n examples (rows).
    debiased : bool
        Use the unbiased HSIC estimator (needs n >= 4).

    Returns
    -------
    float
        nan, with a :class:`ConstantInputWarning`, when X or Y is constant over the rows.

    Raises
    ------
    ValueError
        Different numbers of rows, too few rows, not 2-D, or non-finite values.
    """
    X, Y = _check_pair(X, Y, debiased)
    for a, name in ((X, "X"), (Y, "Y")):
        if not np.any(a != a[:1]):
            return _warn_nan(f"{name} (shape {a.shape}) is constant over the rows (zero variance)")
    # float64 throughout: the debiased form subtracts terms of similar size.
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    X = X - X.mean(axis=0, keepdims=True)
    Y = Y - Y.mean(axis=0, keepdims=True)

    xty = np.linalg.norm(Y.T @ X) ** 2
    xtx = np.linalg.norm(X.T @ X) ** 2
    yty = np.linalg.norm(Y.T @ Y) ** 2
    if debiased:
        n = X.shape[0]
        ssr_x = np.einsum("ij,ij->i", X, X)
        ssr_y = np.einsum("ij,ij->i", Y, Y)
        sq_x, sq_y = ssr_x.sum(), ssr_y.sum()
        xty = _debiased_dot_product_similarity_helper(xty, ssr_x, ssr_y, sq_x, sq_y, n)
        xtx = _debiased_dot_product_similarity_helper(xtx, ssr_x, ssr_x, sq_x, sq_x, n)
        yty = _debiased_dot_product_similarity_helper(yty, ssr_y, ssr_y, sq_y, sq_y, n)
    for v, name in ((xtx, "X"), (yty, "Y")):
        if not v > 0:
            return _warn_nan(f"the HSIC estimate of {name} with itself is {v:.3g}, not positive")
    return float(xty / np.sqrt(xtx * yty))


def unbiased_hsic(X, Y) -> float:
    """Unbiased HSIC_1 of Song et al. (2012) with linear kernels, computed in feature space.

    Translation-invariant; the estimator that :class:`MinibatchCKA` averages over batches.

    Parameters
    ----------
    X : array_like, shape (n, p)
    Y : array_like, shape (n, q)
        Two representations of the same n >= 4 examples.

    Returns
    -------
    float
        ``HSIC_1(XX^T, YY^T)``; may be negative.
    """
    X, Y = _check_pair(X, Y, True)
    # Shifting by the first row first makes a constant representation exactly zero.
    X = np.asarray(X, dtype=np.float64) - X[:1]
    Y = np.asarray(Y, dtype=np.float64) - Y[:1]
    X -= X.mean(axis=0, keepdims=True)
    Y -= Y.mean(axis=0, keepdims=True)
    n = X.shape[0]
    ssr_x = np.einsum("ij,ij->i", X, X)
    ssr_y = np.einsum("ij,ij->i", Y, Y)
    scaled = _debiased_dot_product_similarity_helper(np.linalg.norm(Y.T @ X) ** 2, ssr_x, ssr_y,
                                                     ssr_x.sum(), ssr_y.sum(), n)
    return float(scaled / (n * (n - 3.0)))


# ----------------------------------------------------------------------------------------------
# every pair of layers, one streamed pass

def _layer_source(layers):
    """``(n_rows, widths, read)`` where ``read(start, stop)`` gives rows as (rows, sum(widths))."""
    array = getattr(layers, "array", None)  # an Activations entry: use its memmap, not .layer()
    if array is not None and getattr(array, "ndim", 0) == 3:
        layers = array
    if isinstance(layers, np.ndarray):
        if layers.ndim != 3:
            raise ValueError(f"a layer array must be 3-D (rows x layers x hidden), got shape {layers.shape}; "
                             "pass a list of 2-D arrays for layers of different widths")
        n, n_layers, hidden = layers.shape

        def read(start, stop):
            return layers[start:stop].reshape(stop - start, n_layers * hidden)

        return n, [hidden] * n_layers, read
    if isinstance(layers, (list, tuple)):
        arrays = [np.asarray(a) for a in layers]
        for i, a in enumerate(arrays):
            if a.ndim != 2:
                raise ValueError(f"layer {i} must be a 2-D array (rows x hidden), got shape {a.shape}")
        if len({a.shape[0] for a in arrays}) > 1:
            shapes = ", ".join(f"layer {i}: {a.shape}" for i, a in enumerate(arrays))
            raise ValueError(f"all layers must have the same number of rows (the same tokens), got {shapes}")
        if not arrays:
            raise ValueError("no layers given")

        def read(start, stop):  # side by side, written straight into the chunk buffer
            return [a[start:stop] for a in arrays]

        return arrays[0].shape[0], [a.shape[1] for a in arrays], read
    raise TypeError("layers must be an Activations entry, a 3-D array (rows x layers x hidden) or a list "
                    f"of 2-D arrays, not {type(layers).__name__}")


def linear_cka_matrix(layers, debiased: bool = False, chunk: int = 8192, dtype=np.float32,
                      progress: bool = False) -> np.ndarray:
    """Linear CKA between every pair of layers, in one streamed pass over the rows.

    All layers side by side form ``Z = [X_1 ... X_L]`` (n x P, P = sum of widths). One
    pass over row chunks accumulates the column sums ``s = Z^T 1`` and the cross-product
    matrix ``C = Z^T Z`` (:func:`redundancy.methods.moments.streamed_cross_product`). Centring is then algebra on those sums:
    ``X_i^T X_j`` of centred layers is the block ``C_ij - n mu_i mu_j^T`` (``mu = s/n``),
    and every pair's CKA follows from the blocks (Kornblith et al., 2019, eqs. 1-3):
    ``HSIC_ij ~ ||C_ij - n mu_i mu_j^T||_F^2`` and ``CKA_ij = HSIC_ij / sqrt(HSIC_ii HSIC_jj)``.
    Equals :func:`feature_space_linear_cka` on every pair, for L(L+1)/2 pairs at the cost of
    one product ``Z^T Z``.

    The debiased variant (Song et al.'s HSIC_1, as in
    :func:`feature_space_linear_cka`) also needs, per pair, ``sum_t ||x_t||^2 ||y_t||^2``
    over centred rows and ``||X||_F^2``. Expanding
    ``||x_t - mu||^2 = r_t - 2 x_t.mu + ||mu||^2`` (``r_t`` the squared norm of token t's
    uncentred row in that layer) writes it with three more streamed sums: ``R^T R``
    (L x L), ``R^T Z`` (L x P) and ``R^T 1``, where ``R`` holds ``r_t`` for every token and
    layer. So the debiased matrix is computed in the same single pass.

    Every row is shifted by the column means of the first rows before it is accumulated.
    CKA (biased and debiased) is invariant to translation, and the shift keeps the sums of
    nearly centred data, so that ``C - n mu mu^T`` does not cancel catastrophically (nor
    float32 products lose digits) when activations have large means (BERT has a few
    dimensions with large constant offsets); it also makes a constant layer's block
    exactly zero.

    Parameters
    ----------
    layers : Activations, array_like of shape (rows, layers, hidden), or list of 2-D arrays
        An :class:`~redundancy.representations.store.Activations` entry (its memory-mapped ``array`` is read
        chunk by chunk, never whole), a 3-D array, or one (rows, width) array per layer
        (widths may differ).
    debiased : bool
        Use the unbiased HSIC estimator (needs at least 4 rows).
    chunk : int
        Rows read and multiplied at a time; memory for a chunk is ``chunk * P`` floats.
    dtype : numpy float dtype, ``np.float32`` (default) or ``np.float64``
        Precision of each chunk's product ``Z_c^T Z_c`` (a BLAS ``syrk``). float32 is about
        twice as fast and, as the chunks are nearly centred (see
        :mod:`redundancy.methods.moments`), agrees with float64 to about 1e-7 on BERT-sized
        activations, debiased included; float64 agrees with :func:`feature_space_linear_cka`
        to about 1e-12. The sums beyond 65,536 rows are kept in float64 either way.
    progress : bool
        Show a progress bar over rows.

    Returns
    -------
    numpy.ndarray, shape (L, L), float64
        Symmetric, with ones on the diagonal. The rows and columns of a layer that is
        constant over the rows (or whose debiased self-HSIC is not positive) are nan, with a
        :class:`ConstantInputWarning`.

    Notes
    -----
    Memory is ``P^2`` values of ``dtype`` for ``C`` (float32 beyond 65,536 rows adds ``P^2``
    float64) and one chunk; never rows x rows. For BERT-base (13 x 768, P = 9984) that is
    0.4 GB. Time is ``n P^2 / 2`` multiply-adds (``syrk`` uses the symmetry of ``Z^T Z``):
    that of the one product ``Z^T Z`` of all layers side by side, which numpy's ``Z.T @ Z``
    also computes with ``syrk``.
    """
    n, widths, read = _layer_source(layers)
    _check_rows(n, debiased, f"the layer data ({n} rows, {len(widths)} layers)")

    n_layers = len(widths)
    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(int)
    blocks = [slice(offsets[i], offsets[i + 1]) for i in range(n_layers)]
    P = int(offsets[-1])
    if debiased:
        RR = np.zeros((n_layers, n_layers))
        RZ = np.zeros((n_layers, P))
        r_sum = np.zeros(n_layers)

        def row_norms(D):  # the extra streamed sums of the debiased estimator
            nonlocal RR, RZ, r_sum
            R = np.stack([np.einsum("ij,ij->i", D[:, b], D[:, b]) for b in blocks], axis=1)
            RR += R.T.astype(np.float64) @ R
            RZ += R.T @ D
            r_sum += R.sum(axis=0, dtype=np.float64)

    cp = streamed_cross_product(read, n, chunk, dtype=dtype, on_chunk=row_norms if debiased else None,
                                progress="linear CKA" if progress else None)
    C, s = cp.gram, cp.sums

    mu = s / n
    m = np.array([mu[b] @ mu[b] for b in blocks])  # ||mu_i||^2

    # Only the upper triangle of C is set: complete each diagonal block in place (the
    # lower triangle of C is free), so that every block read below is a plain view.
    for b in blocks:
        fill_upper_from_lower(C[b, b].T)

    # One float64 work buffer for every block (block by block, a fresh temporary each
    # time would cost 91 x 3 page-faulted 4.7 MB arrays at BERT's size).
    width = max(widths)
    work = np.empty(width * width)
    hsic = np.empty((n_layers, n_layers))
    M = np.empty((n_layers, n_layers))  # sum_t (z_ti . mu_i)(z_tj . mu_j)
    trace = np.array([cp.diagonal[b].sum() for b in blocks])  # ||Z_i||_F^2 of the shifted, uncentred layer
    for i in range(n_layers):
        for j in range(i, n_layers):
            mi, mj = mu[blocks[i]], mu[blocks[j]]
            # Fortran order, as C: the block's columns are read contiguously
            flat = work[:widths[i] * widths[j]]
            centred = flat.reshape(widths[j], widths[i]).T
            np.multiply.outer(-n * mi, mj, out=centred)
            centred += C[blocks[i], blocks[j]]  # C_ij - n mu_i mu_j^T, in float64
            # einsum, not BLAS: on blocks this small a threaded BLAS call costs more in
            # synchronisation than in arithmetic, the more so on a busy machine
            hsic[i, j] = hsic[j, i] = np.einsum("k,k->", flat, flat)
            # mu_i^T C_ij mu_j, from the centred block: + n ||mu_i||^2 ||mu_j||^2
            M[i, j] = M[j, i] = np.einsum("ba,b->a", centred.T, mj) @ mi + n * m[i] * m[j]
    squared_norm = trace - n * m  # ||X_i - mu_i||_F^2

    if debiased:
        Q = np.array([[RZ[i, blocks[j]] @ mu[blocks[j]] for j in range(n_layers)] for i in range(n_layers)])
        # sum_t ||x_ti - mu_i||^2 ||x_tj - mu_j||^2, expanded in the streamed sums
        ssr = (RR - 2 * (Q + Q.T) + np.outer(r_sum, m) + np.outer(m, r_sum) + 4 * M
               - 3 * n * np.outer(m, m))
        # _debiased_dot_product_similarity_helper, for all pairs at once
        hsic = (hsic - n / (n - 2.0) * ssr
                + np.outer(squared_norm, squared_norm) / ((n - 1.0) * (n - 2.0)))

    constant = trace == 0  # every row equals the first: exact, thanks to the shift
    bad = constant | ~(np.diag(hsic) > 0)
    if bad.any():
        layers_txt = ", ".join(str(i) for i in np.flatnonzero(bad))
        _warn_nan(f"layer(s) {layers_txt} are constant over the rows or have a non-positive "
                  "HSIC estimate with themselves")
    diag = np.where(bad, np.nan, np.diag(hsic))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = hsic / np.sqrt(np.outer(diag, diag))
    return out


# ----------------------------------------------------------------------------------------------
# minibatch CKA (Nguyen et al., 2021)

class MinibatchCKA:
    """Minibatch linear CKA of Nguyen, Raghu & Kornblith (2021), for data larger than memory.

    With k minibatches ``(X_i, Y_i)``,

        CKA_minibatch = mean_i HSIC_1(X_i X_i^T, Y_i Y_i^T)
                        / sqrt( mean_i HSIC_1(X_i X_i^T, X_i X_i^T) mean_i HSIC_1(Y_i Y_i^T, Y_i Y_i^T) ),

    with HSIC_1 the unbiased estimator of Song et al. (2012) (:func:`unbiased_hsic`). Each
    batch's HSIC_1 is unbiased, so the averages are unbiased estimates of the population
    HSIC and the ratio converges to the population CKA as batches accumulate.

    It estimates a slightly different quantity than full-data CKA
    (:func:`feature_space_linear_cka` on all rows at once): centring is within each batch
    and only pairs of rows in the same batch enter the estimate, so for a finite dataset the
    two differ by sampling noise that shrinks with more and larger batches. Unlike biased
    full-data CKA it is not inflated for small batches. Where the whole data fit in one
    streamed pass, :func:`linear_cka_matrix` gives exact full-data CKA.

    Attributes
    ----------
    n_batches_ : int
        Minibatches seen.
    n_rows_ : int
        Rows seen.
    hsic_xy_, hsic_xx_, hsic_yy_ : float
        Means over batches of HSIC_1(X, Y), HSIC_1(X, X), HSIC_1(Y, Y).

    Examples
    --------
    >>> est = MinibatchCKA()
    >>> for X_batch, Y_batch in batches:          # doctest: +SKIP
    ...     est.update(X_batch, Y_batch)
    >>> est.value()                               # doctest: +SKIP
    """

    def __init__(self):
        pass

    def update(self, X_batch, Y_batch) -> "MinibatchCKA":
        """Add one minibatch: ``X_batch`` (b, p) and ``Y_batch`` (b, q), the same b >= 4 rows."""
        X_batch, Y_batch = _check_pair(X_batch, Y_batch, True, names=("X_batch", "Y_batch"))
        estimates = np.array([unbiased_hsic(X_batch, Y_batch), unbiased_hsic(X_batch, X_batch),
                              unbiased_hsic(Y_batch, Y_batch)])
        if not hasattr(self, "n_batches_"):
            self.n_batches_, self.n_rows_, self._sums = 0, 0, np.zeros(3)
        self._sums += estimates
        self.n_batches_ += 1
        self.n_rows_ += X_batch.shape[0]
        self.hsic_xy_, self.hsic_xx_, self.hsic_yy_ = (float(v) for v in self._sums / self.n_batches_)
        return self

    def value(self) -> float:
        """The minibatch CKA of the batches seen so far (nan, with a warning, if undefined)."""
        if not getattr(self, "n_batches_", 0):
            raise ValueError("MinibatchCKA has seen no batches; call update() first")
        for v, name in ((self.hsic_xx_, "X"), (self.hsic_yy_, "Y")):
            if not v > 0:
                return _warn_nan(f"the mean HSIC_1 of {name} with itself is {v:.3g}, not positive "
                                 "(a constant representation?)")
        return float(self.hsic_xy_ / np.sqrt(self.hsic_xx_ * self.hsic_yy_))


def minibatch_cka(X_batches, Y_batches) -> float:
    """Minibatch linear CKA (Nguyen et al., 2021) over paired iterables of batches.

    Parameters
    ----------
    X_batches, Y_batches : iterables of arrays
        The i-th items are two representations, (b_i, p) and (b_i, q), of the same b_i >= 4
        rows. Both may be generators (e.g. reading chunks from disk).

    Returns
    -------
    float
        See :class:`MinibatchCKA`.
    """
    est = MinibatchCKA()
    try:
        for X_batch, Y_batch in zip(X_batches, Y_batches, strict=True):
            est.update(X_batch, Y_batch)
    except ValueError as e:
        if "zip()" not in str(e):
            raise
        raise ValueError(f"X_batches and Y_batches must hold the same number of batches ({e})") from None
    return est.value()
