"""redundancy.representations.activations against an independent reference: a direct forward pass of the
model (loaded separately with ``transformers``) on one sentence at a time, unpadded.

The tiny XLNet-like model pads on the left and puts its classification token last, so
batches of mixed lengths check that left padding is handled.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch

import redundancy.representations.activations as act
from redundancy.representations.activations import extract, sentence_activations, word_activations
from redundancy.errors import DataError, SequenceTooLongError
from redundancy.representations.models import load_model
from redundancy.representations.store import ActivationStore

ATOL = 1e-5

# words that split into several sub-words: cats, walked, unhappy, xyzzy (5), playful,
# reads, books, writes, songs, jumping, walkers, quickly; "." and "SING" test [UNK] and case
SENTENCES = [
    ["the", "cats", "walked"],
    ["a", "dog", "sat", "on", "the", "mat", "unhappy", "xyzzy"],
    ["playful"],
    ["he", "reads", "big", "books", "and", "she", "writes", "songs", "fast", "."],
    ["Birds", "SING"],
    ["jumping", "walkers", "quickly", "ran", "to", "the", "green", "tree"],
]

TEXTS = ["the cat sat on the mat", "a dog", "he reads big books and she writes songs fast",
         "unhappy playful birds"]
PAIRS = ["it was red", "the big house is blue and green", "we", "they read a book"]


# --------------------------------------------------------------------------------------
# fixtures: the library's view and an independent reference of each model

@pytest.fixture(scope="module")
def models(tiny_bert, tiny_xlnet):
    return {"bert": load_model(tiny_bert), "xlnet": load_model(tiny_xlnet)}


@pytest.fixture(scope="module")
def references(tiny_bert, tiny_xlnet):
    from transformers import AutoModel, AutoTokenizer

    out = {}
    for key, path in (("bert", tiny_bert), ("xlnet", tiny_xlnet)):
        model = AutoModel.from_pretrained(path)
        model.eval()
        out[key] = (model, AutoTokenizer.from_pretrained(path))
    return out


def direct(ref, *inputs, **tok_kw):
    """One unpadded forward pass: (hidden states as layers x T x hidden, encoding)."""
    model, tok = ref
    enc = tok(*inputs, return_tensors="pt", **tok_kw)
    assert enc["input_ids"].shape[0] == 1
    if "attention_mask" in enc:
        assert bool(enc["attention_mask"].all())  # no padding in the reference
    with torch.no_grad():
        hs = model(**enc, output_hidden_states=True).hidden_states
    return torch.stack(hs, 0)[:, 0].numpy(), enc


def reference_words(ref, sentences, aggregation):
    """Per word: the hidden states of its last / first sub-word or their mean, every layer."""
    rows = []
    for words in sentences:
        hs, enc = direct(ref, words, is_split_into_words=True)
        wid = enc.word_ids(0)
        for w in range(len(words)):
            pos = [i for i, x in enumerate(wid) if x == w]
            assert pos, f"word {words[w]!r} has no sub-word in the reference"
            if aggregation == "last":
                rows.append(hs[:, pos[-1]])
            elif aggregation == "first":
                rows.append(hs[:, pos[0]])
            else:
                rows.append(hs[:, pos].mean(axis=1))
    return np.stack(rows)


def test_test_sentences_really_split_words(references):
    """The checks below are only meaningful if some words have several sub-words."""
    for key in ("bert", "xlnet"):
        _, tok = references[key]
        n_pieces = [len(tok.tokenize(w)) for s in SENTENCES for w in s]
        assert max(n_pieces) >= 5 and sum(n > 1 for n in n_pieces) >= 8
    # and the XLNet-like tokenizer pads on the left with <cls> last
    _, tok = references["xlnet"]
    batch = tok(["the cat", "a dog sat on the mat"], padding=True)
    assert batch["attention_mask"][0][0] == 0 and batch["input_ids"][0][-1] == tok.cls_token_id


# --------------------------------------------------------------------------------------
# word-level activations

@pytest.mark.parametrize("key", ["bert", "xlnet"])
@pytest.mark.parametrize("aggregation", ["last", "first", "mean"])
def test_word_activations_equal_direct_forward(models, references, key, aggregation):
    lm = models[key]
    out, kept = word_activations(lm, SENTENCES, aggregation=aggregation, progress=False)
    n_words = sum(len(s) for s in SENTENCES)
    assert out.shape == (n_words, 3, 16)
    assert out.dtype == np.float32
    assert kept.shape == (n_words,) and kept.all()
    ref = reference_words(references[key], SENTENCES, aggregation)
    np.testing.assert_allclose(out, ref, atol=ATOL, rtol=0)


def test_aggregations_differ_on_split_words(models):
    """first / last / mean really pick different sub-words (else the test above proves little)."""
    lm = models["bert"]
    last, _ = word_activations(lm, SENTENCES, aggregation="last", progress=False)
    first, _ = word_activations(lm, SENTENCES, aggregation="first", progress=False)
    mean, _ = word_activations(lm, SENTENCES, aggregation="mean", progress=False)
    # "the" (one sub-word) is the same under all three; "cats" (two) is not
    np.testing.assert_array_equal(last[0], first[0])
    np.testing.assert_allclose(mean[0], last[0], atol=ATOL)
    assert np.abs(last[1] - first[1]).max() > 1e-3
    np.testing.assert_allclose(mean[1], (last[1] + first[1]) / 2, atol=ATOL)


@pytest.mark.parametrize("key", ["bert", "xlnet"])
@pytest.mark.parametrize("aggregation", ["last", "mean"])
def test_word_activations_do_not_depend_on_batching(models, key, aggregation):
    lm = models[key]
    one_each, _ = word_activations(lm, SENTENCES, aggregation=aggregation, max_batch_tokens=1,
                                   progress=False)
    all_in_one, _ = word_activations(lm, SENTENCES, aggregation=aggregation, max_batch_tokens=100_000,
                                     progress=False)
    pairs, _ = word_activations(lm, SENTENCES, aggregation=aggregation, max_batch_sentences=2,
                                progress=False)
    np.testing.assert_allclose(one_each, all_in_one, atol=ATOL, rtol=0)
    np.testing.assert_allclose(pairs, all_in_one, atol=ATOL, rtol=0)


def test_batches_respect_the_token_budget():
    lengths = np.array([5, 12, 3, 12, 7, 1])
    batches = list(act._batches(lengths, max_tokens=24, max_sentences=10))
    assert sorted(i for b in batches for i in b) == list(range(6))
    for b in batches:
        assert max(lengths[b]) * len(b) <= 24 or len(b) == 1
    assert all(len(b) == 1 for b in act._batches(lengths, max_tokens=1, max_sentences=10))
    assert all(len(b) <= 2 for b in act._batches(lengths, max_tokens=10_000, max_sentences=2))


def test_keep_selects_rows(models):
    lm = models["xlnet"]
    full, _ = word_activations(lm, SENTENCES, progress=False)
    keep = np.arange(full.shape[0]) % 3 != 1
    part, kept = word_activations(lm, SENTENCES, keep=keep, progress=False)
    np.testing.assert_array_equal(kept, keep)
    np.testing.assert_allclose(part, full[keep], atol=ATOL, rtol=0)


def test_word_activations_write_into_given_array(models):
    lm = models["bert"]
    n = sum(len(s) for s in SENTENCES)
    buf = np.zeros((n, 3, 16), dtype=np.float16)
    out, _ = word_activations(lm, SENTENCES, out=buf, progress=False)
    assert out is buf
    ref, _ = word_activations(lm, SENTENCES, progress=False)
    np.testing.assert_allclose(buf.astype(np.float32), ref, atol=1e-2, rtol=1e-2)
    with pytest.raises(DataError, match="shape"):
        word_activations(lm, SENTENCES, out=np.zeros((n - 1, 3, 16), np.float32), progress=False)


def test_bad_arguments(models):
    lm = models["bert"]
    with pytest.raises(ValueError, match="aggregation"):
        word_activations(lm, SENTENCES, aggregation="max", progress=False)
    with pytest.raises(DataError, match="src.txt:2: empty sentence"):
        word_activations(lm, [["a"], []], sources=["src.txt:1", "src.txt:2"], progress=False)
    with pytest.raises(DataError, match="keep"):
        word_activations(lm, SENTENCES, keep=np.ones(3, bool), progress=False)


def test_word_without_subwords_still_gets_a_row(models, references):
    """BERT's tokenizer turns a zero-width space into nothing; the word gets the [UNK] vector."""
    lm = models["bert"]
    _, tok = references["bert"]
    assert tok(["\u200b"], is_split_into_words=True, add_special_tokens=False)["input_ids"] == []
    sentences = [["the", "\u200b", "cats"], ["\u200b"], ["dogs", "ran", "\u200b"]]
    out, kept = word_activations(lm, sentences, progress=False)
    assert out.shape[0] == 7 and kept.all()
    fixed = [[tok.unk_token if w == "\u200b" else w for w in s] for s in sentences]
    np.testing.assert_allclose(out, reference_words(references["bert"], fixed, "last"), atol=ATOL, rtol=0)


