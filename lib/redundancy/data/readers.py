"""Readers for the data formats of the paper's tasks.

Every reader returns plain Python lists and records where each example came
from (``file:line``) so that later errors can point at the input. Malformed
input raises :class:`~redundancy.errors.DataFormatError` naming the file and
line and saying what was expected.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import DataFormatError

__all__ = [
    "TokenCorpus",
    "SentenceCorpus",
    "read_text",
    "read_conll",
    "read_word_tag",
    "read_labeled_csv",
    "read_vader_ratings",
    "read_glue_tsv",
    "GLUE_COLUMNS",
    "take_first_tokens",
]


@dataclass
class TokenCorpus:
    """Sentences of words with one tag per word (sequence labeling)."""

    tokens: list[list[str]] = field(default_factory=list)
    tags: list[list[str]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def n_tokens(self) -> int:
        return sum(len(s) for s in self.tokens)

    def subset(self, index: Iterable[int]) -> "TokenCorpus":
        index = list(index)
        return TokenCorpus([self.tokens[i] for i in index], [self.tags[i] for i in index],
                           [self.sources[i] for i in index])


@dataclass
class SentenceCorpus:
    """Sentences (or sentence pairs) with one label each (sequence classification)."""

    texts: list[str] = field(default_factory=list)
    labels: list = field(default_factory=list)
    pairs: list[str] | None = None
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: Iterable[int]) -> "SentenceCorpus":
        index = list(index)
        return SentenceCorpus(
            [self.texts[i] for i in index],
            [self.labels[i] for i in index],
            None if self.pairs is None else [self.pairs[i] for i in index],
            [self.sources[i] for i in index],
        )


def read_text(path: str | os.PathLike) -> str:
    """Read a whole file as UTF-8 (a leading byte-order mark is dropped).

    Raises
    ------
    DataFormatError
        If the file is not valid UTF-8; the message gives the line and column.
    FileNotFoundError
        If the file does not exist (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path} (check the path, or run the set-up "
                                "command that fetches the embedded data)")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataFormatError(
            f"{path}:{line}: column {col}: byte 0x{data[e.start]:02x} is not valid UTF-8. "
            f"Convert the file to UTF-8 first (for example `iconv -f latin1 -t utf-8 {path.name}`)."
        ) from None


def _lines(path) -> list[str]:
    # splitlines() would also split on \x1c, \x85, \u2028 ... which can occur inside
    # real text; only \n (and a trailing \r from CRLF files) end a line here.
    return [ln[:-1] if ln.endswith("\r") else ln for ln in read_text(path).split("\n")]


def read_conll(path, token_column: int = 0, tag_column: int = -1,
               skip_docstart: bool = True) -> TokenCorpus:
    """Read a CoNLL-style file: one token per line with its tag, a blank line between sentences.

    Columns are separated by whitespace (tabs or spaces). CoNLL-2000 chunking
    (``word POS chunk``) is read with the defaults: token in the first column,
    tag in the last. ``-DOCSTART-`` lines are skipped.

    Parameters
    ----------
    path : path-like
    token_column, tag_column : int
        Which whitespace-separated columns hold the token and its tag.
    """
    corpus = TokenCorpus()
    toks: list[str] = []
    tags: list[str] = []
    start = 0
    first = None  # (line number, columns) of the first token line: every other one must match it
    for lineno, line in enumerate(_lines(path), 1):
        fields = line.split()
        if not fields:
            if toks:
                corpus.tokens.append(toks), corpus.tags.append(tags)
                corpus.sources.append(f"{path}:{start}")
            toks, tags = [], []
            continue
        if skip_docstart and fields[0] == "-DOCSTART-":
            continue
        need = max(token_column if token_column >= 0 else -token_column - 1,
                   tag_column if tag_column >= 0 else -tag_column - 1) + 1
        if len(fields) < max(2, need):
            raise DataFormatError(
                f"{path}:{lineno}: expected a token and its tag separated by whitespace "
                f"(CoNLL format, blank line between sentences), found {line.strip()!r}")
        if first is None:
            first = (lineno, len(fields))
        elif len(fields) != first[1]:  # a column added or lost would shift which one is the tag
            raise DataFormatError(
                f"{path}:{lineno}: {len(fields)} columns ({line.strip()!r}) but line {first[0]} has {first[1]}; "
                "every token line of a CoNLL file has the same columns (a token with a space in it, or a "
                "stray field, shifts the tag column): fix that line")
        if not toks:
            start = lineno
        toks.append(fields[token_column])
        tags.append(fields[tag_column])
    if toks:
        corpus.tokens.append(toks), corpus.tags.append(tags)
        corpus.sources.append(f"{path}:{start}")
    return corpus


