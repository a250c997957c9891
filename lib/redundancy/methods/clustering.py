"""Correlation clustering of neurons: general neuron-level redundancy.

Dalvi, Sajjad, Durrani, Belinkov (2020), *Analyzing Redundancy in Pretrained
Transformer Models*, EMNLP, section 5.2 ("Neuron-level redundancy").

Every neuron is a vector of its activations over all ``T`` words (rows); the method

1. computes the ``N x N`` Pearson correlation ``corr`` of every neuron with every other
   (:func:`neuron_correlation`),
2. turns it into the distance ``cdist(x, y) = 1 - |corr(x, y)|`` (:func:`correlation_distance`),
3. clusters ``cdist`` by agglomerative hierarchical clustering with average linkage and
   cuts the tree at the distance threshold ``c_t`` (:func:`correlation_clusters`),
4. keeps one neuron per cluster, picked at random (:class:`CorrelationClustering`).

:func:`cluster_makeup` gives the statistic of Figure 3 (how many layers a cluster spans).

Relation to the authors' reference code, which runs ``np.corrcoef`` on the whole
activation matrix, sets NaNs to 0, and calls ``scipy.cluster.hierarchy.linkage(method="average")``
and ``fcluster(t=c_t, criterion="distance")``:

* the correlation is streamed over chunks of rows, so a memory-mapped activation file
  is never read whole nor copied to float64 (see :func:`neuron_correlation`);
* dead (constant) neurons, whose correlation is undefined (NaN in ``np.corrcoef``), get
  correlation 0 with every other neuron, exactly as the reference code's NaN -> 0;
* cluster labels are 0-based (``fcluster``'s labels minus one), as in scikit-learn;
* the kept neuron can also be the cluster's medoid instead of a random member
  (``representative="medoid"``), an option the paper does not have.
"""

from __future__ import annotations

import numbers

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.cluster import hierarchy
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .moments import streamed_cross_product
from ..cache import load_arrays, save_arrays
from ..utils import read_columns, release_mapped

__all__ = ["neuron_correlation", "correlation_distance", "correlation_linkage", "correlation_clusters",
           "cluster_representatives", "CorrelationClustering", "layer_of_neuron", "cluster_makeup"]

# rows of an N x N (or m x m) matrix handled at once in the block loops below: bounds the
# temporaries to about 8 * _BLOCK * N bytes
_BLOCK = 512


# --------------------------------------------------------------------------------------
# validation

def _check_threshold(threshold) -> float:
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, numbers.Real):
        raise ValueError(f"threshold c_t must be a number in [0, 1], not {threshold!r}")
    t = float(threshold)
    if not 0.0 <= t <= 1.0:  # also rejects NaN
        raise ValueError(f"threshold c_t must lie in [0, 1] (it bounds the distance 1 - |corr|), "
                         f"got {threshold!r}")
    return t


#: bytes of one chunk of rows (converted to float32 or float64) when ``chunk=None``
#: (at least 512 rows)
CHUNK_BYTES = 64 * 2**20


