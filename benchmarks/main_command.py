"""Wall time of the README's main command on a fresh clone: first run, and a second with nothing changed.

Clones the repository (its committed ``HEAD``) into a temporary folder and runs there, timing each:

1. ``bash run.sh env``: the virtual environment and the pinned install (from the pip cache
   when this machine has one);
2. ``bash run.sh``: the main job with the dependencies installed: fetch the embedded model
   and data, fine-tune, extract, execute every notebook, build the book;
3. ``bash run.sh`` again, with nothing changed (everything reused).

Also records the size of the built book and whether each command succeeded. The clone is
removed at the end unless ``--keep``.

    .venv/bin/python benchmarks/main_command.py --json data/benchmarks/main_command.json
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import cli  # noqa: E402  (benchmarks/ is the script's folder)


def timed(cmd, cwd, log):
    t = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.call(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
    return {"command": " ".join(cmd), "seconds": round(time.perf_counter() - t, 1), "exit_status": rc,
            "log_tail": Path(log).read_text(errors="replace").splitlines()[-5:]}


def folder_size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def _arguments(ap):
    ap.add_argument("--keep", action="store_true", help="keep the clone")


def _run(a):
    commit = subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True).strip()
    work = Path(tempfile.mkdtemp(prefix="redundancy-clone-"))
    clone = work / "repo"
    subprocess.check_call(["git", "clone", "-q", str(ROOT), str(clone)])
    env_log, first_log, second_log = (work / f"{n}.log" for n in ("env", "first", "second"))
    out = {"benchmark": "main_command", "commit": commit, "date": time.strftime("%Y-%m-%d")}
    steps = [("env", ["bash", "run.sh", "env"], env_log), ("first_run", ["bash", "run.sh"], first_log),
             ("second_run", ["bash", "run.sh"], second_log)]
    for name, cmd, log in steps:
        out[name] = timed(cmd, clone, log)
        print(f"{name:10s} {out[name]['seconds']:8.1f}s  exit {out[name]['exit_status']}  ({' '.join(cmd)})",
              flush=True)
        if out[name]["exit_status"] != 0:
            print("\n".join(out[name]["log_tail"]), file=sys.stderr)
            break
    html = clone / "_build" / "html"
    if html.exists():
        out["book_mib"] = round(folder_size(html) / 2**20, 1)
        out["book_pages"] = len(list(html.rglob("*.html")))
        print(f"book       {out['book_mib']} MiB, {out['book_pages']} HTML pages")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"clone kept at {clone}")
    return out


def main(argv=None):
    return cli(__doc__, _arguments, _run, None, argv)


if __name__ == "__main__":
    main()
