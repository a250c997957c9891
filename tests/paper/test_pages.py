"""Notebook parameters in a real kernel: papermill's typos are caught; re-running cells, running
them out of order and adding one's own variables (as in JupyterLab) are not errors."""

from __future__ import annotations

import nbformat
import papermill as pm
import pytest

CHECK = ('from redundancy.paper.pages import check_parameters\n'
         'check_parameters(globals(), {"config": "a.yml", "seed": 0, "thresholds": [0.3]})')


def _notebook(path, check=CHECK):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('config = "a.yml"\nseed = 0\nthresholds = [0.3]\nmy_own = "added by a user"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params,
                nbformat.v4.new_code_cell(check),                       # the set-up cell
                nbformat.v4.new_code_cell("study = object(); my_threshold = 0.5"),  # work and a new variable
                nbformat.v4.new_code_cell(check),                       # the set-up cell run again
                nbformat.v4.new_code_cell("print('reached the end')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_rerunning_cells_and_own_variables_pass_in_a_kernel(tmp_path):
    nb = _notebook(tmp_path / "n.ipynb")
    out = pm.execute_notebook(str(nb), str(tmp_path / "out.ipynb"), parameters={"seed": 3}, progress_bar=False,
                              kernel_name="python3")
    assert "reached the end" in "".join(o.get("text", "") for o in out.cells[-1].outputs)
    # the same notebook run without papermill's parameters (a JupyterLab user's run all)
    pm.execute_notebook(str(nb), str(tmp_path / "plain.ipynb"), progress_bar=False, kernel_name="python3")


def test_a_misspelt_or_mistyped_papermill_parameter_still_stops_the_set_up_cell(tmp_path):
    nb = _notebook(tmp_path / "n.ipynb")
    with pytest.raises(pm.PapermillExecutionError) as info:
        pm.execute_notebook(str(nb), str(tmp_path / "o.ipynb"), parameters={"treshold": 0.3}, progress_bar=False,
                            kernel_name="python3")
    assert info.value.ename == "NameError" and "treshold" in info.value.evalue
    with pytest.raises(pm.PapermillExecutionError) as info:
        pm.execute_notebook(str(nb), str(tmp_path / "o.ipynb"), parameters={"thresholds": "0.3"}, progress_bar=False,
                            kernel_name="python3")
    assert info.value.ename == "TypeError" and "thresholds" in info.value.evalue


def test_defaults_are_read_from_the_parameters_cell_as_the_kernel_ran_it(tmp_path):
    """check_parameters(globals()): the parameters cell is the defaults' only home."""
    nb = _notebook(tmp_path / "n.ipynb", check="from redundancy.paper.pages import check_parameters\n"
                                               "check_parameters(globals())")
    out = pm.execute_notebook(str(nb), str(tmp_path / "out.ipynb"), parameters={"seed": 3, "thresholds": [0.5]},
                              progress_bar=False, kernel_name="python3")
    assert "reached the end" in "".join(o.get("text", "") for o in out.cells[-1].outputs)
    pm.execute_notebook(str(nb), str(tmp_path / "plain.ipynb"), progress_bar=False, kernel_name="python3")
    for bad, error in (({"treshold": 0.3}, "NameError"), ({"thresholds": "0.3"}, "TypeError"),
                       ({"seed": "three"}, "TypeError")):
        with pytest.raises(pm.PapermillExecutionError) as info:
            pm.execute_notebook(str(nb), str(tmp_path / "o.ipynb"), parameters=bad, progress_bar=False,
                                kernel_name="python3")
        assert info.value.ename == error and next(iter(bad)) in info.value.evalue


def test_outside_a_kernel_the_defaults_must_be_given():
    from redundancy.paper.pages import check_parameters

    with pytest.raises(ValueError, match="defaults"):
        check_parameters({"seed": 0})


@pytest.mark.parametrize("value, ok", [(1, True), (1.5, False), (2.0, False), (True, False), ("1", False)])
def test_an_integer_parameter_refuses_a_float_instead_of_truncating_it(value, ok):
    """``-p seed 1.5`` once ran as seed 1; a float default still takes an int."""
    from redundancy.paper.pages import check_parameters

    defaults = {"seed": 0, "delta": 0.01}
    if ok:
        check_parameters({"seed": value, "delta": 1}, defaults)
    else:
        with pytest.raises(TypeError, match=r"'seed' = .* but this notebook takes an int"):
            check_parameters({"seed": value, "delta": 0.01}, defaults)


def test_setup_page_keeps_data_notes_out_of_a_page_and_the_data_chapter_lists_them(tmp_path):
    import warnings

    from redundancy.data.tasks import load_task
    from redundancy.errors import DataNote
    from redundancy.paper.pages import setup_page
    from redundancy.paper.sections import Study

    files = {}
    for split, text in (("train", "the DT\ncat NN\n\na DT\ndog NN\n"), ("dev", "the DT\ncat NN\n"),
                        ("test", "the DT\ncat NN\n\nok UH\n")):
        files[split] = str(tmp_path / f"{split}.txt")
        (tmp_path / f"{split}.txt").write_text(text)
    with pytest.warns(DataNote, match="labels unseen in train"):  # a user of the library sees it
        load_task("conll", **files, unseen_labels="drop")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        setup_page()
        load_task("conll", **files, unseen_labels="drop")
    assert not [w for w in seen if issubclass(w.category, DataNote)]  # a book page does not
    study = Study({"name": "n", "models": ["minilm"], "results_dir": str(tmp_path),
                   "tasks": {"conll": {**files, "unseen_labels": "drop"}}})
    notes = study.data_notes()
    assert notes.to_dict("records") == [{"task": "conll", "split": "test", "items left out": 1,
                                         "labels unseen in train": "UH"}]


@pytest.mark.parametrize("n, text", [(0, "0 models"), (1, "1 model"), (2, "2 models"), (2688, "2,688 models")])
def test_count_writes_prose_not_model_s(n, text):
    from redundancy.paper.pages import count

    assert count(n, "model") == text
    assert count(1, "class", "classes") == "1 class" and count(3, "class", "classes") == "3 classes"


def test_readable_tables_show_integers_dashes_and_plain_headers():
    import numpy as np
    import pandas as pd

    from redundancy.paper.pages import readable

    df = pd.DataFrame({"model": ["minilm", "mpnet"], "n_neurons": [2688.0, 9984.0], "test": [0.91234, np.nan],
                       "found": [True, False]})
    html = readable(df).to_html()
    assert "2,688" in html and "9,984" in html and "2688.0" not in html
    assert "0.912" in html and "—" in html and ">nan<" not in html.lower()
    assert "n neurons" in html and "n_neurons" not in html
    assert ">0<" not in html  # no index column
    pivot = readable(df.assign(threshold=[0.3, 0.7]).set_index("threshold"), index=True).to_html()
    assert "threshold" in pivot and ">0.3<" in pivot and "0.300000" not in pivot


def test_conclusions_fill_the_prose_with_the_glued_values(tmp_path, monkeypatch):
    """What a JupyterLab or papermill user sees at the end of a notebook: its prose with the
    values, formats applied, roles made plain, figure captions and unglued prose left out."""
    import json

    from redundancy.paper import pages

    nb = {"cells": [
        {"cell_type": "markdown", "source": "# Title, no glued value"},
        {"cell_type": "code", "source": "glue('x', 1)", "outputs": []},
        {"cell_type": "markdown", "source": ["At c_t = 0.7 {glue:text}`red:.1%` of the neurons go, ",
                                             "and the claim **{glue:text}`claim`** ({numref}`Figure %s <fig-a>`)."]},
        {"cell_type": "markdown", "source": "```{glue:figure} fig_a\n:name: fig-a\n\nCaption {glue:text}`red`\n```"},
        {"cell_type": "markdown", "source": "Missing: {glue:text}`nope:.3f`; plain {glue}`n`."},
        {"cell_type": "markdown", "source": "```{admonition} The run on this page\n:class: run-context\n{glue:text}`claim`\n```"},
    ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(nb))
    monkeypatch.setattr(pages, "GLUED", {})
    pages.glue("red", 0.8512)
    pages.glue("claim", "holds")
    pages.glue("n", 12)
    text = pages.conclusions(path)
    assert text == ("### What this run shows\n\n"
                    "At c_t = 0.7 85.1% of the neurons go, and the claim **holds** (Figure).\n\n"
                    "Missing: [nope: not computed in this kernel]; plain 12.\n\n"
                    "**The run on this page.** holds")
    with pytest.raises(FileNotFoundError, match="no-such.ipynb"):
        pages.conclusions(tmp_path / "no-such.ipynb")
