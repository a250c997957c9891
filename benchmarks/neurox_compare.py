"""This library against the authors' toolkit, NeuroX 1.0.9, on the same arrays in one run.

Measures, on the activations of the default run (MiniLM, Penn Treebank POS sample):

* probe training time and test accuracy, same hyper-parameters (Adam, lr 1e-3,
  10 epochs, batch 128, L1 = L2 = 1e-5): ``neurox.interpretation.linear_probe
  .train_logistic_regression_probe`` on an in-memory float32 matrix vs
  :class:`redundancy.methods.probe.LinearProbe` on the same matrix and on the memory-mapped store;
* LCA ranking time (``get_neuron_ordering``, ``search_stride=1000``) on the same weights,
  and whether the neurons entering at every step agree;
* correlation clustering (``c_t = 0.3``) time and peak memory: NeuroX's
  ``create_correlation_clusters`` (``np.corrcoef`` + ``scipy`` average linkage) vs
  :class:`redundancy.methods.clustering.CorrelationClustering`, each in a fresh child process so
  that peak memory is its own, on the same in-memory float32 activations (the peak is
  measured above the resident set with the data loaded: the working memory); and the
  agreement of the two partitions (adjusted Rand index).

Prints ratios (NeuroX / ours: above 1 means this library is faster or smaller), as the
machines are noisy: compare within one run only.

Usage (after ``bash run.sh``, which makes the activations)::

    .venv/bin/python -m pip install --no-deps -r benchmarks/requirements.txt
    .venv/bin/python benchmarks/neurox_compare.py [--task ptb-pos] [--repeats 2] [--json out.json]
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing as mp
import os
import sys
import time

import numpy as np

HP = dict(l1=1e-5, l2=1e-5, epochs=10, batch_size=128, lr=1e-3)


from harness import PeakRSS as _PeakRSS  # noqa: E402  (benchmarks/ is the script's folder)
from harness import cli  # noqa: E402
from harness import rss_mib as _rss_mib  # noqa: E402


def _quiet():
    return contextlib.redirect_stdout(io.StringIO())


def _cluster_child(which: str, run: str, model: str, task: str, threshold: float, q):
    from redundancy.representations.runs import open_run

    # the same in-memory float32 matrix for both, loaded before the baseline is taken, so
    # that the peak above it is each method's working memory (a memmap's pages would count
    # in the resident set as they are read)
    X = np.array(open_run(run, model, task, "train").flat(), dtype=np.float32)
    if which == "neurox":
        from neurox.interpretation.clustering import create_correlation_clusters
    else:
        from redundancy.methods.clustering import CorrelationClustering
    base, t0 = _rss_mib(), time.perf_counter()
    with _PeakRSS() as peak:
        if which == "neurox":
            with _quiet():
                labels = np.asarray(create_correlation_clusters(X, clustering_threshold=threshold)) - 1
        else:
            labels = CorrelationClustering(threshold=threshold).fit(X).labels_
    q.put({"seconds": time.perf_counter() - t0, "peak_extra_mib": peak.peak / 2**20 - base, "labels": labels.tolist()})


def clustering(run, model, task, threshold, repeats):
    ctx = mp.get_context("spawn")
    out = {}
    for which in ("neurox", "ours") * repeats:
        q = ctx.Queue()
        p = ctx.Process(target=_cluster_child, args=(which, run, model, task, threshold, q))
        p.start()
        r = q.get()
        p.join()
        out.setdefault(which, []).append(r)
    from sklearn.metrics import adjusted_rand_score

    ari = adjusted_rand_score(out["neurox"][0]["labels"], out["ours"][0]["labels"])
    res = {w: {"seconds": min(r["seconds"] for r in rs), "peak_extra_mib": max(r["peak_extra_mib"] for r in rs),
               "n_clusters": int(max(rs[0]["labels"]) + 1)} for w, rs in out.items()}
    res["adjusted_rand_index"] = float(ari)
    return res


def probes(tr, te, repeats):
    import torch
    from neurox.interpretation import linear_probe as nx

    from redundancy.methods.probe import LinearProbe

    X = np.ascontiguousarray(tr.flat(), dtype=np.float32)
    y = np.asarray(tr.labels, dtype=np.int64)
    Xt = np.ascontiguousarray(te.flat(), dtype=np.float32)
    yt = np.asarray(te.labels, dtype=np.int64)
    res = {"neurox": [], "ours": [], "ours_memmap": []}
    models = {}
    for rep in range(repeats):
        torch.manual_seed(rep)
        t0 = time.perf_counter()
        with _quiet(), contextlib.redirect_stderr(io.StringIO()):
            m = nx.train_logistic_regression_probe(X, y, lambda_l1=HP["l1"], lambda_l2=HP["l2"],
                                                   num_epochs=HP["epochs"], batch_size=HP["batch_size"],
                                                   learning_rate=HP["lr"])
        secs = time.perf_counter() - t0
        with _quiet(), contextlib.redirect_stderr(io.StringIO()):
            acc = nx.evaluate_probe(m, Xt, yt, batch_size=1024)["__OVERALL__"]
        res["neurox"].append({"seconds": secs, "test_accuracy": float(acc)})
        models["neurox"] = m
        for key, data in (("ours", X), ("ours_memmap", tr.flat())):
            t0 = time.perf_counter()
            p = LinearProbe(epochs=HP["epochs"], learning_rate=HP["lr"], batch_size=HP["batch_size"], l1=HP["l1"],
                            l2=HP["l2"], random_state=rep).fit(data, y)
            secs = time.perf_counter() - t0
            res[key].append({"seconds": secs, "test_accuracy": float(p.score(Xt, yt))})
            models[key] = p
    summary = {k: {"seconds": float(np.median([r["seconds"] for r in v])),
                   "test_accuracy": float(np.mean([r["test_accuracy"] for r in v])), "runs": v}
               for k, v in res.items()}
    return summary, models


def ranking(models, repeats):
    from neurox.interpretation import linear_probe as nx

    from redundancy.methods.ranking import lca_ranking

    m = models["neurox"]
    W = m.linear.weight.detach().cpu().numpy()
    class_to_idx = {c: c for c in range(W.shape[0])}
    t_nx, t_ours = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):  # its progress bar
            order, cutoffs = nx.get_neuron_ordering(m, class_to_idx, search_stride=1000)
        t_nx.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        r = lca_ranking(W, search_stride=1000)
        t_ours.append(time.perf_counter() - t0)
    differ = np.flatnonzero(np.asarray(cutoffs, dtype=np.int64) != r.cutoffs)
    same_steps = differ.size == 0
    prev, same_sets = 0, True
    for c in cutoffs:
        same_sets &= set(map(int, order[prev:c])) == set(r.order[prev:c].tolist())
        prev = c
    return {"neurox_seconds": min(t_nx), "ours_seconds": min(t_ours), "same_cutoffs": bool(same_steps),
            "steps_differing": differ.tolist()[:20],
            "cutoffs_differing": [[int(cutoffs[i]), int(r.cutoffs[i])] for i in differ[:20]],
            "same_neurons_per_step": bool(same_sets), "n_ranked_neurox": len(order), "n_neurons": int(W.shape[1])}


def _arguments(ap):
    ap.add_argument("--run", default="default")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--task", default="ptb-pos")
    ap.add_argument("--threshold", type=float, default=0.3)
    ap.add_argument("--repeats", type=int, default=2)


def _run(a):
    try:
        import neurox  # noqa: F401
    except ImportError:
        sys.exit("NeuroX is not installed: .venv/bin/python -m pip install --no-deps -r benchmarks/requirements.txt")
    import torch

    from redundancy.representations.runs import open_run

    torch.set_num_threads(os.cpu_count() or 1)
    tr = open_run(a.run, a.model, a.task, "train")
    te = open_run(a.run, a.model, a.task, "test")
    print(f"data: {a.model} / {a.task}: train {tr.n_rows} x {tr.n_neurons}, test {te.n_rows}; "
          f"torch threads {torch.get_num_threads()}; NeuroX {neurox.__version__ if hasattr(neurox, '__version__') else '1.0.9'}")
    out = {"data": {"model": a.model, "task": a.task, "train_rows": tr.n_rows, "neurons": tr.n_neurons}}
    p, models = probes(tr, te, a.repeats)
    out["probe"] = p
    print(f"probe   NeuroX {p['neurox']['seconds']:.2f}s acc {p['neurox']['test_accuracy']:.4f} | "
          f"ours {p['ours']['seconds']:.2f}s acc {p['ours']['test_accuracy']:.4f} | "
          f"ours (memmap) {p['ours_memmap']['seconds']:.2f}s acc {p['ours_memmap']['test_accuracy']:.4f} | "
          f"speed-up x{p['neurox']['seconds'] / p['ours']['seconds']:.2f} (memmap x"
          f"{p['neurox']['seconds'] / p['ours_memmap']['seconds']:.2f})")
    r = ranking(models, a.repeats)
    out["ranking"] = r
    print(f"ranking NeuroX {r['neurox_seconds']:.3f}s | ours {r['ours_seconds']:.4f}s | speed-up "
          f"x{r['neurox_seconds'] / r['ours_seconds']:.0f} | same cutoffs {r['same_cutoffs']}, same neurons per "
          f"step {r['same_neurons_per_step']} (NeuroX ranks {r['n_ranked_neurox']} of {r['n_neurons']})"
          + (f"; steps differing {r['steps_differing']}: {r['cutoffs_differing']}" if not r["same_cutoffs"] else ""))
    c = clustering(a.run, a.model, a.task, a.threshold, a.repeats)
    out["clustering"] = c
    print(f"cluster NeuroX {c['neurox']['seconds']:.2f}s +{c['neurox']['peak_extra_mib']:.0f} MiB "
          f"({c['neurox']['n_clusters']} clusters) | ours {c['ours']['seconds']:.2f}s "
          f"+{c['ours']['peak_extra_mib']:.0f} MiB ({c['ours']['n_clusters']} clusters) | speed-up "
          f"x{c['neurox']['seconds'] / c['ours']['seconds']:.2f}, memory x"
          f"{c['neurox']['peak_extra_mib'] / max(c['ours']['peak_extra_mib'], 1e-9):.2f} | ARI "
          f"{c['adjusted_rand_index']:.4f}")
    return out


def main(argv=None):
    return cli(__doc__, _arguments, _run, None, argv)


if __name__ == "__main__":
    main()
