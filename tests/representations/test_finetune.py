"""redundancy.representations.finetune on the tiny models: caching, determinism, regression, loading."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import redundancy.representations.finetune as ft
from redundancy.representations.activations import sentence_activations
from redundancy.representations.finetune import FineTuneConfig, fine_tune, finetune_meta, load_finetuned
from redundancy.representations.models import load_model

GOOD = "big red blue green song book house tree bird".split()
BAD = "slow small pen mat dog cat it they".split()
FAST = dict(epochs=1, batch_size=8, progress=False)


def _sentences(n, seed):
    """n short sentences; class "pos" if most content words come from GOOD."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        pool = GOOD if label == "pos" else BAD
        words = ["the"] + list(rng.choice(pool, size=int(rng.integers(2, 6)))) + ["is", "here"]
        items.append((" ".join(words), label))
    return items


@pytest.fixture(scope="module")
def sentence_items():
    return {"train": _sentences(40, 0), "dev": _sentences(10, 1), "test": _sentences(10, 2)}


@pytest.fixture
def cls_task(sentence_task_factory, sentence_items):
    return sentence_task_factory(sentence_items["train"], dev=sentence_items["dev"], test=sentence_items["test"],
                                 name="toy-sst")


@pytest.fixture
def reg_task(sentence_task_factory, sentence_items):
    def score(items):
        return [(t, float(len(t.split())) / 3.0) for t, _ in items]

    return sentence_task_factory(score(sentence_items["train"]), dev=score(sentence_items["dev"]),
                                 test=score(sentence_items["test"]), name="toy-sts", regression=True)


def _weights(folder):
    from safetensors.torch import load_file

    files = sorted(Path(folder).glob("*.safetensors"))
    assert files, f"no safetensors weights in {folder}"
    out = {}
    for f in files:
        out.update(load_file(str(f)))
    return out


def test_fine_tune_writes_a_model_folder(tiny_bert, cls_task, isolated_cache):
    folder = fine_tune(tiny_bert, cls_task, **FAST)
    assert (folder / "meta.json").is_file()
    assert (folder / "config.json").is_file()
    assert str(folder).startswith(str(isolated_cache / "finetuned" / "toy-sst"))
    meta = finetune_meta(folder)
    assert meta["steps"] == math.ceil(40 / 8) == len(meta["loss"])
    assert meta["train_examples"] == 40
    assert meta["labels"] == ["neg", "pos"]
    assert meta["finetune"]["epochs"] == 1 and meta["finetune"]["batch_size"] == 8
    assert 0.0 <= meta["scores"]["dev"]["accuracy"] <= 1.0
    assert all(np.isfinite(meta["loss"]))
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(str(folder)).num_labels == 2
    # nothing half-written is left next to it
    assert not [p for p in folder.parent.iterdir() if ".tmp-" in p.name]


def test_fine_tune_changes_the_encoder(tiny_bert, cls_task):
    folder = fine_tune(tiny_bert, cls_task, learning_rate=1e-3, **FAST)
    base = _weights(tiny_bert)
    tuned = _weights(folder)
    key = "embeddings.word_embeddings.weight"
    tuned_key = next(k for k in tuned if k.endswith(key))
    assert tuned[tuned_key].shape == base[key].shape
    assert not torch.equal(tuned[tuned_key], base[key])
    assert any(k.startswith("classifier") for k in tuned)


def test_second_call_is_cached(tiny_bert, cls_task, monkeypatch):
    first = fine_tune(tiny_bert, cls_task, **FAST)
    mtime = os.stat(first / "meta.json").st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("fine-tuned again instead of reusing the saved model")

    monkeypatch.setattr(ft, "set_seed", boom)
    second = fine_tune(tiny_bert, cls_task, **FAST)
    assert second == first
    assert os.stat(second / "meta.json").st_mtime_ns == mtime
    # other settings are another model: it is trained (and here fails)
    with pytest.raises(AssertionError, match="fine-tuned again"):
        fine_tune(tiny_bert, cls_task, seed=7, **FAST)


def test_same_seed_gives_identical_weights(tiny_bert, cls_task, tmp_path, monkeypatch):
    a = fine_tune(tiny_bert, cls_task, **FAST)
    monkeypatch.setenv("REDUNDANCY_CACHE", str(tmp_path / "fresh-cache"))
    b = fine_tune(tiny_bert, cls_task, **FAST)
    assert a != b and str(b).startswith(str(tmp_path / "fresh-cache"))
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert finetune_meta(a)["loss"] == finetune_meta(b)["loss"]
    # the comparison can fail: another seed gives other weights
    c = fine_tune(tiny_bert, cls_task, seed=1, **FAST)
    wc = _weights(c)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


