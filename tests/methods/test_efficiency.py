"""Timing helpers: the truncated model really runs fewer layers, and the tables are well formed."""

import numpy as np
import pytest
import torch

from redundancy.representations.models import load_model
from redundancy.methods.probe import LinearProbe
from redundancy.methods.efficiency import (classifier_time, clustering_time, extraction_time, forward_time, layer_stack,
                               ranking_time, truncated)

SENTS = [["the", "cats", "sat", "on", "a", "mat"], ["dogs", "run"], ["a", "cat", "and", "a", "dog"]] * 4


@pytest.mark.parametrize("which", ["tiny_bert", "tiny_xlnet"])
def test_truncated_model_computes_the_same_first_layers(which, request):
    lm = load_model(request.getfixturevalue(which))
    enc = lm.tokenizer(["the cats sat", "a dog"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        full = lm.model(**enc, output_hidden_states=True).hidden_states
    n = len(layer_stack(lm.model)[2])
    assert len(full) == n + 1
    for l in range(n + 1):
        with truncated(lm.model, l), torch.inference_mode():
            out = lm.model(**enc, output_hidden_states=True)
            assert len(layer_stack(lm.model)[2]) == l
        # the last state of the truncated model is the full model's state at layer l
        torch.testing.assert_close(out.last_hidden_state, full[l])
        if l > 0:  # (with no layer at all, transformers records no hidden states)
            assert len(out.hidden_states) == l + 1
            for a, b in zip(out.hidden_states, full[:l + 1]):
                torch.testing.assert_close(a, b)
    assert len(layer_stack(lm.model)[2]) == n  # restored


def test_truncated_restores_after_an_error(tiny_bert):
    lm = load_model(tiny_bert)
    with pytest.raises(RuntimeError, match="boom"):
        with truncated(lm.model, 1):
            raise RuntimeError("boom")
    assert len(layer_stack(lm.model)[2]) == 2 and lm.model.config.num_hidden_layers == 2
    with pytest.raises(ValueError, match="n_layers must be in 0..2"):
        with truncated(lm.model, 3):
            pass


def test_forward_time_table(tiny_bert):
    lm = load_model(tiny_bert)
    df = forward_time(lm, SENTS, repeats=2, batch_size=4)
    assert df.layers.tolist() == [0, 1, 2]
    assert (df.seconds > 0).all() and df.runs.map(len).eq(2).all()
    assert df.loc[df.layers == 2, "speedup"].iloc[0] == pytest.approx(1.0)
    assert np.allclose(df.per_instance, df.seconds / len(SENTS))


def test_classifier_extraction_clustering_ranking_tables(tiny_bert):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 40)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    ct = classifier_time(X, y, [5, 40], probe=LinearProbe(epochs=1), repeats=2)
    assert ct.features.tolist() == [5, 40] and (ct.train_seconds > 0).all() and (ct.predict_seconds > 0).all()
    with pytest.raises(ValueError, match="outside 1..40"):
        classifier_time(X, y, [41], repeats=1)
    cl = clustering_time(X, [50, 300], repeats=1)
    assert cl.tokens.tolist() == [50, 300]
    rk = ranking_time(rng.standard_normal((3, 40)), [10, 40], repeats=2)
    assert rk.features.tolist() == [10, 40] and (rk.seconds > 0).all()
    lm = load_model(tiny_bert)
    ex = extraction_time(lm, SENTS, [5, 20], repeats=1)
    assert ex.tokens.tolist() == [5, 20]
    with pytest.raises(ValueError, match="fewer than"):
        extraction_time(lm, SENTS, [10_000], repeats=1)
