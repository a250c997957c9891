"""Extract every layer's activations, word by word or sentence by sentence.

Token tasks (paper section 3.1): one vector per word and layer, taken from the
word's **last** sub-word (the paper; ``"first"`` and ``"mean"`` are options),
aligned through the fast tokenizer's word ids. The number of vectors always equals
the number of labels; this is checked.

Sentence tasks: the classification token of every layer (first for BERT-like
models, last for XLNet), ideally from a model fine-tuned on the task
(see :mod:`redundancy.representations.finetune`).

Sentences are sorted by length and batched under a token budget, run under
``torch.inference_mode``, and written straight into the memory-mapped store.
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np

from ..errors import DataError, SequenceTooLongError
from .models import LoadedModel
from .store import ActivationStore, Activations
from ..data.tasks import TaskData
from ..utils import fault_point, stable_hash

AGGREGATIONS = ("last", "first", "mean")


def _progress(total, desc, enabled):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="sent", disable=not enabled, mininterval=1.0, leave=False)


def _batches(lengths: np.ndarray, max_tokens: int, max_sentences: int):
    """Indices of sentences, sorted by length, grouped so that padded size <= max_tokens."""
    order = np.argsort(lengths, kind="stable")[::-1]  # longest first: memory peak shows up at once
    batch, longest = [], 0
    for i in order:
        n = int(lengths[i])
        if batch and (max(longest, n) * (len(batch) + 1) > max_tokens or len(batch) >= max_sentences):
            yield batch
            batch, longest = [], 0
        batch.append(int(i))
        longest = max(longest, n)
    if batch:
        yield batch


def set_threads(n: int | None = None) -> None:
    """Threads for torch's intra-op work: ``n``, else ``$REDUNDANCY_THREADS``, else
    ``$OMP_NUM_THREADS``, else every core. Two jobs sharing a machine should each take a
    share: more threads than cores makes OpenMP's waiting threads spin, many times slower."""
    import torch

    env = os.environ.get("REDUNDANCY_THREADS") or os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(n or (int(env) if env and env.isdigit() and int(env) > 0 else None)
                          or os.cpu_count() or 1)


def encode_words(lm: LoadedModel, sentences: list[list[str]], truncate: bool = False,
                 sources: list[str] | None = None):
    """Tokenize pre-split sentences and map every word to its sub-word positions.

    Returns
    -------
    encodings : list of dict (input_ids, attention_mask, ...) without padding
    spans : list of int arrays (n_words, 2): first and last sub-word position of each
        word; (-1, -1) marks a word lost to truncation
    n_truncated : int, number of sentences that were cut
    """
    tok = lm.tokenizer
    enc = tok(sentences, is_split_into_words=True, truncation=False, add_special_tokens=True)
    encodings, spans, n_trunc = [], [], 0
    limit = lm.max_length
    for i, words in enumerate(sentences):
        ids = enc["input_ids"][i]
        wid = enc.word_ids(i)
        present = {w for w in wid if w is not None}
        fixed = words
        if len(present) != len(words):
            # a word the tokenizer turns into nothing (e.g. a lone control character): give it
            # the unknown token so it still has a vector and the counts stay aligned
            fixed = [w if j in present else (tok.unk_token or "?") for j, w in enumerate(words)]
            one = tok(fixed, is_split_into_words=True, truncation=False)
            ids, wid = one["input_ids"], one.word_ids()
            enc_i = {k: one[k] for k in one.keys()}
        else:
            enc_i = {k: enc[k][i] for k in enc.keys()}
        if limit is not None and len(ids) > limit:
            where = sources[i] if sources else f"sentence {i}"
            if not truncate:
                raise SequenceTooLongError(
                    f"{where}: {len(words)} words make {len(ids)} sub-word tokens, more than the model's "
                    f"limit of {limit}. Split the sentence, or pass truncate=True to cut it (its last words "
                    "then get no vector and are left out, with a warning).")
            n_trunc += 1
            # cut the same words that were counted (a word that made nothing is the unknown token)
            one = tok(fixed, is_split_into_words=True, truncation=True, max_length=limit)
            full_counts = np.bincount([w for w in wid if w is not None], minlength=len(words))
            ids, wid = one["input_ids"], one.word_ids()
            enc_i = {k: one[k] for k in one.keys()}
            cut_counts = np.bincount([w for w in wid if w is not None], minlength=len(words))
        else:
            full_counts = cut_counts = None
        span = np.full((len(words), 2), -1, dtype=np.int64)
        for pos, w in enumerate(wid):
            if w is None:
                continue
            if span[w, 0] < 0:
                span[w, 0] = pos
            span[w, 1] = pos
        if full_counts is not None:  # a word whose sub-words were only partly kept is dropped too
            span[cut_counts != full_counts] = -1
        encodings.append(enc_i)
        spans.append(span)
    return encodings, spans, n_trunc


