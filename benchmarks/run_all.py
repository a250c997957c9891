"""Every benchmark, one command: a table of medians and ratios against the performance targets.

Runs each benchmark script of this folder as a child process (so that one's memory does
not inflate the next one's peak), with the sizes of the project's performance targets,
collects their JSON results, and writes them with the target table and provenance
(machine, date, commit, the commands) to ``data/benchmarks/results.json``, which the
book's performance chapter reads. Nothing else may run on the machine meanwhile: the
ratios are within one run, but both sides share the two cores.

    .venv/bin/python -m pip install --no-deps -r benchmarks/requirements.txt
    .venv/bin/python benchmarks/run_all.py                 # the targets' sizes (about 50 minutes here)
    .venv/bin/python benchmarks/run_all.py --quick         # small sizes, a smoke test (a few minutes)
    .venv/bin/python benchmarks/run_all.py --only probes_minilm,cka --out /tmp/b.json

``bash run.sh`` must have run first (the MiniLM runs read the default run's activations).
``benchmarks/main_command.py`` (a fresh clone and the main command, timed) is separate:
it takes as long as the main job; its JSON, when present next to the results, joins the table.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

# name -> (script and arguments at the targets' sizes, the same at --quick sizes)
BENCHES = {
    "probes_minilm": (["probes.py", "--data", "run", "--only", "probe,layers", "--repeats", "3"],
                      ["probes.py", "--data", "run", "--only", "probe,layers", "--repeats", "1"]),
    "probes_mpnet_size": (["probes.py", "--data", "synthetic", "--rows", "20000", "--layers", "13", "--hidden", "768",
                           "--only", "layers,minimal,scaling"],
                          ["probes.py", "--data", "synthetic", "--rows", "4000", "--layers", "13", "--hidden", "96",
                           "--only", "layers,minimal,scaling", "--sizes", "96,384,1248", "--repeats", "1"]),
    # the paper-scale run's own MPNet activations (9,984 neurons, 19,875 gold PTB tokens): the
    # layer sweep and the minimal-set search on real data, where k is what the paper's tables
    # report (needs `bash run.sh paper-scale`'s cache; --quick uses the default run's MiniLM)
    "probes_mpnet_real": (["probes.py", "--data", "run", "--run", "paper-scale", "--model", "mpnet", "--task", "ptb-pos",
                           "--only", "layers,minimal", "--repeats", "1"],
                          ["probes.py", "--data", "run", "--only", "minimal", "--repeats", "1"]),
    # three interleaved repetitions: NeuroX's time here has varied by a third between runs (55 s, 73 s)
    "probe_paper_scale": (["probes.py", "--data", "synthetic", "--rows", "150000", "--layers", "13", "--hidden", "768",
                           "--only", "probe", "--repeats", "3"],
                          ["probes.py", "--data", "synthetic", "--rows", "10000", "--layers", "13", "--hidden", "96",
                           "--only", "probe", "--repeats", "1"]),
    # one probe's cost against the number of tokens, at the paper's width (the chapter's curve)
    "probe_rows": (["probes.py", "--data", "synthetic", "--rows", "40000", "--layers", "13", "--hidden", "768",
                    "--only", "rows", "--row-sizes", "2500,5000,10000,20000,40000", "--repeats", "2"],
                   ["probes.py", "--data", "synthetic", "--rows", "4000", "--layers", "13", "--hidden", "96",
                    "--only", "rows", "--row-sizes", "1000,2000,4000", "--repeats", "1"]),
    "classifier_paper": (["probes.py", "--data", "synthetic", "--rows", "100000", "--layers", "13", "--hidden", "768",
                          "--classes", "2", "--only", "probe", "--repeats", "1"],
                         ["probes.py", "--data", "synthetic", "--rows", "10000", "--layers", "13", "--hidden", "96",
                          "--classes", "2", "--only", "probe", "--repeats", "1"]),
    "clustering": (["clustering_bench.py", "--tokens", "44000", "--neurons", "9984", "--repeats", "3"],
                   ["clustering_bench.py", "--tokens", "5000", "--neurons", "2000", "--repeats", "1"]),
    "cka": (["cka_bench.py", "--tokens", "44000", "--layers", "13", "--hidden", "768", "--check-float64"],
            ["cka_bench.py", "--tokens", "5000", "--layers", "13", "--hidden", "96", "--baseline-tokens", "500"]),
    "extraction": (["extraction.py", "--reps", "3"], ["extraction.py", "--reps", "1"]),
    "extraction_neurox": (["extraction_neurox.py"], ["extraction_neurox.py", "--sentences", "30"]),
    # the default run's own activations through NeuroX 1.0.9 and this library side by side:
    # a probe, the neuron ranking and the correlation clustering (the methods chapter cites it)
    "neurox_compare": (["neurox_compare.py", "--repeats", "2"], ["neurox_compare.py", "--repeats", "1"]),
}


def _get(d, *path, default=None):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


def paper_scale(folder: Path = ROOT / "data" / "paper-scale") -> dict | None:
    """The published paper-scale run (``bash run.sh paper-scale``) against its goal, read from its
    provenance (it takes hours, so it is not one of the benchmarks this command runs)."""
    f = folder / "provenance.json"
    if not f.exists():
        return None
    sys.path.insert(0, str(ROOT / "lib"))
    from redundancy.representations.runs import load_config
    from redundancy.run.publish import summary

    prov = json.loads(f.read_text())
    entries = prov.get("pipeline", {}).get("entries", [])
    train = [e for e in entries if e.get("split") == "train"]
    return {"commit": prov.get("commit"), "published": prov.get("published"), "machine": prov.get("machine"),
            "note": prov.get("note"), "models": prov.get("config", {}).get("models"),
            "tasks": sorted(prov.get("config", {}).get("tasks", {})), "pairs": len(prov.get("pairs", [])),
            "max_neurons": max((e.get("neurons") or 0 for e in entries), default=0),
            "max_train_rows": max((e.get("rows") or 0 for e in train), default=0),
            "goal": (goal := load_config(ROOT / "configs" / "paper-scale.yml")["goal"]), "summary": summary(prov, goal)}


def _ceiling_note(p: dict) -> str:
    c = p.get("ceiling")
    if not c:
        return ""
    return (f"; float32 ceiling {c['max_speedup']:.2f}x: the probe's {c['probe_flops'] / 1e9:.0f} GFLOP of products at "
            f"the best float32 product rate measured here, {c['best_product_flops_per_s'] / 1e9:.0f} GFLOP/s, take "
            f"{c['floor_seconds']:.2f} s")


def target_table(res: dict) -> list[dict]:
    """One row per target of the performance issue: sizes, both sides' medians, the ratio, met or not."""
    rows = []

    def row(what, size, baseline, base_s, ours_s, ratio, target, met, note="", ceiling=None):
        # ceiling: the largest speed-up over the baseline a float32 implementation doing the same
        # matrix products could reach here, at the best float32 product rate measured in the same
        # run (benchmarks/bounds.py; None where not measured)
        rows.append({"what": what, "size": size, "baseline": baseline, "baseline_seconds": base_s,
                     "ours_seconds": ours_s, "ratio": ratio, "target": target,
                     "met": None if met is None else bool(met), "note": note, "ceiling": ceiling})

    def own_rows(result):  # benchmarks that write their target rows themselves
        for r_ in result.get("rows", []):
            row(r_["what"], r_["size"], r_["baseline"], r_["baseline_seconds"], r_["ours_seconds"], r_["ratio"],
                r_["target"], r_["met"], r_.get("note", ""), r_.get("ceiling"))

    for key, label in (("probes_minilm", "one probe, 10 epochs"), ("probe_paper_scale", "one probe, 10 epochs")):
        p = _get(res, key, "probe")
        if p:
            d = res[key]["data"]
            acc = p["test_accuracy"]
            gap = 100 * (acc["neurox"] - acc["ours"])
            row(label, f"{d['train_rows']:,} x {d['neurons']:,} x {d['classes']}", "NeuroX train_logistic_regression_probe",
                p["seconds"]["neurox"], p["seconds"]["ours"], p["speedup"], ">= 2.5x, accuracy within 0.5 points",
                p["speedup"] >= 2.5 and gap <= 0.5,
                f"test accuracy NeuroX {acc['neurox']:.4f}, ours {acc['ours']:.4f}; the probe's matrix products "
                f"alone take {p['seconds']['bare']:.2f} s (ours = {p['ours_over_bare']:.2f}x of that)"
                + _ceiling_note(p), _get(p, "ceiling", "max_speedup"))
            if "ours_in_order" in p["seconds"]:  # the same mini-batches as NeuroX (no shuffling)
                gap = 100 * (acc["neurox"] - acc["ours_in_order"])
                row(label + ", rows in NeuroX's order (shuffle=False)",
                    f"{d['train_rows']:,} x {d['neurons']:,} x {d['classes']}", "NeuroX train_logistic_regression_probe",
                    p["seconds"]["neurox"], p["seconds"]["ours_in_order"], p["speedup_in_order"],
                    ">= 2.5x, accuracy within 0.5 points", p["speedup_in_order"] >= 2.5 and gap <= 0.5,
                    f"NeuroX does not shuffle: these are its mini-batches; test accuracy NeuroX {acc['neurox']:.4f}, "
                    f"ours {acc['ours_in_order']:.4f}; ours = {p['ours_in_order_over_bare']:.2f}x the bare products"
                    + _ceiling_note(p), _get(p, "ceiling", "max_speedup"))
    nc = res.get("neurox_compare")
    if nc:  # the default run's own activations through both toolkits, the agreement the methods chapter cites
        d, p, rk, cl = nc["data"], nc["probe"], nc["ranking"], nc["clustering"]
        size = f"{d['model']} {d['task']}: {d['train_rows']:,} x {d['neurons']:,}"
        gap = 100 * (p["neurox"]["test_accuracy"] - p["ours"]["test_accuracy"])
        row("one probe on the default run's activations", size, "NeuroX train_logistic_regression_probe",
            p["neurox"]["seconds"], p["ours"]["seconds"], p["neurox"]["seconds"] / p["ours"]["seconds"],
            "accuracy within 0.5 points", gap <= 0.5,
            f"test accuracy NeuroX {p['neurox']['test_accuracy']:.4f}, ours {p['ours']['test_accuracy']:.4f}")
        row("neuron ranking of that probe", size, "NeuroX get_neuron_ordering", rk["neurox_seconds"],
            rk["ours_seconds"], rk["neurox_seconds"] / rk["ours_seconds"], "the same ranking",
            rk["same_cutoffs"] and rk["same_neurons_per_step"],
            f"same cut-offs {rk['same_cutoffs']}, same neurons per step {rk['same_neurons_per_step']}")
        row("correlation clustering, c_t = 0.3", size, "NeuroX create_correlation_clusters",
            cl["neurox"]["seconds"], cl["ours"]["seconds"], cl["neurox"]["seconds"] / cl["ours"]["seconds"],
            "adjusted Rand index >= 0.99 with NeuroX's clusters", cl["adjusted_rand_index"] >= 0.99,
            f"ARI {cl['adjusted_rand_index']:.4f}; clusters NeuroX {cl['neurox']['n_clusters']}, ours "
            f"{cl['ours']['n_clusters']}; peak memory NeuroX +{cl['neurox']['peak_extra_mib']:.0f} MiB, ours "
            f"+{cl['ours']['peak_extra_mib']:.0f} MiB")
    for key in ("probes_minilm", "probes_mpnet_size", "probes_mpnet_real"):
        l = _get(res, key, "layers")
        if l:
            d = res[key]["data"]
            row("layer sweep (every layer, every prefix, oracle)",
                f"{d['train_rows']:,} tokens, {d['layers']} x {d['hidden']} ({l['probes']} probes; "
                f"{d['description'].split(':')[0]})",
                "the same probes one by one with NeuroX", l["seconds"]["neurox_one_by_one"],
                l["seconds"]["ours_one_pass"], l["speedup"], ">= 5x", l["speedup"] >= 5,
                f"largest dev-accuracy difference, ours in one pass vs ours one by one: "
                f"{l['max_dev_diff_together_vs_alone']:.4f}; vs NeuroX: {l['max_dev_diff_ours_vs_neurox']:.4f}")
    for key in ("probes_mpnet_size", "probes_mpnet_real"):
        m = _get(res, key, "minimal")
        if not m:
            continue
        d = res[key]["data"]
        row("minimal-set search (reference grid of k)",
            f"{d['neurons']:,} neurons, {d['train_rows']:,} tokens ({d['description'].split(':')[0]})",
            "NeuroX, a probe retrained from scratch for every k", m["seconds"]["neurox_retrain_each_k"],
            m["seconds"]["ours"], m["speedup"], ">= 5x, same k", m["speedup"] >= 5 and m["same_k_as_one_by_one"],
            f"k: ours {m['k_ours']}, ours one grid point at a time {m['k_ours_one_by_one']}, NeuroX {m['k_neurox']} "
            f"({m['grid_points_timed']} grid points timed on both sides)")
    c = res.get("clustering")
    if c and "ours" in c:
        cfg = c["config"]
        size = f"{cfg['neurons']:,} neurons x {cfg['tokens']:,} tokens"
        o, b, r = c["ours"], c.get("bound"), c.get("reference")
        agree = c.get("agreement", {})
        if b:
            ratio = o["seconds_median"] / b["seconds_median"]
            row("correlation clustering vs the bare bound", size, "float32 X.T @ X + scipy average linkage",
                b["seconds_median"], o["seconds_median"], ratio, "<= 1.2x the bound (ours / bound)", ratio <= 1.2)
        if r:
            sp = r["seconds_median"] / o["seconds_median"]
            mem = r["peak_extra_mib_median"] / max(o["peak_extra_mib_median"], 1e-9)
            row("correlation clustering vs the reference code", size, "np.corrcoef + scipy (NeuroX, the authors)",
                r["seconds_median"], o["seconds_median"], sp, ">= 1.6x faster, <= half the peak memory, identical clusters",
                sp >= 1.6 and mem >= 2 and agree.get("identical_partitions", False),
                f"peak memory above the data: reference {r['peak_extra_mib_median']:.0f} MiB, ours "
                f"{o['peak_extra_mib_median']:.0f} MiB ({mem:.1f}x less); adjusted Rand index "
                f"{agree.get('adjusted_rand_index', float('nan')):.4f}, identical partitions "
                f"{agree.get('identical_partitions')}")
    k = res.get("cka")
    if k:
        own_rows(k)
    e = res.get("extraction")
    if e:
        row("extraction", e["size"], "bare batched forward loop", e["bare_seconds"], e["ours_seconds"],
            e["ours_vs_bare"], ">= 0.9x the bare loop's tokens/s", e["ours_vs_bare"] >= 0.9,
            f"{e['ours_words_per_s']:.0f} vs {e['bare_words_per_s']:.0f} words/s")
    en = res.get("extraction_neurox")
    if en:
        own_rows(en)
    mc = res.get("main_command")
    if mc and "first_run" in mc:
        first, second = mc["first_run"], mc.get("second_run", {})
        row("main command, first run (dependencies installed)", "defaults (MiniLM, 5 tasks)", "-", None,
            first["seconds"], None, "<= 15 minutes", first["seconds"] <= 900 and first["exit_status"] == 0,
            f"fresh clone at {mc['commit'][:8]}; environment install before it: {mc['env']['seconds']:.0f} s")
        if second:
            row("main command, second run, nothing changed", "defaults", "-", None, second["seconds"], None,
                "<= 1 minute", second["seconds"] <= 60 and second["exit_status"] == 0)
    ps = res.get("paper_scale")
    if ps:
        S, g = ps["summary"], ps["goal"]
        row("paper scale, pipeline and notebooks 01-07 (bash run.sh paper-scale)",
            f"{', '.join(ps['models'])}; {ps['max_neurons']:,} neurons, {ps['max_train_rows']:,} train tokens, "
            f"{ps['pairs']} model x task pairs", "-", None, S["total_s"], None,
            f"<= {g['hours']:g} hours, <= {g['gb']:g} GB in any step", S["within_goal"],
            f"{S['total_s'] / 3600:.2f} h; peak memory of any step {S['memory_mib'] / 1024:.1f} GiB "
            f"({S['memory_basis']}), {S['peak_rss_mib'] / 1024:.1f} GiB resident counting mapped activation pages; "
            f"published from commit {(ps['commit'] or '?')[:8]}")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke test, not the targets")
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHES)}")
    ap.add_argument("--out", default=str(ROOT / "data" / "benchmarks" / "results.json"))
    ap.add_argument("--use", action="append", default=[], metavar="NAME=FILE",
                    help="take benchmark NAME's results from FILE (its --json output from an earlier run of the "
                         "same command at the same commit) instead of running it")
    ap.add_argument("--table-only", action="store_true",
                    help="run nothing: rebuild the table from the results file (and main_command.json beside it)")
    a = ap.parse_args(argv)
    names = [] if a.table_only else (a.only.split(",") if a.only else list(BENCHES))
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        sys.exit(f"unknown benchmark(s) {unknown}; choose from {list(BENCHES)}")
    out_path = Path(a.out)
    previous = json.loads(out_path.read_text()) if out_path.exists() else {}
    keep = a.only or a.table_only
    res = dict(previous.get("results", {})) if keep else {}
    commands = dict(previous.get("commands", {})) if keep else {}
    tmp = Path(tempfile.mkdtemp(prefix="redundancy-bench-"))
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    failed = []
    for spec in a.use:
        name, _, path = spec.partition("=")
        if name not in BENCHES or not Path(path).exists():
            sys.exit(f"--use {spec!r}: expected NAME=FILE with NAME in {list(BENCHES)} and an existing FILE")
        res[name] = json.loads(Path(path).read_text())
        args = BENCHES[name][1 if a.quick else 0]
        commands[name] = {"command": " ".join(["benchmarks/" + args[0], *args[1:]]), "seconds": None,
                          "reused_from": Path(path).name}
        names = [n for n in names if n != name]
    sys.path.insert(0, str(ROOT / "lib"))
    from redundancy.provenance import library_versions, machine

    here = machine()
    cpu = f"{here['cpu']} ({here['cpu_id']})" if here.get("cpu_id") else here["cpu"]
    for name in names:
        args = BENCHES[name][1 if a.quick else 0]
        js = tmp / f"{name}.json"
        cmd = [PY, str(ROOT / "benchmarks" / args[0]), *args[1:], "--json", str(js)]
        print(f"== {name}: {' '.join(['benchmarks/' + args[0], *args[1:]])}", flush=True)
        t = time.perf_counter()
        rc = subprocess.call(cmd, cwd=ROOT)
        if rc != 0 or not js.exists():
            failed.append(name)
            print(f"   {name} failed (exit {rc})", flush=True)
            continue
        res[name] = json.loads(js.read_text())
        commands[name] = {"command": " ".join(["benchmarks/" + args[0], *args[1:]]),
                          "seconds": round(time.perf_counter() - t, 1), "commit": head, "cpu": cpu}
    mc = out_path.parent / "main_command.json"
    if mc.exists():
        res["main_command"] = json.loads(mc.read_text())
    ps = paper_scale()
    if ps:
        res["paper_scale"] = ps
    import torch

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    if a.table_only and previous:  # the measurements' provenance, not this rebuild's
        commit, date = previous["commit"], previous["date"]
    else:
        date = time.strftime("%Y-%m-%d")
    doc = {"date": date, "commit": commit, "quick": a.quick if not a.table_only else previous.get("quick", False),
           "machine": {**here, "cpu": cpu, "python": platform.python_version(), "torch": torch.__version__,
                       "torch_threads": torch.get_num_threads()},
           "versions": library_versions(),
           "gpu": None, "commands": commands, "results": res, "table": target_table(res)}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(doc, indent=2, default=float))
    print(f"\n{'what':52s} {'size':34s} {'baseline s':>10s} {'ours s':>8s} {'ratio':>7s}  target  met")
    for r in doc["table"]:
        f = (lambda v: f"{v:10.2f}" if isinstance(v, (int, float)) else f"{'-':>10s}")
        ratio = f"{r['ratio']:7.2f}" if isinstance(r["ratio"], (int, float)) else f"{'-':>7s}"
        print(f"{r['what'][:52]:52s} {r['size'][:34]:34s} {f(r['baseline_seconds'])} {f(r['ours_seconds'])[2:]} "
              f"{ratio}  {r['target']}  {'yes' if r['met'] else ('no' if r['met'] is not None else '-')}")
    print(f"\nwritten to {out_path}")
    if failed:
        sys.exit(f"failed: {failed}")


if __name__ == "__main__":
    main()
