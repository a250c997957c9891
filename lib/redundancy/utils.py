"""Small shared helpers: seeding, hashing of objects, mapped pages, fault points for tests.

Files kept on disk (atomic writes, checksums, locks) are :mod:`redundancy.cache`'s."""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import random
import signal

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
