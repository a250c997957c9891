"""Tests of the data readers in redundancy.data.readers (tiny files written per test, no network)."""

from __future__ import annotations

import pytest

from redundancy.errors import DataFormatError
from redundancy.data.readers import (GLUE_COLUMNS, TokenCorpus, read_conll, read_glue_tsv, read_labeled_csv,
                           read_text, read_vader_ratings, read_word_tag, take_first_tokens)


def write(path, text: str, encoding="utf-8", newline="\n"):
    path.write_bytes(text.replace("\n", newline).encode(encoding))
    return path


# ---------------------------------------------------------------------------------------------
# read_conll

CONLL = """-DOCSTART- -X- O

Confidence NN B-NP
in IN B-PP
the DT B-NP
pound NN I-NP

He PRP B-NP
declined VBD B-VP
.\t.\tO


Rockwell NNP B-NP
said VBD B-VP
"""


def test_read_conll_tokens_tags_and_boundaries_crlf(tmp_path):
    f = write(tmp_path / "train.txt", CONLL, newline="\r\n")
    assert b"\r\n" in f.read_bytes()
    c = read_conll(f)
    assert c.tokens == [["Confidence", "in", "the", "pound"], ["He", "declined", "."],
                        ["Rockwell", "said"]]
    # the tag is the last column (the chunk tag), not the POS column; no "\r" left on it
    assert c.tags == [["B-NP", "B-PP", "B-NP", "I-NP"], ["B-NP", "B-VP", "O"], ["B-NP", "B-VP"]]
    assert len(c) == 3 and c.n_tokens == 9
    # sources point at the first line of each sentence (DOCSTART is line 1, blank line 2)
    assert c.sources == [f"{f}:3", f"{f}:8", f"{f}:13"]


def test_read_conll_other_columns_and_docstart_kept(tmp_path):
    f = write(tmp_path / "a.txt", CONLL)
    c = read_conll(f, tag_column=1)
    assert c.tags[0] == ["NN", "IN", "DT", "NN"]
    c2 = read_conll(f, skip_docstart=False)
    assert c2.tokens[0] == ["-DOCSTART-"] and c2.tags[0] == ["O"]
    assert len(c2) == 4


def test_read_conll_malformed_line_names_file_and_line(tmp_path):
    text = "Confidence NN B-NP\nin IN B-PP\n\nHe PRP B-NP\nlonely\nsaid VBD B-VP\n"
    f = write(tmp_path / "broken-chunks.txt", text, newline="\r\n")
    with pytest.raises(DataFormatError) as ei:
        read_conll(f)
    msg = str(ei.value)
    assert "broken-chunks.txt:5:" in msg
    assert "lonely" in msg


# ---------------------------------------------------------------------------------------------
# read_word_tag

def test_read_word_tag_splits_sentences_on_one_line(tmp_path):
    f = write(tmp_path / "wsj.txt",
              "He/PRP left/VBD ./. She/PRP said/VBD ``/`` yes/UH ./. ''/'' Then/RB 1/2/CD went/VBD\n"
              "\n"
              "Second/JJ line/NN !/. \n")
    c = read_word_tag(f)
    assert c.tokens == [["He", "left", "."],
                        ["She", "said", "``", "yes", ".", "''"],
                        ["Then", "1/2", "went"],
                        ["Second", "line", "!"]]
    assert c.tags == [["PRP", "VBD", "."],
                      ["PRP", "VBD", "``", "UH", ".", "''"],
                      ["RB", "CD", "VBD"],
                      ["JJ", "NN", "."]]
    assert c.sources == [f"{f}:1", f"{f}:1", f"{f}:1", f"{f}:3"]
    assert c.n_tokens == 3 + 6 + 3 + 3


def test_read_word_tag_closing_bracket_after_period(tmp_path):
    f = write(tmp_path / "x.txt", "(/-LRB- Yes/UH ./. )/-RRB- Next/JJ ./.\n")
    c = read_word_tag(f)
    assert c.tokens == [["(", "Yes", ".", ")"], ["Next", "."]]


def test_read_word_tag_token_without_separator(tmp_path):
    f = write(tmp_path / "tagged.txt", "Good/JJ ./.\nThe/DT cat sat/VBD\n")
    with pytest.raises(DataFormatError) as ei:
        read_word_tag(f)
    msg = str(ei.value)
    assert "tagged.txt:2:" in msg and "'cat'" in msg


@pytest.mark.parametrize("bad", ["/NN", "word/"])
def test_read_word_tag_empty_word_or_tag(tmp_path, bad):
    f = write(tmp_path / "t.txt", f"A/DT {bad}\n")
    with pytest.raises(DataFormatError, match=r"t\.txt:1:"):
        read_word_tag(f)