def _pad(lm: LoadedModel, encs: list[dict]):
    import torch

    batch = lm.tokenizer.pad(encs, return_tensors="pt", padding=True)
    return {k: v.to(lm.device) for k, v in batch.items() if isinstance(v, torch.Tensor)}


def word_activations(lm: LoadedModel, sentences: list[list[str]], out: np.ndarray | None = None,
                     keep: np.ndarray | None = None, aggregation: str = "last", truncate: bool = False,
                     max_batch_tokens: int = 2048, max_batch_sentences: int = 128,
                     sources: list[str] | None = None, progress: bool = True,
                     encoded=None) -> tuple[np.ndarray, np.ndarray]:
    """Word-level activations of every layer for pre-tokenized sentences.

    Parameters
    ----------
    lm : LoadedModel
    sentences : list of list of str
    out : array (n_kept_words, n_layers, hidden), optional
        Where to write (a memmap from the store); allocated if None.
    keep : bool array (n_words,), optional
        Which words (all sentences concatenated) get a row in ``out``, e.g. False for
        words whose label is unseen in training. Default: all.
    aggregation : {"last", "first", "mean"}
        Which sub-word represents a word: the last (the paper), the first, or the mean.

    Returns
    -------
    out : the filled array
    rows_kept : bool array (n_words,) of the words that have a row (``keep`` minus
        words lost to truncation)
    """
    import torch

    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, not {aggregation!r}")
    n_words = np.array([len(s) for s in sentences], dtype=np.int64)
    if (n_words == 0).any():
        i = int(np.flatnonzero(n_words == 0)[0])
        raise DataError(f"{sources[i] if sources else f'sentence {i}'}: empty sentence")
    total = int(n_words.sum())
    keep = np.ones(total, dtype=bool) if keep is None else np.asarray(keep, dtype=bool).copy()
    if keep.shape != (total,):
        raise DataError(f"keep has {keep.shape[0]} entries for {total} words")
    encodings, spans, n_trunc = encoded or encode_words(lm, sentences, truncate, sources)
    lost = np.concatenate([s[:, 0] < 0 for s in spans])
    if lost.any():
        warnings.warn(f"{n_trunc} sentences longer than the model's limit of {lm.max_length} tokens were "
                      f"truncated; {int((lost & keep).sum())} words lost their vectors and are left out",
                      stacklevel=2)
    keep &= ~lost
    offsets = np.concatenate([[0], np.cumsum(n_words)])
    rows = np.full(total, -1, dtype=np.int64)
    rows[keep] = np.arange(int(keep.sum()))
    if out is None:
        out = np.empty((int(keep.sum()), lm.n_layers, lm.hidden_size), dtype=np.float32)
    elif out.shape != (int(keep.sum()), lm.n_layers, lm.hidden_size):
        raise DataError(f"output array has shape {out.shape}, expected "
                        f"{(int(keep.sum()), lm.n_layers, lm.hidden_size)}")
    lengths = np.array([len(e["input_ids"]) for e in encodings])
    left = lm.tokenizer.padding_side == "left"
    bar = _progress(len(sentences), f"extract {lm.name}", progress)
    with torch.inference_mode():
        for batch in _batches(lengths, max_batch_tokens, max_batch_sentences):
            inputs = _pad(lm, [encodings[i] for i in batch])
            T = inputs["input_ids"].shape[1]
            hs = lm.model(**inputs, output_hidden_states=True).hidden_states  # layers x (B, T, hidden)
            b_idx, t_first, t_last, dest = [], [], [], []
            for b, i in enumerate(batch):
                r = rows[offsets[i]:offsets[i + 1]]
                ok = r >= 0
                shift = T - lengths[i] if left else 0
                b_idx.append(np.full(int(ok.sum()), b))
                t_first.append(spans[i][ok, 0] + shift)
                t_last.append(spans[i][ok, 1] + shift)
                dest.append(r[ok])
            dev = hs[0].device
            b_idx = torch.as_tensor(np.concatenate(b_idx), device=dev)
            t_first = torch.as_tensor(np.concatenate(t_first), device=dev)
            t_last = torch.as_tensor(np.concatenate(t_last), device=dev)
            dest = np.concatenate(dest)
            # gather layer by layer: no (B, T, layers, hidden) copy of the whole batch
            if aggregation == "last":
                vec = torch.stack([h[b_idx, t_last] for h in hs], dim=1)
            elif aggregation == "first":
                vec = torch.stack([h[b_idx, t_first] for h in hs], dim=1)
            else:  # mean over the word's sub-words, through a cumulative sum along the sequence
                parts = []
                count = (t_last - t_first + 1).to(hs[0].dtype)[:, None]
                for h in hs:
                    csum = torch.cumsum(h, dim=1)
                    upto = csum[b_idx, t_last]
                    before = torch.where((t_first > 0)[:, None], csum[b_idx, (t_first - 1).clamp(min=0)],
                                         torch.zeros_like(upto))
                    parts.append((upto - before) / count)
                vec = torch.stack(parts, dim=1)
            vec = vec.float().cpu().numpy()
            if dest.size:
                lo, hi = dest.min(), dest.max()
                if hi - lo + 1 == dest.size:  # rows of a batch are rarely contiguous, but cheap when so
                    out[lo:hi + 1][dest - lo] = vec
                else:
                    out[dest] = vec
            bar.update(len(batch))
            fault_point("extract")
    bar.close()
    return out, keep


