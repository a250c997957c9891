"""Linear CKA of every pair of layers: ours against one product of all layers and a PyPI package.

On one seeded synthetic activation tensor (float32, ``tokens x layers x hidden``; by default
BERT-base's 13 layers x 768 over 44,000 tokens, the paper's POS training set), in this
process, repetitions interleaved, medians:

* **ours**: :func:`redundancy.methods.cka.linear_cka_matrix` on the 3-D array (all 13 x 13 pairs
  from one streamed pass; float32 products of nearly centred chunks);
* **bound**: one product ``Z.T @ Z`` in float32 of all layers side by side
  (``Z`` = tokens x 9,984; numpy hands ``A.T @ A`` to the BLAS ``syrk``): every pair's
  CKA needs at least this product;
* **ckatorch** (``ckatorch==1.0.3`` from PyPI, ``benchmarks/requirements.txt``):
  ``ckatorch.cka_base(x, y, kernel="linear")`` pair by pair, for the 91 pairs of the upper
  triangle (with the diagonal), as its API is used. It forms the ``tokens x tokens`` Gram
  matrices in float64 (15 GB each at 44,000 tokens), so it runs on the first
  ``--baseline-tokens`` tokens, and ours is timed on the same tokens for the speed ratio;
  the values of the two are compared there (maximum absolute difference).

Also reported: ours with a list of per-layer arrays (how :mod:`redundancy.paper.sections` calls it)
and, with ``--check-float64``, the largest difference between ours with float32 and with
float64 products at full size. Ratios are printed so that above 1 means ours is faster.

Usage::

    .venv/bin/python -m pip install --no-deps -r benchmarks/requirements.txt
    .venv/bin/python benchmarks/cka_bench.py                      # full size (about 5 minutes)
    .venv/bin/python benchmarks/cka_bench.py --tokens 5000 --baseline-tokens 500 --repeats 2
    .venv/bin/python benchmarks/cka_bench.py --json cka.json
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))


def synthetic_layers(tokens: int, n_layers: int = 13, hidden: int = 768, seed: int = 0,
                     latent: int = 64) -> np.ndarray:
    """Seeded float32 ``(tokens, layers, hidden)`` activations whose layers drift apart.

    Each layer is a random linear map of a slowly rotating ``latent``-dimensional signal plus
    noise that grows with depth, with per-unit offsets (a few large, as BERT's outlier
    dimensions): neighbouring layers are similar, distant ones much less (CKA from about 0.2
    to 0.95).
    """
    rng = np.random.default_rng(seed)
    out = np.empty((tokens, n_layers, hidden), dtype=np.float32)
    rotations = [np.linalg.qr(rng.standard_normal((latent, latent)))[0].astype(np.float32)
                 for _ in range(n_layers)]
    maps = [(rng.standard_normal((latent, hidden)) / np.sqrt(latent)).astype(np.float32) for _ in range(n_layers)]
    offsets = rng.normal(0.0, 1.0, (n_layers, hidden)).astype(np.float32)
    offsets[:, rng.choice(hidden, 2, replace=False)] += 30.0
    step = max(1, (64 * 2**20) // (4 * n_layers * hidden))
    for a in range(0, tokens, step):
        b = min(a + step, tokens)
        z = rng.standard_normal((b - a, latent), dtype=np.float32)
        for layer in range(n_layers):
            # mix the signal a little further at every layer
            z = 0.8 * z + 0.6 * (z @ rotations[layer])
            x = z @ maps[layer]
            x += (0.3 + 0.15 * layer) * rng.standard_normal((b - a, hidden), dtype=np.float32)
            x += offsets[layer]
            out[a:b, layer] = x
    return out


from harness import cli, interleaved, paired, summary  # noqa: E402  (benchmarks/ is the script's folder)


def ckatorch_matrix(A: np.ndarray) -> np.ndarray:
    """CKA of every pair of layers with ``ckatorch.cka_base``, pair by pair (upper triangle)."""
    import torch
    from ckatorch import cka_base

    L = A.shape[1]
    layers = [torch.from_numpy(np.ascontiguousarray(A[:, i])) for i in range(L)]
    M = np.empty((L, L))
    with torch.inference_mode():
        for i in range(L):
            for j in range(i, L):
                M[i, j] = M[j, i] = float(cka_base(layers[i], layers[j], kernel="linear"))
    return M


def run(tokens: int, baseline_tokens: int, n_layers: int = 13, hidden: int = 768, repeats: int = 3,
        baseline_repeats: int = 1, seed: int = 0, check_float64: bool = False, baseline: bool = True) -> dict:
    import torch

    from redundancy.methods.cka import linear_cka_matrix

    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    A = synthetic_layers(tokens, n_layers, hidden, seed)
    gen_seconds = time.perf_counter() - t0
    Z = A.reshape(tokens, n_layers * hidden)  # a view: all layers side by side
    as_list = [A[:, i] for i in range(n_layers)]
    methods = {"bound": lambda: Z.T @ Z,
               "ours": lambda: linear_cka_matrix(A),
               "ours_list": lambda: linear_cka_matrix(as_list)}
    # warm-up: imports (ours loads scipy.linalg.blas lazily), both BLAS thread pools, and this
    # process's first touch of the memory it reuses
    Z.T @ Z
    linear_cka_matrix(A[:64])
    runs, values = interleaved(methods, repeats, keep=("ours", "ours_list"))
    out = {"config": {"tokens": tokens, "layers": n_layers, "hidden": hidden, "neurons": n_layers * hidden,
                      "repeats": repeats, "seed": seed, "data_seconds": gen_seconds, "cpus": os.cpu_count()}}
    out.update({name: summary(rs) for name, rs in runs.items()})
    M = values["ours"]
    out["ours"]["matrix"] = M.tolist()
    out["ours"]["list_input_max_abs_difference"] = float(np.abs(values["ours_list"] - M).max())
    if check_float64:
        M64 = linear_cka_matrix(A, dtype=np.float64)
        out["ours"]["float32_vs_float64_max_abs_difference"] = float(np.abs(M - M64).max())
    ratios = {"ours_over_bound_time": out["ours"]["seconds_median"] / out["bound"]["seconds_median"],
              "ours_over_bound_time_paired": paired(runs["ours"], runs["bound"])}

    if baseline:
        try:
            import ckatorch
        except ImportError:
            sys.exit("ckatorch is not installed: .venv/bin/python -m pip install --no-deps -r "
                     "benchmarks/requirements.txt")
        sub = np.ascontiguousarray(A[:baseline_tokens])
        small = {"ckatorch": lambda: ckatorch_matrix(sub), "ours": lambda: linear_cka_matrix(sub)}
        small_runs, small_values = interleaved(small, baseline_repeats, label=f"{baseline_tokens} tokens, ")
        out["baseline"] = {"package": f"ckatorch {getattr(ckatorch, '__version__', '1.0.3')}",
                           "tokens": baseline_tokens, "repeats": baseline_repeats,
                           "pairs": n_layers * (n_layers + 1) // 2}
        out["baseline"].update({name: summary(rs) for name, rs in small_runs.items()})
        diff = np.abs(small_values["ours"] - small_values["ckatorch"])
        out["baseline"]["max_abs_difference"] = float(diff.max())
        out["baseline"]["ckatorch_matrix"] = small_values["ckatorch"].tolist()
        ratios["ckatorch_over_ours_time"] = (out["baseline"]["ckatorch"]["seconds_median"]
                                             / out["baseline"]["ours"]["seconds_median"])
    out["ratios"] = ratios
    out["rows"] = target_rows(out)
    return out


def target_rows(out: dict) -> list[dict]:
    """The performance targets this benchmark measures, one row each (for benchmarks/run_all.py)."""
    c, r = out["config"], out["ratios"]
    size = f"{c['tokens']:,} tokens x {c['layers']} x {c['hidden']}"
    note = (f"median of per-repetition ratios {r['ours_over_bound_time_paired']:.2f}x; "
            f"list-of-layers input {out['ours_list']['seconds_median']:.2f} s")
    if "float32_vs_float64_max_abs_difference" in out["ours"]:
        diff = out["ours"]["float32_vs_float64_max_abs_difference"]
        note += f"; float32 vs float64 products: max |difference| {diff:.1e}"
    rows = [{"what": f"linear CKA, all {c['layers']} x {c['layers']} layer pairs, vs one product of all layers",
             "size": size, "baseline": "float32 Z.T @ Z of all layers side by side (syrk)",
             "baseline_seconds": out["bound"]["seconds_median"], "ours_seconds": out["ours"]["seconds_median"],
             "ratio": r["ours_over_bound_time"], "target": "<= 1.2x the bound (ours / bound)",
             "met": r["ours_over_bound_time"] <= 1.2, "note": note}]
    if "baseline" in out:
        b = out["baseline"]
        rows.append({"what": "linear CKA, all layer pairs, vs a PyPI package pair by pair",
                     "size": f"{b['tokens']:,} tokens x {c['layers']} x {c['hidden']}, {b['pairs']} pairs",
                     "baseline": f"{b['package']} cka_base (Gram matrices, float64)",
                     "baseline_seconds": b["ckatorch"]["seconds_median"], "ours_seconds": b["ours"]["seconds_median"],
                     "ratio": r["ckatorch_over_ours_time"], "target": ">= 10x faster, values equal to 1e-6",
                     "met": r["ckatorch_over_ours_time"] >= 10 and b["max_abs_difference"] <= 1e-6,
                     "note": f"max |ours - package| {b['max_abs_difference']:.1e}"})
    return rows


def report(out: dict) -> None:
    c = out["config"]
    print(f"\nlinear CKA of all {c['layers']} x {c['layers']} layer pairs, {c['tokens']} tokens x {c['layers']} x "
          f"{c['hidden']} (float32), {c['repeats']} repetitions, medians; {c['cpus']} CPUs")
    print(f"{'method':40s} {'seconds':>9s} {'peak MiB':>9s}")
    names = {"bound": "bound (Z.T @ Z f32, all layers)", "ours": "ours (linear_cka_matrix, 3-D array)",
             "ours_list": "ours (list of layers)"}
    for k, label in names.items():
        print(f"{label:40s} {out[k]['seconds_median']:9.2f} {out[k]['peak_extra_mib_median']:9.0f}")
    r = out["ratios"]
    print(f"ours / bound time        {r['ours_over_bound_time']:6.2f}x   (target <= 1.2; median of per-repetition "
          f"ratios {r['ours_over_bound_time_paired']:.2f}x)")
    print(f"list input vs 3-D input: max |difference| {out['ours']['list_input_max_abs_difference']:.2e}")
    if "float32_vs_float64_max_abs_difference" in out["ours"]:
        print(f"float32 vs float64 products: max |difference| "
              f"{out['ours']['float32_vs_float64_max_abs_difference']:.2e}")
    if "baseline" in out:
        b = out["baseline"]
        print(f"\non the first {b['tokens']} tokens, {b['pairs']} pairs ({b['package']}, cka_base pair by pair):")
        print(f"{'ckatorch':40s} {b['ckatorch']['seconds_median']:9.2f} {b['ckatorch']['peak_extra_mib_median']:9.0f}")
        print(f"{'ours':40s} {b['ours']['seconds_median']:9.2f} {b['ours']['peak_extra_mib_median']:9.0f}")
        print(f"ckatorch / ours time     {r['ckatorch_over_ours_time']:6.1f}x   (target >= 10)")
        print(f"max |ours - ckatorch|    {b['max_abs_difference']:.2e}   (target <= 1e-6)")


def _arguments(ap):
    ap.add_argument("--tokens", type=int, default=44000)
    ap.add_argument("--layers", type=int, default=13)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--baseline-tokens", type=int, default=2000,
                    help="tokens for the pair-by-pair package (its Gram matrices are tokens x tokens)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline-repeats", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check-float64", action="store_true",
                    help="also compare ours with float64 products at full size")
    ap.add_argument("--no-baseline", action="store_true", help="skip the PyPI package")


def main(argv=None):
    return cli(__doc__, _arguments, lambda a: run(a.tokens, min(a.baseline_tokens, a.tokens), a.layers, a.hidden,
                                                  a.repeats, a.baseline_repeats, a.seed, a.check_float64,
                                                  not a.no_baseline), report, argv)


if __name__ == "__main__":
    main()
