"""The benchmarks' shared harness: a timed call with its peak memory, interleaved repetitions,
medians and paired ratios, the provenance every result carries, and the command line.

Every script of this folder times its methods through :func:`timed` (or :func:`interleaved`,
which runs the methods in turn, repetition after repetition, so that slow drifts of the
machine fall on all alike), summarises with :func:`summary`, and ends in :func:`cli`, which
adds ``--json`` and writes the results with :func:`provenance` (the machine, with its CPU's
vendor, family and model, the library versions and the time: ratios differ between Intel and
AMD machines, so a number without its CPU means little).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time

from redundancy.provenance import PeakRSS, library_versions, machine, rss_bytes

__all__ = ["timed", "interleaved", "summary", "paired", "provenance", "cli", "PeakRSS", "rss_mib"]


def rss_mib() -> float:
    """This process's resident set now, in MiB."""
    return rss_bytes() / 2**20


def timed(fn):
    """``fn()``'s value, its wall-clock seconds and the rise of this process's resident memory
    above the level at the start (MiB, sampled every 2 ms)."""
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        value = fn()
        seconds = time.perf_counter() - t0
    return value, seconds, mem.extra_mib


def interleaved(methods: dict, repeats: int, label: str = "", keep=None):
    """Each of ``methods`` (name -> function) ``repeats`` times, in turn; per name the list of
    ``{"seconds", "peak_extra_mib"}`` and the last value of the names in ``keep`` (default all)."""
    runs, values = {k: [] for k in methods}, {}
    for rep in range(repeats):
        for name, fn in methods.items():
            v, s, mb = timed(fn)
            runs[name].append({"seconds": s, "peak_extra_mib": mb})
            if keep is None or name in keep:
                values[name] = v
            del v
            print(f"  {label}rep {rep + 1}/{repeats} {name:10s} {s:8.2f} s  +{mb:7.0f} MiB", flush=True)
    return runs, values


def summary(runs: list[dict]) -> dict:
    """Medians and the raw values of a method's repetitions (``seconds``, ``peak_extra_mib``)."""
    out = {"seconds_median": statistics.median(r["seconds"] for r in runs), "seconds": [r["seconds"] for r in runs]}
    if all("peak_extra_mib" in r for r in runs):
        out["peak_extra_mib_median"] = statistics.median(r["peak_extra_mib"] for r in runs)
        out["peak_extra_mib"] = [r["peak_extra_mib"] for r in runs]
    return out


def paired(a: list[dict], b: list[dict]) -> float:
    """The median over repetitions of ``a_i / b_i`` in seconds: each pair ran back to back, so
    this ratio is steadier than the ratio of medians when other work comes and goes."""
    return statistics.median(x["seconds"] / y["seconds"] for x, y in zip(a, b))


def extraction_header(c: dict) -> str:
    """The line that says what an extraction benchmark ran on (its ``config``)."""
    return (f"model {c['model']} ({c['layers']} x {c['hidden']}), task {c['task']}/{c['split']}: "
            f"{c['sentences']} sentences, {c['words']} words; torch threads {c['torch_threads']}; "
            f"{c['reps']} reps")


def provenance() -> dict:
    """Where and when these numbers were measured."""
    return {"machine": machine(), "versions": library_versions(),
            "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def cli(doc: str, add_arguments, run, report=None, argv=None) -> dict:
    """The command line of a benchmark script: ``add_arguments(parser)`` declares its options
    (``--json`` is added here), ``run(args)`` measures and returns the results, ``report(out)``
    prints them; the results, with their provenance, go to ``--json`` when given."""
    ap = argparse.ArgumentParser(description=doc.strip().split("\n")[0])
    add_arguments(ap)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    out = run(args)
    out.setdefault("provenance", provenance())
    if report is not None:
        report(out)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2, default=float)
    return out
