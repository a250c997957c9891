"""Shared fixtures: tiny randomly initialised models built on the spot (no download),
a private cache folder for every test, and helpers that build tasks from Python lists.

Nothing here touches the network: ``HF_HUB_OFFLINE=1`` is set before anything
imports ``huggingface_hub`` (it reads the variable once, at import).
"""

from __future__ import annotations

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# --------------------------------------------------------------------------------------
# vocabularies of the tiny models

WORDS = ("the a cat dog sat on mat ran fast slow big small house tree bird sings song book "
         "read write pen red blue green and or but is was are were he she it they we you "
         "i of to in").split()
# pieces so that words such as "cats", "walked", "unhappy", "playful", "xyzzy" split
PIECES = ["##s", "##ing", "##ed", "##er", "##ly", "un", "##happy", "play", "##ful", "jump", "walk"]
LETTERS = list("abcdefghijklmnopqrstuvwxyz")
SUBWORD_LETTERS = ["##" + c for c in LETTERS]

BERT_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
XLNET_SPECIAL = ["<pad>", "<unk>", "<cls>", "<sep>", "<mask>"]

#: the tiny BERT's limit in tokens (special tokens included)
TINY_BERT_MAX_LENGTH = 40


def _vocab(special):
    seen, out = set(), []
    for w in list(special) + WORDS + PIECES + LETTERS + SUBWORD_LETTERS:
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


# --------------------------------------------------------------------------------------
# cache isolation

