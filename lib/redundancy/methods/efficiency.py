"""Runtime measurements of the paper's section 7.2 and Appendix A.5.2-A.5.3.

* :func:`forward_time` - time of the forward pass per instance with only the embeddings
  and the first ``l`` transformer layers run: the model is *truncated* (its stack of
  layers is temporarily replaced by its first ``l`` layers), not run in full with its
  outputs sliced (Figures 10-11; the speed-up of LayerSelector).
* :func:`classifier_time` - probe training and inference time against the number of
  features (Figure 5: "100,000 tokens [...] 10 iterations of training").
* :func:`scaling_time` - any step's time against an input size: extraction and clustering
  against the number of tokens (Figures 12-13), ranking against the number of features
  (Figure 14); :func:`extraction_time`, :func:`clustering_time` and :func:`ranking_time`
  are the three uses.

Every function repeats each measurement (``repeats``, default 3, as the paper's "averaged
across 3 runs") and returns a tidy DataFrame with the mean, the standard deviation and
every run, so the book can plot error bars. Wall-clock times depend on the machine and
its load; compare them only within one run, as ratios.
"""

from __future__ import annotations

from collections.abc import Iterator

import contextlib
import time
import weakref

import numpy as np
import pandas as pd

__all__ = ["layer_stack", "truncated", "forward_time", "classifier_time", "scaling_time", "extraction_time",
           "clustering_time", "ranking_time"]


_STACKS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def layer_stack(model):
    """``(parent, attribute name, ModuleList)`` of a transformer's stack of layers.

    Found as the ``torch.nn.ModuleList`` whose length is ``config.num_hidden_layers``
    (``encoder.layer`` for BERT, MiniLM and MPNet; ``layer`` for XLNet; ``h`` for GPT-2 ...).
    The place is remembered per model, so it is found again while :func:`truncated` has
    shortened the stack.
    """
    import torch

    if model in _STACKS:
        parent, attr = _STACKS[model]
        return parent, attr, getattr(parent, attr)
    n = getattr(model.config, "num_hidden_layers", None)
    if n is None:
        n = getattr(model.config, "n_layer", None)
    for _, module in model.named_modules():
        for attr, child in module.named_children():
            if isinstance(child, torch.nn.ModuleList) and len(child) == n:
                _STACKS[model] = (module, attr)
                return module, attr, child
    raise ValueError(f"cannot find the stack of {n} layers in {type(model).__name__}: "
                     "no ModuleList of that length")


@contextlib.contextmanager
def truncated(model, n_layers: int) -> Iterator:
    """Run ``model`` with only its first ``n_layers`` transformer layers (0 = embeddings only).

    The stack is restored on exit, also after an error. ``config.num_hidden_layers`` is
    set to match while inside; ``output_hidden_states`` returns ``n_layers + 1`` states (none
    for 0 layers, where ``last_hidden_state`` is the embeddings).
    """
    import torch

    parent, attr, stack = layer_stack(model)
    total = len(stack)
    if isinstance(n_layers, bool) or not 0 <= int(n_layers) <= total:
        raise ValueError(f"n_layers must be in 0..{total}, got {n_layers!r}")
    cfg = model.config
    old_n = getattr(cfg, "num_hidden_layers", None)
    setattr(parent, attr, torch.nn.ModuleList(list(stack)[:int(n_layers)]))
    if old_n is not None:
        cfg.num_hidden_layers = int(n_layers)
    try:
        yield model
    finally:
        setattr(parent, attr, stack)
        if old_n is not None:
            cfg.num_hidden_layers = old_n


