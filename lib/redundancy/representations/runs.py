"""The main job: for every configured model x task, load the data, fine-tune where the paper
does (sentence tasks), and extract and cache activations of every split.

A run is described by a YAML file (``configs/default.yml``)::

    name: default
    models: [minilm]
    device: cpu
    aggregation: last
    dtype: float32
    tasks:
      ptb-pos: {}
      sentiment:
        finetune: {epochs: 2, max_train: 2000}

Every step is cached by its configuration, so a second run reuses everything and
finishes in seconds; a killed run resumes where it stopped. What was produced is
written to ``<results>/<name>/`` as data: ``task_statistics.csv`` (the paper's
Tables 4 and 5) and ``activations.json`` (the cached entries, their shapes and
where they live).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from ..config import cache_dir, repo_root
from ..data.tasks import SPLITS, TASKS, load_task
from ..provenance import PeakSampler, own_anonymous
from ..cache import write_json_atomic

KNOWN_KEYS = {"name", "models", "tasks", "device", "aggregation", "dtype", "splits", "truncate",
              "results_dir", "max_batch_tokens", "finetune", "finetune_seeds", "seed", "seeds", "standardize",
              "goal"}


def load_config(path) -> dict:
    """Read and check a run configuration; errors name the file and the bad key."""
    path = Path(path)
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"run configuration {path} not found") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from None
    unknown = set(cfg) - KNOWN_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(KNOWN_KEYS)}")
    if not cfg.get("models") or not cfg.get("tasks"):
        raise ValueError(f"{path}: needs a list of 'models' and a mapping of 'tasks'")
    if isinstance(cfg["tasks"], list):
        cfg["tasks"] = {t: {} for t in cfg["tasks"]}
    for t, opts in cfg["tasks"].items():
        registry = (opts or {}).get("task", t) if isinstance(opts, dict) or opts is None else t
        if not isinstance(opts, (dict, type(None))):
            raise ValueError(f"{path}: task {t!r}: its options must be a mapping (key: value), got {opts!r}")
        if str(registry).lower() not in TASKS:
            raise ValueError(f"{path}: unknown task {registry!r}"
                             f"{'' if registry == t else f' (of task {t!r})'}; known: {sorted(TASKS)} (a task "
                             "of your own name says which of these reads it with task:, e.g. task: sentences)")
    for s in cfg.get("splits", SPLITS):
        if s not in SPLITS:
            raise ValueError(f"{path}: unknown split {s!r}; splits are {SPLITS}")
    probe_seeds = cfg.get("seeds")
    if probe_seeds is not None and (not isinstance(probe_seeds, list) or not probe_seeds or len(set(map(str, probe_seeds)))
                                    != len(probe_seeds) or not all(isinstance(x, int) and not isinstance(x, bool)
                                                                   for x in probe_seeds)):
        raise ValueError(f"{path}: 'seeds' (the probe seeds) must be a non-empty list of distinct integers, "
                         f"e.g. [0, 1, 2, 3, 4]; got {probe_seeds!r}")
    seeds = cfg.get("finetune_seeds")
    if seeds is not None:
        if not isinstance(seeds, dict) or any(
                not isinstance(v, list) or not v or not all(isinstance(x, int) and not isinstance(x, bool) for x in v)
                for v in seeds.values()):
            raise ValueError(f"{path}: 'finetune_seeds' must map a model to a non-empty list of integer seeds, "
                             f"e.g. {{minilm: [42, 43, 44]}}; got {seeds!r}")
        stray = set(seeds) - set(cfg["models"])
        if stray:
            raise ValueError(f"{path}: 'finetune_seeds' names models the run does not have: {sorted(stray)}")
    goal = cfg.get("goal")
    if goal is not None and not (isinstance(goal, dict) and set(goal) == {"hours", "gb"} and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in goal.values())):
        raise ValueError(f"{path}: 'goal' (the time and memory the run should stay within) must be "
                         f"{{hours: H, gb: G}} with positive numbers; got {goal!r}")
    cfg.setdefault("name", path.stem)
    return _resolve_paths(cfg, path)


#: task options that name files or folders
PATH_OPTIONS = ("train", "dev", "test", "path")


def _resolve_paths(cfg: dict, path: Path) -> dict:
    """Relative paths of a configuration are relative to its own folder, whatever the working
    directory (``run``, ``notebooks`` and the notebooks' kernels, which start in ``notebooks/``,
    then read the same files): the task files and folders, ``results_dir``, and a model given as
    a folder that exists there (a hub or embedded name is left alone)."""
    here = path.resolve().parent

    def absolute(v):
        return str((here / Path(v).expanduser()).resolve()) if isinstance(v, str) and v else v

    for opts in cfg["tasks"].values():
        if isinstance(opts, dict):
            for k in PATH_OPTIONS:
                if k in opts:
                    opts[k] = absolute(opts[k])
    if cfg.get("results_dir") is not None:
        cfg["results_dir"] = absolute(str(cfg["results_dir"]))
    folder = {m: absolute(m) for m in cfg["models"]
              if isinstance(m, str) and not Path(m).is_absolute() and (here / m).is_dir()}
    cfg["models"] = [folder.get(m, m) for m in cfg["models"]]
    if isinstance(cfg.get("finetune_seeds"), dict):
        cfg["finetune_seeds"] = {folder.get(m, m): v for m, v in cfg["finetune_seeds"].items()}
    return cfg


def finetune_seeds(cfg: dict, model: str) -> list[int]:
    """The fine-tuning seeds of ``model`` in a run: ``finetune_seeds[model]``, else the one seed of
    the ``finetune`` block (42, run_glue's default, when it names none). The first is the seed
    whose fine-tune the run's activations come from."""
    seeds = (cfg.get("finetune_seeds") or {}).get(model)
    return [int(x) for x in seeds] if seeds else [int((cfg.get("finetune") or {}).get("seed", 42))]


def _run_seed(cfg: dict, model: str, ft: dict) -> dict:
    """A task's fine-tuning settings with the seed the run extracts from: the model's first
    ``finetune_seeds`` entry where the run lists them, else the settings' own seed."""
    listed = (cfg.get("finetune_seeds") or {}).get(model)
    return {**ft, "seed": int(listed[0])} if listed else ft


def _task_finetune(cfg: dict, opts: dict) -> dict:
    """A task's fine-tuning settings: the run's ``finetune`` block, updated by the task's own."""
    return {**(cfg.get("finetune") or {}), **((opts or {}).get("finetune") or {})}


def fine_tune_all(cfg: dict, models=None, progress: bool = True, log=print) -> list[dict]:
    """Fine-tune every sentence task of a run for every seed of ``finetune_seeds``.

    The order is by seed rank: every model's first seed (the one the run extracts from) comes
    before any model's second, so the run's own fine-tunes are done first. Each fine-tune is
    cached and checkpointed (:func:`redundancy.representations.finetune.fine_tune`): a killed command resumes.
    The finished ones are listed in ``<results>/<name>/finetunes.json`` (model, task, seed,
    budget, steps, dev score, training time)."""
    from .finetune import FineTuneConfig, fine_tune, finetune_meta

    models = list(models or cfg["models"])
    device = cfg.get("device", "cpu")
    tasks = []
    for name, opts in cfg["tasks"].items():
        opts = dict(opts or {})
        ft = _task_finetune(cfg, opts)
        opts.pop("finetune", None)
        task = load_task(name, **opts)
        if task.kind == "sentence":
            tasks.append((task, ft))
    seeds = {m: finetune_seeds(cfg, m) for m in models}
    out, records = results_dir(cfg), []
    for rank in range(max(len(v) for v in seeds.values())):
        for model in models:
            if rank >= len(seeds[model]):
                continue
            for task, ft in tasks:
                ft_cfg = FineTuneConfig(**({**ft, "seed": seeds[model][rank]} if rank else _run_seed(cfg, model, ft)))
                t0 = time.time()
                path = fine_tune(model, task, ft_cfg, device=device, progress=progress)
                meta = finetune_meta(path)
                records.append({"model": model, "task": task.name, "seed": ft_cfg.seed, "epochs": ft_cfg.epochs,
                                "max_train": ft_cfg.max_train, "train_examples": meta["train_examples"],
                                "steps": meta["steps"], "dev": meta["scores"]["dev"],
                                "train_time_s": meta["train_time_s"], "path": str(path)})
                log(f"[fine-tune] {model} / {task.name} / seed {ft_cfg.seed}: {meta['steps']} steps over "
                    f"{meta['train_examples']} sentences, dev {meta['scores']['dev']}, trained in "
                    f"{meta['train_time_s']}s (this call {time.time() - t0:.0f}s)")
                write_json_atomic(out / "finetunes.json", {"name": cfg["name"], "finetunes": records})
    return records


def results_dir(cfg: dict) -> Path:
    """Where a run's results go (``<results_dir>/<name>``); created by the first write, so a run
    that fails before writing anything leaves no empty folder behind."""
    base = cfg.get("results_dir")
    if base is None:
        root = repo_root()
        base = (root / "data" / "results") if root else (cache_dir() / "results")
    return Path(base) / cfg["name"]


#: a notebook's invocations kept in a run's ``activations.json`` (the latest; the command's own
#: invocations, which did the work, are all kept)
MAX_NOTEBOOK_INVOCATIONS = 50


def _keep(invocations: list[dict]) -> list[dict]:
    """Every command invocation, and the latest ``MAX_NOTEBOOK_INVOCATIONS`` of the notebooks'."""
    nb = [i for i, r in enumerate(invocations) if r.get("caller") == "notebook"]
    drop = set(nb[:-MAX_NOTEBOOK_INVOCATIONS])
    return [r for i, r in enumerate(invocations) if i not in drop]


def invocations_of(index: dict) -> list[dict]:
    """The finished invocations an ``activations.json`` index records (an index written before
    they were kept records only its own, last invocation: that one, without a caller)."""
    if isinstance(index.get("invocations"), list):
        return [r for r in index["invocations"] if isinstance(r, dict)]
    if index.get("wall_time_s") is not None:
        return [{k: index.get(k) for k in ("wall_time_s", "peak_rss_mib")}]
    return []


def _earlier_invocations(index_file: Path) -> list[dict]:
    """The invocations an earlier ``activations.json`` of this run recorded: a run resumed after a
    kill, or run again, keeps the time and memory of the invocations that computed its steps."""
    try:
        return invocations_of(json.loads(index_file.read_text()))
    except (OSError, ValueError):
        return []


def run(cfg: dict, progress: bool = True, log=print, caller: str = "run") -> dict:
    """Run the configured extraction; returns the index written to ``activations.json``.

    ``caller`` is kept with this invocation's record: "run" for the command, "notebook" when a
    notebook's :class:`~redundancy.paper.sections.Study` makes sure of its activations (that time is
    also in the notebook's own wall time, so a run's total counts it once)."""
    import pandas as pd

    from .activations import extract, set_threads
    from .finetune import FineTuneConfig, fine_tune, load_finetuned
    from .models import load_model

    set_threads()
    t_start = time.time()
    # this process's own memory, file-backed pages left out (the activation files it writes
    # are mapped); the resident peak comes from getrusage at the end
    with PeakSampler(own_anonymous, 0.5) as anon:
        out = results_dir(cfg)
        device = cfg.get("device", "cpu")
        splits = cfg.get("splits", list(SPLITS))
        entries, stats = [], []
        tasks = {}
        for name, opts in cfg["tasks"].items():
            opts = dict(opts or {})
            ft = _task_finetune(cfg, opts)
            opts.pop("finetune", None)
            t0 = time.time()
            task = load_task(name, **opts)
            tasks[name] = (task, ft)
            stats.append(task.statistics())
            log(f"[task] {name}: {task.kind}, " + ", ".join(f"{s}={stats[-1][s]}" for s in SPLITS)
                + f" {stats[-1]['unit']}, labels={stats[-1]['labels']} ({time.time() - t0:.1f}s)")
        out.mkdir(parents=True, exist_ok=True)  # the tasks loaded: the run writes from here on
        pd.DataFrame(stats).set_index("task").to_csv(out / "task_statistics.csv")

        for model_name in cfg["models"]:
            base = None
            for name, (task, ft) in tasks.items():
                if task.kind == "token":
                    base = base or load_model(model_name, device=device)
                    lm = base
                else:
                    t0 = time.time()
                    path = fine_tune(model_name, task, FineTuneConfig(**_run_seed(cfg, model_name, ft)),
                                     device=device, progress=progress)
                    lm = load_finetuned(path, device=device)
                    info = lm.extra["finetune"]
                    log(f"[fine-tune] {model_name} on {name}: {info['steps']} steps, dev {info['scores']['dev']}, "
                        f"trained in {info['train_time_s']}s (this run: {time.time() - t0:.1f}s)  {path}")
                for split in splits:
                    t0 = time.time()
                    acts = extract(lm, task, split, aggregation=cfg.get("aggregation", "last"),
                                   dtype=cfg.get("dtype", "float32"), truncate=cfg.get("truncate", False),
                                   max_batch_tokens=cfg.get("max_batch_tokens", 2048), progress=progress)
                    entries.append({"model": model_name, "task": name, "split": split, "path": str(acts.path),
                                    "rows": acts.n_rows, "layers": acts.n_layers, "hidden": acts.hidden_size,
                                    "dtype": str(acts.array.dtype), "key": acts.meta["key"],
                                    "extract_time_s": acts.meta.get("wall_time_s"),
                                    "finetune": lm.extra.get("finetune")})
                    log(f"[activations] {model_name} / {name} / {split}: {acts.n_rows} x {acts.n_layers} x "
                        f"{acts.hidden_size} ({time.time() - t0:.1f}s)  {acts.path}")
    import resource

    this = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t_start)),
            "wall_time_s": round(time.time() - t_start, 2),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "peak_anon_mib": anon.peak_mib, "caller": str(caller)}
    index = {"name": cfg["name"], "config": cfg, "entries": entries, **this,
             "invocations": _keep(_earlier_invocations(out / "activations.json") + [this])}
    write_json_atomic(out / "activations.json", index)
    log(f"[done] {len(entries)} activation sets in {index['wall_time_s']}s; index: {out / 'activations.json'}")
    return index


def open_run(name_or_config, model: str, task: str, split: str):
    """Open the activations a run produced, by model, task and split."""
    from .store import Activations

    is_file = str(name_or_config).endswith((".yml", ".yaml"))
    cfg = load_config(name_or_config) if is_file else {"name": name_or_config}
    index_file = results_dir(cfg) / "activations.json"
    if not index_file.exists():
        cfg_file = name_or_config if is_file else f"configs/{cfg['name']}.yml"
        raise FileNotFoundError(f"run {cfg['name']!r} has not been run here ({index_file} is missing): run "
                                f"`python -m redundancy run --config {cfg_file}` first")
    index = json.loads(index_file.read_text())
    for e in index["entries"]:
        if e["model"] == model and e["task"] == task and e["split"] == split:
            return Activations(Path(e["path"]))
    raise KeyError(f"run {cfg['name']!r} has no activations for {model}/{task}/{split}")