# --------------------------------------------------------------------------------------
# sequences longer than the model's limit (tiny BERT: 40 tokens)

def _long_sentence():
    # [CLS] + 36 one-piece words fill positions 1..36; "xyzzy" (5 pieces) takes 37..41, so
    # a cut at 40 tokens ([SEP] at 39) keeps only two of its pieces: the word is dropped
    words = (["the", "cat", "sat", "on", "a", "mat"] * 6) + ["xyzzy", "dog", "ran", "fast"]
    return words


def test_too_long_sentence_raises_naming_its_source(models):
    lm = models["bert"]
    assert lm.max_length == 40
    sentences = [["the", "cat"], _long_sentence()]
    with pytest.raises(SequenceTooLongError, match=r"corpus\.txt:17") as info:
        word_activations(lm, sentences, sources=["corpus.txt:3", "corpus.txt:17"], progress=False)
    assert "truncate=True" in str(info.value)


def test_truncate_warns_and_keeps_the_words_that_fit(models, references):
    lm = models["bert"]
    long = _long_sentence()
    sentences = [["the", "cats"], long]
    with pytest.warns(UserWarning, match=r"^1 sentences.*truncated; 4 words"):
        out, kept = word_activations(lm, sentences, truncate=True, progress=False)
    n_words = 2 + len(long)
    assert out.shape[0] < n_words
    assert out.shape[0] == kept.sum() == 2 + 36
    np.testing.assert_array_equal(kept, np.r_[np.ones(38, bool), np.zeros(4, bool)])
    # the kept rows are those of a direct forward pass on the cut sentence
    ref_short = reference_words(references["bert"], [["the", "cats"]], "last")
    hs, enc = direct(references["bert"], long, is_split_into_words=True, truncation=True, max_length=40)
    assert hs.shape[1] == 40
    np.testing.assert_allclose(out[:2], ref_short, atol=ATOL, rtol=0)
    np.testing.assert_allclose(out[2:], np.stack([hs[:, 1 + i] for i in range(36)]), atol=ATOL, rtol=0)