def _check_chunk(chunk, n_neurons: int | None = None, itemsize: int = 4) -> int | None:
    """Rows per chunk: ``chunk`` itself, or with None about 64 MiB of rows of ``itemsize`` bytes."""
    if chunk is None:
        return None if n_neurons is None else max(512, CHUNK_BYTES // (itemsize * max(1, n_neurons)))
    if isinstance(chunk, (bool, np.bool_)) or not isinstance(chunk, numbers.Integral) or chunk < 1:
        raise ValueError(f"chunk must be a positive number of rows or None, not {chunk!r}")
    return int(chunk)


def _check_precision(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, not {dtype}")
    return dtype


def _check_activations(X, fitting: bool = True):
    """A (rows, neurons) array-like, left as it is (a memmap stays a memmap); for ``fitting``, of
    at least 2 rows and 2 neurons. The messages carry scikit-learn's words too, so its estimator
    checks recognise them."""
    if hasattr(X, "tocsr") or hasattr(X, "toarray"):
        raise TypeError("correlation clustering does not take sparse input; pass a dense (rows, neurons) array")
    if not hasattr(X, "shape") or not hasattr(X, "dtype"):
        X = np.asarray(X)
    if len(X.shape) != 2:
        raise ValueError(f"X must be a 2-D (rows, neurons) activation matrix, got shape {tuple(X.shape)}; "
                         "for a (rows, layers, hidden) store entry use Activations.flat(). Reshape your data "
                         "with X.reshape(-1, 1) for one neuron")
    if X.dtype.kind == "c":
        raise ValueError(f"X must hold real numbers, not {X.dtype}: Complex data not supported")
    if X.dtype.kind == "O":
        X = np.asarray(X, dtype=np.float64)  # numbers held as objects; anything else raises numpy's TypeError
    if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
        raise ValueError(f"X must hold numbers, not {X.dtype}")
    rows, n = X.shape
    if rows == 0 or n == 0:
        raise ValueError(f"X is empty (shape {tuple(X.shape)}): correlation clustering needs activations of at "
                         f"least 2 neurons over at least 2 rows; {0 if n == 0 else rows} "
                         f"{'feature' if n == 0 else 'sample'}(s) (shape={tuple(X.shape)}) while a minimum of 2 "
                         "is required.")
    if not fitting:
        return X
    if rows < 2:
        raise ValueError(f"X has {rows} row (n_samples = {rows}): a correlation needs at least 2 rows (words)")
    if n < 2:
        raise ValueError(f"X has {n} neuron (n_features = {n}): clustering needs at least 2 neurons")
    return X


def _check_linkage(Z, n_neurons=None) -> np.ndarray:
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2 or Z.shape[1] != 4 or not hierarchy.is_valid_linkage(Z):
        raise ValueError("linkage must be a scipy linkage matrix of shape (n_neurons - 1, 4)")
    if n_neurons is not None and Z.shape[0] + 1 != n_neurons:
        raise ValueError(f"linkage is over {Z.shape[0] + 1} neurons but X has {n_neurons}")
    return Z


# --------------------------------------------------------------------------------------
# correlation and distance

class _Moments:
    """The streamed cross-product of the neurons and what a correlation needs from it.

    ``packed=True`` keeps only the condensed strict upper triangle of the cross-product
    (float64, ``4 N (N - 1)`` bytes), which :meth:`condensed_distance` turns into the
    distances in place.
    """

    def __init__(self, X, chunk, dtype, packed=False):
        rows, n = X.shape
        chunk = _check_chunk(chunk, n, dtype.itemsize)
        try:
            cp = streamed_cross_product(lambda a, b: X[a:b], rows, chunk, dtype=dtype, packed=packed)
        except ValueError:
            raise ValueError("X contains NaN or infinity; correlations are undefined") from None
        self.cp, self.rows, self.n = cp, rows, n
        mean = cp.mean
        # (rows - 1) * variance, the same shifted sums; the factor rows - 1 cancels in corr
        scatter = cp.diagonal - rows * mean * mean
        self.dead = ~(scatter > 0)  # exactly 0 for a constant column: the shift makes it exact
        self.inv_scale = 1.0 / np.sqrt(np.where(self.dead, 1.0, scatter))
        # corr_ij = G_ij / (s_i s_j) - a_i a_j, with a = sqrt(rows) * mean / s
        self.a = np.sqrt(rows) * mean * self.inv_scale

    def correlation_rows(self, i0, i1, gram):
        """``corr[i0:i1, :]`` in float64 (C order) from the full symmetric ``gram``; dead
        neurons' entries 0 (their diagonal too)."""
        c = np.multiply(gram[i0:i1], self.inv_scale[i0:i1, None], order="C", dtype=np.float64)
        c *= self.inv_scale[None, :]
        c -= np.outer(self.a[i0:i1], self.a)
        np.clip(c, -1.0, 1.0, out=c)
        if self.dead.any():
            c[self.dead[i0:i1], :] = 0.0
            c[:, self.dead] = 0.0
        return c

    def condensed_distance(self) -> np.ndarray:
        """Condensed ``1 - |corr|``, made in place from the packed cross-product (which it
        takes: the moments cannot be used after), one row of the triangle at a time: no
        temporaries but two of one row."""
        dist, self.cp.packed = self.cp.packed, None
        n, inv, a = self.n, self.inv_scale, self.a
        dead = np.flatnonzero(self.dead)
        k = 0
        for i in range(n - 1):
            w = n - 1 - i
            seg = dist[k:k + w]  # G[i, i + 1:]
            seg *= inv[i] * inv[i + 1:]
            seg -= a[i] * a[i + 1:]
            np.abs(seg, out=seg)
            np.minimum(seg, 1.0, out=seg)  # |corr| <= 1 against rounding
            np.subtract(1.0, seg, out=seg)
            if dead.size:  # NaN correlations count as 0 (the reference code): distance 1
                if self.dead[i]:
                    seg[:] = 1.0
                else:
                    seg[dead[dead > i] - (i + 1)] = 1.0
            k += w
        return dist


def neuron_correlation(X, chunk: int | None = None, dtype=np.float32) -> np.ndarray:
    """Pearson correlation of every neuron with every other neuron over all rows.

    The ``N x N`` matrix ``corr`` of section 5.2 (Dalvi et al., 2020), equal to
    ``np.corrcoef(X, rowvar=False)`` but computed by streaming chunks of rows, so that ``X``
    may be a memory-mapped activation file larger than memory.

    Each chunk of rows is shifted by the column means of the first rows (nearly centring
    it, which keeps the one-pass formula free of cancellation when activations have a
    large mean), rounded to ``dtype`` (``chunk x N`` values) and multiplied by the BLAS
    ``syrk`` routine; the column sums come out of the same call
    (:func:`redundancy.methods.moments.streamed_cross_product`). With float32 the products are
    summed in float32 over up to 65,536 rows and in float64 beyond; the correlations
    then agree with ``np.corrcoef`` to about 1e-6. No float64 copy of the whole activation
    matrix is made. Peak memory is about ``4 N^2`` bytes for the sums in float32
    (``8 N^2`` in float64, and float32 beyond 65,536 rows needs both), plus the result
    (``4 N^2`` bytes in float32), plus one chunk (64 MiB with the default
    ``chunk=None``): for BERT's 13 x 768 = 9984 neurons, 0.4 + 0.4 GB.
    :func:`correlation_linkage` needs no ``N x N`` result and goes straight to the
    condensed distances.

    Dead neurons: a neuron that is constant over all rows has no defined correlation
    (``np.corrcoef`` gives NaN). Following the reference code, which sets NaNs to 0, a
    dead neuron's correlation with every other neuron is 0, and with itself 1. Its
    distance to every other neuron is then 1, so it stays a singleton cluster for every
    threshold ``c_t < 1`` (at ``c_t = 1`` everything is one cluster).

    Parameters
    ----------
    X : array-like of shape (rows, neurons)
        Activations, one row per word (or sentence), one column per neuron; float16,
        float32, float64 or a memmap of them. Neuron ``layer * hidden + unit`` in
        :meth:`redundancy.representations.store.Activations.flat`.
    chunk : int or None, default None
        Rows read and converted at a time; None: about 64 MiB of rows.
    dtype : float32 or float64, default float32
        Precision of the products and type of the returned matrix. float32 is about twice
        as fast; float64 agrees with ``np.corrcoef`` to about 1e-12.

    Returns
    -------
    corr : numpy.ndarray of shape (neurons, neurons)
        Symmetric, in [-1, 1], with ones on the diagonal.
    dead_neurons : numpy.ndarray of int64
        Sorted indices of the constant neurons.

    Raises
    ------
    ValueError
        If ``X`` is not 2-D, has fewer than 2 rows or 2 neurons, or holds NaN or infinity.
    """
    X = _check_activations(X)
    dtype = _check_precision(dtype)
    m = _Moments(X, chunk, dtype)
    n = m.n
    s = m.cp.symmetric()
    out = np.empty((n, n), dtype=dtype)
    for i in range(0, n, _BLOCK):
        out[i:i + _BLOCK] = m.correlation_rows(i, min(i + _BLOCK, n), s)
    np.fill_diagonal(out, 1.0)
    return out, np.flatnonzero(m.dead)


def correlation_distance(corr) -> np.ndarray:
    """Condensed distance ``cdist(x, y) = 1 - |corr(x, y)|`` between all pairs of neurons.

    Section 5.2 of Dalvi et al. (2020). The result is the condensed form that
    ``scipy.cluster.hierarchy.linkage`` takes (the same as
    ``scipy.spatial.distance.squareform(1 - abs(corr), checks=False)``): the upper
    triangle without the diagonal, row by row, in float64. NaN correlations count as 0
    (distance 1), as in the reference code, and distances are clipped at 0 against
    rounding. Built row by row, so the only large allocation is the result itself
    (``4 N (N - 1)`` bytes).

    Parameters
    ----------
    corr : array-like of shape (neurons, neurons)
        A correlation matrix, such as the first output of :func:`neuron_correlation`.

    Returns
    -------
    numpy.ndarray of float64, shape (neurons * (neurons - 1) / 2,)
    """
    corr = np.asarray(corr)
    if corr.ndim != 2 or corr.shape[0] != corr.shape[1]:
        raise ValueError(f"corr must be a square (neurons, neurons) matrix, got shape {corr.shape}")
    n = corr.shape[0]
    if n < 2:
        raise ValueError(f"corr is over {n} neuron: distances need at least 2 neurons")
    dist = np.empty(n * (n - 1) // 2, dtype=np.float64)
    k = 0
    for i in range(n - 1):
        dist[k:k + n - 1 - i] = corr[i, i + 1:]
        k += n - 1 - i
    np.abs(dist, out=dist)
    np.subtract(1.0, dist, out=dist)
    np.maximum(dist, 0.0, out=dist)
    dist[np.isnan(dist)] = 1.0
    return dist


def _condensed_index(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Position of the pair (i, j), i < j, in a condensed distance vector over n points."""
    return n * i - i * (i + 1) // 2 + (j - i - 1)


# --------------------------------------------------------------------------------------
# clusters

def correlation_linkage(X, chunk: int | None = None, dtype=np.float32, return_distances: bool = False):
    """Average-linkage hierarchical clustering of neurons on ``1 - |corr|``.

    The tree of section 5.2 (Dalvi et al., 2020), built once and cut at any threshold
    ``c_t`` with :func:`correlation_clusters` (``linkage=``) or
    ``scipy.cluster.hierarchy.fcluster(Z, c_t, criterion="distance")``.

    Parameters
    ----------
    X : array-like of shape (rows, neurons)
        Activations (a memmap is read in chunks).
    chunk : int or None, default None
        Rows per chunk in :func:`neuron_correlation`.
    dtype : float32 or float64, default float32
        Precision of the products (see :func:`neuron_correlation`).
    return_distances : bool, default False
        Also return the condensed distances (needed for medoids).

    Returns
    -------
    linkage : numpy.ndarray of shape (neurons - 1, 4)
        ``scipy.cluster.hierarchy.linkage(cdist, method="average")``.
    dead_neurons : numpy.ndarray of int64
        Constant neurons (see :func:`neuron_correlation`).
    distances : numpy.ndarray of float64
        Condensed ``1 - |corr|``; only with ``return_distances=True``.

    Notes
    -----
    No ``N x N`` correlation matrix is made. The float32 products of every chunk go into
    one ``(N + 1) x (N + 1)`` float32 matrix (BLAS ``syrk``; only its lower triangle is
    written), which is added, column by column, into the condensed float64 triangle; that
    triangle becomes ``1 - |corr|`` in place, row by row, and is what the linkage takes.
    Peak memory is about ``2 N^2`` bytes (the written half of the float32 matrix) plus
    ``4 N^2`` (the condensed triangle) plus one chunk (64 MiB), and then ``8 N^2`` while
    ``scipy`` clusters (it copies the distances): for BERT's 9984 neurons about 0.7 GB while
    summing and 0.8 GB while clustering, against ``np.corrcoef``'s float64 copy of the data (3.5 GB at 44,000 tokens)
    and its several ``N x N`` float64 matrices (0.8 GB each) in the reference code.
    """
    X = _check_activations(X)
    # no N x N correlation matrix: the products are summed straight into the condensed
    # triangle, which becomes the distances in place; the only N x N array is the one BLAS
    # writes (float32), freed before the linkage copies the distances
    m = _Moments(X, chunk, _check_precision(dtype), packed=True)
    dead = np.flatnonzero(m.dead)
    dist = m.condensed_distance()
    del m
    Z = hierarchy.linkage(dist, method="average")
    return (Z, dead, dist) if return_distances else (Z, dead)


def correlation_clusters(X=None, threshold: float = 0.3, chunk: int | None = None, linkage=None) -> np.ndarray:
    """Cluster labels of neurons cut at distance threshold ``c_t``.

    Agglomerative clustering with average linkage on ``1 - |corr|``, cut so that no
    merge above ``c_t`` is kept (``fcluster(Z, t=c_t, criterion="distance")``), as in
    section 5.2 of Dalvi et al. (2020) and the authors' code. A high ``c_t`` gives few,
    large clusters; the paper analyses ``c_t = 0.3`` and sweeps ``c_t`` in Figure 2.

    Parameters
    ----------
    X : array-like of shape (rows, neurons), optional
        Activations. May be None when ``linkage`` is given.
    threshold : float in [0, 1], default 0.3
        ``c_t``.
    chunk : int or None, default None
        Rows per chunk when computing correlations.
    linkage : numpy.ndarray of shape (neurons - 1, 4), optional
        A tree from :func:`correlation_linkage` (or ``CorrelationClustering.linkage_``),
        reused instead of recomputing it: a sweep over thresholds needs one tree.

    Returns
    -------
    numpy.ndarray of int64, shape (neurons,)
        0-based cluster label of every neuron (``fcluster``'s 1-based labels minus one),
        numbered ``0 .. n_clusters - 1``.
    """
    t = _check_threshold(threshold)
    if linkage is None:
        if X is None:
            raise ValueError("give the activations X or a precomputed linkage")
        Z, _ = correlation_linkage(X, chunk=chunk)
    else:
        n = None if X is None else _check_activations(X).shape[1]
        Z = _check_linkage(linkage, n)
    return hierarchy.fcluster(Z, t=t, criterion="distance").astype(np.int64) - 1


def cluster_representatives(labels, representative: str = "random", random_state=0,
                            distances=None) -> np.ndarray:
    """One neuron per cluster: the reduced set of non-redundant neurons.

    The paper "randomly pick[s] a neuron from each cluster" (section 5.2). With
    ``representative="medoid"`` the kept neuron is instead the member with the smallest
    mean distance ``1 - |corr|`` to the other members of its cluster (ties: the lowest
    index; a singleton keeps its only neuron).

    Parameters
    ----------
    labels : array-like of int, shape (neurons,)
        Cluster of every neuron.
    representative : {"random", "medoid"}, default "random"
    random_state : int, numpy.random.RandomState or None, default 0
        Seed of the random pick; the same labels and seed give the same neurons.
    distances : numpy.ndarray, optional
        Condensed ``1 - |corr|`` (from :func:`correlation_distance`); needed for medoids.

    Returns
    -------
    numpy.ndarray of int64
        Sorted neuron indices, one per cluster.
    """
    labels = np.asarray(labels).ravel()
    n = labels.size
    if representative == "random":
        # a random order of all neurons; each cluster keeps its first neuron in that order,
        # which is a uniform pick within every cluster
        order = check_random_state(random_state).permutation(n)
        _, first = np.unique(labels[order], return_index=True)
        return np.sort(order[first]).astype(np.int64)
    if representative == "medoid":
        if distances is None:
            raise ValueError("medoids need the condensed distances (correlation_distance)")
        distances = np.asarray(distances)
        if distances.shape != (n * (n - 1) // 2,):
            raise ValueError(f"distances has shape {distances.shape}; {n} neurons need "
                             f"({n * (n - 1) // 2},)")
        _, inverse = np.unique(labels, return_inverse=True)
        # members of every cluster in ascending neuron order (stable sort)
        members = np.split(np.argsort(inverse, kind="stable"), np.cumsum(np.bincount(inverse))[:-1])
        reps = [_medoid(distances, n, idx) for idx in members]
        return np.sort(np.asarray(reps, dtype=np.int64))
    raise ValueError(f"representative must be 'random' or 'medoid', not {representative!r}")


def _medoid(dist: np.ndarray, n: int, idx: np.ndarray) -> int:
    """The member of ``idx`` (sorted) with the smallest mean distance to the others."""
    m = idx.size
    if m == 1:
        return int(idx[0])
    sums = np.empty(m, dtype=np.float64)
    step = max(1, (1 << 22) // m)  # rows of the m x m block at a time
    for a in range(0, m, step):
        i = idx[a:a + step, None]
        j = idx[None, :]
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        same = lo == hi
        k = _condensed_index(n, lo, hi)
        k[same] = 0
        d = dist[k]
        d[same] = 0.0
        sums[a:a + step] = d.sum(axis=1)
    return int(idx[np.argmin(sums)])  # the mean is sums / (m - 1): same order


def _cached_tree(X, folder: Path):
    """``((linkage, dead) or None, store)`` for activations ``X`` in the cache ``folder`` (an
    array entry of :mod:`redundancy.cache`, keyed by the sha256 of the activations' bytes)."""
    import hashlib

    h = hashlib.sha256(f"{X.shape}|{X.dtype}|tree-v1".encode())
    step = max(1, (64 << 20) // max(1, X.shape[1] * X.dtype.itemsize))
    for s in range(0, X.shape[0], step):
        h.update(np.ascontiguousarray(X[s:s + step]).tobytes())
        release_mapped(X[s:s + step])  # the whole file is read: its pages leave the resident set as it goes
    key = f"tree-{h.hexdigest()[:24]}"

    def store(Z, dead):
        save_arrays(folder, key, {"linkage": Z, "dead": dead}, {"neurons": int(X.shape[1])})

    hit = load_arrays(folder, key, what="cached clustering tree")
    if hit is not None:
        Z, dead = hit[1]["linkage"], hit[1]["dead"]
        if Z.shape == (X.shape[1] - 1, 4):
            return (Z, dead), store
        print(f"[redundancy] cached clustering tree {key} rejected and recomputed: tree of shape {Z.shape} "
              f"for {X.shape[1]} neurons", flush=True)
    return None, store


class CorrelationClustering(TransformerMixin, BaseEstimator):
    """Correlation clustering of neurons (Dalvi et al., 2020, section 5.2).

    Clusters neurons whose activations are highly correlated (distance
    ``1 - |corr|``, average linkage, cut at ``c_t``) and keeps one neuron per cluster.
    The clustering is unsupervised: ``fit`` takes no labels.

    Parameters
    ----------
    threshold : float in [0, 1], default 0.3
        ``c_t``, the distance at which the tree is cut. 0.3 is the paper's choice for the
        analysis of Figure 3 and for CCFS.
    representative : {"random", "medoid"}, default "random"
        How the kept neuron of a cluster is chosen: at random (the paper) or the medoid,
        the member with the smallest mean distance to the other members.
    random_state : int, numpy.random.RandomState or None, default 0
        Seed of the random pick.
    chunk : int or None, default None
        Rows per chunk when computing correlations (bounds the working memory for rows to
        ``4 * chunk * neurons`` bytes besides the ``N x N`` sums; None: 64 MiB).
    memory : path-like or None, default None
        A folder where the tree is cached, keyed by the sha256 of the activations (like
        scikit-learn's ``AgglomerativeClustering(memory=...)``): a second fit on the same
        data (a rerun, or a run resumed after a kill) reads the tree instead of recomputing
        the correlations. Not used with ``representative="medoid"``, which needs the distances.

    Attributes
    ----------
    labels_ : numpy.ndarray of int64, shape (neurons,)
        0-based cluster of every neuron.
    linkage_ : numpy.ndarray of shape (neurons - 1, 4)
        The average-linkage tree; cut it at other thresholds with
        :meth:`representatives_at` or :meth:`labels_at`.
    dead_neurons_ : numpy.ndarray of int64
        Constant neurons; each is a singleton cluster for ``threshold < 1``.
    representatives_ : numpy.ndarray of int64
        Sorted indices of the kept neurons, one per cluster.
    n_clusters_ : int
    n_features_in_ : int
        Number of neurons seen in ``fit``.
    distances_ : numpy.ndarray of float64
        Condensed ``1 - |corr|``; kept only with ``representative="medoid"`` (it takes
        ``4 N (N - 1)`` bytes) so that :meth:`representatives_at` can find medoids.

    Examples
    --------
    >>> cc = CorrelationClustering(threshold=0.3).fit(acts.flat())      # doctest: +SKIP
    >>> reduced = cc.transform(acts.flat())                              # doctest: +SKIP
    >>> [len(cc.representatives_at(t)) for t in (0.1, 0.3, 0.5, 0.7)]   # doctest: +SKIP
    """

    def __init__(self, threshold=0.3, representative="random", random_state=0, chunk=None, memory=None):
        self.threshold = threshold
        self.representative = representative
        self.random_state = random_state
        self.chunk = chunk
        self.memory = memory

    def fit(self, X, y=None):
        """Cluster the neurons (columns) of ``X``.

        Parameters
        ----------
        X : array-like of shape (rows, neurons)
            Activations; a memmap is read in chunks.
        y : ignored

        Returns
        -------
        self
        """
        t = _check_threshold(self.threshold)
        if self.representative not in ("random", "medoid"):
            raise ValueError(f"representative must be 'random' or 'medoid', not {self.representative!r}")
        chunk = _check_chunk(self.chunk)
        X = _check_activations(X)
        cached = None
        if self.memory is not None and self.representative != "medoid":
            cached, store = _cached_tree(X, Path(self.memory))
        if cached is not None:
            Z, dead, dist = cached[0], cached[1], None
        else:
            Z, dead, dist = correlation_linkage(X, chunk=chunk, return_distances=True)
            if self.memory is not None and self.representative != "medoid":
                store(Z, dead)
        if self.representative == "medoid":
            self.distances_ = dist
        else:
            del dist
            if hasattr(self, "distances_"):
                del self.distances_
        self.linkage_ = Z
        self.dead_neurons_ = dead
        self.n_features_in_ = X.shape[1]
        self.labels_ = self.labels_at(t)
        self.representatives_ = self._representatives(self.labels_, self.random_state)
        self.n_clusters_ = int(self.labels_.max()) + 1
        return self

    def labels_at(self, threshold) -> np.ndarray:
        """0-based cluster labels with the fitted tree cut at another ``c_t``."""
        check_is_fitted(self, "linkage_")
        return correlation_clusters(threshold=threshold, linkage=self.linkage_)

    def representatives_at(self, threshold, random_state=None) -> np.ndarray:
        """Kept neurons with the fitted tree cut at another ``c_t`` (the sweep of Figure 2).

        Parameters
        ----------
        threshold : float in [0, 1]
        random_state : int, RandomState or None, optional
            Seed of the random pick; defaults to the estimator's ``random_state``, so
            ``representatives_at(self.threshold)`` equals ``representatives_``.

        Returns
        -------
        numpy.ndarray of int64
            Sorted neuron indices, one per cluster.
        """
        labels = self.labels_at(threshold)
        return self._representatives(labels, self.random_state if random_state is None else random_state)

    def _representatives(self, labels, random_state):
        return cluster_representatives(labels, self.representative, random_state,
                                       distances=getattr(self, "distances_", None))

    def transform(self, X):
        """The kept neurons: ``X[:, representatives_]``.

        Parameters
        ----------
        X : array-like of shape (rows, neurons)

        Returns
        -------
        numpy.ndarray of shape (rows, n_clusters_)
        """
        check_is_fitted(self, "representatives_")
        if not hasattr(X, "shape"):
            X = np.asarray(X)
        if len(X.shape) != 2:
            X = _check_activations(X)  # names the shape
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but CorrelationClustering is expecting "
                             f"{self.n_features_in_} features as input (the neurons it was fitted on)")
        X = _check_activations(X, fitting=False)
        out = read_columns(X, self.representatives_) if isinstance(X, np.ndarray) else np.asarray(
            X[:, self.representatives_])  # row chunk by row chunk: a mapped file's pages are released
        if not np.isfinite(out).all():
            raise ValueError("X contains NaN or infinity in the kept neurons; remove or impute those values")
        return out

    def fit_transform(self, X, y=None):
        """``fit(X)`` then ``transform(X)``."""
        return self.fit(X).transform(X)


# --------------------------------------------------------------------------------------
# Figure 3: which layers the neurons of a cluster come from

WINDOWS = ("1", "2", "3", ">3")


def layer_of_neuron(n_layers: int, hidden: int) -> np.ndarray:
    """Layer of every neuron in the flat order ``layer * hidden + unit``.

    Parameters
    ----------
    n_layers : int
        Layers including the embedding layer (layer 0): 13 for BERT-base.
    hidden : int
        Neurons per layer: 768 for BERT-base.

    Returns
    -------
    numpy.ndarray of int64, shape (n_layers * hidden,)
    """
    if n_layers < 1 or hidden < 1:
        raise ValueError(f"n_layers and hidden must be positive, got {n_layers} and {hidden}")
    return np.repeat(np.arange(n_layers, dtype=np.int64), hidden)


def cluster_makeup(labels, layer_of_neuron) -> pd.DataFrame:
    """How many layers the neurons of each cluster span: the statistic of Figure 3.

    Section 5.2 of Dalvi et al. (2020): "the percentage of clusters that contain neurons
    from the same layer (window size 1), neighboring layers (window sizes 2 and 3) and
    from layers further apart". A cluster's window is ``max layer - min layer + 1`` of
    its neurons, binned as ``"1"`` (same layer), ``"2"`` (two adjacent layers), ``"3"``
    (within three neighbouring layers) and ``">3"`` (more than three layers apart); the
    bins are exclusive and their shares sum to 1.

    Singleton clusters are trivially in one layer and would swamp the statistic, so the
    main shares (``share``) are over clusters of at least 2 neurons; the columns
    ``*_with_singletons`` count every cluster.

    Parameters
    ----------
    labels : array-like of int, shape (neurons,)
        Cluster of every neuron (any integer labels).
    layer_of_neuron : array-like of int, shape (neurons,)
        Layer of every neuron, e.g. from :func:`layer_of_neuron`.

    Returns
    -------
    pandas.DataFrame
        Index ``window`` = ``"1", "2", "3", ">3"``; columns ``clusters`` (count of
        clusters with >= 2 neurons), ``share`` (of those), ``cumulative_share`` (window at
        most this), ``clusters_with_singletons`` and ``share_with_singletons``. Shares
        are NaN when there is no cluster to count.
    """
    labels = np.asarray(labels).ravel()
    layers = np.asarray(layer_of_neuron).ravel()
    if labels.shape != layers.shape:
        raise ValueError(f"labels ({labels.size}) and layer_of_neuron ({layers.size}) "
                         "must give one value per neuron")
    if labels.size == 0:
        raise ValueError("no neurons: labels is empty")
    _, cluster = np.unique(labels, return_inverse=True)
    k = int(cluster.max()) + 1
    size = np.bincount(cluster, minlength=k)
    lo = np.full(k, np.iinfo(np.int64).max)
    hi = np.full(k, np.iinfo(np.int64).min)
    np.minimum.at(lo, cluster, layers.astype(np.int64))
    np.maximum.at(hi, cluster, layers.astype(np.int64))
    window = np.minimum(hi - lo, 3)  # 0, 1, 2 -> windows 1, 2, 3; 3 and more -> ">3"

    multi = np.bincount(window[size >= 2], minlength=4)
    every = np.bincount(window, minlength=4)

    def share(c):
        return c / c.sum() if c.sum() else np.full(4, np.nan)

    out = pd.DataFrame({"clusters": multi, "share": share(multi), "cumulative_share": np.cumsum(share(multi)),
                        "clusters_with_singletons": every, "share_with_singletons": share(every)},
                       index=pd.Index(WINDOWS, name="window"))
    return out