def sentence_activations(lm: LoadedModel, texts: list[str], pairs: list[str] | None = None,
                         out: np.ndarray | None = None, truncate: bool = False, cls_position: str | None = None,
                         max_batch_tokens: int = 2048, max_batch_sentences: int = 128,
                         sources: list[str] | None = None, progress: bool = True) -> np.ndarray:
    """The classification token's vector at every layer, one row per sentence (or pair).

    ``cls_position`` defaults to the model's (first for BERT-like models, last for
    XLNet, found from the tokenizer). Sentences longer than the model's limit raise
    :class:`SequenceTooLongError` unless ``truncate=True``.
    """
    import torch

    tok = lm.tokenizer
    cls_position = cls_position or lm.cls_position
    if cls_position not in ("first", "last"):
        raise ValueError(f"cls_position must be 'first' or 'last', not {cls_position!r}")
    args = (texts,) if pairs is None else (texts, pairs)
    enc = tok(*args, truncation=False)
    lengths = np.array([len(x) for x in enc["input_ids"]])
    limit = lm.max_length
    if limit is not None and (lengths > limit).any():
        too = np.flatnonzero(lengths > limit)
        if not truncate:
            where = sources[too[0]] if sources else f"sentence {too[0]}"
            raise SequenceTooLongError(
                f"{len(too)} inputs are longer than the model's limit of {limit} tokens (first: {where}, "
                f"{lengths[too[0]]} tokens). Pass truncate=True to cut them (longest text first).")
        warnings.warn(f"{len(too)} of {len(texts)} inputs were longer than {limit} tokens and were truncated",
                      stacklevel=2)
        enc = tok(*args, truncation="longest_first", max_length=limit)
        lengths = np.array([len(x) for x in enc["input_ids"]])
    encodings = [{k: enc[k][i] for k in enc.keys()} for i in range(len(texts))]
    if out is None:
        out = np.empty((len(texts), lm.n_layers, lm.hidden_size), dtype=np.float32)
    left = tok.padding_side == "left"
    bar = _progress(len(texts), f"extract {lm.name} [cls]", progress)
    with torch.inference_mode():
        for batch in _batches(lengths, max_batch_tokens, max_batch_sentences):
            inputs = _pad(lm, [encodings[i] for i in batch])
            T = inputs["input_ids"].shape[1]
            hs = lm.model(**inputs, output_hidden_states=True).hidden_states
            L = torch.as_tensor(lengths[batch], device=hs[0].device)
            if cls_position == "first":
                pos = (T - L) if left else torch.zeros_like(L)
            else:
                pos = torch.full_like(L, T - 1) if left else L - 1
            rows_ = torch.arange(len(batch), device=hs[0].device)
            vec = torch.stack([h[rows_, pos] for h in hs], dim=1).float().cpu().numpy()
            out[np.asarray(batch)] = vec
            bar.update(len(batch))
            fault_point("extract")
    bar.close()
    return out