def test_truncate_keeps_a_word_without_subwords(models, references):
    """A zero-width word inside the kept part of a truncated sentence keeps its row."""
    lm = models["bert"]
    long = ["the", "\u200b"] + ["cat"] * 40
    with pytest.warns(UserWarning, match="truncated"):
        out, kept = word_activations(lm, [long], truncate=True, progress=False)
    assert kept[:38].all() and not kept[38:].any()
    fixed = [lm.tokenizer.unk_token if w == "\u200b" else w for w in long]
    hs, _ = direct(references["bert"], fixed, is_split_into_words=True, truncation=True, max_length=40)
    np.testing.assert_allclose(out, np.stack([hs[:, 1 + i] for i in range(38)]).astype(np.float32),
                               atol=ATOL, rtol=0)


def test_sentence_too_long(models, references):
    lm = models["bert"]
    long_text = " ".join(["the cat sat on a mat"] * 8)  # 48 words
    with pytest.raises(SequenceTooLongError, match="reviews.tsv:9"):
        sentence_activations(lm, ["a dog", long_text], sources=["reviews.tsv:8", "reviews.tsv:9"],
                             progress=False)
    with pytest.warns(UserWarning, match="1 of 2 inputs"):
        out = sentence_activations(lm, ["a dog", long_text], truncate=True, progress=False)
    hs, _ = direct(references["bert"], long_text, truncation=True, max_length=40)
    np.testing.assert_allclose(out[1], hs[:, 0], atol=ATOL, rtol=0)


# --------------------------------------------------------------------------------------
# sentence-level activations: the classification token

