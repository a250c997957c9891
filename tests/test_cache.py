"""redundancy.cache: atomic writes, size + checksum records, array entries, on planted damage."""

from __future__ import annotations

import errno
import hashlib
import json
import os

import numpy as np
import pytest

from redundancy.cache import (damage, file_record, folder_damage, folder_records, load_arrays, save_arrays,
                              write_atomic, write_json_atomic)


def test_file_record_matches_an_independent_xxh3(tmp_path):
    import xxhash

    f = tmp_path / "a.bin"
    f.write_bytes(bytes(range(256)) * 1000)
    assert file_record(f) == {"size": 256_000, "xxh3_128": xxhash.xxh3_128(f.read_bytes()).hexdigest()}


@pytest.mark.parametrize("edit, why", [
    (None, None),
    ("truncate", "bytes, its record says"),
    ("same size", "checksum"),
    ("remove", "missing"),
])
def test_damage_names_the_file_and_what_differs(tmp_path, edit, why):
    f = tmp_path / "a.bin"
    f.write_bytes(b"x" * 1000)
    rec = file_record(f)
    if edit == "truncate":
        f.write_bytes(b"x" * 999)
    elif edit == "same size":
        f.write_bytes(b"x" * 999 + b"y")
    elif edit == "remove":
        f.unlink()
    got = damage(f, rec)
    assert (got is None) == (why is None)
    if why:
        assert str(f) in got and why in got


def test_size_only_check_reads_no_content_and_sha256_records_still_verify(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"x" * 100)
    rec = file_record(f)
    f.write_bytes(b"y" * 100)
    assert damage(f, rec, checksum=False) is None and "checksum" in damage(f, rec)
    old = {"size": 100, "sha256": hashlib.sha256(b"y" * 100).hexdigest()}  # records written before xxh3
    assert damage(f, old) is None
    assert "sha256" in damage(f, {**old, "sha256": "0" * 64})


def test_folder_records_find_the_first_damaged_file(tmp_path):
    for n in ("a", "b"):
        (tmp_path / n).write_text(n * 10)
    recs = folder_records(tmp_path, ["a", "b"])
    assert folder_damage(tmp_path, recs) is None
    (tmp_path / "b").write_text("c" * 10)
    assert str(tmp_path / "b") in folder_damage(tmp_path, recs)


def test_write_atomic_keeps_the_old_file_on_failure_and_names_the_path(tmp_path):
    f = tmp_path / "out.json"
    write_json_atomic(f, {"a": 1})

    def half_then_full(fh):
        fh.write(b"{partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as info:
        write_atomic(f, half_then_full)
    assert info.value.errno == errno.ENOSPC and str(f) in str(info.value)
    assert json.loads(f.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]  # no temporary left


def test_array_entry_round_trip_and_absence(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert load_arrays(tmp_path, "k") is None
    save_arrays(tmp_path, "k", {"a": a, "b": np.array([1])}, {"score": 0.5, "name": "x"})
    meta, arrays = load_arrays(tmp_path, "k")
    assert meta == {"score": 0.5, "name": "x"}
    np.testing.assert_array_equal(arrays["a"], a)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.json", "k.npz"]


@pytest.mark.parametrize("plant", ["edited metadata", "same-size npz edit", "truncated npz", "record not JSON"])
def test_damaged_array_entry_is_reported_and_not_used(tmp_path, capsys, plant, plant_damage):
    save_arrays(tmp_path, "k", {"a": np.arange(100.0)}, {"score": 0.5})
    plant_damage(tmp_path / "k.json", tmp_path / "k.npz", plant, field="score")
    assert load_arrays(tmp_path, "k", what="test entry") is None
    assert "test entry k rejected and recomputed" in capsys.readouterr().out


def _small_cache(root):
    """One entry of each layout: an array entry (a probe), a folder entry (activations, a
    fine-tuned model), a checkpoint with its record; plus a JSON that records nothing."""
    save_arrays(root / "probes", "p1", {"coef": np.arange(50.0)}, {"dev": 0.5})
    entry = root / "activations" / "e1"
    entry.mkdir(parents=True)
    (entry / "activations.npy").write_bytes(b"\x00" * 4096)
    write_json_atomic(entry / "meta.json", {"config": {}, "files": folder_records(entry, ["activations.npy"])})
    ckpt = root / "finetuned" / ".k.checkpoint.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"\x01" * 2048)
    write_json_atomic(root / "finetuned" / ".k.checkpoint.pt.json", file_record(ckpt))
    write_json_atomic(root / "finetuned" / "finetunes.json", {"finetunes": []})
    return {"probe": root / "probes" / "p1.npz", "activations": entry / "activations.npy", "checkpoint": ckpt}


@pytest.mark.parametrize("plant", [None, "probe", "activations", "checkpoint"])
def test_verify_finds_a_byte_changed_in_any_kind_of_entry(tmp_path, plant, capsys):
    from redundancy.__main__ import main
    from redundancy.cache import verify_tree

    files = _small_cache(tmp_path)
    if plant:  # one byte, size and modification time kept: only a checksum tells
        f = files[plant]
        st = f.stat()
        raw = bytearray(f.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        f.write_bytes(bytes(raw))
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = verify_tree(tmp_path)
    assert r["entries"] == 3 and r["files"] == 3
    assert [why for _, why in r["damaged"]] == ([] if plant is None else [
        f"{files[plant]} does not match its recorded xxh3_128 checksum (edited or damaged)"])
    assert verify_tree(tmp_path, checksum=False)["damaged"] == []  # the quick check reads sizes only
    assert main(["verify", "--cache", str(tmp_path)]) == (0 if plant is None else 1)
    out = capsys.readouterr().out
    assert ("no damage found" in out) == (plant is None) and (plant is None or str(files[plant]) in out)


def _count_in_lock(lock, log, n):
    """Worker: n times, under the lock, read a counter file, pause, write it back + 1."""
    import time

    from redundancy.cache import file_lock

    for _ in range(n):
        with file_lock(lock):
            v = int(log.read_text()) if log.exists() else 0
            time.sleep(0.002)  # a window in which an unlocked writer would lose an update
            log.write_text(str(v + 1))


def test_file_lock_excludes_other_processes_and_leaves_no_lock_file(tmp_path):
    """Four processes increment one counter 25 times each under the lock (the lock file is
    removed at every release, so waiters meet removed inodes): no update is lost, and no
    lock file stays behind."""
    import multiprocessing as mp

    lock, log = tmp_path / ".entry.lock", tmp_path / "counter"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_count_in_lock, args=(lock, log, 25)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert int(log.read_text()) == 100
    assert not lock.exists()
    assert sorted(f.name for f in tmp_path.iterdir()) == ["counter"]