def read_word_tag(path, sep: str = "/", sentence_final_tags: Sequence[str] = (".",),
                  closing_tags: Sequence[str] = ("''", "-RRB-", ")")) -> TokenCorpus:
    """Read ``word/TAG`` tokens separated by spaces (the Penn Treebank sample format).

    Sentences end at the end of a line and after a token whose tag is in
    ``sentence_final_tags`` (the Penn Treebank tag ``.`` marks ``.``, ``?`` and
    ``!``); closing quotes or brackets right after it stay with the sentence they
    close. A word may itself contain ``sep``: the tag is what follows the last one.
    """
    corpus = TokenCorpus()
    final, closing = set(sentence_final_tags), set(closing_tags)
    for lineno, line in enumerate(_lines(path), 1):
        items = line.split()
        if not items:
            continue
        toks: list[str] = []
        tags: list[str] = []
        ended = False
        for col, item in enumerate(items, 1):
            word, s, tag = item.rpartition(sep)
            if not s or not word or not tag:
                raise DataFormatError(
                    f"{path}:{lineno}: token {col} {item!r} is not of the form word{sep}TAG")
            if ended and tag not in closing:
                corpus.tokens.append(toks), corpus.tags.append(tags)
                corpus.sources.append(f"{path}:{lineno}")
                toks, tags, ended = [], [], False
            toks.append(word)
            tags.append(tag)
            ended = ended or tag in final
        if toks:
            corpus.tokens.append(toks), corpus.tags.append(tags)
            corpus.sources.append(f"{path}:{lineno}")
    return corpus


def take_first_tokens(corpus: TokenCorpus, max_tokens: int | None, start: int = 0
                      ) -> tuple[TokenCorpus, int]:
    """Whole sentences from sentence ``start`` on, as many as fit in ``max_tokens``.

    This is the paper's "first 150,000 tokens" rule; a sentence is never cut.
    Returns the corpus and the index of the first sentence not taken.
    """
    if max_tokens is None:
        return corpus.subset(range(start, len(corpus))), len(corpus)
    total, end = 0, start
    while end < len(corpus) and total + len(corpus.tokens[end]) <= max_tokens:
        total += len(corpus.tokens[end])
        end += 1
    return corpus.subset(range(start, end)), end


