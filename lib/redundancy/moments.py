"""Streamed first and second moments of activation columns: the shared core of CKA and
correlation clustering.

Both analyses of the paper's general redundancy (section 5) reduce to the centred
cross-product of all neurons, ``(Z - mu)^T (Z - mu)``: CKA takes Frobenius norms of its
layer blocks, correlation clustering normalises it by its diagonal. It is accumulated
here in one pass over row chunks, so a memory-mapped activation file is never read
whole, and no float64 copy of it is ever made.

Rows are shifted by the first row before they are accumulated. Both statistics are
invariant to a constant shift; the shift keeps the one-pass formula
``sum (z - s)(z - s)^T - n (mu - s)(mu - s)^T`` free of cancellation when activations
have a large mean, and makes a constant column exactly zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass
class CrossProduct:
    """Sums of shifted rows. ``gram`` holds only its upper triangle (Fortran order)."""

    n_rows: int
    shift: np.ndarray   # (P,) the first row, subtracted from every row
    sums: np.ndarray    # (P,) float64, sum over rows of (z - shift)
    gram: np.ndarray    # (P, P) float64, upper triangle of sum (z - shift)(z - shift)^T

    @property
    def mean(self) -> np.ndarray:
        """Column means of the shifted rows (``mu - shift``)."""
        return self.sums / self.n_rows

    def symmetric(self) -> np.ndarray:
        """The full symmetric ``gram`` (filled in place from its upper triangle), C-ordered."""
        s = self.gram.T  # the upper triangle in Fortran order is the lower one of the C-order view
        fill_upper_from_lower(s)
        return s


def fill_upper_from_lower(a: np.ndarray, block: int = 512) -> None:
    """Copy the lower triangle of a square C-ordered array onto its upper triangle, in place."""
    n = a.shape[0]
    for i in range(0, n, block):
        j = min(i + block, n)
        a[:i, i:j] = a[i:j, :i].T
        d = a[i:j, i:j]
        lo = np.tril_indices(j - i, -1)
        d[lo[1], lo[0]] = d[lo]


def streamed_cross_product(read: Callable[[int, int], np.ndarray], n_rows: int, chunk: int = 8192,
                           dtype=np.float64, on_chunk: Callable[[np.ndarray], None] | None = None,
                           progress: str | None = None) -> CrossProduct:
    """Accumulate column sums and ``Z^T Z`` of shifted rows, one chunk of rows at a time.

    Parameters
    ----------
    read : callable
        ``read(start, stop)`` returns rows ``start:stop`` as a 2-D array (any float type,
        a memmap slice included).
    n_rows : int
    chunk : int
        Rows read and multiplied at a time; working memory is ``chunk * P`` values.
    dtype : float32 or float64
        Precision of each chunk's product (a BLAS ``syrk``); the sums over chunks are
        float64 either way. float32 is about twice as fast.
    on_chunk : callable, optional
        Called with every shifted chunk (in ``dtype``), for statistics a caller needs
        beyond these (the debiased CKA's row norms).
    progress : str, optional
        Show a progress bar with this description.

    Raises
    ------
    ValueError
        If a chunk holds nan or inf values (naming its rows), or ``chunk`` < 1.
    """
    from scipy.linalg.blas import get_blas_funcs

    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, not {dtype}")
    chunk = int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk must be a positive number of rows, not {chunk}")
    shift = np.array(read(0, 1)[0], dtype=dtype)
    P = shift.shape[0]
    gram = np.zeros((P, P), dtype=np.float64, order="F")
    sums = np.zeros(P)
    temp = None if dtype == np.float64 else np.zeros((P, P), dtype=dtype, order="F")
    syrk = get_blas_funcs("syrk", dtype=dtype)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_rows, desc=progress, unit="row", mininterval=1.0, leave=False)
    try:
        for start in range(0, n_rows, chunk):
            stop = min(start + chunk, n_rows)
            D = np.array(read(start, stop), dtype=dtype)  # a copy: never modify the caller's data
            if not np.isfinite(D).all():
                raise ValueError(f"rows {start}..{stop - 1} contain nan or inf values")
            D -= shift
            sums += D.sum(axis=0, dtype=np.float64)
            # gram += D^T D; D.T is Fortran-ordered, so BLAS reads it without a copy
            if temp is None:
                gram = syrk(1.0, D.T, beta=1.0, c=gram, trans=0, lower=0, overwrite_c=1)
            else:
                temp = syrk(1.0, D.T, beta=0.0, c=temp, trans=0, lower=0, overwrite_c=1)
                gram += temp
            if on_chunk is not None:
                on_chunk(D)
            if bar is not None:
                bar.update(stop - start)
    finally:
        if bar is not None:
            bar.close()
    return CrossProduct(n_rows, shift.astype(np.float64), sums, gram)
