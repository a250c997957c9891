"""The GPU path, checked and timed in one short command (for a session lent a GPU machine).

The library's default is the CPU; ``device="cuda"`` moves probe training and extraction to a
GPU. This script checks that path against the CPU on the same arrays and times it, in one
process, in a few minutes, and writes everything to one JSON file:

``agreement``
    A probe trained on the GPU and on the CPU with the same seed and mini-batches (accuracies,
    the largest weight difference); the layer sweep of section 6.1 trained in one pass on the
    GPU against the same probes one by one on the GPU (the largest dev-accuracy difference);
    a tiny random BERT's activations extracted on both devices (the largest difference).
``probe``
    One probe at the paper's size (``--rows`` x ``--layers * --hidden`` x ``--classes``,
    synthetic): ours on the GPU, NeuroX's ``train_logistic_regression_probe`` (which uses the
    GPU when torch sees one) if it can be imported, and the probe's two matrix products alone
    on the GPU, medians of ``--repeats`` interleaved runs.
``layers``
    The layer sweep at the MPNet size (25 probes, 20,000 rows) on the GPU: ours in one pass vs
    the same probes one by one with NeuroX (if importable). Run before ``probe``, which is the
    longest section.
``agreement.extraction`` also holds the words per second of that small random BERT (the
real weights are larger than what the device tool carries) on the GPU and on the CPU.

On the device machine its python3 has torch, transformers, numba and scikit-learn; NeuroX and
its two pure-Python needs travel as wheels (330 kB). Here, once, in the repository's root::

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 -d .whl neurox==1.0.9 imbalanced-learn==0.14.2 sklearn-compat==0.1.6

then one device call (``carry: [".whl"]``; not yet run on a GPU, so give it the longest limit
the tool allows, and the JSON is written after every section, so a cut run keeps what it did)::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \
    PYTHONPATH=lib:/tmp/site PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --json $OUT/gpu.json

Here, a smoke test of the script itself on the CPU (small sizes, no speed claim; about
3 minutes on the 2 cores)::

    .venv/bin/python benchmarks/gpu_check.py --device cpu --quick --json /tmp/gpu.json

Copy the JSON to ``data/benchmarks/gpu.json``; the performance chapter shows it.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from probes import HP, _quiet, layer_sets  # noqa: E402


def _sync(device):
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def _probe(device, shuffle=True):
    from redundancy.methods.probe import LinearProbe

    return LinearProbe(epochs=HP["epochs"], learning_rate=HP["lr"], batch_size=HP["batch_size"], l1=HP["l1"],
                       l2=HP["l2"], random_state=0, shuffle=shuffle, device=device)


def synthetic(rows, layers, hidden, classes, seed=0):
    """Seeded arrays whose labels depend on a few hundred neurons (as benchmarks/probes.py)."""
    rng = np.random.default_rng(seed)
    D = layers * hidden
    informative = rng.choice(D, size=min(300, D), replace=False)
    R = rng.standard_normal((informative.size, classes)).astype(np.float32)
    out = []
    for n in (rows, max(1000, rows // 5)):
        X = rng.standard_normal((n, D), dtype=np.float32)
        logits = X[:, informative] @ R + 2.0 * rng.standard_normal((n, classes), dtype=np.float32)
        out.append((X, logits.argmax(1).astype(np.int64)))
    return out


def neurox_fit(X, y):
    """NeuroX's probe (on the GPU when torch sees one), or None when NeuroX cannot be imported."""
    try:
        from neurox.interpretation import linear_probe as nx
    except Exception as e:  # noqa: BLE001
        return None, f"{type(e).__name__}: {e}"
    with _quiet():
        return nx.train_logistic_regression_probe(X, y, lambda_l1=HP["l1"], lambda_l2=HP["l2"],
                                                  num_epochs=HP["epochs"], batch_size=HP["batch_size"],
                                                  learning_rate=HP["lr"]), None


def neurox_accuracy(model, X, y):
    import torch

    model = model.cpu()
    with torch.no_grad():
        return float((model(torch.from_numpy(np.ascontiguousarray(X))).argmax(1).numpy() == y).mean())


