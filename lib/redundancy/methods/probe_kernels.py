"""Compiled kernels of the probe engine (numba): one pass over the weights per step.

The probe engine (:func:`redundancy.methods.probe_engine.train_probes`) spends a large part of each
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

:func:`softmax_xent` is the other side of a classification step, where torch took about
twenty small operations (about 100 microseconds a step whatever the probe's width): the bias,
the softmax over each probe's classes, the loss, its gradient with respect to the outputs, the
bias's gradient, and the penalty's share of the loss with the L2 gradient's scale for the
next update, in one call.
"""

from __future__ import annotations

import os

import numpy as np

try:  # numba is a dependency (requirements.lock); a missing or broken install falls back to torch
    import numba
    import numba.extending
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


    # float32 exp as Cephes' expf (a degree-6 polynomial on [-ln2/2, ln2/2] times 2^k built in
    # the exponent bits): within 1.5 ulp of the exact value here, and written without a call so
    # that the softmax loops vectorise (numba's np.exp is a scalar libm call without Intel's
    # SVML: 5.7 ns an element vs 0.73). Arguments below -87 give exp(-87), not a denormal.
    def _exp_any(x):  # pragma: no cover - replaced by the overload below inside compiled code
        return np.exp(x)

    @numba.extending.overload(_exp_any, inline="always")
    def _exp_any_impl(x):
        if isinstance(x, numba.types.Float) and x.bitwidth == 32:
            def impl(x):
                v = max(x, np.float32(-87.0))
                fx = np.floor(v * np.float32(1.44269504088896341) + np.float32(0.5))
                r = v - fx * np.float32(0.693359375) + fx * np.float32(2.12194440e-4)
                p = ((((np.float32(1.9875691500e-4) * r + np.float32(1.3981999507e-3)) * r
                       + np.float32(8.3334519073e-3)) * r + np.float32(4.1665795894e-2)) * r
                     + np.float32(1.6666665459e-1)) * r + np.float32(5.0000001201e-1)
                p = p * (r * r) + r + np.float32(1.0)
                return p * np.int32((np.int32(fx) + np.int32(127)) << np.int32(23)).view(np.float32)
            return impl
        return lambda x: np.exp(x)

    @njit(fastmath={"reassoc", "nsz", "contract"}, nogil=True, boundscheck=False, error_model="numpy", cache=True)
    def _xent(outT, bias, tb, C, loss, gbias, mx, s, xt, row_probe, sq_all, ab_all, penalty, scale, l1, l2,
              l2_squared):
        PC, m = outT.shape
        inv_m = outT.dtype.type(1.0 / m)
        for p in range(PC // C):
            r0 = p * C
            for j in range(m):
                mx[j] = -np.inf
            for c in range(C):
                row = outT[r0 + c]
                b = bias[r0 + c]
                for j in range(m):
                    v = row[j] + b
                    row[j] = v
                    mx[j] = max(mx[j], v)
            for j in range(m):
                xt[j] = outT[r0 + tb[j], j]
                s[j] = 0.0
            for c in range(C):
                row = outT[r0 + c]
                for j in range(m):
                    e = _exp_any(row[j] - mx[j])
                    row[j] = e
                    s[j] += e
            acc = 0.0
            for j in range(m):
                acc += np.log(np.float64(s[j])) + np.float64(mx[j]) - np.float64(xt[j])
                s[j] = inv_m / s[j]
            loss[p] += acc / m
            for c in range(C):
                row = outT[r0 + c]
                for j in range(m):
                    row[j] *= s[j]
            for j in range(m):
                outT[r0 + tb[j], j] -= inv_m
            for c in range(C):
                row = outT[r0 + c]
                g = 0.0
                for j in range(m):
                    g += row[j]
                gbias[r0 + c] = g
        # the penalty of every probe at the weights the last update left, and the scale of its
        # L2 gradient: 2 * l2 when squared, else l2 / ||W_p|| (0 at W_p = 0)
        P = PC // C
        nrm2 = np.zeros(P)
        nab = np.zeros(P)
        for r in range(row_probe.shape[0]):
            nrm2[row_probe[r]] += sq_all[r]
            nab[row_probe[r]] += ab_all[r]
        for p in range(P):
            nrm = np.sqrt(nrm2[p])
            if l2_squared:
                penalty[p] += l1 * nab[p] + l2 * nrm2[p]
                scale[p] = 2.0 * l2
            else:
                penalty[p] += l1 * nab[p] + l2 * nrm
                scale[p] = l2 / nrm if nrm > 0 else 0.0


def softmax_xent(outT, bias, tb, C: int, loss, gbias, work, row_probe, sq_all, ab_all, penalty, scale, *, l1: float,
                 l2: float, l2_squared: bool) -> None:
    """One mini-batch's cross-entropy for every probe, in place, and the penalty's bookkeeping.

    ``outT`` (P * C, m) holds every probe's outputs without the bias, transposed (a probe's
    C rows one above the other). It is overwritten with the gradient of each probe's mean
    loss with respect to its outputs, ``(softmax - onehot) / m``; ``gbias`` (P * C,) gets its
    row sums (the bias gradient), ``loss`` (P,) float64 is added each probe's mean loss
    ``log sum exp - logit of the target``. ``work`` is a (3, m) scratch array of ``outT``'s
    dtype. Then, from the weights' row norms ``sq_all``/``ab_all`` (sum W^2 and sum |W| of
    the rows the last update wrote, ``row_probe`` their probes): ``penalty`` (P,) float64 is
    added ``l1 sum|W| + l2 ||W||`` (or ``l2 ||W||^2``) and ``scale`` (P,) is set to the L2
    gradient's factor (``l2 / ||W||``, or ``2 l2``).
    """
    _xent(outT, bias, tb, C, loss, gbias, work[0], work[1], work[2], row_probe, sq_all, ab_all, penalty, scale, l1,
          l2, l2_squared)


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
