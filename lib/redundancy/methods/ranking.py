"""Neuron ranking by Linguistic Correlation Analysis (LCA; paper section 6.2).

Dalvi et al. (2020) rank neurons for a task with the weights of a trained linear probe
("FS", the feature selector of Dalvi et al. 2019a). The authors' code
(``get_top_neurons`` / ``get_neuron_ordering``) does it by *cumulative weight mass*:

* for a fraction ``p``, every class ``c`` keeps the smallest prefix of neurons, sorted by
  ``|W[c, :]|`` in descending order, whose cumulative ``|W|`` reaches ``p`` times the
  class's total ``sum |W[c, :]|`` (:func:`top_neurons`);
* ``p`` grows from 0 to 1 in ``1 / search_stride`` steps (the paper's runs use
  ``search_stride=1000``); the union over classes grows with it, and neurons are appended
  to the ranking in the step at which they first enter (:func:`lca_ranking`).

This module computes the same ranking without re-sorting at every one of the 1,001 steps:
each class is sorted once and the step at which every rank enters is found by binary
search, so ranking 9,984 neurons of a 1,272-class probe takes a fraction of a second.

Differences from the reference code, both about order *within one step* or about neurons
the reference never ranks (documented on the book's methods page):

* Neurons entering at the same step are ordered by their largest share of a class's mass
  ``max_c |W[c, j]| / sum_j |W[c, j]|`` (ties: lower index first). The reference appends
  them in Python ``set`` iteration order, which is an implementation detail.
* Neurons that never enter (possible only when some weights are exactly zero, so that the
  cumulative mass reaches the total before them) are appended last, by the same share, so
  the ranking is always a permutation of all neurons. The reference leaves them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import numpy as np

__all__ = ["NeuronRanking", "top_neurons", "lca_ranking", "probe_weights"]


def probe_weights(probe_or_coef) -> np.ndarray:
    """``|W|`` as a (classes, neurons) array, from a fitted probe or a weight matrix.

    A 1-D weight vector (a regression probe) is one row, as the reference's
    ``nn.Linear(D, 1)``.
    """
    # a fitted estimator (coef_), a ProbeResult of the evaluator (coef), or the weights themselves
    coef = np.asarray(getattr(probe_or_coef, "coef_", getattr(probe_or_coef, "coef", probe_or_coef)))
    # float32 weights (every torch probe) stay float32, so that the cumulative sums and the
    # thresholds round exactly as in the reference code; anything else is float64
    W = np.abs(np.atleast_2d(coef.astype(np.float32 if coef.dtype == np.float32 else np.float64)))
    if W.ndim != 2 or W.shape[1] == 0:
        raise ValueError(f"expected probe weights of shape (classes, neurons), got {np.shape(coef)}")
    if not np.isfinite(W).all():
        raise ValueError("the probe's weights contain NaN or infinity; retrain it (lower learning rate?)")
    return W


def _check_fraction(p, name="percentage") -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)) or not 0 <= p <= 1:
        raise ValueError(f"{name} must be a fraction in [0, 1], got {p!r}")
    return float(p)


def _sorted_masses(W: np.ndarray):
    order = np.argsort(-W, axis=1, kind="stable")  # descending |w|, ties: lower index first
    cum = np.cumsum(np.take_along_axis(W, order, axis=1), axis=1)
    return order, cum, W.sum(axis=1)


def _prefix_sizes(cum: np.ndarray, total: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Neurons kept per class for every fraction: the reference's first index with
    ``cum >= total * p``, plus one; all neurons when no index qualifies. (classes, fractions)."""
    d = cum.shape[1]
    out = np.empty((cum.shape[0], fractions.size), dtype=np.int64)
    for c in range(cum.shape[0]):
        first = np.searchsorted(cum[c], total[c] * fractions.astype(cum.dtype), side="left")
        out[c] = np.minimum(first + 1, d)
    return out


