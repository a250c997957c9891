"""Bad input, end to end: every kind of mistake a user can make, the error it gets, and a
check that the cache is left as it was.

Each :class:`Case` makes its bad input in a scratch folder (with a tiny random BERT saved
there, so that nothing depends on a download) and runs the library the way a user would.
:func:`check_cases` runs them all and returns the table the book's troubleshooting page
shows: the input, the error class, its message, whether it was the expected clear error,
and whether the cache (a stored activation entry and its files) is unchanged. The test
suite runs the same cases, so the page and the tests cannot drift apart.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import DataError, DataFormatError, ModelNotFoundError, SequenceTooLongError, UnknownTaskError

__all__ = ["Case", "CASES", "check_cases", "tiny_model"]

POS = "the DT\ncat NN\nsat VBD\n\na DT\ndog NN\nran VBD\n\n"


@dataclass
class Case:
    """One kind of bad input."""

    name: str                       # what the user did wrong
    example: str                    # the input, in a few words
    error: type                     # the error class it must raise
    phrases: tuple                  # words its message must contain (what, where, what to do)
    run: Callable[[Path], object]   # makes the input under the scratch folder and runs it
    notes: str = field(default="")


def tiny_model(folder: Path, max_length: int = 24) -> str:
    """A 2-layer, 16-wide random BERT with a word-level vocabulary, saved in ``folder``."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = Path(folder)
    if (folder / "config.json").exists():
        return str(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "cat", "dog", "sat", "ran", "word"]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True,
                            model_max_length=max_length)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=max_length)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def _pos_files(d: Path, train=POS, dev=POS, test=POS) -> dict:
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, text in (("train", train), ("dev", dev), ("test", test)):
        (d / f"{split}.txt").write_text(text)
        out[split] = str(d / f"{split}.txt")
    return out


def _malformed(tmp):
    from ..data.tasks import load_task

    return load_task("pos", **_pos_files(tmp / "malformed", train=POS + "the DT\ncat\n\n"))


def _empty_split(tmp):
    from ..data.tasks import load_task

    return load_task("pos", **_pos_files(tmp / "empty", dev=""))


def _one_class(tmp):
    from ..data.tasks import load_task

    one = "the DT\na DT\n\nthe DT\n\n"
    return load_task("pos", **_pos_files(tmp / "one-class", train=one, dev=one, test=one))


def _notebook_name(tmp):
    from ..paper.pages import check_parameters

    # what papermill leaves in the kernel for `-p treshold 0.3`
    return check_parameters({"config": "../configs/default.yml", "treshold": 0.3},
                            {"config": "../configs/default.yml", "thresholds": [0.0, 0.3]})


def _notebook_type(tmp):
    from ..paper.pages import check_parameters

    return check_parameters({"config": "../configs/default.yml", "thresholds": "0.3"},
                            {"config": "../configs/default.yml", "thresholds": [0.0, 0.3]})


def _threshold(tmp):
    import numpy as np

    from ..methods.clustering import CorrelationClustering

    return CorrelationClustering(threshold=1.5).fit(np.random.default_rng(0).standard_normal((20, 4)))


def _no_model(tmp):
    from ..representations.models import load_model

    return load_model(str(tmp / "no-such-model"))


