"""Tests of the activation store (redundancy.representations.store): layout, reuse, atomicity, damage, locking."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import xxhash

from redundancy.config import CACHE_VERSION
from redundancy.errors import CacheError
from redundancy.representations.store import ARRAYS, Activations, ActivationStore

ROWS, LAYERS, HIDDEN = 7, 3, 4

CONFIG = {"model": {"name": "org/tiny-bert", "revision": "abc"}, "task": "chunking", "split": "train",
          "aggregation": "last", "dtype": "float32"}


def make_data(seed=0, shape=(ROWS, LAYERS, HIDDEN)):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).astype(np.float32)


class Filler:
    """A fill function that counts its calls."""

    def __init__(self, data, label_names=("B-NP", "O")):
        self.data, self.calls, self.label_names = data, 0, label_names

    def __call__(self, w):
        self.calls += 1
        w.array[:] = self.data
        w.labels = np.arange(len(self.data)) % 2
        w.sentence_ids = np.arange(len(self.data)) // 3
        if self.label_names is not None:
            w.meta["label_names"] = list(self.label_names)


@pytest.fixture
def store(tmp_path):
    return ActivationStore(root=tmp_path / "acts")


def create(store, config=CONFIG, data=None, fill=None, **kw):
    data = make_data() if data is None else data
    fill = fill or Filler(data)
    return store.get_or_create(config, lambda: data.shape, fill, **kw), fill


# ---------------------------------------------------------------------------------------------
# writing and reading

def test_get_or_create_then_get(store):
    assert store.get(CONFIG) is None
    data = make_data()
    made, fill = create(store, data=data)
    assert fill.calls == 1
    p = store.path(CONFIG)
    assert p.parent.parent.parent == store.root
    assert p.parent.name == "org_tiny-bert" and p.parent.parent.name == "chunking"
    assert p.name.startswith("train-last-") and p.name.endswith(store.key(CONFIG))
    assert sorted(f.name for f in p.iterdir()) == sorted([*ARRAYS, "meta.json"])

    a = store.get(CONFIG)
    assert isinstance(a, Activations) and a.path == p
    assert isinstance(a.array, np.memmap)
    assert a.array.mode == "r" and not a.array.flags.writeable
    with pytest.raises(ValueError):
        a.array[0, 0, 0] = 1.0
    assert (a.n_rows, a.n_layers, a.hidden_size, a.n_neurons) == (ROWS, LAYERS, HIDDEN, LAYERS * HIDDEN)
    np.testing.assert_array_equal(np.asarray(a.array), data)
    np.testing.assert_array_equal(np.asarray(made.array), data)
    assert a.labels.tolist() == [0, 1, 0, 1, 0, 1, 0]
    assert a.sentence_ids.tolist() == [0, 0, 0, 1, 1, 1, 2] and a.sentence_ids.dtype == np.int32
    assert a.label_names == ["B-NP", "O"]
    assert "chunking/train" in repr(a) and "org/tiny-bert" in repr(a) and "layers=3" in repr(a)


def test_layer_layers_neurons_flat(store):
    data = make_data(1)
    create(store, data=data)
    a = store.get(CONFIG)
    for l in range(LAYERS):
        np.testing.assert_array_equal(a.layer(l), data[:, l, :])
    np.testing.assert_array_equal(a.layer(-1), data[:, 2, :])
    assert a.layer(0).dtype == np.float32 and a.layer(0).shape == (ROWS, HIDDEN)
    got = a.layers([2, 0])
    assert got.shape == (ROWS, 2 * HIDDEN)
    np.testing.assert_array_equal(got, np.concatenate([data[:, 2], data[:, 0]], axis=1))
    # reading in chunks of rows gives the same result
    np.testing.assert_array_equal(a.layers([2, 0], chunk=2), got)
    np.testing.assert_array_equal(a.layers([0, 1, 2], chunk=3), data.reshape(ROWS, -1))

    flat = a.flat()
    assert flat.shape == (ROWS, LAYERS * HIDDEN)
    np.testing.assert_array_equal(flat, data.reshape(ROWS, LAYERS * HIDDEN))
    idx = [0, 5, 11, 4]  # layer*hidden + unit: (0,0), (1,1), (2,3), (1,0)
    expected = np.stack([data[:, 0, 0], data[:, 1, 1], data[:, 2, 3], data[:, 1, 0]], axis=1)
    np.testing.assert_array_equal(a.neurons(idx), expected)
    np.testing.assert_array_equal(a.neurons(np.array(idx), chunk=3), expected)
    np.testing.assert_array_equal(a.neurons([7]), data[:, 1, 3:4])


def test_bad_layer_and_neuron_selections(store):
    create(store)
    a = store.get(CONFIG)
    for bad in (3, -4, 10):
        with pytest.raises(IndexError, match="layer"):
            a.layer(bad)
    with pytest.raises(IndexError):
        a.layers([0, 3])
    with pytest.raises(ValueError, match="empty"):
        a.neurons([])
    for bad in ([12], [-1], [0, 100]):
        with pytest.raises(IndexError, match="out of range"):
            a.neurons(bad)


def test_second_call_reuses_entry(store):
    data = make_data()
    fill = Filler(data)
    create(store, fill=fill, data=data)
    again, _ = create(store, fill=fill, data=data)
    assert fill.calls == 1
    np.testing.assert_array_equal(again.layer(1), data[:, 1])
    # the same config with keys in another order is the same entry
    reordered = dict(reversed(list(CONFIG.items())))
    create(store, config=reordered, fill=fill, data=data)
    assert fill.calls == 1
    # a different config is a different entry
    other = {**CONFIG, "split": "dev"}
    b, _ = create(store, config=other, fill=fill, data=data)
    assert fill.calls == 2 and b.path != store.path(CONFIG)
    assert len(store.entries()) == 2


def test_failed_fill_leaves_nothing(store):
    def boom(w):
        w.array[:] = 1.0
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError, match="model crashed"):
        store.get_or_create(CONFIG, lambda: (ROWS, LAYERS, HIDDEN), boom)
    p = store.path(CONFIG)
    assert not p.exists()
    assert store.get(CONFIG) is None
    assert list(store.root.rglob("*.tmp-*")) == []
    assert store.entries() == []
    # a later run succeeds
    a, fill = create(store)
    assert fill.calls == 1 and a.n_rows == ROWS


def test_missing_labels_is_an_error_and_leaves_nothing(store):
    def no_labels(w):
        w.array[:] = 0.0

    with pytest.raises(CacheError, match="labels"):
        store.get_or_create(CONFIG, lambda: (ROWS, LAYERS, HIDDEN), no_labels)

    def wrong_rows(w):
        w.labels = np.zeros(ROWS - 1)
        w.sentence_ids = np.zeros(ROWS)

    with pytest.raises(CacheError, match="7 activation rows but 6 labels"):
        store.get_or_create(CONFIG, lambda: (ROWS, LAYERS, HIDDEN), wrong_rows)
    assert not store.path(CONFIG).exists()
    assert list(store.root.rglob("*.tmp-*")) == []


def test_stale_tmp_folder_is_cleaned(store):
    p = store.path(CONFIG)
    stale = p.parent / (p.name + ".tmp-killed")
    stale.mkdir(parents=True)
    (stale / "activations.npy").write_bytes(b"half")
    create(store)
    assert not stale.exists()
    assert store.get(CONFIG) is not None


# ---------------------------------------------------------------------------------------------
# damaged entries


def stored_and_released(store, seed):
    """Create an entry, drop every reference to its memmap, and return what a damage test needs."""
    data = make_data(seed)
    fill = Filler(data)
    a, _ = create(store, fill=fill, data=data)
    path = a.path
    del a
    gc.collect()
    f = path / "activations.npy"
    return data, fill, path, f, f.stat().st_size


def test_truncated_entry_is_rejected_and_recomputed(store, capsys):
    data, fill, path, f, size = stored_and_released(store, seed=2)
    with open(f, "r+b") as fh:
        fh.truncate(size - 100)
    capsys.readouterr()
    assert store.get(CONFIG) is None
    out = capsys.readouterr().out
    assert "cache entry rejected" in out and "activations.npy" in out and str(size) in out
    with pytest.raises(CacheError, match="truncated"):
        Activations(path)

    b, _ = create(store, fill=fill, data=data)
    assert fill.calls == 2
    assert (path / "activations.npy").stat().st_size == size
    np.testing.assert_array_equal(b.layers(range(LAYERS)), data.reshape(ROWS, -1))
    assert store.get(CONFIG) is not None


def _flip_last_byte(f, size):
    with open(f, "r+b") as fh:
        fh.seek(size - 1)
        last = fh.read(1)
        fh.seek(size - 1)
        fh.write(bytes([last[0] ^ 0xFF]))
    assert f.stat().st_size == size


def test_same_size_edit_is_caught_by_its_modification_time(store, capsys):
    data, fill, path, f, size = stored_and_released(store, seed=3)
    _flip_last_byte(f, size)
    # the default check sees that the file was written after its entry was made, checksums it
    capsys.readouterr()
    assert store.get(CONFIG) is None
    assert "checksum" in capsys.readouterr().out
    b, _ = create(store, fill=fill, data=data)
    assert fill.calls == 2
    np.testing.assert_array_equal(np.asarray(b.array), data)


def test_entries_checksummed_with_sha256_before_xxh3_are_still_verified(store, capsys):
    # entries written before 2026-11-22 record sha256; they stay readable and checkable
    data, fill, path, f, size = stored_and_released(store, seed=4)
    meta = json.loads((path / "meta.json").read_text())
    for name, rec in meta["files"].items():
        del rec["xxh3_128"]
        rec["sha256"] = hashlib.sha256((path / name).read_bytes()).hexdigest()
    (path / "meta.json").write_text(json.dumps(meta))
    assert store.get(CONFIG, verify="full") is not None
    stat = f.stat()
    _flip_last_byte(f, size)
    os.utime(f, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    capsys.readouterr()
    assert store.get(CONFIG, verify="full") is None
    assert "checksum" in capsys.readouterr().out


def test_same_size_edit_with_restored_time_is_caught_by_full_verify(store, capsys):
    data, fill, path, f, size = stored_and_released(store, seed=3)
    stat = f.stat()
    _flip_last_byte(f, size)
    os.utime(f, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # an edit that hides its time
    assert store.get(CONFIG) is not None  # size and time agree: the cheap check passes
    capsys.readouterr()
    assert store.get(CONFIG, verify="full") is None
    assert "checksum" in capsys.readouterr().out
    b, _ = create(store, fill=fill, data=data, verify="full")
    assert fill.calls == 2
    np.testing.assert_array_equal(np.asarray(b.array), data)
    with pytest.raises(ValueError, match="verify"):
        store.get(CONFIG, verify="everything")


@pytest.mark.parametrize("damage", ["delete-labels", "bad-meta", "no-meta"])
def test_other_damage(store, capsys, damage):
    a, fill = create(store)
    path = a.path
    del a
    gc.collect()
    if damage == "delete-labels":
        (path / "labels.npy").unlink()
    elif damage == "bad-meta":
        (path / "meta.json").write_text("{not json")
    else:
        (path / "meta.json").unlink()
    capsys.readouterr()
    assert store.get(CONFIG) is None
    out = capsys.readouterr().out
    # a folder without meta.json is silently not an entry; a damaged one is reported
    assert ("cache entry rejected" in out) == (damage != "no-meta")
    assert store.entries() == []
    b, _ = create(store, fill=fill)
    assert fill.calls == 2 and store.get(CONFIG) is not None


# ---------------------------------------------------------------------------------------------
# dtype and metadata

def test_float16_round_trip(store):
    data = make_data(4)
    a, _ = create(store, data=data, dtype="float16")
    b = store.get(CONFIG)
    assert b.array.dtype == np.float16 and b.meta["dtype"] == "float16"
    half = data.astype(np.float16)
    np.testing.assert_array_equal(np.asarray(b.array), half)
    assert b.layer(1).dtype == np.float32
    np.testing.assert_array_equal(b.layer(1), half[:, 1].astype(np.float32))
    np.testing.assert_array_equal(b.neurons([6], dtype=np.float16), half[:, 1, 2:3])
    # half the bytes of float32 for the data (the .npy header is the same size)
    assert (b.path / "activations.npy").stat().st_size == 128 + data.size * 2


def test_meta_json_contents(store):
    a, _ = create(store)
    meta = json.loads((a.path / "meta.json").read_text())
    assert meta["config"] == CONFIG
    assert meta["key"] == store.key(CONFIG) and meta["cache_version"] == CACHE_VERSION
    assert meta["shape"] == [ROWS, LAYERS, HIDDEN]
    assert meta["dtype"] == "float32"
    assert meta["label_names"] == ["B-NP", "O"]
    assert meta["versions"]["numpy"] == np.__version__
    assert meta["versions"]["python"].count(".") == 2
    assert isinstance(meta["wall_time_s"], float) and meta["wall_time_s"] >= 0
    assert set(meta["files"]) == set(ARRAYS)
    for name, rec in meta["files"].items():
        f = a.path / name
        assert rec["size"] == f.stat().st_size
        assert rec["xxh3_128"] == xxhash.xxh3_128_hexdigest(f.read_bytes())
    assert a.meta == meta


def test_meta_without_label_names(store):
    data = make_data()
    a, _ = create(store, data=data, fill=Filler(data, label_names=None))
    assert "label_names" not in a.meta and a.label_names == []


# ---------------------------------------------------------------------------------------------
# two processes on one entry

CHILD = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    import numpy as np
    from redundancy.representations.store import ActivationStore

    root, counter, ready, go, out = map(Path, sys.argv[1:6])
    config = json.loads(sys.argv[6])
    data = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)

    def fill(w):
        with open(counter, "a") as f:
            f.write(f"{os.getpid()}\\n")
        time.sleep(0.5)  # the other process arrives while this one holds the lock
        w.array[:] = data
        w.labels = np.arange(5)
        w.sentence_ids = np.arange(5)

    store = ActivationStore(root=root)
    ready.touch()
    deadline = time.time() + 10
    while not go.exists() and time.time() < deadline:
        time.sleep(0.005)
    a = store.get_or_create(config, lambda: data.shape, fill)
    out.write_text(json.dumps({"path": str(a.path), "equal": bool(np.array_equal(a.array, data)),
                               "sha": a.meta["files"]["activations.npy"]["xxh3_128"]}))
""")


