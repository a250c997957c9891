"""Faults a real run meets, on the tiny configuration: a kill (SIGKILL, no cleanup) during
extraction, fine-tuning or a probe sweep, two runs at once on one cache, and two clean runs
that must give byte-identical result files."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

TOKENS = "the DT\ncat NN\nsat VBD\n\na DT\ndog NN\nran VBD\nfast RB\n\nthe DT\nred JJ\nbook NN\nwas VBD\n\n"
# the tiny configuration: a token task and a fine-tuned sentence task, every analysis section
SCRIPT = textwrap.dedent("""
    import sys
    from redundancy.paper import sections as S
    from redundancy.paper.sections import Study
    study = Study(sys.argv[1], progress=False)
    study.ensure()
    S.section_cka(study)
    S.section_clustering(study, thresholds=(0.0, 0.3, 0.7))
    S.section_layers(study)
    S.section_minimal_sets(study, grid=(0.05, 0.1, 0.2, 0.5, 1.0))
    S.section_ls_ccfs(study, grid=(0.05, 0.1, 0.2, 0.5, 1.0))
    print("finished")
""")
# files that hold measurements of time, which no two runs share
MEASUREMENTS = ("costs.csv", "activations.json", "notebooks.json")


def _tiny_config(tmp: Path, tiny_bert: str, name: str) -> Path:
    data = Path(tiny_bert).parent / "faults-data"  # one data folder: its path is in task_statistics.csv
    if not data.exists():
        (data / "pos").mkdir(parents=True)
        for split in ("train", "dev", "test"):
            (data / "pos" / f"{split}.txt").write_text(TOKENS * (4 if split == "train" else 2))
        (data / "SST-2").mkdir()
        rows = [("the cat sat", 1), ("the dog ran fast", 0), ("a big red book", 1), ("it was slow", 0)] * 6
        (data / "SST-2" / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{l}\n" for s, l in rows))
        (data / "SST-2" / "dev.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{l}\n" for s, l in rows[:8]))
    cfg = {"name": name, "models": [tiny_bert], "results_dir": str(tmp / "results"),
           "finetune": {"epochs": 2, "batch_size": 4, "seed": 1},
           "tasks": {"pos": {f: str(data / "pos" / f"{f}.txt") for f in ("train", "dev", "test")},
                     "sst-2": {"path": str(data / "SST-2")}}}
    path = tmp / f"{name}.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run(config: Path, cache: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "REDUNDANCY_CACHE": str(cache), "PYTHONPATH": os.pathsep.join(sys.path),
           "OMP_NUM_THREADS": "1"}
    env.pop("REDUNDANCY_FAULT", None)
    if fault:
        env["REDUNDANCY_FAULT"] = fault
    script = config.parent / "study_script.py"
    script.write_text(SCRIPT)
    return subprocess.run([sys.executable, str(script), str(config)], env=env, capture_output=True, text=True,
                          timeout=600)


def _digests(folder: Path) -> dict:
    """sha256 of every result file (measurements left out) by relative path."""
    return {str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.rglob("*")) if f.is_file() and f.name not in MEASUREMENTS}


def _cache_digests(cache: Path) -> dict:
    """The computed cache: activation arrays and fine-tuned weights (paths hold keys, not times)."""
    return {str(f.relative_to(cache)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(cache.rglob("*")) if f.is_file() and f.suffix in (".npy", ".safetensors")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_bert):
    """One uninterrupted run from a clean cache."""
    tmp = tmp_path_factory.mktemp("reference")
    config = _tiny_config(tmp, tiny_bert, "tiny")
    done = _run(config, tmp / "cache")
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp, _digests(tmp / "results" / "tiny"), _cache_digests(tmp / "cache")


def test_two_clean_runs_give_byte_identical_result_files(reference, tmp_path, tiny_bert):
    ref_tmp, ref_results, ref_cache = reference
    config = _tiny_config(tmp_path, tiny_bert, "tiny")
    done = _run(config, tmp_path / "cache")
    assert done.returncode == 0, done.stderr[-3000:]
    results = _digests(tmp_path / "results" / "tiny")
    # every section wrote its tables, and all are byte for byte the same
    for part in ("cka/cka.csv", "clustering/sweep.csv", "layers/layers.csv", "minimal_sets/minimal_sets.csv",
                 "ls_ccfs/ls_ccfs.csv", "task_statistics.csv"):
        assert part in results, sorted(results)
    assert results == ref_results
    assert _cache_digests(tmp_path / "cache") == ref_cache
    # the check can fail: the measurements differ between runs, and a changed byte is seen
    costs = tmp_path / "results" / "tiny" / "cka" / "costs.csv"
    assert costs.read_bytes() != (ref_tmp / "results" / "tiny" / "cka" / "costs.csv").read_bytes()


@pytest.mark.parametrize("fault", ["extract:2", "finetune-step:3", "probe-save:4"])
def test_killed_run_resumes_reuses_finished_work_and_matches(reference, tmp_path, tiny_bert, fault):
    _, ref_results, ref_cache = reference
    config = _tiny_config(tmp_path, tiny_bert, "tiny")
    cache = tmp_path / "cache"
    killed = _run(config, cache, fault=fault)
    assert killed.returncode == -9, (killed.returncode, killed.stderr[-2000:])  # SIGKILL: no cleanup ran
    assert "finished" not in killed.stdout
    before = {f: f.stat().st_mtime_ns for f in cache.rglob("*") if f.is_file() and f.suffix in (".npy", ".npz")}
    done = _run(config, cache)
    assert done.returncode == 0, done.stderr[-3000:]
    # work finished before the kill was reused, not redone
    for f, mtime in before.items():
        if ".tmp-" not in str(f):
            assert f.exists() and f.stat().st_mtime_ns == mtime, f
    assert not list(cache.rglob("*.tmp-*"))  # a killed entry's temporary folder was cleaned up
    assert _digests(tmp_path / "results" / "tiny") == ref_results
    assert _cache_digests(cache) == ref_cache


def test_two_runs_at_once_on_one_cache(reference, tmp_path, tiny_bert):
    _, ref_results, ref_cache = reference
    cache = tmp_path / "cache"
    configs = [_tiny_config(tmp_path / f"run{i}", tiny_bert, "tiny") if (tmp_path / f"run{i}").mkdir() is None
               else None for i in range(2)]
    env = {**os.environ, "REDUNDANCY_CACHE": str(cache), "PYTHONPATH": os.pathsep.join(sys.path),
           "OMP_NUM_THREADS": "1"}
    env.pop("REDUNDANCY_FAULT", None)
    procs = []
    for c in configs:
        script = c.parent / "study_script.py"
        script.write_text(SCRIPT)
        procs.append(subprocess.Popen([sys.executable, str(script), str(c)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    for c in configs:
        assert _digests(c.parent / "results" / "tiny") == ref_results
    assert _cache_digests(cache) == ref_cache  # one entry per step: nothing written twice or torn
    assert not list(cache.rglob("*.tmp-*"))