# ---------------------------------------------------------------------------------------------
# read_text

def test_read_text_invalid_utf8_names_line(tmp_path):
    f = tmp_path / "latin.txt"
    f.write_bytes(b"ok\nbad \xff here\n")
    with pytest.raises(DataFormatError) as ei:
        read_text(f)
    msg = str(ei.value)
    assert f"{f}:2:" in msg
    assert "column 5" in msg and "0xff" in msg


def test_read_text_strips_bom_and_keeps_rest(tmp_path):
    f = tmp_path / "bom.txt"
    f.write_bytes(b"\xef\xbb\xbfHello\nw\xc3\xb6rld\n")
    assert read_text(f) == "Hello\nwörld\n"


def test_read_text_missing_file(tmp_path):
    missing = tmp_path / "nope" / "missing.txt"
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_text(missing)
    # readers built on it propagate the same error
    with pytest.raises(FileNotFoundError):
        read_conll(missing)


# ---------------------------------------------------------------------------------------------
# take_first_tokens

def _corpus(lengths):
    toks = [[f"w{i}_{j}" for j in range(n)] for i, n in enumerate(lengths)]
    return TokenCorpus(toks, [["X"] * n for n in lengths], [f"s{i}" for i in range(len(lengths))])


def test_take_first_tokens_never_cuts_a_sentence():
    c = _corpus([3, 4, 2, 5, 1])  # cumulative 3, 7, 9, 14, 15
    sub, end = take_first_tokens(c, 8)
    assert end == 2 and sub.n_tokens == 7 and [len(s) for s in sub.tokens] == [3, 4]
    assert sub.tokens == c.tokens[:2] and sub.sources == ["s0", "s1"]
    sub, end = take_first_tokens(c, 9)
    assert end == 3 and sub.n_tokens == 9
    sub, end = take_first_tokens(c, 2)
    assert end == 0 and len(sub) == 0
    sub, end = take_first_tokens(c, 100)
    assert end == 5 and sub.n_tokens == 15
    sub, end = take_first_tokens(c, None)
    assert end == 5 and sub.n_tokens == 15


def test_take_first_tokens_from_start():
    c = _corpus([3, 4, 2, 5, 1])
    sub, end = take_first_tokens(c, 6, start=1)  # 4 fits, 4+2 = 6 fits, +5 does not
    assert end == 3 and [len(s) for s in sub.tokens] == [4, 2]
    assert sub.sources == ["s1", "s2"]
    # stops at the first sentence that does not fit, even if a later one would
    sub, end = take_first_tokens(c, 10, start=2)  # 2 + 5 = 7, +1 = 8
    assert end == 5 and sub.n_tokens == 8
    sub, end = take_first_tokens(c, 4, start=3)  # 5 > 4: nothing
    assert end == 3 and len(sub) == 0


# ---------------------------------------------------------------------------------------------
# read_labeled_csv

def test_read_labeled_csv_multiline_bom_and_label_map(tmp_path):
    f = tmp_path / "pol.csv"
    f.write_bytes('\ufeff"1","a good\nfilm , really"\n"-1","bad, bad  film"\n\n"1",fine\n'.encode())
    c = read_labeled_csv(f, label_map={"1": "positive", "-1": "negative"})
    assert c.texts == ["a good film , really", "bad, bad film", "fine"]
    assert c.labels == ["positive", "negative", "positive"]
    assert c.pairs is None
    # each record is named by its first line: the first spans lines 1-2, line 4 is blank
    assert c.sources == [f"{f}:1", f"{f}:3", f"{f}:5"]
    # the BOM is not part of the first label (it would be without read_text's decoding)
    raw = read_labeled_csv(f)
    assert raw.labels == ["1", "-1", "1"]


def test_read_labeled_csv_unknown_label_names_line(tmp_path):
    f = write(tmp_path / "unc.csv", '"1","one\ntwo"\n"-1","three"\n"0","four"\n')
    with pytest.raises(DataFormatError) as ei:
        read_labeled_csv(f, label_map={"1": "certain", "-1": "uncertain"})
    msg = str(ei.value)
    assert "unc.csv:4:" in msg and "'0'" in msg
    # a bad label on a record whose text spans lines is reported at the label's (first) line
    g = write(tmp_path / "multi.csv", '"1","ok"\n"2","one\ntwo\nthree"\n')
    with pytest.raises(DataFormatError, match=r"multi\.csv:2:"):
        read_labeled_csv(g, label_map={"1": "certain", "-1": "uncertain"})


