"""Extraction throughput: ours (word alignment + store write) against a bare batched forward loop.

Both sides run in this process on the same sentences, batched the same way (sorted by
length, the same token budget), with tokenization included, repeated and interleaved;
the table gives medians and the ratio. Peak memory is the median over repetitions of the largest resident set
seen during each run of a side, above the level before it started.

    .venv/bin/python benchmarks/extraction.py [--model minilm] [--task ptb-pos] [--split train] [--reps 3]
                                              [--sentences N] [--json out.json]

Against NeuroX's sentence-by-sentence extractor: ``benchmarks/extraction_neurox.py``.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import cli, extraction_header, summary, timed  # noqa: E402  (benchmarks/ is the script's folder)


def _arguments(ap):
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--task", default="ptb-pos")
    ap.add_argument("--split", default="train")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-batch-tokens", type=int, default=2048)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sentences", type=int, help="only the first N sentences of the split")


def run(args) -> dict:
    from redundancy import load_task
    from redundancy.representations.activations import _batches, _pad, extract, set_threads
    from redundancy.representations.models import load_model
    from redundancy.representations.store import ActivationStore

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

    def ours():
        # into an empty store (the timed extraction writes, flushes and checksums its arrays);
        # deleting the store afterwards is not part of it, and is left out of the timing
        with tempfile.TemporaryDirectory() as d:
            extract(lm, task, args.split, store=ActivationStore(d), progress=False,
                    max_batch_tokens=args.max_batch_tokens)

    bare()  # warm-up (allocator, kernels)
    runs = {"bare forward loop": [], "redundancy.extract": []}
    for _ in range(args.reps):
        for name, fn in (("bare forward loop", bare), ("redundancy.extract", ours)):
            _, seconds, mib = timed(fn)
            runs[name].append({"seconds": seconds, "peak_extra_mib": mib})
    methods = {name: {**summary(rs), "words_per_second": n_words / summary(rs)["seconds_median"]}
               for name, rs in runs.items()}
    base, ours_s = (methods[k]["seconds_median"] for k in runs)
    return {"config": {"model": args.model, "task": args.task, "split": args.split, "sentences": len(sents),
                       "words": n_words, "reps": args.reps, "max_batch_tokens": args.max_batch_tokens,
                       "device": args.device, "torch_threads": torch.get_num_threads(),
                       "layers": lm.n_layers, "hidden": lm.hidden_size},
            "methods": methods,
            "size": f"{args.model}, {args.task}/{args.split}: {len(sents)} sentences, {n_words:,} words",
            "bare_seconds": base, "ours_seconds": ours_s, "ours_vs_bare": base / ours_s,
            "bare_words_per_s": n_words / base, "ours_words_per_s": n_words / ours_s}


def report(out: dict) -> None:
    c = out["config"]
    print(f"{extraction_header(c)}; device {c['device']}")
    print(f"{'method':22s} {'median s':>9s} {'words/s':>9s} {'vs bare':>8s} {'peak MiB':>12s}")
    for name, m in out["methods"].items():
        print(f"{name:22s} {m['seconds_median']:9.2f} {m['words_per_second']:9.0f} "
              f"{out['bare_seconds'] / m['seconds_median']:8.2f}x {m['peak_extra_mib_median']:12.0f}")


if __name__ == "__main__":
    cli(__doc__, _arguments, run, report)
