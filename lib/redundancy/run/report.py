"""One model, one task, one command: how redundant is it, layer by layer and neuron by neuron.

``python -m redundancy report --model my-model-folder --task sentences --option train=tweets.csv
--option text=tweet --option label=sentiment`` (or ``report(model, task, options)`` in Python)
runs the paper's analyses on one model and one task and writes them to a folder it names:

* per-layer probes against the oracle and the layers within 1% of it (section 6.1);
* linear CKA between adjacent layers (section 5.1);
* correlation clustering at ``c_t`` and the score of a probe on the kept neurons (section 5.2);
* the minimal neuron set: its size, its share of all neurons, its dev and test scores (6.2);
* LayerSelector + CCFS (section 7).

The folder holds ``summary.json`` (the record :func:`report` returns) beside the CSVs the
book's chapters read (``layers/``, ``cka/``, ``clustering/``, ``minimal_sets/``, ``ls_ccfs/``).
Everything is cached (activations, fine-tunes, probes, clustering trees): a second call
reads it back in seconds. Sentence tasks are fine-tuned first, as in the paper, on the default
run's budget unless ``finetune`` says otherwise.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from ..cache import write_json_atomic

__all__ = ["report", "summary_text", "DEFAULT_FINETUNE"]

#: the default run's fine-tuning budget (configs/default.yml), for sentence tasks
DEFAULT_FINETUNE = {"epochs": 1, "max_train": 1500, "learning_rate": 5.0e-5, "batch_size": 32, "seed": 42}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "report"


def report(model: str, task: str, options: dict | None = None, out=None, finetune: dict | None = None,
           seeds=(0,), threshold: float = 0.3, delta_layers: float = 0.01, delta_minimal: float = 0.03,
           device: str = "cpu", progress: bool = True, log=print) -> dict:
    """Run the paper's analyses on ``model`` and ``task`` and return their summary.

    Parameters
    ----------
    model : str
        An embedded name (``minilm``), a folder saved with ``save_pretrained()`` or a hub name.
    task : str
        A registry name (``python -m redundancy tasks``) or, with ``options["task"]``, a name of
        one's own (``options={"task": "sentences", "train": ..., "text": ..., "label": ...}``).
    options : dict, optional
        The task's options, as in a run configuration (relative paths: to the working directory).
    out : path, optional
        The report's folder (default ``./redundancy-report-<model>-<task>``).
    finetune : dict, optional
        Fine-tuning settings for a sentence task (default :data:`DEFAULT_FINETUNE`).
    seeds : sequence of int
        Probe seeds; with several, every number is the first seed's and the CSVs hold the others.
    threshold, delta_layers, delta_minimal : float
        The clustering threshold ``c_t``, and the relative losses allowed for a layer (1%) and
        for the minimal neuron set (3%, the paper's 97%).
    """
    from ..paper.sections import (Study, model_label, section_cka, section_clustering, section_layers,
                                  section_ls_ccfs, section_minimal_sets)

    t0 = time.time()
    options = {k: str(Path(v).resolve()) if k in ("train", "dev", "test", "path") and isinstance(v, (str, Path))
               else v for k, v in (options or {}).items()}
    model = str(Path(model).resolve()) if Path(model).expanduser().is_dir() else str(model)
    out = Path(out or f"redundancy-report-{_slug(model_label(model))}-{_slug(task)}").resolve()
    cfg = {"name": out.name, "models": [model], "tasks": {task: options}, "results_dir": str(out.parent),
           "device": device, "finetune": dict(finetune or DEFAULT_FINETUNE), "seeds": [int(s) for s in seeds]}
    study = Study(cfg, progress=progress, log=log)
    study.ensure()
    log(f"[report] {model_label(model)} / {task}: activations ready ({time.time() - t0:.0f}s); probing")
    layers, _ = section_layers(study, delta=delta_layers)
    cka = section_cka(study, task=task)
    sweep, _ = section_clustering(study, thresholds=(0.0, threshold), makeup_threshold=threshold, general_task=task)
    minimal = section_minimal_sets(study, delta=delta_minimal)
    lsc = section_ls_ccfs(study, threshold=threshold)
    summary = _summary(study, model, task, layers, cka, sweep, minimal, lsc, threshold, delta_layers, delta_minimal)
    summary["seconds"] = round(time.time() - t0, 1)
    write_json_atomic(out / "summary.json", summary)
    log(summary_text(summary))
    log(f"[report] {out / 'summary.json'} and the CSVs beside it ({summary['seconds']:.0f}s)")
    return summary


def _summary(study, model, task, layers, cka, sweep, minimal, lsc, threshold, delta_layers, delta_minimal) -> dict:
    """The record of one report (plain numbers, JSON-ready)."""
    per_layer = layers[layers.layer != "oracle"]
    oracle = layers[layers.layer == "oracle"].iloc[0]
    acts = study.activations(model, task, "train")
    M = cka.pivot(index="layer_i", columns="layer_j", values="cka")
    kept = sweep[sweep.threshold == threshold].iloc[0]
    ms, ls = minimal.iloc[0], lsc.iloc[0]
    return json.loads(json.dumps({
        "model": model, "label": study.label(model), "task": task, "kind": study.kind(task),
        "metric": str(oracle.metric), "layers": int(acts.n_layers), "hidden": int(acts.hidden_size),
        "neurons": int(acts.n_neurons), "seeds": study.seeds,
        "oracle": {"dev": oracle.dev, "test": oracle.test},
        "per_layer": [{"layer": int(r.layer), "dev": r.dev, "test": r.test, "within_dev": bool(r.within_dev)}
                      for r in per_layer.itertuples()],
        "layers_within": {"delta": delta_layers,
                          "layers": [int(r.layer) for r in per_layer.itertuples() if r.within_dev]},
        # None where CKA is undefined (a sentence task's [CLS] is the same vector in layer 0 for every sentence)
        "adjacent_cka": [{"layers": [i, i + 1], "cka": None if M.loc[i, i + 1] != M.loc[i, i + 1] else
                          float(M.loc[i, i + 1])} for i in range(int(acts.n_layers) - 1)],
        "clustering": {"threshold": threshold, "neurons": int(kept.neurons), "fraction_kept": kept.fraction_kept,
                       "dev": kept.dev, "test": kept.test},
        "minimal_set": {"delta": delta_minimal, "neurons": int(ms.neurons), "share": ms.neurons / ms.n_neurons,
                        "dev": ms.dev, "test": ms.test, "test_interval": [ms.test_low, ms.test_high],
                        "found": bool(ms.found)},
        "ls_ccfs": {"ls_layers": int(ls.ls_layers), "ls_dev": ls.ls_dev, "ls_test": ls.ls_test,
                    "ccfs_neurons": int(ls.ccfs_neurons), "ccfs_dev": ls.ccfs_dev, "ccfs_test": ls.ccfs_test,
                    "reduction": ls.reduction, "ls_found": bool(ls.ls_found), "ccfs_found": bool(ls.ccfs_found)},
        "folder": str(study.results),
    }, default=float))


def summary_text(s: dict) -> str:
    """A report's summary as a few readable lines."""
    within = ", ".join(map(str, s["layers_within"]["layers"])) or "none"
    cka = " ".join("n/a" if c["cka"] is None else f"{c['cka']:.2f}" for c in s["adjacent_cka"])
    c, m, lc = s["clustering"], s["minimal_set"], s["ls_ccfs"]
    rows = [
        ("model / task", f"{s['label']} / {s['task']} ({s['kind']} task, {s['metric']})"),
        ("neurons", f"{s['neurons']:,} ({s['layers']} layers x {s['hidden']})"),
        ("oracle (all neurons)", f"dev {s['oracle']['dev']:.3f}, test {s['oracle']['test']:.3f}"),
        (f"layers within {s['layers_within']['delta']:.0%} of it", f"{within} (of 0..{s['layers'] - 1}; 0 = embeddings)"),
        ("CKA of adjacent layers", cka),
        (f"clustering at c_t = {c['threshold']}", f"{c['neurons']:,} neurons kept ({c['fraction_kept']:.1%}), "
                                                  f"dev {c['dev']:.3f}, test {c['test']:.3f}"),
        (f"minimal set ({1 - m['delta']:.0%} of the oracle)",
         f"{m['neurons']:,} neurons ({m['share']:.1%}), dev {m['dev']:.3f}, test {m['test']:.3f} "
         f"[{m['test_interval'][0]:.3f}, {m['test_interval'][1]:.3f}]" + ("" if m["found"] else " (not reached)")),
        ("LayerSelector + CCFS", f"layers 0..{lc['ls_layers'] - 1} together"
                                 + ("" if lc.get("ls_found", True) else " (no prefix within 1%: all layers)")
                                 + f", then {lc['ccfs_neurons']:,} neurons ({lc['reduction']:.1%} removed), "
                                 f"dev {lc['ccfs_dev']:.3f}, test {lc['ccfs_test']:.3f}"
                                 + ("" if lc.get("ccfs_found", True) else " (not reached)")),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)