# --------------------------------------------------------------------------------------
# cached extraction for a task split

def _data_fingerprint(task: TaskData, split: str) -> str:
    c = task[split]
    if task.kind == "token":
        return stable_hash([c.tokens, c.tags], n=20)
    return stable_hash([c.texts, c.pairs, [str(x) for x in c.labels]], n=20)


def activation_config(lm: LoadedModel, task: TaskData, split: str, aggregation: str = "last",
                      dtype: str = "float32", truncate: bool = False, cls_position: str | None = None) -> dict:
    """The configuration that keys a cached activation entry."""
    cfg = {"model": lm.identity, "task": task.name, "kind": task.kind, "split": split,
           "data": _data_fingerprint(task, split), "label_names": task.label_names,
           "dtype": str(np.dtype(dtype)), "truncate": bool(truncate), "max_length": lm.max_length}
    if task.kind == "token":
        cfg["aggregation"] = aggregation
    else:
        cfg["aggregation"] = "cls-" + (cls_position or lm.cls_position)
    return cfg


def extract(lm: LoadedModel, task: TaskData, split: str, aggregation: str = "last", dtype: str = "float32",
            truncate: bool = False, store: ActivationStore | None = None, cls_position: str | None = None,
            max_batch_tokens: int = 2048, progress: bool = True, verify: str = "size") -> Activations:
    """Activations of one split of a task, from the cache or computed and cached.

    Parameters
    ----------
    lm : LoadedModel
        For a sentence task, normally a model fine-tuned on it
        (:func:`redundancy.representations.finetune.fine_tune`), as in the paper.
    task : TaskData
    split : {"train", "dev", "test"}
    aggregation : {"last", "first", "mean"}
        Sub-word aggregation for token tasks (ignored for sentence tasks).
    dtype : {"float32", "float16"}
        Storage type; analyses compute in float32.
    truncate : bool
        Cut inputs longer than the model's limit (with a warning) instead of failing.

    Returns
    -------
    Activations
        Memory-mapped; ``.array`` is rows x layers x hidden, ``.labels`` aligned.
    """
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', not {dtype!r}")
    store = store or ActivationStore()
    cfg = activation_config(lm, task, split, aggregation, dtype, truncate, cls_position)
    corpus = task[split]
    ids = task.label_ids(split)

    if task.kind == "token":
        keep = ids >= 0 if not task.regression else np.ones(len(ids), bool)

        encoded = []

        def shape():  # rows lost to truncation are only known after tokenizing (on a cache miss)
            encoded.extend(encode_words(lm, corpus.tokens, truncate, corpus.sources))
            lost = np.concatenate([s[:, 0] < 0 for s in encoded[1]])
            return (int((keep & ~lost).sum()), lm.n_layers, lm.hidden_size)

        sent_of_word = np.repeat(np.arange(len(corpus)), [len(s) for s in corpus.tokens])

        def fill(w):
            _, kept = word_activations(lm, corpus.tokens, out=w.array, keep=keep, aggregation=aggregation,
                                       truncate=truncate, max_batch_tokens=max_batch_tokens,
                                       sources=corpus.sources, progress=progress, encoded=encoded)
            w.labels = ids[kept]
            w.sentence_ids = sent_of_word[kept]
            if len(w.labels) != w.array.shape[0]:  # the count invariant of the whole pipeline
                raise DataError(f"{len(w.labels)} labels for {w.array.shape[0]} vectors")
            w.meta = {"label_names": task.label_names, "n_words": int(len(ids)),
                      "n_dropped": int(len(ids) - kept.sum()), "regression": task.regression}

    else:
        def fill(w):
            sentence_activations(lm, corpus.texts, corpus.pairs, out=w.array, truncate=truncate,
                                 cls_position=cls_position, max_batch_tokens=max_batch_tokens,
                                 sources=corpus.sources, progress=progress)
            w.labels = ids
            w.sentence_ids = np.arange(len(corpus))
            w.meta = {"label_names": task.label_names, "n_words": None, "n_dropped": 0,
                      "regression": task.regression}

        def shape():
            return (len(corpus), lm.n_layers, lm.hidden_size)
    return store.get_or_create(cfg, shape, fill, dtype=dtype, verify=verify)
