"""Arithmetic floors for the benchmarks' ceilings (shared by the extraction and probe benchmarks).

A ceiling is the largest speed-up over a baseline that a float32 implementation doing the
same matrix products could reach here: the baseline's time over the products' floating-point
operations at the best float32 product rate measured on this machine, in the same run. It
is a bound for that arithmetic in float32, not for other precisions (this CPU's bfloat16
units are faster) or for a method that computes less.
"""

from __future__ import annotations

import contextlib
import time

#: n of the n x n float32 products timed for the best rate
PRODUCT_SIZES = (1024, 2048, 4096)


def best_product_rate(sizes=PRODUCT_SIZES, reps: int = 5) -> float:
    """The best float32 matrix-product rate measured here, in FLOP/s: the fastest of ``reps``
    n x n products at each size of ``sizes`` (torch, its current threads)."""
    import torch

    best = 0.0
    for n in sizes:
        a, b, c = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
        torch.mm(a, b, out=c)
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.mm(a, b, out=c)
            best = max(best, 2.0 * n ** 3 / (time.perf_counter() - t0))
    return best


def _register_cpu_attention() -> None:
    """torch's FlopCounterMode has no formula for the CPU's fused attention (it would count 0):
    register the same two products as the other fused attentions (Q K^T, the weights times V)."""
    import torch
    from torch.utils import flop_counter

    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is None or op in flop_counter.flop_registry:  # the registry is keyed by the operator packet
        return

    def cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
        return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

    flop_counter.register_flop_formula(op)(cpu_sdpa_flop)


@contextlib.contextmanager
def counting_flops():
    """A ``torch.utils.flop_counter.FlopCounterMode`` (no display) that also counts the CPU's
    fused attention; ``.get_total_flops()`` after the block."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    _register_cpu_attention()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        yield fc


def forward_flops(lm, sentences) -> int:
    """Floating-point operations (2 per multiply-add) of the matrix products of one standard,
    unpadded forward pass per sentence, attention included: what NeuroX computes."""
    with counting_flops() as fc:
        for s in sentences:
            enc = lm.tokenizer(list(s), is_split_into_words=True, return_tensors="pt", truncation=True)
            lm.model(**enc)
    return int(fc.get_total_flops())


def probe_flops(n_rows: int, n_features: int, n_outputs: int, epochs: int) -> int:
    """A linear probe's matrix products over its training: per row and epoch, the forward
    ``X_b W^T`` and the weight gradient ``G^T X_b``, 2 * n_features * n_outputs multiply-adds."""
    return 4 * int(n_rows) * int(n_features) * int(n_outputs) * int(epochs)
