"""Execute every notebook with papermill for a run configuration: the book's batch runner.

``python -m redundancy notebooks --config configs/default.yml`` runs ``notebooks/0*.ipynb`` in
order, with the run's configuration as the ``config`` parameter, and writes the executed
notebooks to ``book/executed/`` (where the book takes its chapters from) or ``--output``.
Results are written as CSV/JSON by the notebooks themselves (``<results>/<run>/``).

* A notebook whose inputs have not changed is skipped; ``--force`` runs it anyway. Its inputs:
  its source, the configuration file, the parameters, the library's source, the committed
  data it reads, and the content (size and xxh3) of every file or folder the configuration
  names (a user's data files, a model folder's weights). A run's results changed since the
  runner last wrote them (a notebook run by hand in JupyterLab with other parameters) are
  detected too: then every notebook runs again, so no executed notebook shows numbers that
  are not the run's.
* Executed notebooks of the default run go to ``book/executed/``; of any other configuration,
  to ``<results>/<run>/executed/`` (never into the book) unless ``--output`` says otherwise.
* A failing notebook is reported with the cell that failed and the error, and the
  others still run; the command exits with status 1 at the end if any failed.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from ..cache import clean_stale_tmp, file_lock, file_record, folder_records, write_json_atomic
from ..config import repo_root
from ..provenance import PeakSampler, children_rss
from ..utils import stable_hash

__all__ = ["notebooks", "run_notebooks", "clean_notebook", "unclean_notebooks"]


def notebooks(folder: Path | None = None) -> list[Path]:
    """The section notebooks, in order (``notebooks/0*.ipynb``)."""
    folder = Path(folder) if folder else repo_root() / "notebooks"
    found = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise FileNotFoundError(f"no notebooks (NN_name.ipynb) in {folder}")
    return found


def clean_notebook(path: Path, write: bool = True) -> bool:
    """Strip a source notebook to what is committed: no outputs, no execution counts, no
    execution metadata. Returns whether it had any (and so was changed, when ``write``)."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    dirty = False
    for cell in nb.cells:
        for key in ("execution", "collapsed", "scrolled", "jp-MarkdownHeadingCollapsed"):
            if key in cell.metadata:
                del cell.metadata[key]
                dirty = True
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            cell.outputs, cell.execution_count, dirty = [], None, True
    for key in ("papermill", "widgets"):
        if key in nb.metadata:
            del nb.metadata[key]
            dirty = True
    if dirty and write:
        nbformat.validate(nb)
        nbformat.write(nb, str(path))
    return dirty


def unclean_notebooks(folder: Path | None = None) -> list[Path]:
    """The source notebooks that hold outputs or execution records (see :func:`clean_notebook`)."""
    return [nb for nb in notebooks(folder) if clean_notebook(nb, write=False)]


def _lib_hash() -> str:
    """The library's source, every module of every sub-package: a change anywhere re-runs."""
    h = hashlib.sha256()
    lib = Path(__file__).resolve().parents[1]  # the whole library, not this folder
    for f in sorted(lib.rglob("*.py")):
        h.update(f.relative_to(lib).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _results_of(config: Path) -> Path:
    from ..representations.runs import load_config, results_dir

    return results_dir(load_config(config))


def _data_files(nb: Path, params: dict) -> list[Path]:
    """Committed data a notebook reads besides its run: the paper's tables, and the published
    paper-scale results or the benchmark results when it takes those parameters."""
    root = repo_root()
    files = sorted((root / "data" / "paper").glob("*.csv")) if root else []
    for k in ("published", "earlier"):  # published runs: their provenance changes with every publication
        if k in params and params[k]:
            files.append((nb.parent / str(params[k]) / "provenance.json").resolve())
    if "benchmarks" in params:
        b = params["benchmarks"]
        results = (nb.parent / str(b)).resolve() if b else root / "data" / "benchmarks" / "results.json"
        files += [results, results.parent / "gpu.json"]  # the GPU check's results, shown when present
    return files


#: files of a run's results folder that are the runner's or the pipeline's own records, not results
_RECORDS = ("notebooks.json", "activations.json")
#: configuration keys that name outputs, not inputs
_OUTPUT_KEYS = ("results_dir",)


def _content(path: Path, limit: int = 2000) -> dict:
    """Size and checksum of a file, or of every file below a folder (at most ``limit``)."""
    if path.is_file():
        return file_record(path)
    files = sorted(f.relative_to(path).as_posix() for f in path.rglob("*") if f.is_file() and ".tmp-" not in f.name)
    return folder_records(path, files[:limit])


def _config_inputs(config: Path) -> str:
    """A fingerprint of every file or folder the configuration names (relative to the
    configuration's folder or the working directory): a user's data files and model folders,
    so that an edited dev file or retrained model re-runs the notebooks that read them."""
    import yaml

    found = {}

    def walk(v, where):
        if isinstance(v, dict):
            for k, x in v.items():
                if k not in _OUTPUT_KEYS:
                    walk(x, f"{where}.{k}")
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, f"{where}[{i}]")
        elif isinstance(v, str) and v.strip() and len(v) < 4096:
            for base in (config.parent, Path.cwd()):
                p = (base / v).expanduser()
                if p.exists():
                    found[where] = _content(p.resolve())
                    break

    walk(yaml.safe_load(config.read_text()) or {}, "config")
    return stable_hash(found, 20)


