"""Every notebook under papermill on a tiny model and tiny data, then a small book from the outputs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from redundancy.run.notebooks import notebooks, run_notebooks

ROOT = Path(__file__).resolve().parents[2]
def _text_outputs(nb: dict) -> str:
    out = []
    for c in nb["cells"]:
        for o in c.get("outputs", []):
            out.append("".join(o.get("text", "")) + "".join(o.get("traceback", [])))
            out.append(json.dumps(o.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


def test_notebooks_run_and_book_builds(tmp_path, tiny_run, monkeypatch):
    config = tiny_run
    executed = tmp_path / "book" / "executed"
    params = {"n_sentences": 6, "repeats": 1, "thresholds": [0.0, 0.3, 0.7]}
    logs = []
    status = run_notebooks(config, executed, params=params, log=logs.append, timeout=600)
    assert status == {nb.name: "ran" for nb in notebooks()}, "\n".join(logs)
    for nb in executed.glob("*.ipynb"):
        text = _text_outputs(json.loads(nb.read_text()))
        assert "Traceback" not in text and "Error" not in text.replace("UserWarning", ""), nb.name
    # results are written as data, keyed by the run
    res = tmp_path / "results" / "tiny-book"
    for f in ("cka/cka.csv", "clustering/sweep.csv", "layers/layers.csv", "minimal_sets/minimal_sets.csv",
              "ls_ccfs/ls_ccfs.csv", "timing/forward.csv", "minimal_sets/minimal_sets_99.csv"):
        assert (res / f).exists(), f
    assert not (res / "claims").exists()  # no notebook writes verdicts for another to read
    # unchanged inputs: everything is skipped
    again = run_notebooks(config, executed, params=params, log=lambda *a: None)
    assert set(again.values()) == {"skipped"}
    # publish the run (as `bash run.sh paper-scale` does) and show it on the paper-scale pages
    from redundancy.run.publish import publish

    note = "a tiny run in a test, nothing else beside it"
    pub = publish(config, tmp_path / "published", log=lambda *a: None, note=note)
    prov = json.loads((pub / "provenance.json").read_text())
    assert prov["run"] == "tiny-book" and len(prov["notebooks"]) == len(notebooks())
    assert prov["note"] == note
    assert all(v["wall_time_s"] > 0 and v["peak_rss_mib"] > 0 for v in prov["notebooks"].values())
    assert (pub / "results" / "layers" / "layers.csv").read_bytes() == (res / "layers" / "layers.csv").read_bytes()
    assert not list((pub / "results").rglob("*.ipynb")) and not (pub / "results" / "activations.json").exists()
    # publishing judges every claim with the library and keeps the records per model
    records = json.loads((pub / "results" / "claims" / "verdicts.json").read_text())
    assert {r["claim_id"] for r in records} >= {"task_specific_92", "ccfs_97_10", "layers_token_sentence"}
    assert all({"criterion", "paper_value", "ours", "ours_low", "margin", "outcome", "seeds"} <= set(r) for r in records)
    shown = run_notebooks(config, executed, only=["08", "10"], params={"published": str(pub)}, force=True,
                          log=logs.append)
    assert set(shown.values()) == {"ran"}, "\n".join(logs)

    # a small book from these outputs, built strictly
    book = tmp_path / "book"
    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    shutil.copy(ROOT / "book" / "references.bib", book / "references.bib")
    shutil.copytree(ROOT / "book" / "_ext", book / "_ext")  # plotly.js and the CSS, offline
    (book / "intro.md").write_text("# Tiny book\n\nThe notebooks on a tiny model.\n")
    toc = {"format": "jb-book", "root": "book/intro",
           "chapters": [{"file": f"book/executed/{nb.stem}"} for nb in notebooks()]}
    (tmp_path / "_toc.yml").write_text(yaml.safe_dump(toc))
    r = subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", str(tmp_path), "-W", "-n",
                        "--keep-going", "-q"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    html = tmp_path / "_build" / "html" / "book" / "executed"
    for nb in notebooks():
        page = (html / f"{nb.stem}.html").read_text()
        assert "Traceback" not in page, nb.stem
        # the parameters (the source's and papermill's) and the set-up cell stay in the notebook, out of the book
        for hidden in ("tag_parameters", "tag_injected-parameters", "check_parameters(globals())", "ipykernel_",
                       "UserWarning", "model(s)"):
            assert hidden not in page, (nb.stem, hidden)
        assert not re.search(r"<td[^>]*>\s*nan\s*</td>", page, re.I), f"{nb.stem}: a table cell shows nan"
        if nb.stem not in ("08_reproduction", "11_troubleshooting"):  # vector figures, legible at any width
            assert re.search(r"<img[^>]+src=\"[^\"]+\.svg\"", page), f"{nb.stem} has no figure"
        figures = re.findall(r"<figure[^>]*>.*?</figure>", page, re.S)  # every figure numbered and captioned
        assert all("<figcaption" in f and "Fig. " in f for f in figures), nb.stem
        assert page.count("<img") == sum(f.count("<img") for f in figures), f"{nb.stem}: an uncaptioned figure"
        if nb.stem[:2] in ("02", "03", "05"):  # the interactive figures, in the page itself
            assert page.count('class="redundancy-interactive"') == 1, nb.stem
        assert "{glue" not in page, nb.stem
    # outside the book (JupyterLab, papermill), each notebook ends with its prose, numbers filled in
    for nb in notebooks():
        last = json.loads((executed / nb.name).read_text())["cells"][-1]
        md = [o.get("data", {}).get("text/markdown", "") for o in last.get("outputs", [])]
        text = "".join(m if isinstance(m, str) else "".join(m) for m in md)  # a notebook keeps text as lines
        assert text.startswith("### What this run shows") and "{glue" not in text and "not computed" not in text, nb.stem
    assert (tmp_path / "_build" / "html" / "_static" / "plotly.min.js").stat().st_size > 1_000_000  # offline
    # read in a real browser at a laptop's and a phone's width (tests/run/test_bookcheck.py: each fault, planted)
    from redundancy.run.bookcheck import browser, check_book, problems

    if browser() is not None or os.environ.get("CI"):
        views = check_book(tmp_path / "_build" / "html", (1280, 420), pages="book/executed/", log=lambda *a: None)
        assert len(views) == 2 * len(notebooks())
        bad = {k: problems(v) for k, v in views.items() if problems(v)}
        assert not bad, bad
        assert sum(v["interactive"] for (p, w), v in views.items() if w == 1280) == 3
    # glued numbers reached the prose
    assert "Failed to format" not in r.stderr
    assert note in (html / "10_paper_scale.html").read_text()  # the run's conditions, beside its times
    cka_page = (html / "02_cka.html").read_text()
    assert re.search(r"mean CKA of\s*<span[^>]*>\s*<span[^>]*>0\.\d{3}", cka_page) or "mean CKA of" in cka_page


def test_failing_notebook_is_reported_and_others_run(tmp_path, tiny_run):
    config = tiny_run
    logs = []
    status = run_notebooks(config, tmp_path / "out", only=["01", "02"], params={"general_task": "no-such-task"},
                           log=logs.append)
    assert status["01_data.ipynb"] == "ran"
    assert status["02_cka.ipynb"].startswith("failed: cell") and "no-such-task" in status["02_cka.ipynb"]
    assert any("FAILED" in line for line in logs)
    # a notebook that did not finish (failed, or killed) has no stamp: the next batch runs it
    # again, and skips the one that finished
    again = run_notebooks(config, tmp_path / "out", only=["01", "02"], params={"general_task": "no-such-task"},
                          log=lambda *a: None)
    assert again["01_data.ipynb"] == "skipped" and again["02_cka.ipynb"].startswith("failed")
    runs = json.loads((tmp_path / "results" / "tiny-book" / "notebooks.json").read_text())
    assert runs["01_data.ipynb"]["status"] == "ran" and runs["02_cka.ipynb"]["status"].startswith("failed")
    # each batch that ran a notebook keeps the ones before it on record (01 was skipped the
    # second time, so it has one record; 02 ran twice)
    assert runs["01_data.ipynb"]["earlier"] == []
    earlier = runs["02_cka.ipynb"]["earlier"]
    assert len(earlier) == 1 and earlier[0]["status"].startswith("failed") and "earlier" not in earlier[0]
    assert runs["01_data.ipynb"]["peak_rss_mib"] > 50  # the kernel's memory was seen
    # anonymous memory is part of the resident set (file-backed pages left out), and a
    # Python kernel with numpy loaded allocates tens of MiB of its own
    assert 20 < runs["01_data.ipynb"]["peak_anon_mib"] <= runs["01_data.ipynb"]["peak_rss_mib"]


def test_cli_exit_status_and_bad_config(tmp_path):
    from redundancy.__main__ import main

    with pytest.raises(FileNotFoundError, match="not found"):
        run_notebooks(tmp_path / "missing.yml", tmp_path / "out")
    assert main(["notebooks", "--config", str(tmp_path / "missing.yml"), "--output", str(tmp_path / "o")]) == 2
    with pytest.raises(ValueError, match="no notebook matches"):
        run_notebooks(ROOT / "configs" / "default.yml", tmp_path / "out", only=["zz-none"])


def test_changed_published_data_reruns_the_notebooks_that_read_it(tmp_path, monkeypatch):
    """A notebook's skip stamp covers the committed data it reads (the published paper-scale
    results, the benchmark results, the paper's tables), not only its source and config."""
    from redundancy.run import notebooks as batch

    nb = ROOT / "notebooks" / "10_paper_scale.ipynb"
    pub = tmp_path / "pub"
    pub.mkdir()
    (pub / "provenance.json").write_text('{"run": "a"}')
    cfg = ROOT / "configs" / "default.yml"
    a = batch._stamp(nb, cfg, {}, {"published": str(pub)})
    assert a == batch._stamp(nb, cfg, {}, {"published": str(pub)})
    (pub / "provenance.json").write_text('{"run": "b"}')
    assert batch._stamp(nb, cfg, {}, {"published": str(pub)}) != a
    # the performance chapter: the benchmark results, and the GPU check's beside them once it exists
    perf = ROOT / "notebooks" / "09_performance.ipynb"
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "results.json").write_text("{}")
    reads = {"benchmarks": str(bench / "results.json")}
    b = batch._stamp(perf, cfg, {}, reads)
    (bench / "gpu.json").write_text('{"device": "a GPU"}')
    assert batch._stamp(perf, cfg, {}, reads) != b
    # a notebook that reads no published data is not affected
    other = ROOT / "notebooks" / "04_layers.ipynb"
    assert batch._stamp(other, cfg, {}, {}) == batch._stamp(other, cfg, {}, {})