def test_read_labeled_csv_header_pair_and_short_row(tmp_path):
    f = write(tmp_path / "p.csv", "label,a,b\nyes,first a,first b\nno,second a,second b\n")
    c = read_labeled_csv(f, header=True, pair_column=2)
    assert c.labels == ["yes", "no"]
    assert c.texts == ["first a", "second a"] and c.pairs == ["first b", "second b"]
    g = write(tmp_path / "short.csv", "1,ok\n1\n")
    with pytest.raises(DataFormatError, match=r"short\.csv:2:"):
        read_labeled_csv(g)


# ---------------------------------------------------------------------------------------------
# read_vader_ratings

def test_read_vader_ratings_crlf(tmp_path):
    f = write(tmp_path / "vader.txt",
              "1\t2.266\tthe rock is destined to be great\n2\t-1.5\tdull ,   boring\tand long\n\n",
              newline="\r\n")
    c = read_vader_ratings(f)
    assert c.texts == ["the rock is destined to be great", "dull , boring and long"]
    assert c.labels == [pytest.approx(2.266), pytest.approx(-1.5)]
    assert all(isinstance(x, float) for x in c.labels)
    assert c.sources == [f"{f}:1", f"{f}:2"]


def test_read_vader_ratings_bad_rating_names_line(tmp_path):
    f = write(tmp_path / "vader.txt", "1\t0.5\tfine\n2\t0.1\tok\n3\tgood\ttext\n", newline="\r\n")
    with pytest.raises(DataFormatError) as ei:
        read_vader_ratings(f)
    assert "vader.txt:3:" in str(ei.value) and "'good'" in str(ei.value)
    g = write(tmp_path / "two.txt", "1\t0.5\n")
    with pytest.raises(DataFormatError, match=r"two\.txt:1:"):
        read_vader_ratings(g)


# ---------------------------------------------------------------------------------------------
# read_glue_tsv

GLUE_FILES = {
    "sst-2": ("sentence\tlabel",
              ["it 's a charming journey \t1", "a dull film\t0"],
              ["it 's a charming journey", "a dull film"], None, ["1", "0"]),
    "mrpc": ("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String",
             ["1\t702876\t702977\tAmrozi accused his brother .\tReferring to him , Amrozi accused .",
              "0\t2108705\t2108831\tYucaipa owned Dominick 's .\tYucaipa bought Dominick 's ."],
             ["Amrozi accused his brother .", "Yucaipa owned Dominick 's ."],
             ["Referring to him , Amrozi accused .", "Yucaipa bought Dominick 's ."], ["1", "0"]),
    "mnli": ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
             "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label",
             ["0\t31193\t31193n\tgovernment\t( ( A b ) )\t( B )\t(ROOT (S a))\t(ROOT (S b))\t"
              "Conceptually cream skimming .\tProduct and geography .\tneutral\tneutral",
              "1\t101457\t101457e\ttelephone\t( x )\t( y )\t(ROOT x)\t(ROOT y)\t"
              "you know during the season\tYou lose the things .\tentailment\tcontradiction"],
             ["Conceptually cream skimming .", "you know during the season"],
             ["Product and geography .", "You lose the things ."], ["neutral", "contradiction"]),
    "qnli": ("index\tquestion\tsentence\tlabel",
             ["0\tWhen did it open?\tIt opened in 1990.\tentailment",
              "1\tWho is he?\tThe sky is blue.\tnot_entailment"],
             ["When did it open?", "Who is he?"], ["It opened in 1990.", "The sky is blue."],
             ["entailment", "not_entailment"]),
    "qqp": ("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
            ["133273\t213221\t213222\tHow is the life?\tHow is life?\t1",
             "402555\t536040\t536041\tWhy do we sleep?\tWhat is sleep?\t0"],
            ["How is the life?", "Why do we sleep?"], ["How is life?", "What is sleep?"], ["1", "0"]),
    "rte": ("index\tsentence1\tsentence2\tlabel",
            ["0\tNo weapons were found.\tWeapons were found.\tnot_entailment",
             "1\tA place of sorrow.\tPope is sick.\tentailment"],
            ["No weapons were found.", "A place of sorrow."], ["Weapons were found.", "Pope is sick."],
            ["not_entailment", "entailment"]),
    "sts-b": ("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
              ["0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking off.\t"
               "An air plane is taking off.\t5.000",
               "1\tmain-captions\tMSRvid\t2012test\t0004\tnone\tnone\tA man plays a flute.\t"
               "A man plays a bamboo flute.\t3.800"],
              ["A plane is taking off.", "A man plays a flute."],
              ["An air plane is taking off.", "A man plays a bamboo flute."], [5.0, 3.8]),
}