def bare_products(X, C, device, epochs=HP["epochs"], bs=HP["batch_size"]):
    """The probe's two matrix products per mini-batch alone (``W X_b^T``, ``G^T X_b``), the
    mini-batch copied to the device as a probe does."""
    import torch

    Xt = torch.from_numpy(X)
    W = torch.zeros(C, X.shape[1], device=device)
    GT = torch.zeros(C, bs, device=device)
    _sync(device)
    t = time.perf_counter()
    for _ in range(epochs):
        for s in range(0, X.shape[0], bs):
            xb = Xt[s:s + bs].to(device)
            W @ xb.t()
            GT[:, :xb.shape[0]] @ xb
    _sync(device)
    return time.perf_counter() - t


def check_agreement(device, quick):
    import torch

    out = {}
    (X, y), (Xd, yd) = synthetic(4000 if quick else 20000, 13, 32 if quick else 96, 12)
    cpu, dev = _probe("cpu").fit(X, y), _probe(device).fit(X, y)
    out["probe"] = {"rows": int(X.shape[0]), "neurons": int(X.shape[1]),
                    "dev_accuracy_cpu": float(cpu.score(Xd, yd)), "dev_accuracy_device": float(dev.score(Xd, yd)),
                    "max_abs_weight_diff": float(np.abs(cpu.coef_ - dev.coef_).max()),
                    "max_abs_weight": float(np.abs(cpu.coef_).max())}
    from redundancy.methods.selection import ProbeEvaluator

    sets = layer_sets(13, X.shape[1] // 13)
    ev = ProbeEvaluator((X, y), (Xd, yd), probe=_probe(device), n_layers=13)
    together = [r.dev for r in ev.evaluate_many([f for _, f in sets])]
    alone = [float(_probe(device).fit(X[:, f], y).score(Xd[:, f], yd)) for _, f in sets]
    out["layer_sweep"] = {"probes": len(sets), "max_dev_diff_together_vs_alone":
                          float(max(abs(a - b) for a, b in zip(together, alone)))}
    # a tiny random BERT: activations on both devices
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from redundancy.representations.activations import word_activations
    from redundancy.representations.models import load_model

    words = [f"w{i}" for i in range(200)]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    path = Path(tempfile.mkdtemp(prefix="gpu-check-bert-"))
    BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True,
                      model_max_length=128).save_pretrained(path)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                         intermediate_size=1024, max_position_embeddings=128)).save_pretrained(path)
    rng = np.random.default_rng(0)
    sents = [[words[j] for j in rng.integers(0, 200, rng.integers(5, 40))] for _ in range(200 if quick else 2000)]
    n_words = sum(len(s) for s in sents)
    acts, secs = {}, {}
    for d in ("cpu", device):
        lm = load_model(str(path), device=d)
        word_activations(lm, sents[:20], progress=False)  # warm-up
        _sync(d)
        t = time.perf_counter()
        acts[d], _ = word_activations(lm, sents, progress=False)
        _sync(d)
        secs[d] = time.perf_counter() - t
    out["extraction"] = {"model": "random BERT, 4 layers x 256", "sentences": len(sents), "words": n_words,
                         "max_abs_diff": float(np.abs(acts["cpu"] - acts[device]).max()),
                         "max_abs_value": float(np.abs(acts["cpu"]).max()),
                         "words_per_s": {"cpu": n_words / secs["cpu"], "device": n_words / secs[device]}}
    return out