def _reader_notebook(folder: Path) -> None:
    """A notebook that reads the dev file its run names and writes a result from it."""
    import nbformat

    folder.mkdir()
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('config = ""')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "import yaml, pathlib\n"
        "cfg = yaml.safe_load(open(config))\n"
        "dev = pathlib.Path(config).parent / cfg['tasks']['conll']['dev']\n"
        "out = pathlib.Path(cfg['results_dir']) / cfg['name']\n"
        "out.mkdir(parents=True, exist_ok=True)\n"
        "(out / 'tags.txt').write_text(' '.join(l.split()[-1] for l in dev.read_text().split('\\n') if l.strip()))\n"
        "print(open(out / 'tags.txt').read())")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(folder / "01_reader.ipynb"))


def test_changed_inputs_or_results_written_elsewhere_are_never_shown_as_current(tmp_path):
    """The skip decision covers the files a configuration names (a dev file with one tag
    changed re-runs), and results changed outside the runner (a notebook run by hand with other
    parameters) re-run every notebook; a non-default run's executed notebooks stay out of the book."""
    _reader_notebook(tmp_path / "nbs")
    data = tmp_path / "mine"
    data.mkdir()
    for s in ("train", "dev", "test"):
        (data / f"{s}.txt").write_text("the DT\ncat NN\n")
    config = data / "run.yml"
    config.write_text(f"name: stale\nmodels: [minilm]\nresults_dir: {tmp_path / 'results'}\n"
                      "tasks:\n  conll: {train: train.txt, dev: dev.txt, test: test.txt}\n")
    logs = []

    def batch():
        return run_notebooks(config, folder=tmp_path / "nbs", log=logs.append)["01_reader.ipynb"]

    assert batch() == "ran"
    executed = tmp_path / "results" / "stale" / "executed" / "01_reader.ipynb"
    assert executed.is_file() and "DT NN" in executed.read_text()  # beside its results, not in book/
    assert batch() == "skipped"
    (data / "dev.txt").write_text("the DT\ncat VB\n")  # one tag changed, same size
    assert batch() == "ran" and "DT VB" in executed.read_text()
    assert batch() == "skipped"
    (tmp_path / "results" / "stale" / "tags.txt").write_text("DT JJ")  # a run by hand wrote other results
    logs.clear()
    assert batch() == "ran"
    assert any("changed since this runner last wrote them" in line for line in logs)
    assert (tmp_path / "results" / "stale" / "tags.txt").read_text() == "DT VB"
    assert batch() == "skipped"


