"""The activation store: memory-mapped arrays on disk, keyed by their configuration.

Each entry is a folder holding

* ``activations.npy``: float32 (or float16) array, tokens x layers x hidden
  (sentences x layers x hidden for sentence tasks), read with ``mmap_mode="r"``;
* ``labels.npy``: one label per row (class ids, or floats for regression);
* ``sentence_ids.npy``: which sentence of the split each row came from;
* ``meta.json``: the configuration that produced it (model identity, task, split,
  aggregation, dtype, ...), shapes, label vocabulary in its fixed order, library
  versions, wall time, and the size and checksum (xxh3-128; sha256 in entries written
  before 2026-11-22) of every array file.

An entry is written under a temporary name and renamed into place only when
complete, under a file lock, so a killed run never leaves a folder that a later run
reads as finished, and two runs on one cache do not write the same entry at once.
"""

from __future__ import annotations

import errno
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..config import CACHE_VERSION, cache_dir
from ..errors import CacheError
from ..provenance import library_versions
from ..cache import atomic_dir, clean_stale_tmp, damage, file_lock, file_record, write_json_atomic
from ..utils import read_columns, release_mapped, stable_hash

ARRAYS = ("activations.npy", "labels.npy", "sentence_ids.npy")


class Activations:
    """One stored activation array and its labels, opened without reading it into memory.

    Attributes
    ----------
    array : numpy.memmap, shape (rows, layers, hidden)
    labels : numpy.ndarray, shape (rows,)
    sentence_ids : numpy.ndarray, shape (rows,)
    meta : dict
    """

    def __init__(self, path: Path, verify: str = "size"):
        self.path = Path(path)
        meta_file = self.path / "meta.json"
        try:
            self.meta = json.loads(meta_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError) as e:
            raise CacheError(f"{meta_file}: missing or unreadable ({e}); delete {self.path} to recompute") from None
        check_files(self.path, self.meta, verify)
        self.array = np.load(self.path / "activations.npy", mmap_mode="r")
        self.labels = np.load(self.path / "labels.npy")
        self.sentence_ids = np.load(self.path / "sentence_ids.npy")

    # shape -------------------------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        return self.array.shape[0]

    @property
    def n_layers(self) -> int:
        return self.array.shape[1]

    @property
    def hidden_size(self) -> int:
        return self.array.shape[2]

    @property
    def n_neurons(self) -> int:
        return self.n_layers * self.hidden_size

    @property
    def label_names(self) -> list:
        return self.meta.get("label_names", [])

    def __repr__(self):
        c = self.meta.get("config", {})
        return (f"Activations({c.get('task')}/{c.get('split')}, model={c.get('model', {}).get('name')}, "
                f"rows={self.n_rows}, layers={self.n_layers}, hidden={self.hidden_size}, "
                f"dtype={self.array.dtype})")

    # reading -----------------------------------------------------------------------------
    def flat(self) -> np.ndarray:
        """All neurons as a (rows, layers*hidden) memory-mapped view (no copy, no read).

        Neuron ``l * hidden + h`` is unit ``h`` of layer ``l`` (layer 0 = embeddings)."""
        return self.array.reshape(self.n_rows, self.n_neurons)

    def layer(self, layer: int, dtype=np.float32, chunk: int = 8192) -> np.ndarray:
        """One layer as a (rows, hidden) array, read in chunks of rows."""
        return self.layers([layer], dtype=dtype, chunk=chunk)

    def layers(self, layers, dtype=np.float32, chunk: int = 8192) -> np.ndarray:
        """Layers concatenated in the given order: (rows, len(layers) * hidden)."""
        layers = [int(l) for l in layers]
        for l in layers:
            if not -self.n_layers <= l < self.n_layers:
                raise IndexError(f"layer {l} out of range: this model has layers 0..{self.n_layers - 1}")
        out = np.empty((self.n_rows, len(layers) * self.hidden_size), dtype=dtype)
        for s in range(0, self.n_rows, chunk):
            block = self.array[s:s + chunk][:, layers, :]
            out[s:s + chunk] = block.reshape(block.shape[0], -1)
            release_mapped(self.array[s:s + chunk])  # read once: the chunk's pages leave the resident set
        return out

    def neurons(self, index, dtype=np.float32, chunk: int = 8192) -> np.ndarray:
        """Selected neurons (flat indices ``layer * hidden + unit``) as (rows, len(index))."""
        index = np.asarray(index, dtype=np.int64).ravel()
        if index.size == 0:
            raise ValueError("empty neuron selection")
        if index.min() < 0 or index.max() >= self.n_neurons:
            raise IndexError(f"neuron index out of range 0..{self.n_neurons - 1}")
        flat = self.flat()
        return read_columns(flat, index, dtype, chunk_bytes=chunk * flat.shape[1] * flat.dtype.itemsize)


def check_files(path: Path, meta: dict, verify: str = "size") -> None:
    """Check that an entry's files match their recorded sizes, and their checksums with ``"full"``
    or when a file's modification time differs from the one recorded (it was written since)."""
    if verify not in ("none", "size", "full"):
        raise ValueError(f"verify must be 'none', 'size' or 'full', not {verify!r}")
    if verify == "none":
        return
    for name, rec in meta.get("files", {}).items():
        f = path / name
        # a file written since its entry was made (an edit that kept the size) is checksummed
        touched = f.is_file() and "mtime_ns" in rec and f.stat().st_mtime_ns != rec["mtime_ns"]
        why = damage(f, rec, checksum=verify == "full" or touched)
        if why:
            raise CacheError(f"{why}; the cache entry {path} will be recomputed")