def _slow_tokenizer(tmp):
    from transformers import BertConfig, BertModel, ByT5Tokenizer

    from ..representations.models import load_model

    d = tmp / "slow-tokenizer-model"
    ByT5Tokenizer().save_pretrained(d)  # a tokenizer that exists only in Python: no word ids
    BertModel(BertConfig(vocab_size=400, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(d)
    return load_model(str(d))


def _too_long(tmp):
    from ..representations.activations import extract
    from ..representations.models import load_model
    from ..data.tasks import load_task

    lm = load_model(tiny_model(tmp / "tiny-model", max_length=24))
    long = "".join("the DT\n" for _ in range(40)) + "\n"
    task = load_task("pos", **_pos_files(tmp / "long", train=POS + long))
    return extract(lm, task, "train", progress=False)


def _bad_config(tmp):
    from ..representations.runs import load_config

    (tmp / "run.yml").write_text("name: mine\nmodels: [minilm]\ntasks: {ptb-pos: {}}\nthreshold: 0.3\n")
    return load_config(tmp / "run.yml")


def _unknown_task(tmp):
    from ..data.tasks import load_task

    return load_task("ptb-poss")


CASES = [
    Case("a malformed data file", "a CoNLL line with a word but no tag", DataFormatError,
         ("malformed/train.txt:", "expected a token and its tag"), _malformed),
    Case("an empty split", "an empty dev file", DataError,
         ("<scratch>/empty/dev.txt", "no tokens", "empty"), _empty_split),
    Case("a task with one class", "every training word tagged DT", DataError,
         ("training split has 1 class",), _one_class),
    Case("an unknown notebook parameter", "papermill -p treshold 0.3", NameError,
         ("treshold", "thresholds"), _notebook_name),
    Case("a notebook parameter of the wrong type", "papermill -p thresholds '\"0.3\"'", TypeError,
         ("thresholds", "list"), _notebook_type),
    Case("a threshold out of range", "CorrelationClustering(threshold=1.5)", ValueError, ("threshold", "1.5"),
         _threshold),
    Case("a model path that does not exist", "load_model('.../no-such-model')",
         ModelNotFoundError, ("no-such-model",), _no_model),
    Case("a model whose tokenizer is not a fast tokenizer", "a folder with ByT5's Python-only tokenizer",
         ModelNotFoundError, ("fast tokenizer", "ByT5Tokenizer"),
         _slow_tokenizer),
    Case("a sentence longer than the model's maximum", "a 40-word sentence, model limit 24 sub-words",
         SequenceTooLongError, ("long/train.txt", "truncate=True"),
         _too_long),
    Case("an unknown key in a run configuration", "threshold: 0.3 in run.yml", ValueError,
         ("run.yml", "threshold"), _bad_config),
    Case("an unknown task name", "load_task('ptb-poss')", UnknownTaskError,
         ("ptb-poss", "ptb-pos"), _unknown_task),
]


def _snapshot(cache: Path) -> dict:
    """The cache's contents: every file but lock files and the memo of model weight hashes
    (a lock taken and a model identified are not damage), with size and sha256."""
    return {str(f.relative_to(cache)): (f.stat().st_size, hashlib.sha256(f.read_bytes()).hexdigest())
            for f in sorted(cache.rglob("*"))
            if f.is_file() and not f.name.endswith((".lock", ".build")) and f.name != "model-hashes.json"}


def _seed_cache(scratch: Path) -> None:
    """One real stored entry, so that "the cache is intact" has something to lose."""
    from ..representations.activations import extract
    from ..representations.models import load_model
    from ..data.tasks import load_task

    lm = load_model(tiny_model(scratch / "tiny-model"))
    extract(lm, load_task("pos", **_pos_files(scratch / "good")), "train", progress=False)


def check_cases(scratch, cases=CASES):
    """Run every case in ``scratch`` (its cache is ``scratch/cache``) and return a DataFrame:
    case, example, error, message, clear (the expected class and phrases), cache_intact."""
    import warnings

    import pandas as pd

    scratch = Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    old = os.environ.get("REDUNDANCY_CACHE")
    os.environ["REDUNDANCY_CACHE"] = str(scratch / "cache")
    rows = []
    try:
        _seed_cache(scratch)
        for case in cases:
            before = _snapshot(scratch / "cache")
            err = None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    case.run(scratch)
                except Exception as e:  # noqa: BLE001 - the point is to see which error comes
                    err = e
            after = _snapshot(scratch / "cache")
            msg = "" if err is None else str(err).replace(str(scratch), "<scratch>")
            rows.append({"case": case.name, "example": case.example,
                         "error": "no error" if err is None else type(err).__name__, "message": msg,
                         "clear": err is not None and isinstance(err, case.error)
                         and all(p.replace(str(scratch), "<scratch>") in msg for p in case.phrases),
                         "cache_intact": before == after})
    finally:
        if old is None:
            os.environ.pop("REDUNDANCY_CACHE", None)
        else:
            os.environ["REDUNDANCY_CACHE"] = old
    return pd.DataFrame(rows)