def _results_fingerprint(results: Path) -> str:
    """The content of a run's results (the runner's own records left out)."""
    files = sorted(f.relative_to(results).as_posix() for f in results.rglob("*") if f.is_file()
                   and f.name not in _RECORDS and ".tmp-" not in f.name
                   and "executed" not in f.relative_to(results).parts)
    return stable_hash(folder_records(results, files), 20)


def _stamp(nb: Path, config: Path, params: dict, reads: dict | None = None, inputs: str = "") -> str:
    """A hash of what a notebook's output depends on: its source, the configuration, its
    parameters, the library, and the committed data it reads (``reads``: its parameters
    with their defaults filled in, see :func:`_data_files`)."""
    h = hashlib.sha256()
    h.update(nb.read_bytes())
    h.update(config.read_bytes())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    h.update(_lib_hash().encode())
    h.update(inputs.encode())
    for f in _data_files(nb, params if reads is None else reads):
        h.update(str(f.name).encode())
        h.update(f.read_bytes() if f.is_file() else b"(missing)")
    return h.hexdigest()[:20]


def _kernel_manager():
    """A kernel manager whose kernels talk over local sockets (IPC, files under the temporary
    folder) rather than TCP: nothing reachable from the network, and no warning from every
    kernel about unencrypted TCP. On Windows, which has no IPC transport: the default (TCP)."""
    if os.name != "posix":
        return None
    import tempfile
    import uuid

    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class LocalKernelManager(AsyncKernelManager):
        @default("transport")
        def _default_transport(self):
            return "ipc"

        @default("ip")
        def _default_ip(self):  # for IPC, the path prefix of the kernel's sockets
            return os.path.join(tempfile.gettempdir(), f"redundancy-kernel-{uuid.uuid4().hex[:12]}")

    return LocalKernelManager


def _bad_parameters(nb_params: dict, declared: dict) -> str:
    """What :func:`redundancy.paper.pages.check_parameters` would refuse in the notebook's first
    cell (a float for an integer, text for a list), said before a kernel starts; '' if nothing."""
    from ..paper.pages import check_parameters

    defaults = {}
    for name, info in declared.items():
        try:
            defaults[name] = ast.literal_eval(str(info.get("default")))
        except (ValueError, SyntaxError):  # an expression: the notebook's own check judges it
            continue
    given = {k: v for k, v in nb_params.items() if k in defaults and k != "config"}
    try:
        check_parameters(given, {k: defaults[k] for k in given})
    except (NameError, TypeError) as e:
        return str(e)
    return ""


def _finish_page(running: Path, out: Path) -> None:
    """Move an executed notebook into place under ``out``, tidied for the book (even if the
    tidying fails: the page is never lost)."""
    try:
        _hide_injected_parameters(running)
    finally:
        os.replace(running, out)