@pytest.mark.parametrize("key", ["bert", "xlnet"])
@pytest.mark.parametrize("with_pairs", [False, True])
def test_sentence_activations_are_the_cls_vector(models, references, key, with_pairs):
    lm = models[key]
    pairs = PAIRS if with_pairs else None
    out = sentence_activations(lm, TEXTS, pairs, progress=False)
    assert out.shape == (len(TEXTS), 3, 16)
    _, tok = references[key]
    for i, text in enumerate(TEXTS):
        hs, enc = direct(references[key], *((text,) if pairs is None else (text, pairs[i])))
        ids = enc["input_ids"][0].tolist()
        pos = 0 if key == "bert" else len(ids) - 1
        assert ids[pos] == tok.cls_token_id
        np.testing.assert_allclose(out[i], hs[:, pos], atol=ATOL, rtol=0)
    # batching does not matter either
    one_each = sentence_activations(lm, TEXTS, pairs, max_batch_tokens=1, progress=False)
    np.testing.assert_allclose(one_each, out, atol=ATOL, rtol=0)


@pytest.mark.parametrize("key", ["bert", "xlnet"])
def test_sentence_activations_other_position(models, references, key):
    """cls_position overrides the model's: BERT's last token is [SEP], XLNet's first a word."""
    lm = models[key]
    other = "last" if key == "bert" else "first"
    out = sentence_activations(lm, TEXTS, cls_position=other, progress=False)
    for i, text in enumerate(TEXTS):
        hs, _ = direct(references[key], text)
        np.testing.assert_allclose(out[i], hs[:, -1 if other == "last" else 0], atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match="cls_position"):
        sentence_activations(lm, TEXTS, cls_position="middle", progress=False)


# --------------------------------------------------------------------------------------
# cached extraction of a task split

TOKEN_TRAIN = [
    [("the", "DT"), ("cats", "NNS"), ("walked", "VBD")],
    [("a", "DT"), ("dog", "NN"), ("sat", "VBD"), ("on", "IN"), ("the", "DT"), ("mat", "NN")],
    [("he", "PRP"), ("reads", "VBZ"), ("big", "JJ"), ("books", "NNS")],
]
TOKEN_DEV = [
    [("she", "PRP"), ("writes", "VBZ"), ("songs", "NNS"), ("quickly", "RB")],  # RB unseen in train
    [("the", "DT"), ("unhappy", "JJ"), ("bird", "NN"), ("sings", "VBZ")],
    [("xyzzy", "UH")],  # UH unseen in train
]