def read_labeled_csv(path, label_column: int = 0, text_column: int = 1,
                     pair_column: int | None = None, header: bool = False,
                     label_map: dict | None = None, delimiter: str = ",") -> SentenceCorpus:
    """Read a CSV of labeled sentences, such as ``"1","a sentence"`` lines.

    Quoted fields may span lines. ``label_map`` maps raw label strings to the
    labels used (for example ``{"1": "positive", "-1": "negative"}``); a label
    not in the map is an error naming the line.
    """
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    corpus = SentenceCorpus(pairs=[] if pair_column is not None else None)
    need = max(label_column, text_column, pair_column or 0) + 1
    end = 0
    for i, row in enumerate(reader):
        # line_num is the last line read; a quoted field may span lines, so name the first
        lineno, end = end + 1, reader.line_num
        if header and i == 0:
            continue
        if not row or all(not f.strip() for f in row):
            continue
        if len(row) < need:
            raise DataFormatError(f"{path}:{lineno}: expected at least {need} comma-separated "
                                  f"fields (label, text), found {len(row)}: {row!r}")
        label = row[label_column].strip()
        if label_map is not None:
            if label not in label_map:
                raise DataFormatError(f"{path}:{lineno}: label {label!r} is not one of "
                                      f"{sorted(label_map)}")
            label = label_map[label]
        sentence = " ".join(row[text_column].split())
        if not sentence:
            raise DataFormatError(f"{path}:{lineno}: empty text field")
        corpus.texts.append(sentence)
        corpus.labels.append(label)
        if pair_column is not None:
            corpus.pairs.append(" ".join(row[pair_column].split()))
        corpus.sources.append(f"{path}:{lineno}")
    return corpus


