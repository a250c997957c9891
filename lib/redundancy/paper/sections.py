"""One run's analyses, section by section, saved as data: what the notebooks call.

A :class:`Study` wraps a run configuration (``configs/default.yml`` or a dict): its
models, tasks and activations (extracted on demand by :func:`redundancy.representations.runs.run`,
which caches everything), a probe cache shared by all analyses, and the folder where
results are written as CSV and JSON (``<results>/<run>/<section>/``). Each ``section_*``
function computes one section of the paper for every configured model and task and
returns tidy DataFrames; the notebooks only load, draw and glue.

Nothing here assumes one model or one task: every table has ``model`` and ``task``
columns, and every random step takes the study's ``seed``.

Intervals. Test scores of the selections (the oracle, the minimal set, the CCFS set) carry
a 95% percentile-bootstrap interval over test items (``*_low``, ``*_high``;
:meth:`~redundancy.methods.selection.ProbeEvaluator.test_interval`).

Seeds. A run may name several probe ``seeds`` (its config's ``seeds``; the first is
``seed``). Every probe-based section then runs once per seed: each seed changes the probes'
initialisation, their batch order and the random representative of each cluster. The
first seed's tables are written as before (``sweep.csv``); every seed's rows, with a
``seed`` column, go to ``<table>_seeds.csv`` beside them, which the verdicts read
(:mod:`redundancy.paper.claims`). Probes are cached per seed, so adding a seed only adds
its own work.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..config import cache_dir
from ..representations.runs import load_config, results_dir
from ..representations.runs import run as run_pipeline
from ..methods.selection import (MAX_FEATURES_GRID, PIPELINE_GRID, ProbeEvaluator, layer_analysis, ls_ccfs,
                        minimal_neuron_set)
from ..cache import write_json_atomic

if TYPE_CHECKING:  # for the signatures only: imported where used
    from ..methods.clustering import CorrelationClustering
    from ..representations.store import Activations

__all__ = ["Study", "model_label", "model_labels"]


def model_label(name: str) -> str:
    """A short display name: the last part of a path or hub name."""
    return Path(str(name).rstrip("/")).name or str(name)


def model_labels(models) -> dict:
    """A short display name per model, unique within the run: the last part of its path or hub
    name, with as many parent folders as it takes to tell two apart (``a/mymodel`` and
    ``b/mymodel``)."""
    models = [str(m) for m in models]
    out = {}
    for m in models:
        parts = Path(m.rstrip("/")).parts or (m,)
        for depth in range(1, len(parts) + 1):
            label = "/".join(parts[-depth:])
            if sum("/".join(Path(o.rstrip("/")).parts[-depth:]) == label for o in models) == 1:
                break
        out[m] = label
    return out


class Study:
    """A run's models x tasks, their activations, and where results go.

    Parameters
    ----------
    config : path or dict
        A run configuration (see :mod:`redundancy.representations.runs`).
    models, tasks : list, optional
        Subsets of the configuration's models and tasks (default: all).
    seed : int, optional
        Seed of every probe and clustering pick (default: the config's ``seed`` or 0).
    seeds : list of int, optional
        Probe seeds of the seeded sections (default: the config's ``seeds``, else ``[seed]``);
        ``seed`` is their first.
    standardize : bool, optional
        Z-score every neuron (train mean and std) before probing (default: the config's
        ``standardize``, else False: the paper's raw activations). Overriding the config
        writes the results under ``<run>-standardized`` (or ``<run>-raw``), beside the run's own.
    finetune_seed : int, optional
        Fine-tune the sentence tasks with this seed instead of the run's (one of its
        ``finetune_seeds``); the results go under ``<run>-ft<seed>``, and
        :meth:`redundancy.paper.claims.Results.load` merges them with the run's own.
    device : str, optional
        Overrides the config's device.
    progress : bool, default True
    """

    def __init__(self, config, models=None, tasks=None, seed=None, device=None, progress=True, log=print,
                 seeds=None, standardize=None, finetune_seed=None):
        cfg = load_config(config) if not isinstance(config, dict) else dict(config)
        cfg.setdefault("name", "run")
        if isinstance(cfg.get("tasks"), list):
            cfg["tasks"] = {t: {} for t in cfg["tasks"]}
        if isinstance(models, str):  # papermill -p models minilm: one model, not a list of letters
            models = [models]
        if isinstance(tasks, str):
            tasks = [tasks]
        if models:
            unknown = [m for m in models if m not in cfg["models"]]
            if unknown:
                raise ValueError(f"models {unknown} are not in run {cfg['name']!r} (it has {cfg['models']})")
            cfg["models"] = list(models)
        if tasks:
            unknown = [t for t in tasks if t not in cfg["tasks"]]
            if unknown:
                raise ValueError(f"tasks {unknown} are not in run {cfg['name']!r} (it has {list(cfg['tasks'])})")
            cfg["tasks"] = {t: cfg["tasks"][t] for t in tasks}
        if device:
            cfg["device"] = device
        if finetune_seed is not None:
            from ..representations.runs import finetune_seeds

            for m in cfg["models"]:
                if int(finetune_seed) not in finetune_seeds(cfg, m):
                    raise ValueError(f"fine-tuning seed {finetune_seed} is not among {m}'s finetune_seeds "
                                     f"{finetune_seeds(cfg, m)} in run {cfg['name']!r}")
            cfg["finetune"] = {**(cfg.get("finetune") or {}), "seed": int(finetune_seed)}
            cfg["finetune_seeds"] = {m: [int(finetune_seed)] for m in cfg["models"]}
            cfg["name"] = f"{cfg['name']}-ft{int(finetune_seed)}"
        if standardize is not None and bool(standardize) != bool(cfg.get("standardize", False)):
            cfg["standardize"] = bool(standardize)
            cfg["name"] = f"{cfg['name']}-{'standardized' if standardize else 'raw'}"
        self.cfg = cfg
        self.seed = int(cfg.get("seed", 0) if seed is None else seed)
        seeds = cfg.get("seeds") if seeds is None else seeds
        if seeds is None or (seed is not None and not seeds):
            seeds = [self.seed]
        try:
            seeds = [int(x) for x in seeds]
        except (TypeError, ValueError):
            raise ValueError(f"seeds must be a list of integers, got {seeds!r}") from None
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be a non-empty list of distinct integers, got {seeds!r}")
        if seed is not None and seeds[0] != self.seed:
            seeds = [self.seed] + [x for x in seeds if x != self.seed]
        self.seed, self.seeds = seeds[0], seeds
        self.progress = progress
        self.log = log
        self._index = None

    # ------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.cfg["name"]

    @property
    def models(self) -> list[str]:
        return list(self.cfg["models"])

    @property
    def analogue(self) -> dict:
        """The paper task each of the run's tasks is compared with: a task's ``paper_analogue:``
        in the configuration, else :data:`~redundancy.paper.tables.ANALOGUE` for registry names; a
        task of the user's own name (``task: sentences``) without one has none, whatever its loader."""
        from .tables import ANALOGUE

        out = dict(ANALOGUE)
        for t, opts in self.cfg["tasks"].items():
            opts = opts or {}
            if opts.get("paper_analogue"):
                out[t] = opts["paper_analogue"]
            elif "task" in opts and opts["task"] != t:
                out.pop(t, None)
        return out

    def data_notes(self) -> pd.DataFrame:
        """Per task and split, the items left out of scoring because their labels never occur in
        train (task, split, items, labels); empty when there are none."""
        import warnings

        from ..data.tasks import load_task

        rows = []
        for t, opts in self.cfg["tasks"].items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                task = load_task(t, **{k: v for k, v in (opts or {}).items() if k != "finetune"})
            for split, d in task.dropped.items():
                rows.append({"task": t, "split": split, "items left out": d["count"],
                             "labels unseen in train": ", ".join(map(str, d["labels"]))})
        return pd.DataFrame(rows, columns=["task", "split", "items left out", "labels unseen in train"])

    def label(self, model: str) -> str:
        """The model's display name in this run's tables and figures (unique within the run)."""
        return model_labels(self.models).get(str(model), model_label(model))

    @property
    def tasks(self) -> list[str]:
        return list(self.cfg["tasks"])

    @property
    def results(self) -> Path:
        return results_dir(self.cfg)

    def section_dir(self, section: str) -> Path:
        d = self.results / section
        d.mkdir(parents=True, exist_ok=True)
        return d

    def save(self, df: pd.DataFrame, section: str, name: str) -> Path:
        """Write a result table as CSV (atomically) and return its path."""
        path = self.section_dir(section) / f"{name}.csv"
        tmp = path.with_suffix(".csv.tmp")
        df.to_csv(tmp, index=False)
        tmp.replace(path)
        return path

    def save_json(self, obj, section: str, name: str) -> Path:
        path = self.section_dir(section) / f"{name}.json"
        write_json_atomic(path, obj)
        return path

    def save_seeds(self, frames: dict, section: str, name: str) -> pd.DataFrame | None:
        """Write every seed's rows (``{seed: DataFrame}``, a ``seed`` column added) to
        ``<section>/<name>_seeds.csv`` when the study has more than one seed."""
        if len(frames) < 2:
            return None
        df = pd.concat([f.assign(seed=s) for s, f in frames.items()], ignore_index=True)
        self.save(df, section, f"{name}_seeds")
        return df

    def load(self, section: str, name: str) -> pd.DataFrame:
        return pd.read_csv(self.results / section / f"{name}.csv")

    # ------------------------------------------------------------------------------------
    def ensure(self) -> dict:
        """Extract (or find in the cache) the activations of every model x task x split."""
        self._index = run_pipeline(self.cfg, progress=self.progress, log=self.log if self.progress else
                                   (lambda *a, **k: None), caller="notebook")
        return self._index

    @property
    def index(self) -> dict:
        if self._index is None:
            path = self.results / "activations.json"
            if path.exists():
                self._index = json.loads(path.read_text())
                have = {(e["model"], e["task"]) for e in self._index["entries"]}
                if not all((m, t) in have for m in self.models for t in self.tasks):
                    self._index = None
            if self._index is None:
                self.ensure()
        return self._index

    def activations(self, model: str, task: str, split: str) -> Activations:
        """The stored activations of one model x task x split."""
        from ..representations.store import Activations

        for e in self.index["entries"]:
            if e["model"] == model and e["task"] == task and e["split"] == split:
                return Activations(Path(e["path"]))
        raise KeyError(f"run {self.name!r} has no activations for {model}/{task}/{split}; "
                       "call Study.ensure() to extract them")

    def kind(self, task: str) -> str:
        """'token' (sequence labeling) or 'sentence' (sequence classification)."""
        return self.activations(self.models[0], task, "train").meta["config"]["kind"]

    def token_tasks(self) -> list[str]:
        return [t for t in self.tasks if self.kind(t) == "token"]

    def evaluator(self, model: str, task: str, progress=None, seed: int | None = None) -> ProbeEvaluator:
        """Train/dev/test probes for one model x task (``seed``: default the study's first),
        cached under ``<cache>/probes``."""
        return ProbeEvaluator(self.activations(model, task, "train"), self.activations(model, task, "dev"),
                              self.activations(model, task, "test"),
                              random_state=self.seed if seed is None else int(seed),
                              standardize=bool(self.cfg.get("standardize", False)),
                              cache_dir=cache_dir() / "probes", progress=self.progress if progress is None else progress)

    def clustering(self, model: str, task: str, threshold: float = 0.3,
                   seed: int | None = None) -> CorrelationClustering:
        """The correlation clustering of a model's neurons on a task's training activations, fitted
        at ``threshold`` (its agglomerative tree cached under ``<cache>/clustering``, so a second
        call, or :func:`section_clustering`'s, reads it instead of recomputing it)."""
        from ..methods.clustering import CorrelationClustering

        return CorrelationClustering(threshold=threshold, random_state=self.seed if seed is None else int(seed),
                                     memory=cache_dir() / "clustering").fit(self.activations(model, task, "train").flat())

    def pairs(self) -> list[tuple[str, str]]:
        """Every (model, task) of the study."""
        return [(m, t) for m in self.models for t in self.tasks]

    def general_task(self, task: str | None = None) -> str:
        """The task whose activations serve the general (task-free) analyses of section 5:
        ``task`` if given, else the first token-level task (the paper uses the Penn Treebank)."""
        if task:
            if task not in self.tasks:
                raise ValueError(f"general task {task!r} is not in run {self.name!r} ({self.tasks})")
            return task
        tok = self.token_tasks()
        if not tok:
            raise ValueError(f"run {self.name!r} has no token-level task for the general analyses; "
                             "pass general_task=")
        return tok[0]


# ----------------------------------------------------------------------------------------
# section 5.1: CKA

def section_cka(study: Study, task: str | None = None, split: str = "train", max_rows: int | None = None,
                debiased: bool = False) -> pd.DataFrame:
    """CKA between every pair of layers, per model (Figure 1). Long form: model, layer_i, layer_j, cka."""
    from ..methods.cka import linear_cka_matrix

    task = study.general_task(task)
    rows, costs = [], []
    for m in study.models:
        acts = study.activations(m, task, split)
        t0 = time.perf_counter()
        arr = acts.array if max_rows is None else acts.array[:max_rows]
        M = linear_cka_matrix([arr[:, l, :] for l in range(acts.n_layers)], debiased=debiased)
        secs = time.perf_counter() - t0
        for i in range(acts.n_layers):
            for j in range(acts.n_layers):
                rows.append({"model": study.label(m), "task": task, "layer_i": i, "layer_j": j,
                             "cka": float(M[i, j]), "rows": int(arr.shape[0])})
        costs.append({"model": study.label(m), "task": task, "step": "cka matrix", "seconds": secs})
    df = pd.DataFrame(rows)
    study.save(df, "cka", "cka")
    # measurements of time go to costs.csv, the only files that differ between two runs
    study.save(pd.DataFrame(costs), "cka", "costs")
    return df


# ----------------------------------------------------------------------------------------
# section 5.2: correlation clustering

DEFAULT_THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def section_clustering(study: Study, thresholds=DEFAULT_THRESHOLDS, makeup_threshold: float = 0.3,
                       general_task: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Figure 2 / Table 6 (neurons kept and scores per threshold, per task), Figure 3 (makeup).

    Clustering runs per model x task on that task's training activations (sentence tasks
    have their own fine-tuned model, so their own neurons), without labels; a probe is
    then trained on the kept neurons. Threshold 0 keeps every neuron: the oracle.

    Returns
    -------
    sweep : DataFrame  model, task, threshold, neurons, fraction_kept, dev, test
    makeup : DataFrame  model, task, window, clusters, share (at ``makeup_threshold``)
    """
    from ..methods.clustering import cluster_makeup, layer_of_neuron

    sweeps, makeup, costs = {seed: [] for seed in study.seeds}, [], []
    for m, t in study.pairs():
        tr = study.activations(m, t, "train")
        for seed in study.seeds:
            ev = study.evaluator(m, t, seed=seed)
            t0 = time.perf_counter()
            cc = study.clustering(m, t, makeup_threshold, seed)
            secs = time.perf_counter() - t0
            kept = [None if c == 0 else cc.representatives_at(c) for c in thresholds]
            trained = ev.evaluate_many(kept, [f"{study.label(m)}/{t} c_t={c} seed {seed}" for c in thresholds])
            for c, r in zip(thresholds, trained):
                sweeps[seed].append({"model": study.label(m), "task": t, "threshold": float(c),
                                     "neurons": r.n_neurons, "fraction_kept": r.n_neurons / ev.n_neurons,
                                     "dev": r.dev, "test": r.test, "metric": ev.metric})
            if seed != study.seed:
                continue
            costs.append({"model": study.label(m), "task": t, "step": "clustering", "seconds": secs})
            mk = cluster_makeup(cc.labels_, layer_of_neuron(tr.n_layers, tr.hidden_size))
            for rec in mk.reset_index().to_dict("records"):
                makeup.append({"model": study.label(m), "task": t, **rec})
    sweeps = {seed: pd.DataFrame(v) for seed, v in sweeps.items()}
    sweep, makeup = sweeps[study.seed], pd.DataFrame(makeup)
    study.save(sweep, "clustering", "sweep")
    study.save_seeds(sweeps, "clustering", "sweep")
    study.save(makeup, "clustering", "makeup")
    study.save(pd.DataFrame(costs), "clustering", "costs")
    return sweep, makeup


# ----------------------------------------------------------------------------------------
# section 6.1: layers

def section_layers(study: Study, delta: float = 0.01) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 7 / Figure 4 (per-layer probes vs the oracle) and per-class scores (Figures 7-9)."""
    tables, per_class = {}, []
    for seed in study.seeds:
        tables[seed], pcs = _layers_one_seed(study, seed, delta)
        if seed == study.seed:
            per_class = pcs
    table = tables[study.seed]
    per_class = pd.concat(per_class, ignore_index=True) if per_class else pd.DataFrame()
    study.save(table, "layers", "layers")
    study.save_seeds(tables, "layers", "layers")
    study.save(per_class, "layers", "per_class")
    return table, per_class


def _layers_one_seed(study: Study, seed: int, delta: float):
    """One seed's per-layer table and per-class frames (see :func:`section_layers`)."""
    table, per_class = [], []
    for m, t in study.pairs():
        ev = study.evaluator(m, t, seed=seed)
        la = layer_analysis(ev, delta=delta, prefixes=True)  # prefixes: for LS (7.1)
        o = la.oracle
        table.append({"model": study.label(m), "task": t, "layer": "oracle", "dev": o.dev, "test": o.test,
                      "within_dev": True, "within_test": True, "metric": ev.metric})
        for rec in la.table.to_dict("records"):
            table.append({"model": study.label(m), "task": t, "layer": str(rec["layer"]), "dev": rec["dev"],
                          "test": rec["test"], "within_dev": rec["within_dev"], "within_test": rec["within_test"],
                          "metric": table[-1]["metric"]})
        if len(la.per_class):
            pc = la.per_class.copy()
            pc.insert(0, "task", t)
            pc.insert(0, "model", study.label(m))
            pc["probe"] = pc["probe"].astype(str)
            per_class.append(pc)
    return pd.DataFrame(table), per_class


# ----------------------------------------------------------------------------------------
# section 6.2: minimal sets

def section_minimal_sets(study: Study, delta: float = 0.03, grid=MAX_FEATURES_GRID,
                         name: str = "minimal_sets") -> pd.DataFrame:
    """Tables 1, 2 and 8: the minimal top-ranked neuron set per model x task.

    ``name`` is the table's name; a name other than the default (a sensitivity run at another
    ``delta``) writes only that table (and its seeds), not the trials and neuron lists."""
    main = name == "minimal_sets"
    tables, trials = {}, []
    for seed in study.seeds:
        rows = []
        for m, t in study.pairs():
            ev = study.evaluator(m, t, seed=seed)
            ms = minimal_neuron_set(ev, delta=delta, grid=grid)
            lo, hi = ev.test_interval(ms.neurons, seed=seed)
            rows.append({"model": study.label(m), "task": t, "kind": study.kind(t), "n_neurons": ev.n_neurons,
                         "oracle_dev": ms.reference_dev, "oracle_test": ms.reference_test, "neurons": ms.k,
                         "percentage": ms.percentage, "dev": ms.dev, "test": ms.test, "found": ms.found,
                         "delta": delta, "metric": ev.metric, "test_low": lo, "test_high": hi})
            if seed != study.seed or not main:
                continue
            tr = ms.trials.copy()
            tr.insert(0, "task", t)
            tr.insert(0, "model", study.label(m))
            trials.append(tr)
            study.save_json({"neurons": ms.neurons.tolist(), "ranking": ms.ranking.order.tolist()}, "minimal_sets",
                            f"neurons_{study.label(m)}_{t}")
        tables[seed] = pd.DataFrame(rows)
    df = tables[study.seed]
    study.save(df, "minimal_sets", name)
    study.save_seeds(tables, "minimal_sets", name)
    if not main:
        return df
    trials = pd.concat(trials, ignore_index=True)
    study.save(trials.drop(columns=["fit_seconds"], errors="ignore"), "minimal_sets", "trials")
    if "fit_seconds" in trials:
        study.save(trials[["model", "task", "percentage", "k", "fit_seconds"]].rename(
            columns={"fit_seconds": "seconds"}), "minimal_sets", "costs")
    return df


# ----------------------------------------------------------------------------------------
# section 7.1: LS + CCFS

def section_ls_ccfs(study: Study, delta_ls: float = 0.01, delta_ccfs: float = 0.01, threshold: float = 0.3,
                    grid=PIPELINE_GRID) -> pd.DataFrame:
    """Tables 3, 9 and 10: LayerSelector + CCFS per model x task."""
    tables = {}
    for seed in study.seeds:
        rows = []
        for m, t in study.pairs():
            ev = study.evaluator(m, t, seed=seed)
            rep = ls_ccfs(ev, delta_ls=delta_ls, delta_ccfs=delta_ccfs, threshold=threshold, grid=grid,
                          random_state=seed, memory=cache_dir() / "clustering")
            lo, hi = ev.test_interval(None, seed=seed)
            clo, chi = ev.test_interval(rep["_ccfs"].neurons, seed=seed)
            rows.append({"model": study.label(m), "task": t, "kind": study.kind(t), "metric": ev.metric,
                         **{k: v for k, v in rep.items() if not k.startswith("_")},
                         "oracle_test_low": lo, "oracle_test_high": hi, "ccfs_test_low": clo, "ccfs_test_high": chi})
        tables[seed] = pd.DataFrame(rows)
    df = tables[study.seed]
    study.save(df, "ls_ccfs", "ls_ccfs")
    study.save_seeds(tables, "ls_ccfs", "ls_ccfs")
    return df


# ----------------------------------------------------------------------------------------
# section 7.2: efficiency

def section_timing(study: Study, n_sentences: int = 200, feature_counts=None, token_counts=None,
                   repeats: int = 3, task: str | None = None) -> dict:
    """Figures 5, 10-14: forward time per layers run, classifier, extraction, clustering, ranking times."""
    from ..representations.models import load_model
    from ..methods.ranking import lca_ranking
    from ..data.tasks import load_task
    from ..methods.efficiency import classifier_time, clustering_time, extraction_time, forward_time, ranking_time

    task = study.general_task(task)
    out = {k: [] for k in ("forward", "classifier", "extraction", "clustering", "ranking")}
    opts = dict(study.cfg["tasks"][task] or {})
    opts.pop("finetune", None)
    data = load_task(task, **opts)
    sents = [list(s) for s in data.splits["train"].tokens]
    for m in study.models:
        lm = load_model(m, device=study.cfg.get("device", "cpu"))
        label = study.label(m)
        df = forward_time(lm, sents[:n_sentences], repeats=repeats)
        out["forward"].append(df.assign(model=label))
        tr = study.activations(m, task, "train")
        ev = study.evaluator(m, task)
        order = lca_ranking(ev.oracle().coef).order  # features taken in rank order
        X = tr.neurons(order)
        fc = feature_counts or sorted({c for c in (10, 30, 100, 300, 1000, 3000, tr.n_neurons)
                                       if c <= tr.n_neurons})
        out["classifier"].append(classifier_time(X, tr.labels, fc, repeats=repeats,
                                                 random_state=study.seed).assign(model=label))
        n_words = sum(len(s) for s in sents)
        top = min(n_words, tr.n_rows)
        tc = token_counts or ([c for c in (1000, 2000, 5000, 10000, 20000) if c <= top]
                              or sorted({max(2, top // 4), max(2, top // 2), top}))
        out["extraction"].append(extraction_time(lm, sents, tc, repeats=repeats).assign(model=label))
        out["clustering"].append(clustering_time(tr.flat(), tc, repeats=repeats).assign(model=label))
        out["ranking"].append(ranking_time(ev.oracle().coef, fc, repeats=repeats).assign(model=label))
    res = {k: pd.concat(v, ignore_index=True).drop(columns=["runs"], errors="ignore") for k, v in out.items()}
    for k, v in res.items():
        study.save(v, "timing", k)
    return res
