"""Bad input end to end: every row of the book's troubleshooting table gets its clear error
and leaves the cache intact; the notebook parameter check works under real papermill."""

from __future__ import annotations

from pathlib import Path

import pytest

from redundancy.run.troubleshooting import CASES, Case, check_cases

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return check_cases(tmp_path_factory.mktemp("bad-input"))


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_each_bad_input_gets_a_clear_error_and_leaves_the_cache_intact(table, name):
    row = table.set_index("case").loc[name]
    case = next(c for c in CASES if c.name == name)
    assert row.error == case.error.__name__, row.message
    assert row.clear, row.message
    assert row.cache_intact
    assert "<scratch>" not in name and len(row.message) > 30  # a sentence, not a bare value


def test_the_table_can_fail(tmp_path):
    """A case that raises nothing, and one that damages the cache, are reported as such."""
    def quiet(tmp):
        return 1

    def damaging(tmp):
        import os
        for f in (Path(os.environ["REDUNDANCY_CACHE"]) / "activations").rglob("labels.npy"):
            f.write_bytes(b"")
        raise ValueError("threshold broke something")

    t = check_cases(tmp_path, [Case("quiet", "-", ValueError, ("x",), quiet),
                               Case("damaging", "-", ValueError, ("threshold",), damaging)]).set_index("case")
    assert t.loc["quiet", "error"] == "no error" and not t.loc["quiet", "clear"]
    assert t.loc["damaging", "clear"] and not t.loc["damaging", "cache_intact"]


@pytest.mark.parametrize("params, error, words", [
    ({"treshold": 0.3}, "NameError", ["treshold", "thresholds"]),
    ({"thresholds": "0.3"}, "TypeError", ["thresholds", "list"]),
])
def test_papermill_parameter_errors_stop_in_the_first_cell(tmp_path, params, error, words):
    import papermill as pm

    out = tmp_path / "out.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as info:
        pm.execute_notebook(str(ROOT / "notebooks" / "03_clustering.ipynb"), str(out), cwd=str(ROOT / "notebooks"),
                            parameters={"config": "../configs/default.yml", **params}, progress_bar=False,
                            kernel_name="python3")
    e = info.value
    assert e.ename == error and all(w in e.evalue for w in words), e.evalue
    # the failing cell is the set-up cell right after the parameters: no work was started
    import nbformat
    nb = nbformat.read(out, as_version=4)
    failed = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and any(
        o.get("output_type") == "error" for o in c.get("outputs", [])))
    injected = next(i for i, c in enumerate(nb.cells) if "injected-parameters" in c.metadata.get("tags", []))
    first_code_after = next(i for i, c in enumerate(nb.cells) if i > injected and c.cell_type == "code")
    assert failed == first_code_after
    assert "check_parameters" in nb.cells[failed].source
