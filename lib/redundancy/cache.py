"""One cache and integrity scheme for everything the library keeps on disk.

Activation entries (:mod:`redundancy.representations.store`), fine-tuned models and their
checkpoints (:mod:`redundancy.representations.finetune`), trained probes
(:class:`redundancy.methods.selection.ProbeEvaluator`), clustering trees
(:class:`redundancy.methods.clustering.CorrelationClustering`) and fetched packages all follow
the same four rules, written here once:

- **atomic write**: a file or folder is built under a temporary name beside its final one
  (``<name>.tmp-*``) and moved into place with :func:`os.replace`; a killed process leaves the
  previous version or a temporary that is never read (and is removed by the next writer);
- **size + checksum**: each payload file is recorded with its size and its xxh3-128
  (:func:`file_record`; sha256 in records written before xxh3 was used) and checked against the
  record before it is used (:func:`damage`); a damaged entry is named, discarded and recomputed,
  never used;
- **lock**: work that fills one entry runs under an exclusive advisory lock on a file beside it
  (:func:`file_lock`), so a second process waits and then reads the first one's result; the
  lock file is removed on release;
- **one layout for array entries**: ``<key>.npz`` (the arrays) beside ``<key>.json`` (the
  record: the caller's metadata, the npz's size and checksum, and a checksum of the metadata
  itself): :func:`save_arrays` and :func:`load_arrays`.
"""

from __future__ import annotations

from collections.abc import Iterator

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .utils import stable_hash

_CHUNK = 1 << 22