@pytest.fixture
def token_task(token_task_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return token_task_factory(TOKEN_TRAIN, dev=TOKEN_DEV, unseen_labels="drop")


def test_extract_token_task(models, token_task, tmp_path):
    lm = models["bert"]
    store = ActivationStore(tmp_path / "store")
    a = extract(lm, token_task, "train", store=store, progress=False)
    words = [[w for w, _ in s] for s in TOKEN_TRAIN]
    ref, _ = word_activations(lm, words, progress=False)
    assert a.array.shape == ref.shape == (13, 3, 16)
    assert len(a.labels) == a.array.shape[0] == len(a.sentence_ids)
    np.testing.assert_allclose(np.asarray(a.array), ref, atol=ATOL, rtol=0)
    names = token_task.label_names
    assert [names[i] for i in a.labels] == [t for s in TOKEN_TRAIN for _, t in s]
    np.testing.assert_array_equal(a.sentence_ids, [0] * 3 + [1] * 6 + [2] * 4)
    assert a.label_names == names
    assert str(a.path).startswith(str(tmp_path / "store"))


def test_extract_second_call_is_a_cache_hit(models, token_task, tmp_path, monkeypatch):
    lm = models["xlnet"]
    store = ActivationStore(tmp_path / "store")
    first = extract(lm, token_task, "train", store=store, progress=False)
    before = np.array(first.array)
    mtime = os.stat(first.path / "activations.npy").st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("recomputed instead of reading the cache")

    monkeypatch.setattr(act, "word_activations", boom)
    monkeypatch.setattr(act, "encode_words", boom)
    second = extract(lm, token_task, "train", store=store, progress=False)
    assert second.path == first.path
    assert os.stat(second.path / "activations.npy").st_mtime_ns == mtime
    np.testing.assert_array_equal(np.asarray(second.array), before)
    np.testing.assert_array_equal(second.labels, first.labels)
    # a different aggregation is a different entry, so it is computed (and fails here)
    with pytest.raises(AssertionError, match="recomputed"):
        extract(lm, token_task, "train", aggregation="first", store=store, progress=False)


def test_extract_default_store_lives_in_the_test_cache(models, token_task, isolated_cache):
    a = extract(models["bert"], token_task, "train", progress=False)
    assert str(a.path).startswith(str(isolated_cache / "activations"))


def test_extract_drops_unseen_labels(models, token_task, tmp_path):
    lm = models["xlnet"]
    a = extract(lm, token_task, "dev", store=ActivationStore(tmp_path), progress=False)
    words = [[w for w, _ in s] for s in TOKEN_DEV]
    tags = [t for s in TOKEN_DEV for _, t in s]
    seen = np.array([t in token_task.label_names for t in tags])
    assert seen.sum() == 7 and not seen.all()
    full, _ = word_activations(lm, words, progress=False)
    assert a.array.shape[0] == len(a.labels) == 7
    np.testing.assert_allclose(np.asarray(a.array), full[seen], atol=ATOL, rtol=0)
    names = token_task.label_names
    assert [names[i] for i in a.labels] == [t for t, s in zip(tags, seen) if s]
    sent_of_word = np.repeat(np.arange(3), [len(s) for s in TOKEN_DEV])
    np.testing.assert_array_equal(a.sentence_ids, sent_of_word[seen])
    assert a.meta["n_dropped"] == 2 and a.meta["n_words"] == 9


def test_extract_float16(models, token_task, tmp_path):
    lm = models["bert"]
    store = ActivationStore(tmp_path)
    f32 = extract(lm, token_task, "train", store=store, progress=False)
    f16 = extract(lm, token_task, "train", dtype="float16", store=store, progress=False)
    assert f16.path != f32.path
    assert f16.array.dtype == np.float16 and f32.array.dtype == np.float32
    np.testing.assert_allclose(np.asarray(f16.array, dtype=np.float32), np.asarray(f32.array),
                               rtol=1e-2, atol=1e-3)
    np.testing.assert_array_equal(f16.labels, f32.labels)
    with pytest.raises(ValueError, match="dtype"):
        extract(lm, token_task, "train", dtype="int8", store=store, progress=False)


def test_extract_truncated_token_task_keeps_counts_aligned(models, token_task_factory, tmp_path):
    lm = models["bert"]
    long = _long_sentence()
    train = [[(w, "A" if i % 2 else "B") for i, w in enumerate(long)], [("the", "A"), ("cats", "B")]]
    task = token_task_factory(train, name="long")
    with pytest.raises(SequenceTooLongError, match="long/train:1"):
        extract(lm, task, "train", store=ActivationStore(tmp_path), progress=False)
    with pytest.warns(UserWarning, match="truncated"):
        a = extract(lm, task, "train", truncate=True, store=ActivationStore(tmp_path), progress=False)
    assert a.array.shape[0] == len(a.labels) == 36 + 2
    ids = task.label_ids("train")
    np.testing.assert_array_equal(a.labels, np.r_[ids[:36], ids[-2:]])
    np.testing.assert_array_equal(a.sentence_ids, [0] * 36 + [1] * 2)


def test_extract_sentence_task(models, sentence_task_factory, tmp_path):
    lm = models["xlnet"]
    items = [(t, p, "yes" if i % 2 else "no") for i, (t, p) in enumerate(zip(TEXTS, PAIRS))]
    task = sentence_task_factory(items)
    a = extract(lm, task, "test", store=ActivationStore(tmp_path), progress=False)
    ref = sentence_activations(lm, TEXTS, PAIRS, progress=False)
    np.testing.assert_allclose(np.asarray(a.array), ref, atol=ATOL, rtol=0)
    np.testing.assert_array_equal(a.labels, [0, 1, 0, 1])
    np.testing.assert_array_equal(a.sentence_ids, np.arange(4))
    assert a.meta["config"]["aggregation"] == "cls-last"


def test_set_threads_takes_the_environment(monkeypatch):
    import torch

    from redundancy.representations.activations import set_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("REDUNDANCY_THREADS", "1")
        set_threads()
        assert torch.get_num_threads() == 1
        monkeypatch.delenv("REDUNDANCY_THREADS")
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        set_threads()
        assert torch.get_num_threads() == 1
        set_threads(2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
