"""Compiled kernels of the probe engine (numba): one pass over the weights per step.

The probe engine (:func:`redundancy.probe.train_probes`) spends a large part of each
mini-batch outside its two matrix products, in element-wise passes over the weights of every
probe: the L1 and L2 terms of the gradient (``sign(W)``, ``W / ||W||``), Adam's moments and
update, and the norms the loss reports. With torch these are seven or more passes over
arrays of up to 3.3 million floats (the 25 probes of MPNet's layer sweep), each reading and
writing memory. :func:`adam_step` does all of them in one pass per row, the row then still
in the L1 cache for its norms, which the next step needs.

The arithmetic is torch's ``_fused_adam_`` (Adam, no weight decay, no AMSGrad), in the
weights' own precision, with the penalty gradient of the reference loss added first::

    g = G + l1 * sign(W) + s_p * W        (s_p = l2 / ||W_p||, or 2 * l2 when squared)
    m = m + (1 - beta1) * (g - m)
    v = beta2 * v + (1 - beta2) * g * g
    W = W - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

Results agree with the torch path to rounding (about 1e-8 on weights of size 1e-2 per step;
``tests/test_probe.py`` checks both paths against each other and against the reference
training loop). Without numba, or off the CPU, the engine uses its torch path.
"""

from __future__ import annotations

import os

import numpy as np

try:  # numba is a dependency (requirements.lock); a missing or broken install falls back to torch
    import numba
    from numba import njit
except Exception:  # pragma: no cover - exercised only where numba is absent
    numba = None

#: ``REDUNDANCY_ENGINE=torch`` turns the compiled kernels off (the torch path, as on a GPU)
ENGINE_ENV = "REDUNDANCY_ENGINE"


def available() -> bool:
    """True when the compiled kernels can be used (numba imports, and they are not turned off)."""
    return numba is not None and os.environ.get(ENGINE_ENV, "").lower() != "torch"


if numba is not None:
    @njit(fastmath={"reassoc", "nsz", "contract"}, nogil=True, boundscheck=False, error_model="numpy", cache=True)
    def _row_norms(w):
        # sum w^2 and sum |w| in float64 (an order-free reduction, so it vectorises)
        sq = 0.0
        ab = 0.0
        for k in range(w.shape[0]):
            x = np.float64(w[k])
            sq += x * x
            ab += abs(x)
        return sq, ab

    @njit(inline="always", nogil=True, boundscheck=False, error_model="numpy", cache=True)
    def _update_row(Wr, Gr, Mr, Vr, s, l1, b1w, beta2, c2, step_size, bc2s, eps):
        one = Wr.dtype.type(1.0)
        zero = Wr.dtype.type(0.0)
        for k in range(Wr.shape[0]):
            w = Wr[k]
            # sign(w) without a branch (the loop vectorises): 1, -1 or 0, as torch.sign
            g = Gr[k] + l1 * ((one if w > zero else zero) - (one if w < zero else zero)) + s * w
            m = Mr[k]
            m = m + b1w * (g - m)
            v = Vr[k] * beta2 + c2 * g * g
            Mr[k] = m
            Vr[k] = v
            Wr[k] = w - step_size * m / (np.sqrt(v) / bc2s + eps)

    @njit(inline="always", nogil=True, boundscheck=False, error_model="numpy", cache=True)
    def _update_row_masked(Wr, Gr, Mr, Vr, Kr, s, l1, b1w, beta2, c2, step_size, bc2s, eps):
        one = Wr.dtype.type(1.0)
        zero = Wr.dtype.type(0.0)
        for k in range(Wr.shape[0]):
            w = Wr[k]
            g = (Gr[k] + l1 * ((one if w > zero else zero) - (one if w < zero else zero)) + s * w) * Kr[k]
            m = Mr[k]
            m = m + b1w * (g - m)
            v = Vr[k] * beta2 + c2 * g * g
            Mr[k] = m
            Vr[k] = v
            Wr[k] = w - step_size * m / (np.sqrt(v) / bc2s + eps)

    @njit(nogil=True, boundscheck=False, error_model="numpy", cache=True)
    def _adam_step(W, G, M, V, mask, probe_of_row, scale, l1, b1w, beta2, c2, step_size, bc2s, eps,
                   sq_rows, ab_rows):
        R = W.shape[0]
        has_mask = mask.shape[0] == R
        norms = sq_rows.shape[0] == R
        for r in range(R):
            # the mask is chosen per row, outside the element loop, so that the loop vectorises
            if has_mask:
                _update_row_masked(W[r], G[r], M[r], V[r], mask[r], scale[probe_of_row[r]], l1, b1w, beta2, c2,
                                   step_size, bc2s, eps)
            else:
                _update_row(W[r], G[r], M[r], V[r], scale[probe_of_row[r]], l1, b1w, beta2, c2, step_size, bc2s,
                            eps)
            if norms:
                sq, ab = _row_norms(W[r])
                sq_rows[r] = sq
                ab_rows[r] = ab


