"""Correlation clustering at paper scale: ours against the reference recipe and a bare lower bound.

On one seeded synthetic activation matrix (float32, ``tokens x neurons``; by default BERT-base's
13 x 768 = 9,984 neurons over 44,000 tokens, the paper's POS training set), three methods are run,
each repetition of each in a fresh child process of this command so that its peak memory is its
own:

* **ours**: :class:`redundancy.methods.clustering.CorrelationClustering` (``c_t = 0.3``), fit on the
  in-memory matrix (streamed float32 cross-product, condensed distances straight from it,
  ``scipy`` average linkage, ``fcluster``);
* **reference**: the authors' recipe as NeuroX 1.0.9's ``create_correlation_clusters`` runs it:
  ``np.corrcoef`` (float64), ``1 - |corr|``, ``squareform``, ``scipy`` average linkage,
  ``fcluster`` (NeuroX's function itself when it is installed, else the same lines here);
* **bound**: the two steps no implementation can skip, timed bare and summed: the product
  ``X.T @ X`` in float32 (numpy hands ``A.T @ A`` to the BLAS ``syrk``, so this is the
  float32 syrk plus the mirror of its triangle) and ``scipy`` average linkage on the
  condensed ``1 - |corr|`` (the step between them, centring and scaling, is not timed).

Peak memory is the largest resident set seen while the method runs (sampled every 2 ms),
above the level with the data already loaded: the working memory. The partitions of ours
and the reference are compared (adjusted Rand index, number of clusters, identical sets).
Times are medians over the repetitions (interleaved: bound, ours, reference, bound, ...);
ratios are printed so that above 1 means ours is faster or smaller, as ratios of the
medians and as medians of the per-repetition ratios (steadier when other work on the
machine comes and goes during the run).

The synthetic data: neurons in random groups that share a latent signal with signed
loadings (so anti-correlated neurons cluster too, through ``|corr|``), a weak rank-8 signal
shared by all, neuron-specific noise of varying size, offsets (a few large, as BERT's
outlier dimensions) and three constant (dead) neurons. Within-group correlations spread
from about 0.3 to 0.99, so the tree cut at ``c_t = 0.3`` has clusters of many sizes
(about a third of the neurons are singletons; 2,000 neurons give about 1,000 clusters).

Memory: on virtual machines whose memory the host backs lazily, the first touch of a page
the guest has never used costs far more than a pass over it (here about 4 ms per MiB, so
6 GB take 25 s once, and 0.1 ms per MiB after). Whichever method ran first would pay for
it, so the command first touches (and frees) as much memory as the largest method needs
(``--warm-gib``; 0 to skip); the cost is reported.

Usage::

    .venv/bin/python benchmarks/clustering_bench.py                       # full size (about 6 minutes)
    .venv/bin/python benchmarks/clustering_bench.py --neurons 2000 --tokens 5000 --repeats 2
    .venv/bin/python benchmarks/clustering_bench.py --json clustering.json
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

METHODS = ("bound", "ours", "reference")


# --------------------------------------------------------------------------------------
# data

def synthetic_activations(tokens: int, neurons: int, seed: int = 0, group_size: float = 5.0,
                          rank: int = 8, n_dead: int = 3) -> np.ndarray:
    """Seeded float32 ``(tokens, neurons)`` matrix with correlated groups of neurons.

    Parameters
    ----------
    tokens, neurons : int
    seed : int
    group_size : float
        Mean number of neurons per latent group.
    rank : int
        Rank of the weak signal shared by all neurons.
    n_dead : int
        Constant neurons (at random positions).

    Returns
    -------
    numpy.ndarray of float32, shape (tokens, neurons)
    """
    rng = np.random.default_rng(seed)
    groups = max(1, int(round(neurons / group_size)))
    group = rng.integers(0, groups, neurons)
    loading = (rng.uniform(0.5, 1.0, neurons) * rng.choice([-1.0, 1.0], neurons)).astype(np.float32)
    noise = rng.uniform(0.05, 0.7, neurons).astype(np.float32)
    shared = (0.15 * rng.standard_normal((rank, neurons))).astype(np.float32)
    offset = rng.normal(0.0, 1.0, neurons).astype(np.float32)
    outliers = rng.choice(neurons, size=min(neurons, 4), replace=False)
    offset[outliers] += 40.0  # a few dimensions with large constant offsets, as in BERT
    dead = rng.choice(neurons, size=min(n_dead, neurons - 2), replace=False)
    X = np.empty((tokens, neurons), dtype=np.float32)
    step = max(1, (64 * 2**20) // (4 * neurons))  # rows per block: bounded temporaries
    for a in range(0, tokens, step):
        b = min(a + step, tokens)
        block = rng.standard_normal((b - a, neurons), dtype=np.float32)
        block *= noise
        block += rng.standard_normal((b - a, groups), dtype=np.float32)[:, group] * loading
        block += rng.standard_normal((b - a, rank), dtype=np.float32) @ shared
        block += offset
        X[a:b] = block
    X[:, dead] = np.float32(1.5)
    return X


# --------------------------------------------------------------------------------------
# peak memory

from harness import PeakRSS, cli, paired, summary  # noqa: E402  (benchmarks/ is the script's folder)


# --------------------------------------------------------------------------------------
# the three methods (run in a child process)

def _reference_labels(X, threshold):
    """NeuroX 1.0.9's ``create_correlation_clusters`` (1-based labels); its own code if installed."""
    try:
        from neurox.interpretation.clustering import create_correlation_clusters
    except ImportError:
        create_correlation_clusters = None
    if create_correlation_clusters is not None:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints the matrix size and cluster count
            return np.asarray(create_correlation_clusters(X, clustering_threshold=threshold)), "neurox"
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    corr = np.corrcoef(X.T)
    corr = np.nan_to_num(corr)
    corr = (corr + corr.T) / 2
    np.fill_diagonal(corr, 1)
    Z = linkage(squareform(1 - np.abs(corr)), method="average")
    return fcluster(Z, threshold, criterion="distance"), "inline"


