"""Streamed first and second moments of activation columns: the shared core of CKA and
correlation clustering.

Both analyses of the paper's general redundancy (section 5) reduce to the centred
cross-product of all neurons, ``(Z - mu)^T (Z - mu)``: CKA takes Frobenius norms of its
layer blocks, correlation clustering normalises it by its diagonal. It is accumulated
here in one pass over row chunks, so a memory-mapped activation file is never read
whole, and no float64 copy of it is ever made.

Rows are shifted before they are accumulated, by the column means of the first rows (up
to 1,024, in the first chunk; a column that is constant over them is shifted by its value
there). Both statistics are invariant to a constant shift; the shift makes every chunk
nearly centred, which keeps the one-pass formula
``sum (z - s)(z - s)^T - n (mu - s)(mu - s)^T`` free of cancellation when activations have
a large mean, lets the products run in float32 without losing the digits that centring
would otherwise cancel, and makes a constant column exactly zero.

The column sums come out of the same BLAS call as the products: each chunk is written,
shifted, into a buffer with one more column of ones, so that the last column of
``A^T A`` (``A = [D 1]``) holds ``D^T 1``. Converting, shifting and summing a chunk is then
one pass over it.

Memory is the main cost at paper scale (``P = 9984``: one ``P x P`` float32 matrix is 0.4 GB)
and on virtual machines whose memory is backed lazily a fresh page costs as much as a
pass over it, so every ``P x P`` array here is the one the caller needs: with float32
products a float64 accumulator is only made when more than ``FLUSH_ROWS`` rows are summed,
and ``packed=True`` accumulates straight into the condensed upper triangle that
correlation clustering turns into distances in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..utils import release_mapped

#: with float32 products, rows summed in float32 (inside BLAS, over its panels of a few
#: hundred rows) before the sums move to float64: bounds the float32 rounding of the
#: products to that of this many rows (about 1e-6 relative to ``sqrt(G_ii G_jj)`` for nearly
#: centred data) for inputs of any length
FLUSH_ROWS = 65536


@dataclass
class CrossProduct:
    """Sums of shifted rows over ``n_rows`` rows.

    Either ``gram`` (the upper triangle of ``sum (z - shift)(z - shift)^T``, Fortran order;
    float64, or float32 when the products were float32 and no more than ``FLUSH_ROWS``
    rows were summed) or, with ``packed=True``, ``packed``: its strict upper triangle,
    row by row, in float64 (the condensed layout of ``scipy.spatial.distance``).
    """

    n_rows: int
    shift: np.ndarray           # (P,) float64, subtracted from every row (see the module docstring)
    sums: np.ndarray            # (P,) float64, sum over rows of (z - shift)
    diagonal: np.ndarray        # (P,) float64, sum over rows of (z - shift)^2
    gram: np.ndarray | None = None    # (P, P) upper triangle, or None when packed
    packed: np.ndarray | None = None  # (P (P - 1) / 2,) float64, or None

    @property
    def mean(self) -> np.ndarray:
        """Column means of the shifted rows (``mu - shift``)."""
        return self.sums / self.n_rows

    def symmetric(self) -> np.ndarray:
        """The full symmetric ``gram`` (filled in place from its upper triangle), C-ordered."""
        if self.gram is None:
            raise ValueError("this cross-product was accumulated packed; it has no square gram")
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


def _add_upper(dst: np.ndarray, src: np.ndarray, block: int = 1024) -> None:
    """``dst += src`` on the upper triangle (and diagonal) of two Fortran-ordered squares.

    Column blocks, each cut below the diagonal block: half the work of adding the full
    squares, and every column segment is contiguous in memory.
    """
    n = dst.shape[0]
    for j in range(0, n, block):
        k = min(j + block, n)
        dst[:k, j:k] += src[:k, j:k]


def _flush_packed(packed: np.ndarray, diagonal: np.ndarray, sums: np.ndarray, temp: np.ndarray,
                  first: bool) -> None:
    """Add a lower-triangle ``(P + 1) x (P + 1)`` Fortran-ordered ``temp`` into the packed sums.

    Column ``i`` of the lower triangle, below the diagonal, is ``G[i + 1:, i] = G[i, i + 1:]``:
    row ``i`` of the condensed upper triangle, contiguous on both sides. The first flush
    assigns (``packed`` may be uninitialised); the last row of ``temp`` holds the sums.
    """
    P = diagonal.shape[0]
    k = 0
    for i in range(P - 1):
        w = P - 1 - i
        if first:
            packed[k:k + w] = temp[i + 1:P, i]
        else:
            packed[k:k + w] += temp[i + 1:P, i]
        k += w
    d = np.diagonal(temp)[:P]
    s = temp[P, :P]
    if first:
        diagonal[:] = d
        sums[:] = s
    else:
        diagonal += d
        sums += s


def _blocks(rows) -> list:
    """What ``read`` returned, as a list of 2-D arrays side by side."""
    return list(rows) if isinstance(rows, (list, tuple)) else [rows]


def _wide(block, dtype) -> np.dtype:
    """The type a block is shifted in: the wider of its own (integers: float64) and ``dtype``."""
    own = block.dtype if np.issubdtype(block.dtype, np.floating) else np.dtype(np.float64)
    return np.promote_types(own, dtype)


def _shift_of(first: np.ndarray, rows: int = 1024) -> np.ndarray:
    """Shift of every column (in the type of ``first``): its mean over the first ``rows``
    rows, or its value where the column is constant over them (so that a constant column
    becomes exactly zero; a mean in floating point need not equal the value it averages).
    A thousand rows put the shift well inside the spread of any column."""
    first = first[:rows]
    mean = first.mean(axis=0, dtype=np.float64).astype(first.dtype)
    constant = (first == first[:1]).all(axis=0)
    return np.where(constant, first[0], mean)


def _stream_settings(dtype, chunk, flush_rows):
    """(dtype, chunk, flush_rows) of :func:`streamed_cross_product`, checked."""
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, not {dtype}")
    chunk = int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk must be a positive number of rows, not {chunk}")
    flush_rows = int(FLUSH_ROWS if flush_rows is None else flush_rows)
    if flush_rows < 1:
        raise ValueError(f"flush_rows must be a positive number of rows, not {flush_rows}")
    return dtype, chunk, flush_rows


def _shift_into(D: np.ndarray, rows, shifts) -> None:
    """Shift, then round to D's type, in one pass into the buffer (never the caller's data)."""
    with np.errstate(invalid="ignore", over="ignore"):
        j = 0
        for b, sh in zip(_blocks(rows), shifts):
            w = b.shape[1]
            np.subtract(b, sh, out=D[:, j:j + w], dtype=sh.dtype, casting="unsafe")
            j += w
            # a chunk of a mapped file is read once: its pages leave the resident set
            release_mapped(b)


def streamed_cross_product(read: Callable[[int, int], np.ndarray], n_rows: int, chunk: int = 8192,
                           dtype=np.float64, on_chunk: Callable[[np.ndarray], None] | None = None,
                           progress: str | None = None, flush_rows: int | None = None,
                           packed: bool = False) -> CrossProduct:
    """Accumulate column sums and ``Z^T Z`` of shifted rows, one chunk of rows at a time.

    Parameters
    ----------
    read : callable
        ``read(start, stop)`` returns rows ``start:stop`` as a 2-D array (any float type,
        a memmap slice included), or as a list of 2-D arrays that stand side by side (the
        layers of a model: they are written into the chunk's buffer, never concatenated).
    n_rows : int
    chunk : int
        Rows read and multiplied at a time; working memory is ``chunk * P`` values of
        ``dtype``.
    dtype : float32 or float64
        Precision of each chunk's product (a BLAS ``syrk``). float32 is about twice as
        fast; its products are summed in a ``P x P`` float32 matrix over up to
        ``flush_rows`` rows, and in float64 beyond (see :data:`FLUSH_ROWS`).
    on_chunk : callable, optional
        Called with every shifted chunk (in ``dtype``), for statistics a caller needs
        beyond these (the debiased CKA's row norms).
    progress : str, optional
        Show a progress bar with this description.
    flush_rows : int, optional
        See ``dtype``; ignored for float64. Default: :data:`FLUSH_ROWS`.
    packed : bool
        Accumulate the strict upper triangle in the condensed float64 layout
        (``CrossProduct.packed``, ``4 P (P - 1)`` bytes) instead of a square ``gram``; the
        only ``P x P`` array besides it is the one BLAS writes, in ``dtype``.

    Returns
    -------
    CrossProduct
        A square ``gram`` is a view of a ``(P + 1) x (P + 1)`` array (whose last column held
        the sums).

    Raises
    ------
    ValueError
        If a chunk holds nan or inf values (naming its rows), or ``chunk`` < 1.
    """
    from scipy.linalg.blas import get_blas_funcs

    dtype, chunk, flush_rows = _stream_settings(dtype, chunk, flush_rows)
    chunk = min(chunk, n_rows)
    first = read(0, chunk)
    # shifts in the wider of the data's type and dtype: float64 data are shifted before
    # they are rounded to float32, so a large offset costs no digits
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite data is reported below
        shifts = [_shift_of(np.asarray(b).astype(_wide(b, dtype), copy=False)) for b in _blocks(first)]
    P = sum(x.shape[0] for x in shifts)
    # [D 1]^T [D 1] = [[D^T D, D^T 1], [1^T D, rows]]: the sums come with the products
    buf = np.empty((chunk, P + 1), dtype=dtype)
    buf[:, P] = 1.0
    # ``square`` is what BLAS accumulates into: the upper triangle for a square gram (the
    # convention of CrossProduct.gram), the lower one when packing (see _flush_packed)
    square = np.zeros((P + 1, P + 1), dtype=dtype, order="F")
    lower = int(packed)
    acc = None  # float64 accumulator of earlier flushes (a square, or the packed sums)
    if packed:
        acc = (np.empty(P * (P - 1) // 2), np.empty(P), np.empty(P))
    pending = 0  # rows in ``square`` not yet added to ``acc``
    syrk = get_blas_funcs("syrk", dtype=dtype)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_rows, desc=progress, unit="row", mininterval=1.0, leave=False)
    flushed = False
    try:
        for start in range(0, n_rows, chunk):
            stop = min(start + chunk, n_rows)
            rows = read(start, stop) if first is None else first
            first = None
            A = buf[:stop - start]
            D = A[:, :P]
            _shift_into(D, rows, shifts)
            # A^T A: A.T is Fortran-ordered, so BLAS reads it without a copy
            square = syrk(1.0, A.T, beta=1.0 if pending else 0.0, c=square, trans=0, lower=lower,
                          overwrite_c=1)
            pending += stop - start
            # a nan or inf anywhere in the chunk reaches its column's sum, so the sums are
            # checked instead of every value; a non-finite sum of finite values is an
            # overflow (of values beyond 1e19 or so in float32), so look before blaming
            sums = square[P, :P] if lower else square[:P, P]
            if not np.isfinite(sums).all() and not np.isfinite(D).all():
                raise ValueError(f"rows {start}..{stop - 1} contain nan or inf values")
            # float32 sums move to float64 every flush_rows rows; float64 ones never need to
            # (but a packed accumulation always ends in the float64 packed sums)
            last = stop == n_rows
            if (dtype == np.float32 and pending >= flush_rows and not last) or (packed and last):
                if packed:
                    _flush_packed(*acc, square, first=not flushed)
                elif acc is None:
                    acc = square.astype(np.float64, order="F")
                else:
                    _add_upper(acc, square)
                flushed = True
                pending = 0
            if on_chunk is not None:
                on_chunk(D)
            if bar is not None:
                bar.update(stop - start)
    finally:
        if bar is not None:
            bar.close()
    del buf
    shift = np.concatenate(shifts).astype(np.float64)
    if packed:
        del square
        dist, diagonal, col_sums = acc
        return CrossProduct(n_rows, shift, col_sums, diagonal, packed=dist)
    if acc is not None and pending:
        _add_upper(acc, square)
    if acc is not None:
        square = acc
    return CrossProduct(n_rows, shift, square[:P, P].astype(np.float64),
                        np.diagonal(square)[:P].astype(np.float64), gram=square[:P, :P])