def read_vader_ratings(path) -> SentenceCorpus:
    """Read VADER's ground-truth file: ``id<TAB>mean rating in [-4, 4]<TAB>text`` per line.

    Labels are the float ratings; tasks built on it turn them into classes or keep them
    for regression.
    """
    corpus = SentenceCorpus()
    for lineno, line in enumerate(_lines(path), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 3:
            raise DataFormatError(f"{path}:{lineno}: expected 'id<TAB>rating<TAB>text', "
                                  f"found {line[:80]!r}")
        try:
            rating = float(parts[1])
        except ValueError:
            raise DataFormatError(f"{path}:{lineno}: rating {parts[1]!r} is not a number") from None
        text = " ".join("\t".join(parts[2:]).split())
        if not text:
            raise DataFormatError(f"{path}:{lineno}: empty text field")
        corpus.texts.append(text)
        corpus.labels.append(rating)
        corpus.sources.append(f"{path}:{lineno}")
    return corpus


# GLUE's TSV files: which header names hold the first text, the second text and the label.
GLUE_COLUMNS: dict[str, tuple[str, str | None, str]] = {
    "sst-2": ("sentence", None, "label"),
    "mrpc": ("#1 String", "#2 String", "Quality"),
    "mnli": ("sentence1", "sentence2", "gold_label"),
    "qnli": ("question", "sentence", "label"),
    "qqp": ("question1", "question2", "is_duplicate"),
    "rte": ("sentence1", "sentence2", "label"),
    "sts-b": ("sentence1", "sentence2", "score"),
}


def _table_rows(path, fmt: str):
    """``(line number, {column: value})`` of a CSV, TSV or JSON Lines file (a header row names the
    columns of CSV and TSV); ``fmt`` ``auto`` goes by the suffix."""
    import csv
    import io as _io
    import json

    path = Path(path)
    if fmt == "auto":
        fmt = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(
            path.suffix.lower())
        if fmt is None:
            raise DataFormatError(f"{path}: cannot tell the format from the suffix {path.suffix!r}; "
                                  "name the file .csv, .tsv or .jsonl, or give format: csv, tsv or jsonl")
    text = read_text(path)
    if fmt == "jsonl":
        for lineno, line in enumerate(text.split("\n"), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataFormatError(f"{path}:{lineno}: not a JSON object ({e.msg})") from None
                if not isinstance(row, dict):
                    raise DataFormatError(f"{path}:{lineno}: expected a JSON object per line, found "
                                          f"{type(row).__name__}")
                yield lineno, row
        return
    if fmt not in ("csv", "tsv"):
        raise DataFormatError(f"{path}: format must be csv, tsv, jsonl or auto, not {fmt!r}")
    reader = csv.reader(_io.StringIO(text, newline=""), delimiter="," if fmt == "csv" else "\t")
    header = None
    for row in reader:
        lineno = reader.line_num
        if not any(c.strip() for c in row):
            continue
        if header is None:
            header = [c.strip() for c in row]
            continue
        if len(row) != len(header):
            raise DataFormatError(f"{path}:{lineno}: {len(row)} fields but the header has {len(header)} "
                                  f"({header}); quote fields that contain the delimiter")
        yield lineno, dict(zip(header, row))


def read_sentence_table(path, text: str = "text", label: str = "label", pair: str | None = None,
                        format: str = "auto") -> SentenceCorpus:
    """Sentences (or pairs) with a label each from a CSV, TSV (with a header row) or JSON Lines
    file, by column name: any sentence classification or regression data of a user's.

    Every row must have a non-empty text (and pair) and a label; a missing column is named with
    the columns the file has. Labels are kept as text (numbers for regression are converted by
    the task)."""
    corpus = SentenceCorpus(pairs=[] if pair else None)
    for lineno, row in _table_rows(path, format):
        missing = [c for c in (text, pair, label) if c and c not in row]
        if missing:
            raise DataFormatError(f"{path}:{lineno}: no column(s) {missing}; the file has {sorted(row)} "
                                  "(name the columns with text:, label: and pair:)")
        for c in (text, pair, label):
            if c and (row[c] is None or not str(row[c]).strip()):
                raise DataFormatError(f"{path}:{lineno}: the field {c!r} is empty")
        corpus.texts.append(str(row[text]).strip())
        if pair:
            corpus.pairs.append(str(row[pair]).strip())
        corpus.labels.append(str(row[label]).strip())
        corpus.sources.append(f"{path}:{lineno}")
    return corpus


def read_glue_tsv(path, task: str, skip_malformed: bool = False) -> SentenceCorpus:
    """Read one of GLUE's ``train.tsv`` / ``dev.tsv`` files by its header.

    Fields are tab-separated with no quoting (as GLUE distributes them). A row with
    too few fields is an error naming the line, unless ``skip_malformed`` (QQP's
    train file has a handful of such rows).
    """
    task = task.lower()
    if task not in GLUE_COLUMNS:
        raise DataFormatError(f"{path}: unknown GLUE task {task!r}; known: {sorted(GLUE_COLUMNS)}")
    lines = _lines(path)
    if not lines or not lines[0].strip():
        raise DataFormatError(f"{path}:1: empty file, expected a GLUE header line")
    header = lines[0].split("\t")
    text_col, pair_col, label_col = GLUE_COLUMNS[task]
    try:
        ti = header.index(text_col)
        pi = header.index(pair_col) if pair_col else None
        # MNLI has label1..label5 before gold_label; the last matching column is the gold one
        li = len(header) - 1 - header[::-1].index(label_col)
    except ValueError:
        raise DataFormatError(
            f"{path}:1: header {header!r} lacks the columns {[c for c in (text_col, pair_col, label_col) if c]} "
            f"of GLUE's {task} files") from None
    corpus = SentenceCorpus(pairs=[] if pi is not None else None)
    need = max(ti, pi or 0, li) + 1
    for lineno, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        f = line.split("\t")
        empty = [header[i] for i in (ti, pi) if i is not None and i < len(f) and not f[i].strip()]
        if len(f) < need or empty:
            if skip_malformed:
                continue
            found = (f"the field {empty[0]!r} is empty" if len(f) >= need else
                     f"expected {len(header)} tab-separated fields as in the header, found {len(f)}")
            raise DataFormatError(f"{path}:{lineno}: {found} (pass skip_malformed=True to skip such rows)")
        label = f[li].strip()
        if task == "sts-b":
            try:
                label = float(label)
            except ValueError:
                raise DataFormatError(f"{path}:{lineno}: score {label!r} is not a number") from None
        corpus.texts.append(f[ti].strip())
        if pi is not None:
            corpus.pairs.append(f[pi].strip())
        corpus.labels.append(label)
        corpus.sources.append(f"{path}:{lineno}")
    return corpus