def test_two_processes_fill_once(tmp_path):
    root = tmp_path / "shared"
    counter = tmp_path / "fills.txt"
    go = tmp_path / "go"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs, outs = [], []
    t0 = time.time()
    for i in range(2):
        ready, out = tmp_path / f"ready{i}", tmp_path / f"out{i}.json"
        outs.append((ready, out))
        procs.append(subprocess.Popen(
            [sys.executable, str(script), str(root), str(counter), str(ready), str(go), str(out),
             json.dumps(CONFIG)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    deadline = time.time() + 20
    while not all(r.exists() for r, _ in outs) and time.time() < deadline:
        if any(p.poll() not in (None, 0) for p in procs):
            break
        time.sleep(0.01)
    go.touch()
    logs = [p.communicate(timeout=30)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    assert time.time() - t0 < 15
    fills = counter.read_text().split()
    assert len(fills) == 1, fills
    results = [json.loads(out.read_text()) for _, out in outs]
    assert results[0] == results[1]
    assert results[0]["equal"]
    store = ActivationStore(root=root)
    entry = store.get(CONFIG, verify="full")
    assert entry is not None and str(entry.path) == results[0]["path"]
    np.testing.assert_array_equal(np.asarray(entry.array),
                                  np.arange(30, dtype=np.float32).reshape(5, 2, 3))
    assert list(root.rglob("*.tmp-*")) == []


def test_full_disk_is_a_clear_error_and_leaves_nothing(store, monkeypatch):
    import errno

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(CacheError, match="not enough disk space.*REDUNDANCY_CACHE"):
        create(store)
    assert store.get(CONFIG) is None
    assert not [p for p in store.root.rglob("*") if p.is_dir() and ".tmp-" in p.name]
    monkeypatch.undo()
    a, _ = create(store)  # with space again, the entry is made
    assert store.get(CONFIG, verify="full") is not None
