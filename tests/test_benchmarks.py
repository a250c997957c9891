"""The benchmarks' own arithmetic: what the performance chapter's ceilings are computed from."""

import importlib.util
from pathlib import Path

BOUNDS = Path(__file__).resolve().parents[1] / "benchmarks" / "bounds.py"


def _bounds():
    # loaded from its file, so that benchmarks/ never goes on sys.path for the test session
    spec = importlib.util.spec_from_file_location("benchmarks_bounds", BOUNDS)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_forward_flops_equal_the_encoders_arithmetic(tiny_bert):
    """The extraction ceiling's floor counts every product of a standard unpadded forward pass:
    for a BERT, per sentence of T tokens and per layer, 2T(4H^2 + 2HI) for the projections and
    the feed-forward plus 4T^2 H for attention (Q K^T and the weights times V), plus the
    pooler's 2H^2. Counting twice in one process gives the same (the attention formula is
    registered once)."""
    from redundancy.representations.models import load_model

    bounds = _bounds()
    lm = load_model(tiny_bert)
    cfg = lm.model.config
    H, I, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    sentences = [["the", "cats", "sat"], ["a", "dog", "ran", "home", "fast"], ["cats"]]
    expected = 0
    for s in sentences:
        T = len(lm.tokenizer(s, is_split_into_words=True)["input_ids"])
        expected += L * (2 * T * (4 * H * H + 2 * H * I) + 4 * T * T * H) + 2 * H * H
    assert bounds.forward_flops(lm, sentences) == expected
    assert _bounds().forward_flops(lm, sentences) == expected  # a second load and count


def test_cpu_fused_attention_is_counted():
    """torch's counter knows no formula for the CPU's fused attention; ours counts its two
    products, 4 * batch * heads * T^2 * d, where torch alone would count 0."""
    import torch
    import torch.nn.functional as F

    bounds = _bounds()
    b, h, T, d = 2, 3, 7, 8
    q, k, v = (torch.randn(b, h, T, d) for _ in range(3))
    with bounds.counting_flops() as fc:
        F.scaled_dot_product_attention(q, k, v)
    assert fc.get_total_flops() == 4 * b * h * T * T * d
    ops = {str(op) for per_module in fc.get_flop_counts().values() for op in per_module}
    assert any("flash_attention_for_cpu" in o for o in ops), ops  # the fused kernel ran, and was counted


def test_probe_flops_equal_the_products_of_an_epoch():
    """4 x rows x features x outputs per epoch: the forward W X_b^T and the gradient G^T X_b of
    every mini-batch, the last one short, as counted by torch."""
    import torch

    bounds = _bounds()
    n, K, C, bs = 300, 20, 5, 128
    X, W = torch.randn(n, K), torch.randn(C, K)
    with bounds.counting_flops() as fc:
        for s in range(0, n, bs):
            xb = X[s:s + bs]
            G = torch.mm(W, xb.t())
            torch.mm(G, xb)
    assert fc.get_total_flops() == bounds.probe_flops(n, K, C, epochs=1)
    assert bounds.probe_flops(n, K, C, epochs=10) == 10 * bounds.probe_flops(n, K, C, epochs=1)