def _runs(fn, repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _row(runs, **kw) -> dict:
    return {**kw, "seconds": float(np.mean(runs)), "std": float(np.std(runs)), "runs": list(map(float, runs))}


def forward_time(lm, texts, layers=None, repeats: int = 3, batch_size: int = 32, max_length: int = 128) -> pd.DataFrame:
    """Forward-pass time per instance with the model truncated to ``l`` layers, for each ``l``.

    Parameters
    ----------
    lm : LoadedModel
    texts : list of str or list of list of str (pre-tokenized words)
        The instances (sentences or sentence pairs joined as the caller likes).
    layers : iterable of int, optional
        Numbers of transformer layers to run (0 = embeddings only); default all,
        ``0..L``. ``l`` layers give hidden states ``0..l``, i.e. LayerSelector's
        ``top_layer = l``.
    repeats : int, default 3
    batch_size, max_length : int
        Batching of the timed passes (inputs longer than ``max_length`` tokens are cut).

    Returns
    -------
    pandas.DataFrame
        ``layers``, ``seconds`` (mean total over all instances), ``std``, ``runs``,
        ``per_instance`` (seconds / instance), ``speedup`` (full model's time / this one).
    """
    import torch

    words = bool(texts) and isinstance(texts[0], (list, tuple))
    enc = [lm.tokenizer(texts[i:i + batch_size], is_split_into_words=words, truncation=True,
                        max_length=max_length, padding=True, return_tensors="pt")
           for i in range(0, len(texts), batch_size)]
    enc = [{k: v.to(lm.device) for k, v in e.items()} for e in enc]
    total = len(layer_stack(lm.model)[2])
    layers = range(total + 1) if layers is None else [int(l) for l in layers]

    def run():
        with torch.inference_mode():
            for e in enc:
                lm.model(**e)
        if str(lm.device).startswith("cuda"):
            torch.cuda.synchronize()

    rows = []
    for l in layers:
        with truncated(lm.model, l):
            rows.append(_row(_runs(run, repeats), layers=l))
    df = pd.DataFrame(rows)
    df["per_instance"] = df.seconds / len(texts)
    full = df.loc[df.layers == total, "seconds"]
    df["speedup"] = (float(full.iloc[0]) / df.seconds) if len(full) else np.nan
    return df


def classifier_time(X, y, feature_counts, probe=None, repeats: int = 3, predict_rows=None,
                    random_state: int = 0) -> pd.DataFrame:
    """Probe training and inference time against the number of features (Figure 5).

    For every count ``d``, the first ``d`` columns of ``X`` are used (pass ``X`` with its
    columns in the order you want them taken, e.g. by LCA rank).

    Parameters
    ----------
    X : array (rows, features); y : labels
    feature_counts : iterable of int
    probe : estimator, optional
        Default :class:`~redundancy.methods.probe.LinearProbe` with the paper's settings (10 epochs).
    repeats : int, default 3
    predict_rows : int, optional
        Rows to predict for the inference time (default all of ``X``).

    Returns
    -------
    pandas.DataFrame
        ``features``, ``train_seconds`` (mean), ``train_std``, ``predict_seconds``,
        ``predict_std``.
    """
    from sklearn.base import clone

    from .probe import LinearProbe

    probe = LinearProbe(random_state=random_state) if probe is None else probe
    rows = []
    n_pred = X.shape[0] if predict_rows is None else int(predict_rows)
    for d in feature_counts:
        d = int(d)
        if not 0 < d <= X.shape[1]:
            raise ValueError(f"feature count {d} outside 1..{X.shape[1]}")
        Xd = np.ascontiguousarray(X[:, :d], dtype=np.float32)
        fitted = {}

        def train():
            fitted["p"] = clone(probe).fit(Xd, y)

        tr = _runs(train, repeats, warmup=0)
        pr = _runs(lambda: fitted["p"].predict(Xd[:n_pred]), repeats)
        rows.append({"features": d, "train_seconds": float(np.mean(tr)), "train_std": float(np.std(tr)),
                     "predict_seconds": float(np.mean(pr)), "predict_std": float(np.std(pr))})
    return pd.DataFrame(rows)


def scaling_time(fn, sizes, repeats: int = 3, warmup: int = 1, name: str = "size") -> pd.DataFrame:
    """Time ``fn(size)`` for every size: ``name``, ``seconds`` (mean), ``std``, ``runs``."""
    return pd.DataFrame([_row(_runs(lambda s=int(s): fn(s), repeats, warmup), **{name: int(s)}) for s in sizes])


def extraction_time(lm, sentences, token_counts, repeats: int = 3, **kw) -> pd.DataFrame:
    """Activation extraction time against the number of tokens (Figure 12).

    ``sentences`` (lists of words) are taken in order until ``token_counts`` words are
    reached; ``kw`` goes to :func:`redundancy.representations.activations.word_activations`.
    """
    from ..representations.activations import word_activations

    lengths = np.cumsum([len(s) for s in sentences])

    def run(n):
        k = int(np.searchsorted(lengths, n, side="left")) + 1
        word_activations(lm, sentences[:k], progress=False, **kw)

    if token_counts and max(token_counts) > lengths[-1]:
        raise ValueError(f"the sentences have {int(lengths[-1])} words, fewer than {max(token_counts)}")
    return scaling_time(run, token_counts, repeats, name="tokens")


def clustering_time(X, token_counts, threshold: float = 0.3, repeats: int = 3) -> pd.DataFrame:
    """Correlation clustering time against the number of tokens (rows of ``X``; Figure 13)."""
    from .clustering import CorrelationClustering

    if max(token_counts) > X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows, fewer than {max(token_counts)}")
    return scaling_time(lambda n: CorrelationClustering(threshold=threshold).fit(X[:n]), token_counts, repeats,
                        name="tokens")


def ranking_time(coef, feature_counts, repeats: int = 3, search_stride: int = 1000) -> pd.DataFrame:
    """LCA ranking time against the number of features (first columns of ``coef``; Figure 14)."""
    from .ranking import lca_ranking

    W = np.atleast_2d(np.asarray(coef))
    return scaling_time(lambda d: lca_ranking(W[:, :d], search_stride), feature_counts, repeats, name="features")