def _hide_injected_parameters(path: Path) -> None:
    """Tag the cell papermill injected (the run's parameters) ``remove-cell``, as the source's
    own parameters cell is: the book shows which run a page is from in one line of prose. The
    widgets' saved state is dropped too: the book hides widget cells (its interactive figures
    need no kernel), and the state would make the page load widget scripts from the network."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
    nbformat.write(nb, str(path))


def _failure(e: Exception) -> str:
    """Which cell failed and why, from a papermill error."""
    cell = getattr(e, "exec_count", None)
    ename, evalue = getattr(e, "ename", type(e).__name__), getattr(e, "evalue", str(e))
    return f"cell {cell}: {ename}: {str(evalue).strip().splitlines()[-1] if str(evalue).strip() else ''}"


def run_notebooks(config, output=None, only=None, params=None, force: bool = False, log=print,
                  folder=None, timeout: int | None = None) -> dict:
    """Execute the notebooks; returns ``{notebook: "ran" | "skipped" | "failed: ..."}``.

    Parameters
    ----------
    config : path
        The run configuration given to every notebook as its ``config`` parameter.
    output : path, optional
        Where executed notebooks go (default ``book/executed`` for the repository's default run,
        ``<results>/<run>/executed`` for any other configuration).
    only : list of str, optional
        Run only notebooks whose name contains one of these (e.g. ``["03", "cka"]``).
    params : dict, optional
        Parameters, each given to the notebooks that declare it in their parameters cell
        (a name no notebook declares is an error).
    force : bool
        Run even when nothing changed.
    timeout : int, optional
        Seconds a single cell may run.
    """
    import papermill as pm

    config = Path(config).resolve()
    if not config.exists():
        raise FileNotFoundError(f"run configuration {config} not found")
    results = _results_of(config)
    if not output:  # the book's chapters are the default run's; any other run's stay with its results
        default = repo_root() / "configs" / "default.yml" if repo_root() else None
        output = repo_root() / "book" / "executed" if config == default else results / "executed"
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    params = {"config": str(config), **(params or {})}
    nbs = notebooks(folder)
    if only:
        nbs = [nb for nb in nbs if any(o in nb.stem for o in only)]
        if not nbs:
            raise ValueError(f"no notebook matches {only}")
    declared = {nb.name: pm.inspect_notebook(str(nb)) for nb in nbs}  # name -> default, type, help
    unused = set(params) - set().union(*declared.values())
    if unused:
        raise ValueError(f"no notebook has the parameter(s) {sorted(unused)}; see the parameters cell of each")
    # two batches on one run take turns (the second then skips what the first made current):
    # no record of either is lost
    with file_lock(results / ".notebooks.lock"):
        return _batch(config, results, output, nbs, declared, params, force, log, timeout)


def _read_defaults(declared: dict) -> dict:
    """Where a notebook reads committed data, from its parameters cell's defaults."""
    defaults = {}
    for k in ("published", "earlier", "benchmarks"):
        if k in declared:
            try:
                defaults[k] = ast.literal_eval(str(declared[k].get("default")))
            except (ValueError, SyntaxError):
                defaults[k] = None
    return defaults


