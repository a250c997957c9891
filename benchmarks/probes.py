"""Probe training against the authors' toolkit (NeuroX 1.0.9), on the same arrays in one run.

Three comparisons, each with the paper's hyper-parameters (Adam, lr 1e-3, 10 epochs, batch
128, L1 = L2 = 1e-5), after one short warm-up fit of each side, medians of ``--repeats``
interleaved runs, and ratios (NeuroX / ours: above 1 means this library is faster):

``probe``
    One probe on all neurons: ``neurox.interpretation.linear_probe
    .train_logistic_regression_probe`` vs :class:`redundancy.methods.probe.LinearProbe`, test
    accuracy of both. A lower bound on this machine is printed beside them: the time of
    the probe's two matrix products per mini-batch (forward ``X_b W^T``, backward
    ``G^T X_b``, in the faster of two layouts) and nothing else. Ours is also timed with
    ``shuffle=False``: NeuroX visits the rows in stored order, so that run sees NeuroX's
    mini-batches.
``layers``
    The layer sweep of section 6.1 (every layer alone, every prefix ``0..l``, the oracle):
    the same probes trained one by one with NeuroX vs
    :func:`redundancy.methods.selection.layer_analysis` (``prefixes=True``), which trains them in
    one pass; and the largest difference in dev accuracy between ours trained together and
    ours trained one by one (the same optimisation, so it should be ~0).
``minimal``
    The minimal-set search of section 6.2 on the reference grid (0.1%, 0.2%, ... of all
    neurons) with the same ranking and target on both sides: NeuroX retrains from scratch
    for every ``k`` until one passes, ours is :func:`redundancy.methods.selection.minimal_neuron_set`
    (grid points trained 16 at a time). Both report the ``k`` they chose.
``scaling`` and ``rows``
    One probe's cost against its size: the first ``--sizes`` neurons (all rows), or the
    first ``--row-sizes`` rows (all neurons); NeuroX, ours and the bare products at each.

Data: ``--data run`` takes the default run's activations (MiniLM on the Penn Treebank
sample: 19,875 tokens x 2,688 neurons x 42 tags); ``--data synthetic`` draws a seeded
matrix of ``--rows`` x ``--layers`` x ``--hidden`` whose labels depend on a few hundred
neurons (so the minimal set is a few percent of them), for the paper's sizes (150,000 x
13 x 768 = 9,984 neurons).

    .venv/bin/python -m pip install --no-deps -r benchmarks/requirements.txt
    .venv/bin/python benchmarks/probes.py --data run                       # MiniLM sizes
    .venv/bin/python benchmarks/probes.py --data synthetic --rows 20000 --layers 13 --hidden 768
    .venv/bin/python benchmarks/probes.py --data synthetic --rows 150000 --layers 13 --hidden 768 --only probe
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bounds import best_product_rate, probe_flops  # noqa: E402  (benchmarks/ is the script's folder)
from harness import cli  # noqa: E402

HP = dict(l1=1e-5, l2=1e-5, epochs=10, batch_size=128, lr=1e-3)


def _quiet():
    return contextlib.ExitStack() if os.environ.get("BENCH_VERBOSE") else _Quiet()


class _Quiet(contextlib.ExitStack):
    def __enter__(self):
        super().__enter__()
        self.enter_context(contextlib.redirect_stdout(io.StringIO()))
        self.enter_context(contextlib.redirect_stderr(io.StringIO()))
        return self


def neurox_fit(X, y):
    from neurox.interpretation import linear_probe as nx

    with _quiet():
        return nx.train_logistic_regression_probe(X, y, lambda_l1=HP["l1"], lambda_l2=HP["l2"],
                                                  num_epochs=HP["epochs"], batch_size=HP["batch_size"],
                                                  learning_rate=HP["lr"])


def neurox_accuracy(model, X, y) -> float:
    import torch

    with torch.no_grad():
        pred = model(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))).argmax(1).numpy()
    return float((pred == y).mean())


def ours_probe(shuffle=True):
    """Ours with the paper's hyper-parameters; ``shuffle=False`` visits the rows in their stored
    order every epoch, as NeuroX (and the authors' code) do: the same mini-batches as NeuroX."""
    from redundancy.methods.probe import LinearProbe

    return LinearProbe(epochs=HP["epochs"], learning_rate=HP["lr"], batch_size=HP["batch_size"], l1=HP["l1"],
                       l2=HP["l2"], random_state=0, shuffle=shuffle)


def bare_products(X, C, epochs=HP["epochs"], bs=HP["batch_size"]):
    """The probe's matrix products alone, forward and backward for every mini-batch.

    Two layouts, each timed over all its epochs on its own (so each reads every mini-batch
    from memory as a probe does): ``X_b W^T`` forward and ``G^T X_b`` backward from a
    transposed ``G``; or ``W X_b^T`` and a contiguous ``G^T``. The bound is the faster of
    the two (with 42 outputs the second is faster here; the engine uses it).
    """
    import torch

    Xt = torch.from_numpy(X)
    W = torch.zeros(C, X.shape[1])
    G = torch.zeros(bs, C)
    GT = torch.zeros(C, bs)
    seconds = []
    for layout in ("X W^T", "W X^T"):
        t = time.perf_counter()
        for _ in range(epochs):
            for s in range(0, X.shape[0], bs):
                xb = Xt[s:s + bs]
                if layout == "X W^T":
                    xb @ W.t()
                    G[:xb.shape[0]].t() @ xb
                else:
                    W @ xb.t()
                    GT[:, :xb.shape[0]].contiguous() @ xb
        seconds.append(time.perf_counter() - t)
    return min(seconds)


# -------------------------------------------------------------------------------------------
# data

def load_data(a):
    """(train X, y), (dev X, y), (test X, y), n_layers, hidden, description."""
    if a.data == "run":
        from redundancy.representations.runs import open_run

        sp = [open_run(a.run, a.model, a.task, s) for s in ("train", "dev", "test")]
        out = [(np.ascontiguousarray(e.flat(), dtype=np.float32), np.asarray(e.labels, dtype=np.int64)) for e in sp]
        return (*out, sp[0].n_layers, sp[0].hidden_size, f"{a.model} / {a.task} (run {a.run!r})")
    rng = np.random.default_rng(a.seed)
    D = a.layers * a.hidden
    informative = rng.choice(D, size=min(a.informative, D), replace=False)
    R = rng.standard_normal((informative.size, a.classes)).astype(np.float32)
    out = []
    for rows in (a.rows, max(2000, a.rows // 5), max(2000, a.rows // 5)):
        X = rng.standard_normal((rows, D), dtype=np.float32)
        logits = X[:, informative] @ R + 2.0 * rng.standard_normal((rows, a.classes), dtype=np.float32)
        out.append((X, logits.argmax(1).astype(np.int64)))
    return (*out, a.layers, a.hidden,
            f"synthetic: labels from {informative.size} of {D} neurons, {a.classes} classes (seed {a.seed})")


# -------------------------------------------------------------------------------------------
# the comparisons

def bench_probe(tr, te, repeats):
    X, y = tr
    C = int(y.max()) + 1
    # "ours": the library's default (a fresh seeded row order every epoch); "ours_in_order":
    # shuffle=False, the rows in stored order as NeuroX visits them (the same mini-batches)
    res = {"neurox": [], "ours": [], "ours_in_order": [], "bare": []}
    accs = {"neurox": [], "ours": [], "ours_in_order": []}
    rates = []  # the best float32 product rate, between repetitions (for the ceiling)
    for _ in range(repeats):
        t = time.perf_counter()
        m = neurox_fit(X, y)
        res["neurox"].append(time.perf_counter() - t)
        accs["neurox"].append(neurox_accuracy(m, *te))
        for key, shuffle in (("ours", True), ("ours_in_order", False)):
            t = time.perf_counter()
            p = ours_probe(shuffle).fit(X, y)
            res[key].append(time.perf_counter() - t)
            accs[key].append(float(p.score(*te)))
        res["bare"].append(bare_products(X, C))
        rates.append(best_product_rate())
    med = {k: statistics.median(v) for k, v in res.items()}
    flops = probe_flops(X.shape[0], X.shape[1], C, HP["epochs"])
    return {"seconds": med, "runs": res, "test_accuracy": {k: float(np.mean(v)) for k, v in accs.items()},
            "ceiling": {"probe_flops": flops, "best_product_flops_per_s": max(rates), "product_rates": rates,
                        "floor_seconds": flops / max(rates), "max_speedup": med["neurox"] / (flops / max(rates))},
            "speedup": med["neurox"] / med["ours"], "speedup_in_order": med["neurox"] / med["ours_in_order"],
            "ours_over_bare": med["ours"] / med["bare"], "ours_in_order_over_bare": med["ours_in_order"] / med["bare"]}


def warm_up(tr):
    """One short fit of each side before anything is timed (thread pools, the allocator, numba's
    compiled kernels): the first fit of a process is up to 2x slower, and would count against
    whichever side runs first."""
    X, y = tr
    rows = min(len(y), 5000)
    yw = np.unique(y[:rows], return_inverse=True)[1].astype(np.int64)  # NeuroX wants ids 0..C-1 of the rows given
    Xw = np.ascontiguousarray(X[:rows])
    neurox_fit(Xw, yw)
    ours_probe().fit(Xw, yw)
    bare_products(Xw, int(yw.max()) + 1, epochs=1)


def layer_sets(n_layers, hidden):
    from redundancy.methods.selection import layer_neurons

    sets = [("oracle", np.arange(n_layers * hidden))]
    sets += [(f"layer {l}", layer_neurons([l], hidden)) for l in range(n_layers)]
    sets += [(f"layers 0..{l}", layer_neurons(range(l + 1), hidden)) for l in range(1, n_layers - 1)]
    return sets


def bench_layers(tr, dv, n_layers, hidden, repeats):
    from redundancy.methods.selection import ProbeEvaluator, layer_analysis

    sets = layer_sets(n_layers, hidden)
    X, y = tr
    t_nx, t_ours, t_one = [], [], []
    for _ in range(repeats):
        nx_dev = {}
        t = time.perf_counter()
        for name, f in sets:
            Xs = np.ascontiguousarray(X[:, f])
            nx_dev[name] = neurox_accuracy(neurox_fit(Xs, y), dv[0][:, f], dv[1])
        t_nx.append(time.perf_counter() - t)
        ev = ProbeEvaluator(tr, dv, probe=ours_probe(), n_layers=n_layers)
        t = time.perf_counter()
        la = layer_analysis(ev, prefixes=True)
        t_ours.append(time.perf_counter() - t)
        assert ev.n_fits == len(sets)
    together = {name: r.dev for (name, _), r in zip(sets, ev.evaluate_many([f for _, f in sets]))}
    # ours one by one (the same optimisation as the pass above), once: the identity check
    one = {}
    t = time.perf_counter()
    for name, f in sets:
        p = ours_probe().fit(X[:, f], y)
        one[name] = float(p.score(dv[0][:, f], dv[1]))
    t_one.append(time.perf_counter() - t)
    med = {"neurox_one_by_one": statistics.median(t_nx), "ours_one_pass": statistics.median(t_ours),
           "ours_one_by_one": t_one[0]}
    return {"probes": len(sets), "seconds": med, "speedup": med["neurox_one_by_one"] / med["ours_one_pass"],
            "max_dev_diff_together_vs_alone": max(abs(together[k] - one[k]) for k in one),
            "max_dev_diff_ours_vs_neurox": max(abs(together[k] - nx_dev[k]) for k in one),
            "oracle_dev": {"ours": together["oracle"], "neurox": nx_dev["oracle"]},
            "redundant_layers": la.redundant_layers}


def bench_minimal(tr, dv, n_layers, hidden, delta, repeats):
    from redundancy.methods.selection import MAX_FEATURES_GRID, ProbeEvaluator, grid_sizes, minimal_neuron_set

    X, y = tr
    ev = ProbeEvaluator(tr, dv, probe=ours_probe(), n_layers=n_layers)
    oracle = ev.oracle()
    t_nx, t_ours = [], []
    for _ in range(repeats):
        ev = ProbeEvaluator(tr, dv, probe=ours_probe(), n_layers=n_layers)
        t = time.perf_counter()
        ms = minimal_neuron_set(ev, delta=delta, reference=oracle)
        t_ours.append(time.perf_counter() - t)
        target, order = ms.target, ms.ranking.order
        # NeuroX: the same ranking and target, a probe retrained from scratch for every k; timed
        # over the grid points our search tried (up to our k), and carried on to its own first pass
        k_nx, seconds, tried = None, 0.0, 0
        for p, k in grid_sizes(MAX_FEATURES_GRID, X.shape[1]):
            if k_nx is not None and k > ms.k:
                break
            f = order[:k]
            t = time.perf_counter()
            dev = neurox_accuracy(neurox_fit(np.ascontiguousarray(X[:, f]), y), dv[0][:, f], dv[1])
            if k <= ms.k:
                seconds += time.perf_counter() - t
            tried += 1
            if dev > target and k_nx is None:
                k_nx = k
            if k >= ms.k and k_nx is not None:
                break
        t_nx.append(seconds)
    # ours one grid point at a time (the same optimisation): the k it chooses
    alone = minimal_neuron_set(ProbeEvaluator(tr, dv, probe=ours_probe(), n_layers=n_layers), delta=delta,
                               reference=oracle, batch=1)
    med = {"neurox_retrain_each_k": statistics.median(t_nx), "ours": statistics.median(t_ours)}
    return {"seconds": med, "speedup": med["neurox_retrain_each_k"] / med["ours"], "k_ours": ms.k,
            "k_ours_one_by_one": alone.k, "k_neurox": k_nx, "same_k_as_one_by_one": ms.k == alone.k,
            "same_k_as_neurox": ms.k == k_nx, "grid_points_timed": len(ms.trials), "neurox_points_tried": tried,
            "oracle_dev": oracle.dev, "target": target, "delta": delta}


def _time_one_probe(X, y, repeats) -> dict:
    """Medians of NeuroX's fit, ours and the bare products on ``X, y``, interleaved ``repeats`` times."""
    if np.unique(y).size != int(y.max()) + 1:  # NeuroX wants the class ids 0..C-1 of the rows it is given
        y = np.unique(y, return_inverse=True)[1].astype(np.int64)
    t = {"neurox": [], "ours": [], "bare": []}
    for _ in range(repeats):
        s0 = time.perf_counter()
        neurox_fit(X, y)
        t["neurox"].append(time.perf_counter() - s0)
        s0 = time.perf_counter()
        ours_probe().fit(X, y)
        t["ours"].append(time.perf_counter() - s0)
        t["bare"].append(bare_products(X, int(y.max()) + 1))
    return {k: statistics.median(v) for k, v in t.items()}


def bench_sizes(tr, sizes, repeats, along="neurons"):
    """One probe's training time against its width (``along="neurons"``: the first n columns,
    every row) or its number of tokens (``along="rows"``: the first n rows, every column)."""
    X, y = tr
    out = []
    for n in sizes:
        if n > X.shape[1 if along == "neurons" else 0]:
            continue
        Xn, yn = (np.ascontiguousarray(X[:, :n]), y) if along == "neurons" else (X[:n], y[:n])
        out.append({"neurons": int(Xn.shape[1]), "rows": int(Xn.shape[0]), **_time_one_probe(Xn, yn, repeats)})
        print(f"{along:8s} {n:7d}: NeuroX {out[-1]['neurox']:.2f}s | ours {out[-1]['ours']:.2f}s | bare "
              f"{out[-1]['bare']:.2f}s", flush=True)
    return out


def _arguments(ap):
    ap.add_argument("--data", choices=["run", "synthetic"], default="run")
    ap.add_argument("--run", default="default")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--task", default="ptb-pos")
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--layers", type=int, default=13)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--classes", type=int, default=44)
    ap.add_argument("--informative", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--delta", type=float, default=0.01, help="minimal set: allowed relative drop (reference: 1%%)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", default="probe,layers,minimal", help="any of probe,layers,minimal,scaling,rows")
    ap.add_argument("--sizes", default="384,768,2688,5376,9984", help="neurons for --only scaling")
    ap.add_argument("--row-sizes", default="2500,5000,10000,20000,40000", help="training rows for --only rows")


def _run(a):
    try:
        import neurox  # noqa: F401
    except ImportError:
        sys.exit("NeuroX is not installed: .venv/bin/python -m pip install --no-deps -r benchmarks/requirements.txt")
    import torch

    tr, dv, te, L, H, desc = load_data(a)
    only = set(a.only.split(","))
    out = {"benchmark": "probes", "data": {"description": desc, "train_rows": int(tr[0].shape[0]),
                                           "neurons": int(tr[0].shape[1]), "layers": L, "hidden": H,
                                           "classes": int(tr[1].max()) + 1},
           "torch_threads": torch.get_num_threads(),
           "hyper_parameters": HP, "repeats": a.repeats, "command": " ".join(["benchmarks/probes.py", *sys.argv[1:]])}
    print(f"data: {desc}: train {tr[0].shape[0]} x {tr[0].shape[1]} ({L} x {H}), {out['data']['classes']} classes; "
          f"torch threads {torch.get_num_threads()}", flush=True)
    warm_up(tr)
    if "probe" in only:
        r = out["probe"] = bench_probe(tr, te, a.repeats)
        s = r["seconds"]
        print(f"probe    NeuroX {s['neurox']:.2f}s acc {r['test_accuracy']['neurox']:.4f} | ours {s['ours']:.2f}s "
              f"acc {r['test_accuracy']['ours']:.4f} | speed-up x{r['speedup']:.2f} | ours, rows in NeuroX's order "
              f"{s['ours_in_order']:.2f}s acc {r['test_accuracy']['ours_in_order']:.4f} speed-up "
              f"x{r['speedup_in_order']:.2f} | bare products {s['bare']:.2f}s (ours = x{r['ours_over_bare']:.2f} "
              f"of it)", flush=True)
    if "layers" in only:
        r = out["layers"] = bench_layers(tr, dv, L, H, a.repeats)
        s = r["seconds"]
        print(f"layers   {r['probes']} probes: NeuroX one by one {s['neurox_one_by_one']:.2f}s | ours one pass "
              f"{s['ours_one_pass']:.2f}s (ours one by one {s['ours_one_by_one']:.2f}s) | speed-up "
              f"x{r['speedup']:.2f} | max |dev diff| together vs alone {r['max_dev_diff_together_vs_alone']:.4f},"
              f" ours vs NeuroX {r['max_dev_diff_ours_vs_neurox']:.4f}", flush=True)
    if "minimal" in only:
        r = out["minimal"] = bench_minimal(tr, dv, L, H, a.delta, a.repeats)
        s = r["seconds"]
        print(f"minimal  {r['grid_points_timed']} grid points: NeuroX retrain each k {s['neurox_retrain_each_k']:.2f}s"
              f" | ours {s['ours']:.2f}s | speed-up x{r['speedup']:.2f} | k: ours {r['k_ours']}, ours one by one "
              f"{r['k_ours_one_by_one']}, NeuroX {r['k_neurox']}", flush=True)
    if "scaling" in only:
        out["scaling"] = bench_sizes(tr, [int(v) for v in a.sizes.split(",")], a.repeats)
    if "rows" in only:
        out["scaling_rows"] = bench_sizes(tr, [int(v) for v in a.row_sizes.split(",")], a.repeats, along="rows")
    return out


def main(argv=None):
    return cli(__doc__, _arguments, _run, None, argv)


if __name__ == "__main__":
    main()