def test_glue_files_cover_every_task():
    assert set(GLUE_FILES) == set(GLUE_COLUMNS)


@pytest.mark.parametrize("task", sorted(GLUE_FILES))
def test_read_glue_tsv(tmp_path, task):
    header, rows, texts, pairs, labels = GLUE_FILES[task]
    f = write(tmp_path / "train.tsv", "\n".join([header, *rows]) + "\n")
    c = read_glue_tsv(f, task.upper())  # task names are case-insensitive
    assert len(c) == 2
    assert c.texts == texts
    assert c.pairs == pairs
    assert c.labels == labels
    if task == "sts-b":
        assert all(isinstance(x, float) for x in c.labels)
    assert c.sources == [f"{f}:2", f"{f}:3"]


@pytest.mark.parametrize("task", sorted(GLUE_FILES))
def test_read_glue_tsv_short_row(tmp_path, task):
    header, rows, texts, pairs, labels = GLUE_FILES[task]
    short = "\t".join(rows[1].split("\t")[:-1])  # drop the last field
    f = write(tmp_path / "dev.tsv", "\n".join([header, rows[0], "", short]) + "\n", newline="\r\n")
    with pytest.raises(DataFormatError) as ei:
        read_glue_tsv(f, task)
    assert "dev.tsv:4:" in str(ei.value)
    c = read_glue_tsv(f, task, skip_malformed=True)
    assert c.texts == texts[:1] and c.labels == labels[:1]
    assert c.sources == [f"{f}:2"]


def test_read_glue_tsv_bad_header_unknown_task_and_bad_score(tmp_path):
    f = write(tmp_path / "train.tsv", "text\tlabel\nhello\t1\n")
    with pytest.raises(DataFormatError, match=r"train\.tsv:1:"):
        read_glue_tsv(f, "sst-2")
    with pytest.raises(DataFormatError, match="unknown GLUE task"):
        read_glue_tsv(f, "cola-x")
    header = GLUE_FILES["sts-b"][0]
    g = write(tmp_path / "sts.tsv", header + "\n" + "\t".join(["0"] * 7 + ["a", "b", "high"]) + "\n")
    with pytest.raises(DataFormatError, match=r"sts\.tsv:2:.*'high'"):
        read_glue_tsv(g, "sts-b")
    e = write(tmp_path / "empty.tsv", "")
    with pytest.raises(DataFormatError, match=r"empty\.tsv:1:"):
        read_glue_tsv(e, "rte")


def test_read_glue_tsv_mnli_gold_label_is_last_match(tmp_path):
    # dev_matched.tsv has label1..label5 before gold_label
    header = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
              "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\t"
              "label4\tlabel5\tgold_label")
    row = "\t".join(["0", "1", "1n", "fiction", "x", "y", "X", "Y", "P .", "H .",
                     "neutral", "entailment", "neutral", "neutral", "neutral", "neutral"])
    f = write(tmp_path / "dev_matched.tsv", header + "\n" + row + "\n")
    c = read_glue_tsv(f, "mnli")
    assert c.texts == ["P ."] and c.pairs == ["H ."] and c.labels == ["neutral"]


def test_read_conll_line_with_a_stray_column_is_named_not_misread(tmp_path):
    """'The DT B-NP X' among 3-column lines would make 'X' the tag: refused, naming both lines."""
    f = write(tmp_path / "train.txt", "He PRP B-NP\nleft VBD B-VP\n\nThe DT B-NP X\ndog NN I-NP\n")
    with pytest.raises(DataFormatError) as ei:
        read_conll(f)
    msg = str(ei.value)
    assert f"{f}:4:" in msg and "4 columns" in msg and "line 1 has 3" in msg
    # the same lines with the column on every line are read
    ok = write(tmp_path / "ok.txt", "He PRP B-NP X\nleft VBD B-VP X\n\nThe DT B-NP X\ndog NN I-NP X\n")
    assert read_conll(ok, tag_column=2).tags == [["B-NP", "B-VP"], ["B-NP", "I-NP"]]


def test_read_glue_tsv_empty_second_sentence_says_so(tmp_path):
    f = write(tmp_path / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA man sleeps.\t\tentailment\n")
    with pytest.raises(DataFormatError) as ei:
        read_glue_tsv(f, "rte")
    assert f"{f}:2: the field 'sentence2' is empty" in str(ei.value)