def _batch(config: Path, results: Path, output: Path, nbs, declared, params, force, log, timeout) -> dict:
    """Run (or skip) each notebook of a batch and keep its record; see :func:`run_notebooks`."""
    import papermill as pm

    stamps_file = output / ".stamps.json"
    stamps = json.loads(stamps_file.read_text()) if stamps_file.exists() else {}
    inputs = _config_inputs(config)
    written = stamps.pop("__results__", None)
    if written is not None and written != _results_fingerprint(results) and not force:
        log(f"[notebooks] the results in {results} changed since this runner last wrote them (a notebook run "
            "outside it, or an edit): every notebook runs again")
        force = True
    # wall time and peak memory of each notebook's last execution, kept with the run's results
    runs_file = results / "notebooks.json"
    runs = json.loads(runs_file.read_text()) if runs_file.exists() else {}
    status = {}
    for nb in nbs:
        out = output / nb.name
        nb_params = {k: v for k, v in params.items() if k in declared[nb.name]}
        try:  # the configuration relative to the notebook, as a reader would write it
            nb_params["config"] = os.path.relpath(config, nb.parent)
        except ValueError:  # another drive (Windows)
            pass
        stamp = _stamp(nb, config, nb_params, {**_read_defaults(declared[nb.name]), **nb_params}, inputs)
        if not force and out.exists() and stamps.get(nb.name) == stamp:
            status[nb.name] = "skipped"
            log(f"[notebook] {nb.name}: unchanged, skipped")
            continue
        bad = _bad_parameters(nb_params, declared[nb.name])
        if bad:  # refused before a kernel starts: the executed copy and the results stay as they were
            status[nb.name] = f"failed: parameters: {bad}"
            log(f"[notebook] {nb.name}: FAILED before running: {bad} (nothing was changed)")
            continue
        t0 = time.time()
        # executed into a temporary file, moved into place when the kernel is done: a killed
        # run never leaves a half-executed copy under the name the book reads
        clean_stale_tmp(output, f".{out.stem}")
        running = out.with_name(f".{out.stem}.tmp-{os.getpid()}.ipynb")
        try:
            with PeakSampler(children_rss, 0.5) as mem, \
                    PeakSampler(lambda: children_rss(anonymous=True), 0.5) as anon:
                pm.execute_notebook(str(nb), str(running), parameters=nb_params, cwd=str(nb.parent),
                                    progress_bar=False, kernel_name="python3", execution_timeout=timeout,
                                    **({"kernel_manager_class": km} if (km := _kernel_manager()) else {}))
        except Exception as e:  # noqa: BLE001 - report, carry on with the others
            status[nb.name] = f"failed: {_failure(e)}"
            stamps.pop(nb.name, None)
            if running.exists():  # the page shows the failure, never an older success
                _finish_page(running, out)
            else:  # nothing was written: no page rather than an older success
                out.unlink(missing_ok=True)
            log(f"[notebook] {nb.name}: FAILED at {_failure(e)} (executed copy with the traceback: {out})")
        else:
            _finish_page(running, out)
            status[nb.name] = "ran"
            stamps[nb.name] = stamp
            log(f"[notebook] {nb.name}: ran in {time.time() - t0:.1f}s, kernel peak {mem.peak_mib:.0f} MiB resident, "
                f"{anon.peak_mib:.0f} MiB anonymous -> {out}")
        # the batches before this one stay on record (a resumed or widened run reuses cached
        # work, so its own time says little about what the results cost in all)
        before = runs.get(nb.name)
        earlier = [*before.pop("earlier", []), before][-20:] if before else []
        runs[nb.name] = {"status": status[nb.name], "wall_time_s": round(time.time() - t0, 1),
                         "peak_rss_mib": mem.peak_mib,
                         "peak_anon_mib": anon.peak_mib, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                         "parameters": nb_params, "earlier": earlier}
        write_json_atomic(runs_file, runs)
        write_json_atomic(stamps_file, {**stamps, "__results__": _results_fingerprint(results)})
    return status


def main(argv=None) -> int:
    import argparse

    import yaml

    ap = argparse.ArgumentParser(prog="python -m redundancy notebooks", description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(repo_root() / "configs" / "default.yml"))
    ap.add_argument("--output", help="where executed notebooks go (default: book/executed for the default run, "
                                     "<results>/<run>/executed for any other configuration)")
    ap.add_argument("--only", nargs="*", help="run only notebooks whose name contains one of these")
    ap.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                    help="a notebook parameter (VALUE is read as YAML: 0.3, [1, 2], true, text)")
    ap.add_argument("--force", action="store_true", help="run even when nothing changed")
    ap.add_argument("--timeout", type=int, help="seconds a single cell may run")
    ap.add_argument("--clean", action="store_true",
                    help="strip outputs and execution records from the source notebooks (notebooks/*.ipynb, "
                         "the files people edit) before committing them, and run nothing")
    a = ap.parse_args(argv)
    if a.clean:
        changed = [nb for nb in notebooks() if clean_notebook(nb)]
        print(f"[notebooks] cleaned {len(changed)} of {len(notebooks())}: " + ", ".join(nb.name for nb in changed))
        return 0
    params = {k: yaml.safe_load(v) for k, v in a.param}
    try:
        status = run_notebooks(a.config, a.output, a.only, params, a.force, timeout=a.timeout)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = {k: v for k, v in status.items() if v.startswith("failed")}
    print(f"[notebooks] {sum(v == 'ran' for v in status.values())} ran, "
          f"{sum(v == 'skipped' for v in status.values())} skipped, {len(failed)} failed")
    for k, v in failed.items():
        print(f"  {k}: {v}", file=sys.stderr)
    return 1 if failed else 0