def test_regression_task(tiny_bert, reg_task):
    folder = fine_tune(tiny_bert, reg_task, **FAST)
    meta = finetune_meta(folder)
    assert meta["regression"] is True
    assert "pearson" in meta["scores"]["dev"]
    config = json.loads((folder / "config.json").read_text())
    assert config["problem_type"] == "regression"
    lm = load_finetuned(folder)
    assert lm.model.config.num_labels == 1
    enc = lm.tokenizer(["the big red house"], return_tensors="pt")
    with torch.no_grad():
        assert lm.model(**enc).logits.shape == (1, 1)


def test_load_finetuned(tiny_bert, cls_task):
    folder = fine_tune(tiny_bert, cls_task, **FAST)
    base = load_model(tiny_bert)
    lm = load_finetuned(folder)
    assert lm.identity != base.identity
    assert lm.identity["weights"] != base.identity["weights"]
    assert lm.identity["finetuned_from"] == base.identity
    assert lm.name == f"{tiny_bert}+ft-toy-sst"
    assert lm.n_layers == 3 and lm.hidden_size == 16 and lm.cls_position == "first"
    assert lm.extra["finetune"]["steps"] == 5
    assert type(lm.model).__name__ == "BertForSequenceClassification"
    # the [CLS] vectors are those of the fine-tuned encoder, not of the base
    texts = ["the big red house", "a slow small dog is here"]
    out = sentence_activations(lm, texts, progress=False)
    for i, t in enumerate(texts):
        enc = lm.tokenizer(t, return_tensors="pt")
        with torch.no_grad():
            hs = torch.stack(lm.model.bert(**enc, output_hidden_states=True).hidden_states)[:, 0]
        np.testing.assert_allclose(out[i], hs[:, 0].numpy(), atol=1e-5, rtol=0)
    base_out = sentence_activations(base, texts, progress=False)
    assert np.abs(out[:, 1:] - base_out[:, 1:]).max() > 1e-6


def test_fine_tune_xlnet_keeps_left_padding(tiny_xlnet, cls_task):
    folder = fine_tune(tiny_xlnet, cls_task, **FAST)
    lm = load_finetuned(folder)
    assert lm.cls_position == "last"
    assert lm.tokenizer.padding_side == "left"


def test_max_train_limits_examples(tiny_bert, cls_task):
    folder = fine_tune(tiny_bert, cls_task, max_train=16, **FAST)
    meta = finetune_meta(folder)
    assert meta["train_examples"] == 16 and meta["steps"] == 2
    assert folder != fine_tune(tiny_bert, cls_task, max_train=8, **FAST)


def test_token_task_is_refused(tiny_bert, token_task_factory):
    task = token_task_factory([[("the", "DT"), ("cat", "NN")], [("a", "DT"), ("dog", "NN")]])
    with pytest.raises(ValueError, match="sentence tasks"):
        fine_tune(tiny_bert, task, **FAST)


def test_invalid_settings():
    with pytest.raises(ValueError, match="invalid"):
        FineTuneConfig(epochs=0)
    with pytest.raises(ValueError, match="invalid"):
        FineTuneConfig(batch_size=0)


def test_killed_fine_tuning_resumes_to_identical_weights(tiny_bert, cls_task, tmp_path, monkeypatch, capsys):
    """A run killed mid-way resumes from its last checkpoint (weights, optimizer, scheduler,
    both random streams, position in the epoch) and ends exactly where an uninterrupted run
    ends; the checkpoint is removed once the model is saved."""
    settings = dict(epochs=2, batch_size=8, progress=False)  # 10 steps, across an epoch boundary
    monkeypatch.setenv("REDUNDANCY_CACHE", str(tmp_path / "whole"))
    whole = fine_tune(tiny_bert, cls_task, **settings)
    monkeypatch.setenv("REDUNDANCY_CACHE", str(tmp_path / "killed"))
    monkeypatch.setenv("REDUNDANCY_FAULT", "finetune-step:7:raise")  # stopped after step 7
    with pytest.raises(KeyboardInterrupt):
        fine_tune(tiny_bert, cls_task, checkpoint_every_steps=3, **settings)
    monkeypatch.delenv("REDUNDANCY_FAULT")
    ckpts = list((tmp_path / "killed").rglob(".*.checkpoint.pt"))
    assert len(ckpts) == 1 and not list((tmp_path / "killed").rglob("meta.json"))
    resumed = fine_tune(tiny_bert, cls_task, checkpoint_every_steps=3, **settings)
    assert "resuming at step 6 of 10" in capsys.readouterr().out
    assert not ckpts[0].exists()
    wa, wb = _weights(whole), _weights(resumed)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert finetune_meta(whole)["loss"] == finetune_meta(resumed)["loss"]
    assert finetune_meta(whole)["scores"] == finetune_meta(resumed)["scores"]


