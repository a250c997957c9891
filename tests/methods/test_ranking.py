"""LCA neuron ranking against a literal re-implementation of the reference algorithm."""

import numpy as np
import pytest

from redundancy.methods.probe import LinearProbe
from redundancy.methods.ranking import lca_ranking, top_neurons


def reference_top_neurons(weights, percentage):
    """The authors' ``get_top_neurons``, written out step by step (per class, cumulative mass)."""
    weights = np.abs(weights)
    chosen = {}
    for c in range(weights.shape[0]):
        total_mass = np.sum(weights[c, :])
        sort_idx = np.argsort(-weights[c, :], kind="stable")
        cum_sums = np.cumsum(weights[c, sort_idx])
        unselected = np.where(cum_sums >= total_mass * percentage)[0]
        selected = np.arange(cum_sums.shape[0]) if unselected.shape[0] == 0 else np.arange(unselected[0] + 1)
        chosen[c] = sort_idx[selected]
    union = set()
    for c in chosen:
        union.update(int(t) for t in chosen[c])
    return union, chosen


def reference_neuron_ordering(weights, search_stride):
    """The authors' ``get_neuron_ordering``: union grows with p; new neurons appended per step."""
    considered, ordering, cutoffs = set(), [], []
    for p in range(search_stride + 1):
        union, _ = reference_top_neurons(weights, p / search_stride)
        new = union - considered
        ordering += sorted(new)  # the reference's order within a step is set order
        considered |= new
        cutoffs.append(len(ordering))
    return ordering, cutoffs


@pytest.mark.parametrize("n_classes,d,stride", [(1, 50, 100), (3, 40, 1000), (7, 120, 250)])
def test_matches_reference_steps(n_classes, d, stride):
    rng = np.random.default_rng(n_classes)
    W = rng.standard_normal((n_classes, d)) * rng.exponential(1.0, size=d)
    ref_order, ref_cutoffs = reference_neuron_ordering(W, stride)
    r = lca_ranking(W, search_stride=stride)
    assert sorted(r.order.tolist()) == list(range(d))
    assert r.cutoffs.tolist() == ref_cutoffs
    # the same neurons enter at every step (the order within a step may differ)
    prev = 0
    for c in ref_cutoffs:
        assert set(r.order[prev:c].tolist()) == set(ref_order[prev:c])
        prev = c


def test_top_neurons_matches_reference():
    rng = np.random.default_rng(1)
    W = rng.standard_normal((4, 30))
    for p in (0.0, 0.1, 0.5, 0.93, 1.0):
        union, per_class = top_neurons(W, p)
        ref_union, ref_chosen = reference_top_neurons(W, p)
        assert set(union.tolist()) == ref_union
        for c in range(4):
            assert per_class[c].tolist() == ref_chosen[c].tolist()


def test_planted_neurons_rank_first_on_a_trained_probe():
    """A probe whose informative neurons are planted: those neurons head the ranking."""
    rng = np.random.default_rng(0)
    n, d, informative = 3000, 60, [7, 23, 41, 55]
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = (X[:, informative] @ np.array([2.0, -1.5, 1.8, -2.2]) > 0).astype(int)
    probe = LinearProbe(epochs=20, random_state=0).fit(X, y)
    r = lca_ranking(probe)
    assert set(r.order[:4].tolist()) == set(informative)


def test_within_step_order_is_by_weight_share():
    W = np.array([[0.1, 5.0, 3.0, 0.2]])
    # one class, fine steps: neurons enter one at a time, heaviest first
    assert lca_ranking(W, 1000).order.tolist() == [1, 2, 3, 0]
    # one step of 100%: all enter together at p = 1 (only the heaviest at p = 0), order by share
    assert lca_ranking(W, 1).order.tolist() == [1, 2, 3, 0]


def test_zero_weights_are_ranked_last_not_dropped():
    W = np.array([[1.0, 0.0, 2.0, 0.0]])
    r = lca_ranking(W, 10)
    assert r.order.tolist()[:2] == [2, 0]
    assert sorted(r.order.tolist()) == [0, 1, 2, 3]
    assert (r.entry_step[[1, 3]] == 11).all()


def test_regression_weights_and_bad_input():
    assert lca_ranking(np.array([0.5, -2.0, 1.0])).order.tolist() == [1, 2, 0]
    with pytest.raises(ValueError, match="percentage"):
        top_neurons(np.ones((2, 3)), 1.5)
    with pytest.raises(ValueError, match="search_stride"):
        lca_ranking(np.ones((2, 3)), 0)
    with pytest.raises(ValueError, match="NaN"):
        lca_ranking(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="k must be"):
        lca_ranking(np.ones((1, 3))).top(4)