def bench_probe(device, rows, layers, hidden, classes, repeats):
    (X, y), (Xd, yd) = synthetic(rows, layers, hidden, classes)
    res = {"ours": [], "ours_in_order": [], "neurox": [], "bare": []}
    acc = {"ours": [], "ours_in_order": [], "neurox": []}
    why = None
    _probe(device).set_params(epochs=1).fit(X[:2000], y[:2000])  # warm-up (CUDA context, kernels)
    for _ in range(repeats):
        for key, shuffle in (("ours", True), ("ours_in_order", False)):
            _sync(device)
            t = time.perf_counter()
            p = _probe(device, shuffle).fit(X, y)
            _sync(device)
            res[key].append(time.perf_counter() - t)
            acc[key].append(float(p.score(Xd, yd)))
        t = time.perf_counter()
        m, why = neurox_fit(X, y)
        _sync(device)
        if m is not None:
            res["neurox"].append(time.perf_counter() - t)
            acc["neurox"].append(neurox_accuracy(m, Xd, yd))
        res["bare"].append(bare_products(X, classes, device))
    med = {k: statistics.median(v) for k, v in res.items() if v}
    out = {"size": f"{rows:,} x {layers * hidden:,} x {classes}", "seconds": med, "runs": res,
           "dev_accuracy": {k: float(np.mean(v)) for k, v in acc.items() if v},
           "ours_over_bare": med["ours"] / med["bare"]}
    if "neurox" in med:
        out["speedup"] = med["neurox"] / med["ours"]
        out["speedup_in_order"] = med["neurox"] / med["ours_in_order"]
    else:
        out["neurox_unavailable"] = why
    return out


def bench_layers(device, rows, layers, hidden, classes):
    from redundancy.methods.selection import ProbeEvaluator, layer_analysis

    (X, y), (Xd, yd) = synthetic(rows, layers, hidden, classes)
    sets = layer_sets(layers, hidden)
    _probe(device).set_params(epochs=1).fit(X[:2000], y[:2000])  # warm-up (CUDA context, kernels)
    ev = ProbeEvaluator((X, y), (Xd, yd), probe=_probe(device), n_layers=layers)
    _sync(device)
    t = time.perf_counter()
    layer_analysis(ev, prefixes=True)
    _sync(device)
    out = {"probes": len(sets), "seconds": {"ours_one_pass": time.perf_counter() - t}}
    t = time.perf_counter()
    for _, f in sets:
        m, why = neurox_fit(np.ascontiguousarray(X[:, f]), y)
        if m is None:
            out["neurox_unavailable"] = why
            return out
    _sync(device)
    out["seconds"]["neurox_one_by_one"] = time.perf_counter() - t
    out["speedup"] = out["seconds"]["neurox_one_by_one"] / out["seconds"]["ours_one_pass"]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke test of this script")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", default="agreement,layers,probe")
    ap.add_argument("--json", required=True)
    a = ap.parse_args(argv)
    import torch

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA device is visible to torch: run this on the GPU machine, or --device cpu for a smoke test")
    only = set(a.only.split(","))
    from redundancy.provenance import library_versions, machine

    on_gpu = a.device.startswith("cuda")
    doc = {"device": torch.cuda.get_device_name(torch.device(a.device)) if on_gpu else machine()["cpu"],
           "device_type": "cuda" if on_gpu else "cpu",
           "torch": torch.__version__, "python": platform.python_version(), "quick": a.quick,
           "date": time.strftime("%Y-%m-%d"), "hyper_parameters": HP,
           "provenance": {"machine": machine(), "versions": library_versions()}}
    t0 = time.perf_counter()

    def save():
        doc["seconds_total"] = round(time.perf_counter() - t0, 1)
        Path(a.json).write_text(json.dumps(doc, indent=2, default=float))
    if "agreement" in only:
        doc["agreement"] = check_agreement(a.device, a.quick)
        save()
        print("agreement:", json.dumps(doc["agreement"], default=float), flush=True)
    if "layers" in only:
        rows, hidden = (4000, 96) if a.quick else (20000, 768)
        doc["layers"] = bench_layers(a.device, rows, 13, hidden, 44)
        save()
        print("layers:", json.dumps(doc["layers"], default=float), flush=True)
    if "probe" in only:
        rows, hidden = (10000, 96) if a.quick else (150000, 768)
        doc["probe"] = bench_probe(a.device, rows, 13, hidden, 44, 1 if a.quick else a.repeats)
        save()
        print("probe:", json.dumps(doc["probe"]["seconds"], default=float), flush=True)
    save()
    print(f"written to {a.json} ({doc['seconds_total']} s)")


if __name__ == "__main__":
    main()