def test_two_batches_at_once_take_turns_and_keep_both_records(tmp_path):
    """Two runners on one run at the same time: the second waits for the first, then skips
    what the first made current; neither's record in notebooks.json is lost."""
    _reader_notebook(tmp_path / "nbs")
    (tmp_path / "dev.txt").write_text("the DT\ncat NN\n")
    config = tmp_path / "run.yml"
    config.write_text(f"name: both\nmodels: [minilm]\nresults_dir: {tmp_path / 'results'}\n"
                      "tasks:\n  conll: {train: dev.txt, dev: dev.txt, test: dev.txt}\n")
    code = ("import json, sys\nfrom redundancy.run.notebooks import run_notebooks\n"
            f"s = run_notebooks({str(config)!r}, folder={str(tmp_path / 'nbs')!r}, log=lambda *a: None)\n"
            "print(json.dumps(s))")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in procs]
    assert sorted(o["01_reader.ipynb"] for o in outs) == ["ran", "skipped"]
    runs = json.loads((tmp_path / "results" / "both" / "notebooks.json").read_text())
    assert runs["01_reader.ipynb"]["status"] == "ran"


def test_kernels_talk_over_local_sockets_without_the_tcp_warning(tmp_path, capfd):
    _reader_notebook(tmp_path / "nbs")
    (tmp_path / "dev.txt").write_text("the DT\ncat NN\n")
    config = tmp_path / "run.yml"
    config.write_text(f"name: ipc\nmodels: [minilm]\nresults_dir: {tmp_path / 'results'}\n"
                      "tasks:\n  conll: {train: dev.txt, dev: dev.txt, test: dev.txt}\n")
    assert run_notebooks(config, folder=tmp_path / "nbs", log=lambda *a: None)["01_reader.ipynb"] == "ran"
    err = capfd.readouterr().err
    assert "without encryption" not in err and "Kernel is running over TCP" not in err