class ActivationStore:
    """A folder of activation entries keyed by configuration.

    Parameters
    ----------
    root : path-like, optional
        Defaults to ``<cache>/activations``.
    """

    def __init__(self, root=None):
        self.root = Path(root) if root is not None else cache_dir() / "activations"
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(config: dict) -> str:
        return stable_hash({"cache_version": CACHE_VERSION, **config})

    def path(self, config: dict) -> Path:
        model = str(config.get("model", {}).get("name", "model")).replace("/", "_").strip("._") or "model"
        slug = f"{config.get('split', 'all')}-{config.get('aggregation', 'x')}-{self.key(config)}"
        return self.root / str(config.get("task", "task")) / model / slug

    def get(self, config: dict, verify: str = "size") -> Activations | None:
        """The entry for ``config`` if it is complete and intact, else None (with a message
        when a damaged entry is found)."""
        p = self.path(config)
        if not (p / "meta.json").is_file():
            return None
        try:
            return Activations(p, verify=verify)
        except CacheError as e:
            print(f"[redundancy] cache entry rejected: {e}", flush=True)
            return None

    @contextmanager
    def writer(self, config: dict, shape: tuple, dtype="float32"):
        """Create an entry: yields a writable memmap-backed :class:`EntryWriter`.

        On normal exit the arrays are flushed, checksummed and the folder is moved
        into place; on an exception nothing is left behind.
        """
        final = self.path(config)
        with file_lock(final.parent / f".{final.name}.lock"):
            clean_stale_tmp(final.parent, final.name)
            t0 = time.time()
            with atomic_dir(final) as tmp:
                w = EntryWriter(tmp, shape, dtype)
                yield w
                w.close()
                meta = {"config": config, "key": self.key(config), "cache_version": CACHE_VERSION,
                        "shape": list(shape), "dtype": str(np.dtype(dtype)),
                        "layout": "rows x layers x hidden", "versions": library_versions(),
                        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wall_time_s": round(time.time() - t0, 3),
                        **w.meta,
                        "files": {n: {**file_record(tmp / n), "mtime_ns": (tmp / n).stat().st_mtime_ns}
                                  for n in ARRAYS}}
                write_json_atomic(tmp / "meta.json", meta)

    def get_or_create(self, config: dict, shape_fn, fill_fn, dtype="float32", verify="size") -> Activations:
        """Return the cached entry or compute it: ``shape_fn()`` gives the shape and
        ``fill_fn(writer)`` fills it. Runs that wait on the lock reuse the winner's work."""
        hit = self.get(config, verify=verify)
        if hit is not None:
            return hit
        final = self.path(config)
        final.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(final.parent / f".{final.name}.build"):
            hit = self.get(config, verify=verify)  # another process may have finished it meanwhile
            if hit is not None:
                return hit
            with self.writer(config, shape_fn(), dtype) as w:
                fill_fn(w)
        return Activations(final, verify=verify)

    def entries(self) -> list[Activations]:
        out = []
        for meta in sorted(self.root.rglob("meta.json")):
            if ".tmp-" in str(meta):
                continue
            try:
                out.append(Activations(meta.parent, verify="size"))
            except CacheError:
                pass
        return out


def _reserve(path: Path) -> None:
    """Allocate a memory-mapped file's blocks now: on a disk too small this fails at once with a
    clear error, instead of the process dying of SIGBUS when a page of the map is first written."""
    size = path.stat().st_size
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise CacheError(f"not enough disk space for {path.name} ({size / 2**30:.2f} GiB) in {path.parent.parent}: "
                             "free some space or point REDUNDANCY_CACHE at a larger disk; nothing was kept") from None
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):  # filesystems without fallocate
            raise
    finally:
        os.close(fd)


class EntryWriter:
    """Arrays of an entry being written (see :meth:`ActivationStore.writer`)."""

    def __init__(self, folder: Path, shape: tuple, dtype):
        self.folder = folder
        self.array = np.lib.format.open_memmap(folder / "activations.npy", mode="w+",
                                               dtype=np.dtype(dtype), shape=tuple(shape))
        _reserve(folder / "activations.npy")
        self.labels = None
        self.sentence_ids = None
        self.meta: dict = {}

    def close(self):
        if self.labels is None or self.sentence_ids is None:
            raise CacheError("an activation entry needs labels and sentence_ids before it is closed")
        if len(self.labels) != self.array.shape[0] or len(self.sentence_ids) != self.array.shape[0]:
            raise CacheError(f"{self.array.shape[0]} activation rows but {len(self.labels)} labels and "
                             f"{len(self.sentence_ids)} sentence ids")
        self.array.flush()
        del self.array
        np.save(self.folder / "labels.npy", np.asarray(self.labels))
        np.save(self.folder / "sentence_ids.npy", np.asarray(self.sentence_ids, dtype=np.int32))
