"""Extraction throughput: ours (word alignment + store write) against a bare batched forward loop.

Both sides run in this process on the same sentences, batched the same way (sorted by
length, the same token budget), with tokenization included, repeated and interleaved;
the table gives medians and the ratio. Peak memory is the largest resident set size
seen during each side's runs, above the level before it started.

    .venv/bin/python benchmarks/extraction.py [--model minilm] [--task ptb-pos] [--split train] [--reps 3]
                                              [--sentences N] [--json out.json]

Against NeuroX's sentence-by-sentence extractor: ``benchmarks/extraction_neurox.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak_memory import PeakRSS  # noqa: E402  (benchmarks/ is the script's folder)


def main():
    from redundancy import load_task
    from redundancy.representations.activations import _batches, _pad, extract, set_threads
    from redundancy.representations.models import load_model
    from redundancy.representations.store import ActivationStore

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--task", default="ptb-pos")
    ap.add_argument("--split", default="train")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-batch-tokens", type=int, default=2048)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sentences", type=int, help="only the first N sentences of the split")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    set_threads()
    lm = load_model(args.model, device=args.device)
    task = load_task(args.task)
    if args.sentences:
        sub = task[args.split].subset(range(min(args.sentences, len(task[args.split]))))
        task = dataclasses.replace(task, splits={**task.splits, args.split: sub})
    sents = task[args.split].tokens
    n_words = sum(len(s) for s in sents)

    def bare():
        enc = lm.tokenizer(sents, is_split_into_words=True)
        encs = [{k: enc[k][i] for k in enc.keys()} for i in range(len(sents))]
        lengths = np.array([len(e["input_ids"]) for e in encs])
        with torch.inference_mode():
            for batch in _batches(lengths, args.max_batch_tokens, 128):
                lm.model(**_pad(lm, [encs[i] for i in batch]))

    def ours(d):
        # into an empty store (the timed extraction writes, flushes and checksums its arrays);
        # deleting the store afterwards is not part of it, and is left out of the timing
        extract(lm, task, args.split, store=ActivationStore(d), progress=False, max_batch_tokens=args.max_batch_tokens)

    bare()  # warm-up (allocator, kernels)
    times = {"bare forward loop": [], "redundancy.extract": []}
    peaks = {k: 0.0 for k in times}
    for _ in range(args.reps):
        for name, fn in (("bare forward loop", bare), ("redundancy.extract", ours)):
            with tempfile.TemporaryDirectory() as d, PeakRSS() as m:
                t = time.perf_counter()
                fn(d) if fn is ours else fn()
                times[name].append(time.perf_counter() - t)
            peaks[name] = max(peaks[name], m.extra_mib)
    base = statistics.median(times["bare forward loop"])
    print(f"model {args.model} ({lm.n_layers} x {lm.hidden_size}), task {args.task}/{args.split}: "
          f"{len(sents)} sentences, {n_words} words; torch threads {torch.get_num_threads()}; "
          f"device {args.device}; {args.reps} reps")
    print(f"{'method':22s} {'median s':>9s} {'words/s':>9s} {'vs bare':>8s} {'peak RSS MB':>12s}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:22s} {med:9.2f} {n_words / med:9.0f} {base / med:8.2f}x {peaks[name]:12.0f}")
    if args.json:
        out = {"config": {"model": args.model, "task": args.task, "split": args.split, "sentences": len(sents),
                          "words": n_words, "reps": args.reps, "max_batch_tokens": args.max_batch_tokens,
                          "device": args.device, "torch_threads": torch.get_num_threads()},
               "methods": {name: {"seconds_median": statistics.median(ts), "seconds": ts,
                                  "words_per_second": n_words / statistics.median(ts),
                                  "peak_extra_mib": peaks[name]} for name, ts in times.items()}}
        ours_s = statistics.median(times["redundancy.extract"])
        out.update({"size": f"{args.model}, {args.task}/{args.split}: {len(sents)} sentences, {n_words:,} words",
                    "bare_seconds": base, "ours_seconds": ours_s, "ours_vs_bare": base / ours_s,
                    "bare_words_per_s": n_words / base, "ours_words_per_s": n_words / ours_s})
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
