"""Publish a run's results as data in the repository, with their provenance.

``python -m redundancy publish --config configs/paper-scale.yml`` copies what the
notebooks wrote for the run (``<results>/<run>/``: every CSV and JSON, a few hundred
kB) to ``data/<run>/results/`` and writes ``data/<run>/provenance.json``:

* the configuration (and the file it came from), the commit and whether the tree had
  uncommitted changes, the machine (CPU model, cores, memory), library versions;
* the pipeline: per model x task x split the rows, the extraction time, and for
  sentence tasks the fine-tuning budget (epochs, training sentences, steps), its time
  and the dev score; every finished invocation's wall time and peak memory (resident and
  anonymous), and the largest of them;
* every notebook's wall time and the peak memory of its kernel, from the batch runner.

Times are summed from the cached steps' own records, so a run finished across several
sessions (each resuming the last) reports the compute it took, not the last resume's.
The book's paper-scale chapter reads only these files, so it builds without the hours
of computing behind them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from ..config import repo_root
from ..provenance import library_versions, machine
from ..representations.runs import invocations_of, load_config, results_dir
from ..cache import write_json_atomic

__all__ = ["publish", "summary"]


def _commit(root: Path | None) -> dict:
    if root is None:
        return {"commit": None, "dirty": None}
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "lib", "notebooks", "configs"],
                                    cwd=root, capture_output=True, text=True, check=True).stdout.strip())
        return {"commit": head, "dirty": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def _pipeline_record(index: dict) -> dict:
    rows, seen_ft = [], set()
    finetune_s = 0.0
    for e in index.get("entries", []):
        ft = e.get("finetune") or {}
        row = {k: e.get(k) for k in ("model", "task", "split", "rows", "layers", "hidden", "dtype")}
        row["neurons"] = (e.get("layers") or 0) * (e.get("hidden") or 0)
        row["extract_time_s"] = e.get("extract_time_s")
        if ft:
            row.update({"finetune_epochs": ft.get("finetune", {}).get("epochs"),
                        "finetune_max_train": ft.get("finetune", {}).get("max_train"),
                        "finetune_steps": ft.get("steps"), "finetune_time_s": ft.get("train_time_s"),
                        "finetune_dev": json.dumps(ft.get("scores", {}).get("dev"), sort_keys=True)})
            if ft.get("key") not in seen_ft:
                seen_ft.add(ft.get("key"))
                finetune_s += float(ft.get("train_time_s") or 0)
        rows.append(row)
    extract_s = sum(float(r["extract_time_s"] or 0) for r in rows)
    # every invocation that finished (a resumed run's earlier ones computed its steps; one killed
    # before its end left no record, but its steps' own times are in the entries above)
    inv = invocations_of(index)

    def peak(key):
        vals = [float(r[key]) for r in inv if r.get(key) is not None]
        return max(vals) if vals else None
    return {"entries": rows, "extract_time_s": round(extract_s, 1), "finetune_time_s": round(finetune_s, 1),
            "last_invocation_wall_time_s": index.get("wall_time_s"),
            # the command's invocations (a notebook's is in the notebook's own wall time)
            "invocations_wall_time_s": round(sum(float(r.get("wall_time_s") or 0) for r in inv
                                                 if r.get("caller") != "notebook"), 1),
            "invocations": inv, "peak_rss_mib": peak("peak_rss_mib"), "peak_anon_mib": peak("peak_anon_mib")}


def keep_earlier_budget(dest: Path, cfg: dict, log=print) -> Path | None:
    """Before a run is published over one made at another fine-tuning budget, move the earlier
    publication to ``<dest>-<epochs>epoch`` (e.g. ``data/paper-scale-1epoch``), where the Paper
    scale page's budget table reads it; returns where it went (None: nothing to keep)."""
    prov_file = Path(dest) / "provenance.json"
    if not prov_file.exists():
        return None
    old = (json.loads(prov_file.read_text()).get("config") or {}).get("finetune") or {}
    if old == (cfg.get("finetune") or {}):
        return None
    keep = Path(dest).parent / f"{Path(dest).name}-{float(old.get('epochs', 3)):g}epoch"
    if keep.exists():
        raise FileExistsError(f"{dest} was published at another fine-tuning budget ({old}) and {keep} exists "
                              "already: move one of them away before publishing")
    shutil.move(str(dest), str(keep))
    log(f"[publish] the earlier publication (fine-tuning {old}) moved to {keep} for the budget table")
    return keep


def _copy_results(src: Path, out: Path) -> int:
    """Copy a run's result tables (CSV and JSON; not its index, notebooks or claims) to ``out``."""
    n = 0
    for f in sorted(src.rglob("*")):
        rel = f.relative_to(src)
        if (f.is_file() and f.suffix in (".csv", ".json") and ".tmp-" not in f.name
                and not any(part.startswith(".") or part == "executed" for part in rel.parts)
                and f.name not in ("activations.json", "notebooks.json") and rel.parts[0] != "claims"):
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
            n += 1
    return n