def prepare(W, G, M, V, *, probe_of_row=None, mask=None, sq_rows=None, ab_rows=None) -> tuple:
    """The array arguments of one block's update, assembled once for every step of a training run.

    See :func:`adam_step` for what each array is; :func:`run` takes the result with the
    step's per-probe ``scale`` and :func:`scalars`. (Assembling them anew every step, and the
    scalars with them, cost as much as the update of a 113,000-weight probe.)
    """
    R = W.shape[0]
    if probe_of_row is None:
        probe_of_row = np.zeros(R, dtype=np.int64)
    none_w = np.zeros((0, 0), dtype=W.dtype)
    none_r = np.zeros(0, dtype=np.float64)
    return (W, G, M, V, none_w if mask is None else mask, probe_of_row,
            none_r if sq_rows is None else sq_rows, none_r if ab_rows is None else ab_rows)


def scalars(step: int, dtype, *, lr: float, l1: float = 0.0, beta1: float = 0.9, beta2: float = 0.999,
            eps: float = 1e-8) -> tuple:
    """The scalar arguments of step ``step`` (1 for the first), in the weights' dtype."""
    dt = np.dtype(dtype).type
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    return dt(l1), dt(1.0 - beta1), dt(beta2), dt(1.0 - beta2), dt(lr / bc1), dt(np.sqrt(bc2)), dt(eps)


def run(prepared: tuple, scale, sc: tuple) -> None:
    """One update of a block: :func:`prepare`'s arrays, ``scale`` (P,) per probe, :func:`scalars`."""
    W, G, M, V, mask, por, sq, ab = prepared
    _adam_step(W, G, M, V, mask, por, scale, *sc, sq, ab)


def adam_step(W, G, M, V, step: int, *, lr: float, l1: float = 0.0, scale=None, probe_of_row=None,
              mask=None, sq_rows=None, ab_rows=None, beta1: float = 0.9, beta2: float = 0.999,
              eps: float = 1e-8) -> None:
    """One Adam step of ``W`` (2-D, C-contiguous, updated in place) with the penalty gradient.

    Parameters
    ----------
    W, G, M, V : numpy arrays (R, K) of one float dtype
        Weights, data gradient, Adam's first and second moments (``M`` and ``V`` updated).
    step : int
        Adam's step count after this step (1 for the first).
    l1 : float
        L1 coefficient: ``l1 * sign(W)`` is added to the gradient.
    scale, probe_of_row : arrays (P,) and (R,) int64, optional
        ``scale[probe_of_row[r]] * W[r]`` is added to row ``r``'s gradient (the L2 term).
    mask : array (R, K), optional
        Multiplies the gradient (0 where a probe lacks a column: its weight stays 0).
    sq_rows, ab_rows : float64 arrays (R,), optional
        Filled with every row's ``sum W^2`` and ``sum |W|`` after the update.
    """
    if scale is None:
        scale = np.zeros(1, dtype=W.dtype)
    run(prepare(W, G, M, V, probe_of_row=probe_of_row, mask=mask, sq_rows=sq_rows, ab_rows=ab_rows), scale,
        scalars(step, W.dtype, lr=lr, l1=l1, beta1=beta1, beta2=beta2, eps=eps))
