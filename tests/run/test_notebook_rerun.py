"""Every notebook re-runs the way people use JupyterLab: in one kernel, run all cells, then the
set-up cell and an analysis cell again, then a cell of one's own that adds a variable, then the
set-up cell once more. Tiny model, tiny data, papermill's parameters injected as a batch run has them."""

from __future__ import annotations

import os

import nbformat
import papermill as pm
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from papermill.parameterize import parameterize_notebook

from redundancy.run.notebooks import notebooks

PARAMS = {"n_sentences": 6, "repeats": 1, "thresholds": [0.0, 0.3, 0.7]}


def _code(nb, start=0, skip_tags=("remove-cell",)):
    return [i for i, c in enumerate(nb.cells[start:], start)
            if c.cell_type == "code" and not set(skip_tags) & set(c.metadata.get("tags", []))]


def _rerun(path, config) -> list[str]:
    declared = pm.inspect_notebook(str(path))
    params = {k: v for k, v in {"config": os.path.relpath(config, path.parent), **PARAMS}.items() if k in declared}
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:  # what papermill's execute_notebook sets up before parameterising
        cell.metadata.setdefault("tags", [])
    nb.metadata.setdefault("papermill", {})
    nb = parameterize_notebook(nb, params)
    setup = next(i for i in _code(nb, skip_tags=()) if "check_parameters(" in nb.cells[i].source)
    analysis = _code(nb, setup + 1)[0]
    own = nbformat.v4.new_code_cell("my_threshold = 0.5  # a reader's own variable")
    nb.cells.append(own)
    steps = [*((i, "run all") for i in _code(nb, skip_tags=())[:-1]), (setup, "set-up cell again"),
             (analysis, "analysis cell again"), (len(nb.cells) - 1, "a cell adding a variable"),
             (setup, "set-up cell after a new variable")]
    client = NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(path.parent)}})
    done = []
    with client.setup_kernel():
        for i, what in steps:
            try:
                client.execute_cell(nb.cells[i], i)
            except CellExecutionError as e:
                return [f"{path.name}: cell {i} ({what}) failed: {str(e).strip().splitlines()[-1]}"]
            done.append(what)
    assert done[-4:] == ["set-up cell again", "analysis cell again", "a cell adding a variable",
                         "set-up cell after a new variable"]
    return []


def test_every_notebook_reruns_cell_by_cell_in_one_kernel(tiny_run):
    config = tiny_run
    failures = [f for path in notebooks() for f in _rerun(path, config)]
    assert not failures, "\n".join(failures)