def test_refused_parameter_leaves_the_executed_copy_and_results_alone(tmp_path, tiny_run):
    """``-p seed 1.5`` is refused before a kernel starts: the good executed copy of the
    notebook, its stamp and the run's results stay byte for byte; no temporary file stays."""
    out = tmp_path / "out"
    assert run_notebooks(tiny_run, out, only=["01"], log=lambda *a: None)["01_data.ipynb"] == "ran"
    page = (out / "01_data.ipynb").read_bytes()
    results = tmp_path / "results" / "tiny-book"
    before = {f: f.read_bytes() for f in results.rglob("*") if f.is_file() and f.name != "notebooks.json"}
    logs = []
    status = run_notebooks(tiny_run, out, only=["01"], params={"seed": 1.5}, log=logs.append)
    assert status["01_data.ipynb"].startswith("failed: parameters:") and "'seed' = 1.5" in status["01_data.ipynb"]
    assert any("nothing was changed" in line for line in logs)
    assert (out / "01_data.ipynb").read_bytes() == page
    assert {f: f.read_bytes() for f in results.rglob("*") if f.is_file() and f.name != "notebooks.json"} == before
    assert not [f for f in out.iterdir() if ".tmp-" in f.name]
    # the good copy is still current: the next batch with the run's parameters skips it
    assert run_notebooks(tiny_run, out, only=["01"], log=lambda *a: None)["01_data.ipynb"] == "skipped"