def _whole_and_stopped(tiny_bert, cls_task, tmp_path, monkeypatch, settings):
    """A complete fine-tune, and the checkpoint of the same run stopped after step 3 (in
    another cache)."""
    monkeypatch.setenv("REDUNDANCY_CACHE", str(tmp_path / "whole"))
    whole = fine_tune(tiny_bert, cls_task, **settings)
    monkeypatch.setenv("REDUNDANCY_CACHE", str(tmp_path / "stopped"))
    monkeypatch.setenv("REDUNDANCY_FAULT", "finetune-step:3:raise")
    with pytest.raises(KeyboardInterrupt):
        fine_tune(tiny_bert, cls_task, checkpoint_every_steps=2, **settings)
    monkeypatch.delenv("REDUNDANCY_FAULT")
    return whole, next((tmp_path / "stopped").rglob(".*.checkpoint.pt"))


def test_damaged_checkpoint_is_discarded_and_training_restarts(tiny_bert, cls_task, tmp_path, monkeypatch, capsys):
    settings = dict(epochs=1, batch_size=8, progress=False)
    whole, ckpt = _whole_and_stopped(tiny_bert, cls_task, tmp_path, monkeypatch, settings)
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # truncated, as by a full disk
    again = fine_tune(tiny_bert, cls_task, **settings)
    assert "unreadable" in capsys.readouterr().out
    wa, wb = _weights(whole), _weights(again)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def _flip_byte(path: Path, at: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_checkpoint_edited_in_place_is_not_resumed_from(tiny_bert, cls_task, tmp_path, monkeypatch, capsys):
    """A byte changed inside a checkpoint (same size, still loadable by torch) fails its recorded
    checksum: training starts over instead of resuming from damaged weights."""
    settings = dict(epochs=1, batch_size=8, progress=False)
    whole, ckpt = _whole_and_stopped(tiny_bert, cls_task, tmp_path, monkeypatch, settings)
    size = ckpt.stat().st_size
    _flip_byte(ckpt, size // 2)
    assert ckpt.stat().st_size == size
    again = fine_tune(tiny_bert, cls_task, **settings)
    out = capsys.readouterr().out
    assert "checksum" in out and "starting over" in out and "resuming" not in out
    wa, wb = _weights(whole), _weights(again)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_damaged_fine_tuned_weights_are_never_used(tiny_bert, cls_task, tmp_path, monkeypatch, capsys):
    """A byte flipped in a saved model's weights is found on the next call (size and checksum
    recorded in meta.json): the model is named, removed and trained again, to the same weights."""
    monkeypatch.setenv("REDUNDANCY_CACHE", str(tmp_path / "cache"))
    first = fine_tune(tiny_bert, cls_task, **FAST)
    good = {k: v.clone() for k, v in _weights(first).items()}  # load_file maps the file: copy
    recorded = finetune_meta(first)["files"]
    assert "model.safetensors" in recorded and "config.json" in recorded
    weights = first / "model.safetensors"
    _flip_byte(weights, weights.stat().st_size // 2)
    assert any(not torch.equal(good[k], v) for k, v in _weights(first).items())  # really damaged
    again = fine_tune(tiny_bert, cls_task, **FAST)
    out = capsys.readouterr().out
    assert again == first and "model.safetensors" in out and "damaged" in out and "trained again" in out
    for k, v in _weights(again).items():
        assert torch.equal(good[k], v), k
    assert fine_tune(tiny_bert, cls_task, **FAST) == first and "damaged" not in capsys.readouterr().out


def test_full_disk_while_saving_names_the_folder(tiny_bert, cls_task, tmp_path, monkeypatch):
    from transformers import PreTrainedModel

    monkeypatch.setenv("REDUNDANCY_CACHE", str(tmp_path / "cache"))

    def full(self, *a, **k):
        raise RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                           "message: \"No space left on device\" })")  # what safetensors raises

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", full)
    with pytest.raises(OSError, match="no space left") as info:
        fine_tune(tiny_bert, cls_task, **FAST)
    assert str(tmp_path / "cache") in str(info.value) and "REDUNDANCY_CACHE" in str(info.value)
    assert not list((tmp_path / "cache").rglob("*.tmp-*"))  # nothing half-written left behind