@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """A cache for session-scoped work (fixtures run before the per-test cache exists)."""
    old = {k: os.environ.get(k) for k in ("REDUNDANCY_CACHE", "HF_HUB_OFFLINE")}
    os.environ["REDUNDANCY_CACHE"] = str(tmp_path_factory.mktemp("session-cache"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """The models are tiny: one thread is as fast, and immune to OpenMP spin-waits that make
    a 2-thread backward pass hundreds of times slower when another process shares the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own empty cache folder (``REDUNDANCY_CACHE``) and no hub."""
    cache = tmp_path / "redundancy-cache"
    monkeypatch.setenv("REDUNDANCY_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    return cache


# --------------------------------------------------------------------------------------
# tiny models

@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    """A 2-layer, 16-wide BERT with a WordPiece vocabulary, saved with save_pretrained."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = tmp_path_factory.mktemp("tiny-bert")
    vocab = _vocab(BERT_SPECIAL)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # transformers 5 builds the fast tokenizer from a vocabulary dict
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True,
                            model_max_length=TINY_BERT_MAX_LENGTH)
    assert tok.tokenize("cats") == ["cat", "##s"]  # the vocabulary really splits words
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=TINY_BERT_MAX_LENGTH)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def _xlnet_style_tokenizer(vocab):
    """A fast tokenizer that behaves like XLNet's: ``A <sep> <cls>``, ``A <sep> B <sep> <cls>``,
    padding on the left."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    index = {w: i for i, w in enumerate(vocab)}
    tk = Tokenizer(models.WordPiece(index, unk_token="<unk>", continuing_subword_prefix="##"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(
        single="$A:0 <sep>:0 <cls>:2",
        pair="$A:0 <sep>:0 $B:1 <sep>:1 <cls>:2",
        special_tokens=[("<sep>", index["<sep>"]), ("<cls>", index["<cls>"])])
    tk.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=tk, cls_token="<cls>", sep_token="<sep>",
                                   pad_token="<pad>", unk_token="<unk>", mask_token="<mask>",
                                   padding_side="left")


@pytest.fixture(scope="session")
def tiny_xlnet(tmp_path_factory) -> str:
    """A 2-layer, 16-wide XLNet with an XLNet-like tokenizer (left padding, <cls> last)."""
    import torch
    from transformers import AutoTokenizer, XLNetConfig, XLNetModel

    path = tmp_path_factory.mktemp("tiny-xlnet")
    vocab = _vocab(XLNET_SPECIAL)
    tok = _xlnet_style_tokenizer(vocab)
    tok.save_pretrained(path)
    cfg_file = path / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text())
    if cfg.get("padding_side") != "left":  # make sure the reload pads on the left
        cfg["padding_side"] = "left"
        cfg_file.write_text(json.dumps(cfg, indent=2))
    config = XLNetConfig(vocab_size=len(vocab), d_model=16, n_layer=2, n_head=2, d_inner=32,
                         pad_token_id=0)
    torch.manual_seed(0)
    XLNetModel(config).save_pretrained(path)
    reloaded = AutoTokenizer.from_pretrained(str(path))
    assert reloaded.is_fast and reloaded.padding_side == "left"
    ids = reloaded("a", "b")["input_ids"]
    assert ids[-1] == reloaded.cls_token_id and ids[0] != reloaded.cls_token_id
    assert reloaded.tokenize("cats") == ["cat", "##s"]
    return str(path)


# --------------------------------------------------------------------------------------
# building tasks from Python lists

def make_token_task(train, dev=None, test=None, name="toy-tokens", unseen_labels="error"):
    """A token task from lists of sentences, each a list of (word, tag) pairs.

    ``dev`` and ``test`` default to ``train``.
    """
    from redundancy.data.readers import TokenCorpus
    from redundancy.data.tasks import TaskData, _finalise

    def corpus(sents, split):
        return TokenCorpus(tokens=[[w for w, _ in s] for s in sents], tags=[[t for _, t in s] for s in sents],
                           sources=[f"{name}/{split}:{i + 1}" for i in range(len(sents))])

    splits = {"train": corpus(train, "train"), "dev": corpus(dev if dev is not None else train, "dev"),
              "test": corpus(test if test is not None else train, "test")}
    return _finalise(TaskData(name, "token", splits, source="test lists"), unseen_labels)


def make_sentence_task(train, dev=None, test=None, name="toy-sentences", regression=False,
                       unseen_labels="error"):
    """A sentence task from lists of (text, label) or (text, pair, label) tuples.

    ``dev`` and ``test`` default to ``train``.
    """
    from redundancy.data.readers import SentenceCorpus
    from redundancy.data.tasks import TaskData, _finalise

    def corpus(items, split):
        items = list(items)
        has_pair = len(items[0]) == 3
        return SentenceCorpus(texts=[x[0] for x in items], labels=[x[-1] for x in items],
                              pairs=[x[1] for x in items] if has_pair else None,
                              sources=[f"{name}/{split}:{i + 1}" for i in range(len(items))])

    splits = {"train": corpus(train, "train"), "dev": corpus(dev if dev is not None else train, "dev"),
              "test": corpus(test if test is not None else train, "test")}
    return _finalise(TaskData(name, "sentence", splits, regression=regression, source="test lists"),
                     unseen_labels)


@pytest.fixture
def token_task_factory():
    return make_token_task


@pytest.fixture
def sentence_task_factory():
    return make_sentence_task


# --------------------------------------------------------------------------------------
# a tiny run (model x tasks) for the notebooks and the sections end to end

TINY_WORDS = ["the/DT", "cat/NN", "sat/VBD", "a/DT", "dog/NN", "ran/VBD", "fast/RB", "red/JJ", "book/NN", "was/VBD"]


def _tiny_run(tmp: Path, tiny_bert: str) -> Path:
    """A tiny run: the tiny BERT, a POS task and an SST-2 folder of a few sentences each."""
    import yaml

    rng = __import__("random").Random(0)
    pos = tmp / "pos"
    pos.mkdir()
    for split, n in (("train", 60), ("dev", 20), ("test", 20)):
        lines = []
        for _ in range(n):
            ws = [rng.choice(TINY_WORDS) for _ in range(rng.randint(3, 7))]
            lines.append("\n".join(w.replace("/", " ") for w in ws) + "\n")
        (pos / f"{split}.txt").write_text("\n".join(lines))
    glue = tmp / "SST-2"
    glue.mkdir()
    rows = [("the cat sat", 1), ("the dog ran fast", 0), ("a big red book", 1), ("it was slow", 0),
            ("a fine cat", 1), ("the slow dog", 0)] * 8
    (glue / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{l}\n" for s, l in rows))
    (glue / "dev.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{l}\n" for s, l in rows[:12]))
    cfg = {"name": "tiny-book", "models": [tiny_bert], "results_dir": str(tmp / "results"),
           "finetune": {"epochs": 1, "batch_size": 8, "seed": 1},
           "tasks": {"pos": {"train": str(pos / "train.txt"), "dev": str(pos / "dev.txt"),
                             "test": str(pos / "test.txt")},
                     "sst-2": {"path": str(glue)}}}
    path = tmp / "tiny.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def tiny_run(tmp_path, tiny_bert) -> Path:
    """The configuration file of a tiny run, its data and results under ``tmp_path``."""
    return _tiny_run(tmp_path, tiny_bert)


# --------------------------------------------------------------------------------------
# planted damage to a cache entry (redundancy.cache's <key>.json + <key>.npz)

def _plant_damage(js: Path, npz: Path, plant: str, field: str) -> None:
    """Damage an array entry as a user or a failing disk would: ``edited metadata`` (valid JSON,
    a plausible number in ``field``: only the checksum tells), ``same-size npz edit`` (a byte
    flipped), ``truncated npz`` or ``record not JSON``."""
    import json

    if plant == "edited metadata":
        rec = json.loads(js.read_text())
        rec[field] = 0.999
        js.write_text(json.dumps(rec))
    elif plant == "same-size npz edit":
        raw = bytearray(npz.read_bytes())
        raw[-200] ^= 0xFF
        npz.write_bytes(bytes(raw))
    elif plant == "truncated npz":
        npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    elif plant == "record not JSON":
        js.write_text("{")
    else:
        raise ValueError(f"unknown damage {plant!r}")


@pytest.fixture
def plant_damage():
    return _plant_damage