def file_sha256(path, chunk: int = _CHUNK) -> str:
    """sha256 of a file (hex): an identity (model weights), not only a change check."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def file_xxh3(path, chunk: int = _CHUNK) -> str:
    """xxh3-128 of a file (hex): the cache's checksum, 10x faster than sha256 here (about
    0.02 s against 0.2 s for a 213 MB activation array)."""
    import xxhash  # a dependency of datasets

    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def file_record(path) -> dict:
    """``{"size": bytes, "xxh3_128": checksum}`` of a file: what the cache records of a payload."""
    return {"size": os.path.getsize(path), "xxh3_128": file_xxh3(path)}


def damage(path, rec: dict, checksum: bool = True) -> str | None:
    """Why ``path`` does not match its record ``rec`` (missing, size, checksum), or None when it
    does. ``checksum=False`` checks presence and size only (the cheap check)."""
    path = Path(path)
    if not path.is_file():
        return f"{path} is missing"
    size = path.stat().st_size
    if size != rec["size"]:
        return f"{path} has {size} bytes, its record says {rec['size']} (truncated or edited)"
    if checksum:
        algo, fn = ("xxh3_128", file_xxh3) if "xxh3_128" in rec else ("sha256", file_sha256)
        if fn(path) != rec[algo]:
            return f"{path} does not match its recorded {algo} checksum (edited or damaged)"
    return None


def write_json_atomic(path, obj) -> None:
    """Write JSON so that a reader sees the old file or the new one, never a partial one."""
    write_atomic(path, lambda f: (json.dump(obj, f, indent=2, sort_keys=True, default=str), f.write("\n")),
                 mode="w")


def write_atomic(path, write, mode: str = "wb") -> Path:
    """Write a file through ``write(file_object)`` under a temporary name beside ``path``, flush
    it to disk and move it into place; on any error (a full disk included) the temporary is
    removed and the error names ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".tmp-")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not getattr(e, "filename", None):
            raise OSError(e.errno, f"{e.strerror or e} while writing {path}", str(path)) from e
        raise
    return path


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
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
def file_lock(path) -> Iterator[None]:
    """An exclusive advisory lock: a second process on the same cache entry waits.

    The lock file is removed when the lock is released, so that none pile up beside the
    cache's entries. A waiter that then holds a lock on the removed file (its inode is no
    longer the path's) lets it go and locks the path anew; so at most one process at a
    time holds the lock of a path, whatever the interleaving."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
        except BaseException:
            os.close(fd)
            raise
        if current:
            break
        os.close(fd)  # the holder before us removed this file: lock the new one
    try:
        yield
    finally:
        try:
            with contextlib.suppress(OSError):  # gone already, or a folder we may not delete in
                os.unlink(path)  # while still holding it: a waiter on this inode will retry
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def clean_stale_tmp(parent: Path, name: str) -> None:
    """Remove temporary files and folders left by killed runs for the entry ``name``."""
    parent = Path(parent)
    if parent.is_dir():
        for p in parent.glob(name + ".tmp-*"):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------
# array entries: <key>.npz + <key>.json

def _entry_paths(folder, key: str) -> tuple[Path, Path]:
    folder = Path(folder)
    return folder / f"{key}.json", folder / f"{key}.npz"


def save_arrays(folder, key: str, arrays: dict, meta: dict) -> None:
    """Keep ``arrays`` (name -> numpy array) and ``meta`` (JSON-serialisable) as the entry ``key``
    of ``folder``: the npz first, then the record that makes the entry visible."""
    js, npz = _entry_paths(folder, key)
    write_atomic(npz, lambda f: np.savez(f, **arrays))
    meta = json.loads(json.dumps(meta, default=str))  # the checksum is of what is read back
    write_json_atomic(js, {**meta, "npz": file_record(npz), "check": stable_hash(meta, 24)})


def load_arrays(folder, key: str, what: str = "cache entry") -> tuple[dict, dict] | None:
    """``(meta, arrays)`` of the entry ``key`` of ``folder``, or None when it is absent or damaged
    (a damaged one, say a truncated npz or an edited record, is reported and never used)."""
    js, npz = _entry_paths(folder, key)
    if not (js.exists() and npz.exists()):
        return None
    try:
        rec = json.loads(js.read_text())
        meta = {k: v for k, v in rec.items() if k not in ("npz", "check")}
        if "check" in rec and rec["check"] != stable_hash(meta, 24):
            raise ValueError(f"{js} was edited: its metadata do not match their checksum")
        why = damage(npz, rec["npz"])
        if why:
            raise ValueError(why)
        with np.load(npz) as z:  # zip members carry CRC-32 as well
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError) as e:
        print(f"[redundancy] {what} {key} rejected and recomputed: {e}", flush=True)
        return None
    return meta, arrays


def folder_records(folder, names) -> dict:
    """:func:`file_record` of each file ``names`` of ``folder`` (a saved model, an activation entry)."""
    return {n: file_record(Path(folder) / n) for n in names}


def folder_damage(folder, records: dict, checksum: bool = True) -> str | None:
    """The first way the files of ``folder`` differ from ``records``, or None."""
    for n, rec in records.items():
        why = damage(Path(folder) / n, rec, checksum)
        if why:
            return why
    return None


# --------------------------------------------------------------------------------------
# a whole cache checked at once

def _records_of(js: Path) -> dict | None:
    """``{file: record}`` that the JSON file ``js`` vouches for, or None when it records none:
    a folder entry's ``meta.json`` (``files``), an array entry's ``<key>.json`` (``npz``), a
    checkpoint's ``<name>.json`` (its own size and checksum)."""
    rec = json.loads(js.read_text())
    if not isinstance(rec, dict):
        return None
    if isinstance(rec.get("files"), dict) and js.name == "meta.json":
        return {js.parent / n: r for n, r in rec["files"].items()}
    if isinstance(rec.get("npz"), dict) and "size" in rec["npz"]:
        return {js.with_suffix(".npz"): rec["npz"]}
    if set(rec) == {"size", "xxh3_128"}:
        return {js.with_suffix(""): rec}
    return None


def verify_tree(root, checksum: bool = True, progress=None) -> dict:
    """Check every cache entry below ``root`` against its records (sizes, and checksums unless
    ``checksum=False``), reading each payload once.

    Returns ``{"entries": n, "files": n, "bytes": n, "damaged": [(record file, why), ...],
    "unreadable": [(record file, why), ...], "temporary": [leftovers of killed writes]}``. Entries
    saved before their records were kept are not counted. Nothing is changed: a damaged entry is
    recomputed when next used, or removed by hand."""
    root = Path(root)
    out = {"entries": 0, "files": 0, "bytes": 0, "damaged": [], "unreadable": [], "temporary": []}
    for js in sorted(root.rglob("*.json")):
        if ".tmp-" in str(js.relative_to(root)):
            continue
        try:
            records = _records_of(js)
        except (OSError, ValueError) as e:
            out["unreadable"].append((str(js), f"{type(e).__name__}: {e}"))
            continue
        if not records:
            continue
        out["entries"] += 1
        for path, rec in records.items():
            why = damage(path, rec, checksum)
            out["files"] += 1
            out["bytes"] += rec.get("size", 0)
            if why:
                out["damaged"].append((str(js), why))
                break
        if progress:
            progress(out)
    out["temporary"] = sorted(str(p) for p in root.rglob("*.tmp-*"))
    return out
