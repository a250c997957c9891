"""redundancy.representations.models: loading local folders, identities and the errors of bad names."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from redundancy.errors import ModelNotFoundError
from redundancy.representations.models import load_model
from redundancy.cache import file_sha256


def test_tiny_bert_shape_and_cls_first(tiny_bert):
    lm = load_model(tiny_bert)
    assert lm.n_layers == 3  # embeddings + 2 layers
    assert lm.hidden_size == 16
    assert lm.n_neurons == 48
    assert lm.cls_position == "first"
    assert lm.max_length == 40
    assert lm.tokenizer.is_fast
    assert not lm.model.training  # eval mode: no dropout in extraction
    # the model really has the saved weights: a forward pass gives 3 hidden-state layers
    enc = lm.tokenizer("the cat sat", return_tensors="pt")
    with torch.no_grad():
        hs = lm.model(**enc, output_hidden_states=True).hidden_states
    assert len(hs) == lm.n_layers and hs[0].shape[-1] == lm.hidden_size


def test_tiny_xlnet_cls_last(tiny_xlnet):
    lm = load_model(tiny_xlnet)
    assert lm.cls_position == "last"
    assert lm.n_layers == 3
    assert lm.hidden_size == 16
    assert lm.tokenizer.padding_side == "left"
    assert lm.max_length is None  # relative positions: no hard limit


def test_identity_hashes_weights_and_is_stable(tiny_bert, tiny_xlnet):
    a = load_model(tiny_bert)
    weights = a.identity["weights"]
    assert set(weights) == {"model.safetensors"}
    assert weights["model.safetensors"] == file_sha256(Path(tiny_bert) / "model.safetensors")
    assert len(weights["model.safetensors"]) == 64
    b = load_model(tiny_bert)
    assert b.identity == a.identity
    # a different model has a different identity
    x = load_model(tiny_xlnet)
    assert x.identity["weights"] != a.identity["weights"]
    assert x.identity["config"] != a.identity["config"]


def test_identity_follows_weights_not_folder(tiny_bert, tmp_path):
    """A copy under the same folder name has the same identity; changed weights do not."""
    copy = tmp_path / Path(tiny_bert).name
    shutil.copytree(tiny_bert, copy)
    assert load_model(str(copy), name="m").identity == load_model(tiny_bert, name="m").identity
    from transformers import BertModel

    m = BertModel.from_pretrained(str(copy))
    with torch.no_grad():
        m.embeddings.word_embeddings.weight[0, 0] += 1.0
    m.save_pretrained(copy)
    assert load_model(str(copy), name="m").identity["weights"] != load_model(tiny_bert, name="m").identity["weights"]


def test_missing_path_raises_naming_it():
    with pytest.raises(ModelNotFoundError, match=r"\./no/such/model"):
        load_model("./no/such/model")


def test_unknown_hub_name_offline_mentions_embedded_models(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as info:
        load_model("no-such-org/no-such-model-xyz")
    msg = str(info.value)
    assert "no-such-org/no-such-model-xyz" in msg
    assert "minilm" in msg


def test_a_bare_name_fails_at_once_when_the_hub_is_unreachable(monkeypatch):
    """`models: [mymodel]` with no such folder: one connection attempt, not the hub client's
    five retries (26 s offline); the hub is never asked."""
    import socket

    import transformers

    import redundancy.representations.models as M

    calls = []

    def refuse(*a, **k):
        calls.append(a)
        raise OSError("network unreachable")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained",
                        lambda *a, **k: pytest.fail("the hub was asked although it is unreachable"))
    M.hub_reachable.cache_clear()
    try:
        with pytest.raises(ModelNotFoundError, match="'mymodel': it is not a local folder"):
            M.load_model("mymodel")
        assert len(calls) == 1
    finally:
        M.hub_reachable.cache_clear()


def test_folder_without_config_raises(tmp_path):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "vocab.txt").write_text("[PAD]\n")
    with pytest.raises(ModelNotFoundError, match="config.json"):
        load_model(str(folder))


def test_broken_model_folder_raises_model_not_found(tiny_bert, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(tiny_bert, folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelNotFoundError, match="broken"):
        load_model(str(folder))


def test_slow_tokenizer_gives_clear_error(tiny_bert, monkeypatch):
    import transformers

    class SlowTokenizer:
        is_fast = False
        cls_token_id = 2

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: SlowTokenizer())
    with pytest.raises(ModelNotFoundError, match="fast tokenizer") as info:
        load_model(tiny_bert)
    assert "SlowTokenizer" in str(info.value)


def test_cuda_without_gpu_raises_value_error(tiny_bert, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="cuda"):
        load_model(tiny_bert, device="cuda")


def test_unknown_device_raises(tiny_bert):
    with pytest.raises(ValueError, match="device"):
        load_model(tiny_bert, device="tpu")


def test_embedded_name_is_case_insensitive_and_not_a_path(monkeypatch, tmp_path):
    """'MiniLM' resolves to the embedded model (through fetch), never to a hub lookup."""
    from redundancy.data import fetch
    from redundancy.representations import models

    target = tmp_path / "fake-minilm"
    called = []
    monkeypatch.setattr(fetch, "minilm_path", lambda: called.append(1) or target)
    path, local = models.resolve_model_path("MiniLM")
    assert called and path == str(target) and local is True


def test_hash_book_is_written_in_the_test_cache(tiny_bert, isolated_cache):
    load_model(tiny_bert)
    book = json.loads((isolated_cache / "model-hashes.json").read_text())
    assert list(book.values()) == [file_sha256(Path(tiny_bert) / "model.safetensors")]
