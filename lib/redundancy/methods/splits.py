"""The activations a probe reads: one task's train, dev and test splits as (rows, neurons)
matrices, normalised from what a user passes, and the columns of a neuron set gathered from
them (a view where the set is contiguous, chunk by chunk from a memory-mapped file otherwise).

:class:`~redundancy.methods.selection.ProbeEvaluator` builds its splits here; the probe engine
(:func:`redundancy.methods.probe.fit_probes`) reads columns through :func:`gather`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..utils import read_columns

__all__ = ["Split", "as_split", "gather", "standardize", "shared_columns"]


@dataclass
class Split:
    """One split: its activations, labels, content key (None for plain arrays) and layer shape."""

    X: np.ndarray          # (rows, neurons), possibly a memmap
    y: np.ndarray
    key: str | None        # a content key for caching (store entries have one)
    n_layers: int
    hidden: int


def as_split(obj, name: str, n_layers: int | None) -> Split:
    from ..representations.store import Activations

    if isinstance(obj, Activations):
        return Split(obj.flat(), np.asarray(obj.labels), obj.meta.get("key"), obj.n_layers, obj.hidden_size)
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise TypeError(f"{name} must be an Activations entry or an (X, y) pair, got {type(obj).__name__}")
    X, y = obj
    if not hasattr(X, "shape"):
        X = np.asarray(X)
    y = np.asarray(y).ravel()
    if X.ndim == 3:
        L, H = X.shape[1], X.shape[2]
        X = X.reshape(X.shape[0], L * H)
    elif X.ndim == 2:
        L = int(n_layers or 1)
        if X.shape[1] % L:
            raise ValueError(f"{name}: {X.shape[1]} neurons cannot be split into n_layers={L} equal layers")
        H = X.shape[1] // L
    else:
        raise ValueError(f"{name}: X must be (rows, neurons) or (rows, layers, hidden), got shape {X.shape}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"{name}: X has {X.shape[0]} rows but y has {y.shape[0]} labels")
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    return Split(X, y, None, L, H)


def gather(X: np.ndarray, neurons: np.ndarray | None, chunk_bytes: int = 256 * 2**20) -> np.ndarray:
    """Columns ``neurons`` of ``X`` as float32, read in row chunks; ``X`` itself for all columns."""
    if neurons is None:
        return X
    n = X.shape[1]
    if neurons.size == n and np.array_equal(neurons, np.arange(n)):
        return X
    if neurons.size and np.array_equal(neurons, np.arange(neurons[0], neurons[0] + neurons.size)):
        return X[:, int(neurons[0]):int(neurons[0]) + neurons.size]  # a view; the probe reads batches
    return read_columns(X, neurons, np.float32, chunk_bytes)  # a mapped file's pages released chunk by chunk


def standardize(splits: list[Split], chunk_rows: int = 8192) -> tuple[list[Split], dict]:
    """Every split's columns z-scored with the first (train) split's per-neuron mean and standard
    deviation (a constant neuron is centred only), as in-memory float32 arrays; returns the new
    splits and the statistics."""
    X = splits[0].X
    n = X.shape[0]
    total = np.zeros(X.shape[1])
    for a in range(0, n, chunk_rows):
        total += np.asarray(X[a:a + chunk_rows], dtype=np.float64).sum(0)
    mean = total / n
    sq = np.zeros(X.shape[1])
    for a in range(0, n, chunk_rows):
        sq += ((np.asarray(X[a:a + chunk_rows], dtype=np.float64) - mean) ** 2).sum(0)
    std = np.sqrt(sq / n)
    scale = np.where(std > 0, std, 1.0)
    out = []
    for sp in splits:
        if sp is None:
            out.append(None)
            continue
        Z = np.empty(sp.X.shape, dtype=np.float32)
        for a in range(0, sp.X.shape[0], chunk_rows):
            Z[a:a + chunk_rows] = (np.asarray(sp.X[a:a + chunk_rows], dtype=np.float64) - mean) / scale
        out.append(Split(Z, sp.y, None if sp.key is None else f"{sp.key}+standardized", sp.n_layers, sp.hidden))
    return out, {"mean": mean, "std": std}


def shared_columns(sets: list[np.ndarray], n_neurons: int):
    """One gather for several neuron sets: ``(union, [take])``, where ``union`` lists the
    neurons to gather once (the longest set first, in its order, then the others' new ones)
    and ``take(U)`` gives a set's columns of the gathered ``U``: a view where the set is a run
    of ``union`` (the nested top-k sets of the minimal-set search, single layers), else a copy."""
    longest = max(sets, key=len)
    seen = np.zeros(n_neurons, dtype=bool)
    seen[longest] = True
    extra = [f[~seen[f]] for f in sets]
    union = np.concatenate([longest] + [e for e in extra if e.size])
    union = union[np.sort(np.unique(union, return_index=True)[1])]  # first occurrences, in order
    where = np.empty(n_neurons, dtype=np.int64)
    where[union] = np.arange(union.size)
    if union.size == n_neurons and np.array_equal(union, np.arange(n_neurons)):
        union = None  # all neurons in their order: _gather returns the split itself
    takes = []
    for f in sets:
        pos = where[f]
        if pos.size and np.array_equal(pos, np.arange(pos[0], pos[0] + pos.size)):
            takes.append(lambda U, a=int(pos[0]), b=int(pos[0]) + pos.size: U[:, a:b])
        else:  # chunk by chunk, in U's dtype: U may be a mapped file (the split itself), its pages released
            takes.append(lambda U, pos=pos: read_columns(U, pos))
    return union, takes