def top_neurons(probe_or_coef, percentage: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """The neurons holding ``percentage`` of every class's weight mass (reference ``get_top_neurons``).

    Parameters
    ----------
    probe_or_coef : fitted probe or array of shape (classes, neurons) or (neurons,)
    percentage : float in [0, 1]

    Returns
    -------
    union : numpy.ndarray of int64
        Sorted indices of the neurons kept by at least one class.
    per_class : list of numpy.ndarray
        For every class (row of the weights), its kept neurons, heaviest first.
    """
    p = _check_fraction(percentage)
    W = probe_weights(probe_or_coef)
    order, cum, total = _sorted_masses(W)
    sizes = _prefix_sizes(cum, total, np.array([p]))[:, 0]
    per_class = [order[c, :sizes[c]] for c in range(W.shape[0])]
    return np.unique(np.concatenate(per_class)).astype(np.int64), per_class


@dataclass(frozen=True)
class NeuronRanking:
    """A ranking of neurons, most important first.

    Attributes
    ----------
    order : numpy.ndarray of int64
        All neuron indices, most important first (a permutation of ``0..n-1``).
    entry_step : numpy.ndarray of int64, shape (neurons,)
        For every neuron (by index), the step ``s`` (fraction ``s / search_stride``) at
        which it enters; ``search_stride + 1`` for neurons that never enter.
    cutoffs : numpy.ndarray of int64, shape (search_stride + 1,)
        Number of ranked neurons after each step (the reference's ``cutoffs``).
    search_stride : int
    """

    order: np.ndarray
    entry_step: np.ndarray
    cutoffs: np.ndarray
    search_stride: int

    def top(self, k: int) -> np.ndarray:
        """The ``k`` best neurons (indices, in rank order)."""
        if isinstance(k, bool) or not isinstance(k, Integral) or not 0 < k <= self.order.size:
            raise ValueError(f"k must be an integer in 1..{self.order.size}, got {k!r}")
        return self.order[:k]

    def __len__(self) -> int:
        return int(self.order.size)


def lca_ranking(probe_or_coef, search_stride: int = 1000) -> NeuronRanking:
    """Rank all neurons by the cumulative-mass method of the reference code (``get_neuron_ordering``).

    Parameters
    ----------
    probe_or_coef : fitted probe (``coef_``), ProbeResult (``coef``), or array of shape (classes, neurons) or (neurons,)
        The probe trained on the neurons to rank. The ranking is over the probe's features: for a
        ProbeResult on a subset, ``result.neurons[ranking.order]`` are the neurons' flat indices.
    search_stride : int, default 1000
        Number of steps of the fraction ``p`` from 0 to 1 (the paper's runs: 1000).

    Returns
    -------
    NeuronRanking
    """
    if isinstance(search_stride, bool) or not isinstance(search_stride, Integral) or search_stride < 1:
        raise ValueError(f"search_stride must be an integer >= 1, got {search_stride!r}")
    S = int(search_stride)
    W = probe_weights(probe_or_coef)
    n_classes, d = W.shape
    order, cum, total = _sorted_masses(W)
    sizes = _prefix_sizes(cum, total, np.arange(S + 1) / S)  # (classes, S+1), non-decreasing in p
    ranks = np.arange(1, d + 1)
    entry = np.full(d, S + 1, dtype=np.int64)
    for c in range(n_classes):
        # the rank r (0-based) enters at the first step whose prefix holds r + 1 neurons
        step_of_rank = np.searchsorted(sizes[c], ranks, side="left")
        entry_c = np.empty(d, dtype=np.int64)
        entry_c[order[c]] = step_of_rank
        np.minimum(entry, entry_c, out=entry)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total[:, None] > 0, W / np.where(total > 0, total, 1)[:, None], 0.0).max(axis=0)
    ranking = np.lexsort((np.arange(d), -share, entry)).astype(np.int64)
    cutoffs = np.searchsorted(np.sort(entry), np.arange(S + 1), side="right").astype(np.int64)
    return NeuronRanking(order=ranking, entry_step=entry, cutoffs=cutoffs, search_stride=S)
