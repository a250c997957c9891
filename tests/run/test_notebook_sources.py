"""The notebooks in notebooks/ are the source people edit (JupyterLab, Colab, a review diff):
committed without outputs, valid, each with one parameters cell and one set-up cell."""

from __future__ import annotations

import shutil

import nbformat

from redundancy.run.notebooks import clean_notebook, notebooks, unclean_notebooks


def test_source_notebooks_are_committed_clean_and_valid():
    dirty = unclean_notebooks()
    assert not dirty, (f"{[p.name for p in dirty]} hold outputs or execution records: run "
                       "`python -m redundancy notebooks --clean` (or Clear All Outputs) before committing")
    for path in notebooks():
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), path.name
        tags = [set(c.metadata.get("tags", [])) for c in nb.cells]
        assert sum("parameters" in t for t in tags) == 1, f"{path.name}: one parameters cell"
        setup = [c for c in nb.cells if c.cell_type == "code" and "check_parameters(globals())" in c.source]
        assert len(setup) == 1, f"{path.name}: one set-up cell checking papermill's parameters"
        ids = [c.id for c in nb.cells]
        assert len(set(ids)) == len(ids), f"{path.name}: cell ids repeat"
        assert nb.metadata.kernelspec.name == "python3"


def test_clean_notebook_strips_what_a_run_leaves(tmp_path):
    src = notebooks()[0]
    path = tmp_path / src.name
    shutil.copy(src, path)
    nb = nbformat.read(path, as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
    code.execution_count = 3
    code.metadata["execution"] = {"iopub.status.busy": "2026-12-06T13:00:00Z"}
    nb.metadata["papermill"] = {"parameters": {"seed": 1}}
    nbformat.write(nb, path)
    assert unclean_notebooks(tmp_path) == [path]
    assert clean_notebook(path) is True
    assert path.read_bytes() == src.read_bytes()  # exactly the committed source again
    assert clean_notebook(path) is False and unclean_notebooks(tmp_path) == []
