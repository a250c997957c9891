"""The benchmarks' own arithmetic: what the performance chapter's ceilings are computed from."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_forward_flops_equal_the_encoders_arithmetic(tiny_bert):
    """The extraction ceiling's floor counts every product of an unpadded forward pass: for a
    BERT, per sentence of T tokens and per layer, 2T(4H^2 + 2HI) for the projections and the
    feed-forward plus 4T^2 H for attention (Q K^T and the weights times V, counted also when
    the CPU's fused attention runs them), plus the pooler's 2H^2."""
    extraction_neurox = pytest.importorskip("extraction_neurox")
    from redundancy.models import load_model

    lm = load_model(tiny_bert)
    cfg = lm.model.config
    H, I, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    sentences = [["the", "cats", "sat"], ["a", "dog", "ran", "home", "fast"], ["cats"]]
    expected = 0
    for s in sentences:
        T = len(lm.tokenizer(s, is_split_into_words=True)["input_ids"])
        expected += L * (2 * T * (4 * H * H + 2 * H * I) + 4 * T * T * H) + 2 * H * H
    assert extraction_neurox.forward_flops(lm, sentences) == expected


def test_best_product_rate_is_a_rate():
    extraction_neurox = pytest.importorskip("extraction_neurox")
    rate = extraction_neurox.best_product_rate(n=128, reps=2)
    assert 1e6 < rate < 1e15  # FLOP/s of a 128 x 128 float32 product: finite and positive