def publish(config, dest=None, log=print, note: str | None = None) -> Path:
    """Copy a run's results into ``dest`` (default ``data/<run name>``) with ``provenance.json``.

    ``note``: the conditions of the run in words (other work sharing the machine, a pause or a
    resume), kept as ``provenance["note"]``; the book shows it beside the run's times."""
    cfg_path = Path(config)
    cfg = load_config(cfg_path)
    src = results_dir(cfg)
    index_file = src / "activations.json"
    if not index_file.exists():
        raise FileNotFoundError(f"{index_file} not found: run `python -m redundancy run --config {cfg_path}` "
                                "and the notebooks first")
    root = repo_root()
    dest = Path(dest) if dest else (root or Path.cwd()) / "data" / cfg["name"]
    keep_earlier_budget(dest, cfg, log)
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / "results"
    for old in [out, *dest.glob("results-ft*")]:
        if old.exists():
            shutil.rmtree(old)
    n = _copy_results(src, out)
    for extra in sorted(src.parent.glob(f"{cfg['name']}-ft*")):  # the other fine-tuning seeds' results
        n += _copy_results(extra, dest / f"results-ft{extra.name.rsplit('-ft', 1)[1]}")
    index = json.loads(index_file.read_text())
    notebooks_file = src / "notebooks.json"
    notebooks = json.loads(notebooks_file.read_text()) if notebooks_file.exists() else {}
    prov = {"run": cfg["name"], "config": cfg,
            "config_file": str(cfg_path.resolve().relative_to(root)) if root and cfg_path.resolve().is_relative_to(root)
            else str(cfg_path),
            **_commit(root), "machine": machine(), "versions": library_versions(),
            "published": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "pipeline": _pipeline_record(index),
            "notebooks": {k: {kk: v[kk] for kk in ("status", "wall_time_s", "peak_rss_mib", "peak_anon_mib", "finished", "earlier") if kk in v}
                          for k, v in sorted(notebooks.items())},
            "pairs": sorted({(e["model"], e["task"]) for e in index.get("entries", [])})}
    if note:
        prov["note"] = str(note)
    n_verdicts = write_verdicts(out, cfg)
    prov["verdicts"] = {"file": "results/claims/verdicts.json", "judged": prov["published"],
                        "commit": prov.get("commit"), "by": "redundancy.paper.claims.judge"}
    write_json_atomic(dest / "provenance.json", prov)
    log(f"[publish] {n_verdicts} verdicts -> {out / 'claims' / 'verdicts.json'}")
    log(f"[publish] {n} result files of run {cfg['name']!r} -> {out}; provenance: {dest / 'provenance.json'}")
    return dest


def write_verdicts(results, cfg: dict) -> int:
    """Judge every claim of the paper on a results folder and write the records (claim,
    criterion, paper value and source, ours per model with its interval and seeds, margin,
    outcome) to ``<results>/claims/verdicts.json``; returns how many."""
    from ..paper.claims import Results, judge, run_budget

    verdicts = judge(Results.load(results, budget=run_budget(cfg)))
    write_json_atomic(Path(results) / "claims" / "verdicts.json", [v.record() for v in verdicts])
    return len(verdicts)


def summary(prov: dict, goal: dict | None = None) -> dict:
    """A published run's totals against a goal, ``{"hours": ..., "gb": ...}`` (default: the
    ``goal`` of the run's configuration, as published; none, no verdict).

    * ``total_s``: the pipeline's wall time (its command invocations' sum; where a killed
      invocation left no record, the sum of its steps' own times if larger) plus every batch of
      every notebook;
    * ``peak_rss_mib``: the largest resident set of any step (it counts the pages of the mapped
      activation files a step has read, which the system can drop);
    * ``peak_anon_mib``: the largest anonymous memory of a notebook kernel (what it allocated
      itself), or None; ``memory_basis``: "anonymous" where every notebook batch recorded it
      (each pipeline invocation counted with its anonymous peak, or its resident peak where it
      recorded none), else "resident"; ``memory_mib``, the memory judged on that basis;
    * ``within_goal``: True or False, or None when the provenance records no work at all or
      there is no goal.
    """
    goal = goal or (prov.get("config") or {}).get("goal")
    pl = prov.get("pipeline") or {}
    batches = [b for v in (prov.get("notebooks") or {}).values() for b in [*v.get("earlier", []), v]]
    nb_wall = sum(float(b.get("wall_time_s") or 0) for b in batches)
    recorded = pl.get("invocations_wall_time_s")
    if recorded is None:  # provenance published before invocations were kept
        recorded = pl.get("last_invocation_wall_time_s")
    steps_s = float(pl.get("extract_time_s") or 0) + float(pl.get("finetune_time_s") or 0)
    pipe_s = max(float(recorded or 0), steps_s)
    invocations = [r for r in pl.get("invocations") or [] if isinstance(r, dict)]
    pipe_rss = [float(r["peak_rss_mib"]) for r in invocations if r.get("peak_rss_mib") is not None] or \
        ([float(pl["peak_rss_mib"])] if pl.get("peak_rss_mib") is not None else [])
    # a pipeline invocation's own memory: its anonymous peak, or its resident peak where it has none
    pipe_mem = [float(r.get("peak_anon_mib") if r.get("peak_anon_mib") is not None else r.get("peak_rss_mib") or 0)
                for r in invocations] or pipe_rss
    rss = pipe_rss + [float(b.get("peak_rss_mib") or 0) for b in batches]
    anon = [float(b["peak_anon_mib"]) for b in batches if b.get("peak_anon_mib")]
    basis = "anonymous" if anon and len(anon) == len(batches) else "resident"
    mem = max(pipe_mem + anon if basis == "anonymous" else rss, default=0.0)
    total = pipe_s + nb_wall
    worked = bool(batches or invocations or pipe_rss or steps_s)
    return {"total_s": total, "pipeline_s": pipe_s, "notebooks_s": nb_wall, "peak_rss_mib": max(rss, default=0.0),
            "peak_anon_mib": max(anon) if anon else None, "anon_batches": len(anon), "batches": len(batches),
            "memory_basis": basis, "memory_mib": mem,
            "goal": goal, "within_goal": (total <= goal["hours"] * 3600 and mem * 2**20 <= goal["gb"] * 1e9)
            if worked and goal else None}
