"""Small shared helpers: seeding, atomic writes, file locks, hashing, mapped pages."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import mmap
import os
import random
import shutil
import signal
import tempfile
from pathlib import Path

import numpy as np


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) for a reproducible step."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def release_mapped(a) -> bool:
    """Drop the pages that ``a`` spans from this process's resident set, if ``a`` is (a view
    of) a read-only memory-mapped file (``np.load(..., mmap_mode="r")``, ``np.memmap(mode="r")``).

    The data stay in the file and the kernel's page cache; a later read maps them again. For
    a pass that reads a mapped activation file once, chunk by chunk (the correlations of
    clustering, CKA, a column subset), calling this after each chunk keeps the resident set
    at one chunk instead of the whole file (6 GB for 150,000 tokens x 9,984 float32
    neurons). Anything else (an array in memory, a writable or copy-on-write map) is left
    alone. Returns True when pages were released.
    """
    m = a
    while isinstance(m, np.ndarray) and not isinstance(m, np.memmap):
        m = m.base
    mm = getattr(m, "_mmap", None)
    if not isinstance(m, np.memmap) or getattr(m, "mode", None) != "r" or mm is None or a.size == 0:
        return False
    if not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):  # pragma: no cover - not Linux
        return False
    try:
        base = np.frombuffer(mm, dtype=np.uint8).ctypes.data
    except (ValueError, TypeError):  # pragma: no cover - a closed map
        return False
    # the bytes from a's first to its last element (any strides)
    lo = hi = a.__array_interface__["data"][0] - base
    for n, st in zip(a.shape, a.strides):
        if st >= 0:
            hi += (n - 1) * st
        else:
            lo += (n - 1) * st
    hi += a.itemsize
    page = mmap.PAGESIZE
    lo = max(0, lo // page * page)
    hi = min(len(mm), hi)
    if hi <= lo:
        return False
    mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
    return True


def read_columns(X: np.ndarray, cols, dtype=None, chunk_bytes: int = 256 * 2**20) -> np.ndarray:
    """``X[:, cols]`` as a new array (of ``dtype``, X's by default), read ``chunk_bytes`` of rows
    at a time: a mapped file's pages leave the resident set chunk by chunk (:func:`release_mapped`)
    instead of the whole file staying resident after a fancy-indexed read."""
    cols = np.asarray(cols, dtype=np.int64)
    out = np.empty((X.shape[0], cols.size), dtype=X.dtype if dtype is None else dtype)
    step = max(1, int(chunk_bytes) // max(1, X.shape[1] * X.dtype.itemsize))
    for s in range(0, X.shape[0], step):
        out[s:s + step] = X[s:s + step][:, cols]
        release_mapped(X[s:s + step])
    return out


def stable_hash(obj, n: int = 16) -> str:
    """A short hash of a JSON-serialisable object, independent of key order."""
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def file_sha256(path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def file_xxh3(path, chunk: int = 1 << 22) -> str:
    """xxh3-128 of a file (hex): a checksum for change detection, 10x faster than sha256 here
    (about 0.02 s against 0.2 s for a 213 MB activation array)."""
    import xxhash  # a dependency of datasets

    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def file_checksum(path, rec: dict):
    """(recorded, computed) checksum of ``path`` for a metadata record holding ``xxh3_128`` or,
    for entries written before it was used, ``sha256``."""
    if "xxh3_128" in rec:
        return rec["xxh3_128"], file_xxh3(path)
    return rec["sha256"], file_sha256(path)


def write_json_atomic(path, obj) -> None:
    """Write JSON so that a reader sees the old file or the new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(final: Path):
    """Build a directory under a temporary name and move it into place on success.

    A run killed half-way leaves only a ``*.tmp-*`` folder, which is never read as a
    result (and is cleaned up by the next run that takes the same lock).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=final.name + ".tmp-"))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def file_lock(path):
    """An exclusive advisory lock: a second process on the same cache entry waits."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def clean_stale_tmp(parent: Path, name: str) -> None:
    """Remove temporary folders left by killed runs for the entry ``name``."""
    parent = Path(parent)
    if parent.is_dir():
        for p in parent.glob(name + ".tmp-*"):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


_FAULT_HITS: dict = {}


def fault_point(name: str) -> None:
    """Where tests stop the process: ``REDUNDANCY_FAULT=name:n`` sends SIGKILL at the n-th
    pass through ``name`` (a kill with no cleanup), ``name:n:raise`` raises
    KeyboardInterrupt there instead (an in-process stop). Does nothing when unset."""
    spec = os.environ.get("REDUNDANCY_FAULT")
    if not spec:
        return
    point, _, rest = spec.partition(":")
    if point != name:
        return
    n, _, mode = rest.partition(":")
    _FAULT_HITS[name] = _FAULT_HITS.get(name, 0) + 1
    if _FAULT_HITS[name] >= int(n or 1):
        if mode == "raise":
            _FAULT_HITS.pop(name)
            raise KeyboardInterrupt(f"stopped at {name} pass {n}")
        os.kill(os.getpid(), signal.SIGKILL)