def _bound(X, threshold):
    """Time ``X.T @ X`` (float32) and the average linkage on ``1 - |corr|``, the rest untimed."""
    from scipy.cluster import hierarchy

    t0 = time.perf_counter()
    G = X.T @ X
    t_product = time.perf_counter() - t0
    # untimed: centre and scale to the condensed distance the linkage needs
    n, N = X.shape
    mean = X.mean(axis=0, dtype=np.float64)
    var = np.diagonal(G).astype(np.float64) / n - mean * mean
    scale = np.sqrt(np.where(var > 0, var, np.inf))
    dist = np.empty(N * (N - 1) // 2)
    k = 0
    for i in range(N - 1):
        c = (G[i, i + 1:] / n - mean[i] * mean[i + 1:]) / (scale[i] * scale[i + 1:])
        dist[k:k + N - 1 - i] = 1.0 - np.minimum(np.abs(c), 1.0)
        k += N - 1 - i
    del G
    t0 = time.perf_counter()
    Z = hierarchy.linkage(dist, method="average")
    t_linkage = time.perf_counter() - t0
    labels = hierarchy.fcluster(Z, threshold, criterion="distance")
    return labels, {"product_seconds": t_product, "linkage_seconds": t_linkage}


def warm_memory(gib: float) -> float:
    """Touch ``gib`` GiB of fresh memory and free it (see the module docstring); seconds taken."""
    t0 = time.perf_counter()
    step = 256 * 2**20
    blocks = []
    try:
        for _ in range(int(gib * 2**30 // step)):
            b = np.empty(step, dtype=np.uint8)
            b[::4096] = 1  # one write per page
            blocks.append(b)
    finally:
        del blocks
    return time.perf_counter() - t0


def _available_gib() -> float:
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) / 2**20


def _child(which: str, path: str, threshold: float, q) -> None:
    import warnings

    warnings.filterwarnings("ignore")  # np.corrcoef's divisions by the dead neurons' zero variance
    X = np.load(path)  # in memory, before the baseline resident set is taken
    from redundancy.methods.clustering import CorrelationClustering

    # imported before the clock starts, for all alike (ours imports scipy.linalg.blas lazily)
    import scipy.cluster.hierarchy  # noqa: F401
    import scipy.linalg.blas  # noqa: F401
    extra = {}
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        if which == "ours":
            labels = CorrelationClustering(threshold=threshold).fit(X).labels_ + 1
        elif which == "reference":
            labels, extra["implementation"] = _reference_labels(X, threshold)
        else:
            labels, extra = _bound(X, threshold)
        seconds = time.perf_counter() - t0
    if which == "bound":
        seconds = extra["product_seconds"] + extra["linkage_seconds"]
    q.put({"seconds": seconds, "peak_extra_mib": mem.extra_mib, "labels": np.asarray(labels).tolist(), **extra})


def _run_child(which, path, threshold):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(which, path, threshold, q))
    p.start()
    try:
        r = q.get()
    finally:
        p.join()
    return r


# --------------------------------------------------------------------------------------

def _partition(labels):
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    return {frozenset(g.tolist()) for g in np.split(order, bounds)}


def run(tokens: int, neurons: int, threshold: float = 0.3, repeats: int = 3, seed: int = 0,
        methods=METHODS, workdir: str | None = None, warm_gib: float | None = None) -> dict:
    """Generate the data, run every method ``repeats`` times in child processes; the results."""
    from sklearn.metrics import adjusted_rand_score

    data_gib = tokens * neurons * 4 / 2**30
    if warm_gib is None:  # the reference: the data, its float64 transposed copy and centred copy, N x N float64 x 3
        warm_gib = min(0.8 * _available_gib(), 5 * data_gib + 3 * neurons**2 * 8 / 2**30 + 0.5)
    warm_seconds = warm_memory(warm_gib)
    print(f"warmed {warm_gib:.1f} GiB of memory in {warm_seconds:.1f} s", flush=True)
    t0 = time.perf_counter()
    X = synthetic_activations(tokens, neurons, seed)
    gen_seconds = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(dir=workdir) as d:
        path = os.path.join(d, "X.npy")
        np.save(path, X)
        del X
        runs = {m: [] for m in methods}
        for rep in range(repeats):
            for m in methods:
                r = _run_child(m, path, threshold)
                runs[m].append(r)
                print(f"  rep {rep + 1}/{repeats} {m:9s} {r['seconds']:8.2f} s  +{r['peak_extra_mib']:7.0f} MiB",
                      flush=True)
    out = {"config": {"tokens": tokens, "neurons": neurons, "threshold": threshold, "repeats": repeats,
                      "seed": seed, "data_seconds": gen_seconds, "cpus": os.cpu_count(),
                      "warm_gib": warm_gib, "warm_seconds": warm_seconds}}
    for m, rs in runs.items():
        labels = rs[0]["labels"]
        out[m] = {**summary(rs), "n_clusters": int(len(set(labels)))}
        if m == "bound":
            for key in ("product_seconds", "linkage_seconds"):
                out[m][key + "_median"] = statistics.median(r[key] for r in rs)
        if m == "reference":
            out[m]["implementation"] = rs[0]["implementation"]
        # every repetition of a method gives the same partition
        out[m]["deterministic"] = all(_partition(r["labels"]) == _partition(labels) for r in rs[1:])
    if "ours" in runs and "reference" in runs:
        a, b = runs["ours"][0]["labels"], runs["reference"][0]["labels"]
        out["agreement"] = {"adjusted_rand_index": float(adjusted_rand_score(b, a)),
                            "identical_partitions": _partition(a) == _partition(b),
                            "n_clusters_ours": out["ours"]["n_clusters"],
                            "n_clusters_reference": out["reference"]["n_clusters"]}
    ratios = {}

    if "ours" in runs:
        t = out["ours"]["seconds_median"]
        if "bound" in runs:
            ratios["ours_over_bound_time"] = t / out["bound"]["seconds_median"]
            ratios["ours_over_bound_time_paired"] = paired(runs["ours"], runs["bound"])
        if "reference" in runs:
            ratios["reference_over_ours_time"] = out["reference"]["seconds_median"] / t
            ratios["reference_over_ours_time_paired"] = paired(runs["reference"], runs["ours"])
            ratios["ours_over_reference_peak_memory"] = (out["ours"]["peak_extra_mib_median"]
                                                         / out["reference"]["peak_extra_mib_median"])
    out["ratios"] = ratios
    return out


def report(out: dict) -> None:
    c = out["config"]
    print(f"\ncorrelation clustering, {c['tokens']} tokens x {c['neurons']} neurons (float32), c_t = "
          f"{c['threshold']}, {c['repeats']} repetitions, medians; {c['cpus']} CPUs")
    print(f"{'method':34s} {'seconds':>9s} {'peak MiB':>9s} {'clusters':>9s}")
    names = {"bound": "bound (X.T@X f32 + linkage)", "ours": "ours (CorrelationClustering)",
             "reference": "reference (np.corrcoef + scipy)"}
    for m in METHODS:
        if m in out:
            r = out[m]
            print(f"{names[m]:34s} {r['seconds_median']:9.2f} {r['peak_extra_mib_median']:9.0f} {r['n_clusters']:9d}")
    if "bound" in out:
        b = out["bound"]
        print(f"  bound = product {b['product_seconds_median']:.2f} s + linkage {b['linkage_seconds_median']:.2f} s")
    r = out["ratios"]
    if "ours_over_bound_time" in r:
        print(f"ours / bound time            {r['ours_over_bound_time']:6.2f}x   (target <= 1.2; "
              f"median of per-repetition ratios {r['ours_over_bound_time_paired']:.2f}x)")
    if "reference_over_ours_time" in r:
        print(f"reference / ours time        {r['reference_over_ours_time']:6.2f}x   (target >= 1.6; "
              f"median of per-repetition ratios {r['reference_over_ours_time_paired']:.2f}x)")
        print(f"ours / reference peak memory {r['ours_over_reference_peak_memory']:6.2f}x   (target <= 0.5)")
    if "agreement" in out:
        a = out["agreement"]
        print(f"agreement: ARI {a['adjusted_rand_index']:.6f}, identical partitions {a['identical_partitions']}, "
              f"clusters ours {a['n_clusters_ours']} / reference {a['n_clusters_reference']}")


def _arguments(ap):
    ap.add_argument("--tokens", type=int, default=44000)
    ap.add_argument("--neurons", type=int, default=13 * 768)
    ap.add_argument("--threshold", type=float, default=0.3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default=",".join(METHODS),
                    help=f"comma-separated subset of {','.join(METHODS)}")
    ap.add_argument("--workdir", help="folder for the temporary copy of the data (default: the system's)")
    ap.add_argument("--warm-gib", type=float, help="memory to touch first (default: what the reference needs)")


def main(argv=None):
    def _run(a):
        methods = tuple(m for m in METHODS if m in a.methods.split(","))
        return run(a.tokens, a.neurons, a.threshold, a.repeats, a.seed, methods, a.workdir, a.warm_gib)

    return cli(__doc__, _arguments, _run, report, argv)


if __name__ == "__main__":
    main()
