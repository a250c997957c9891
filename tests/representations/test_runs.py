"""The main job end to end on a tiny model and tiny files, and its bad-input errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from redundancy import DataError
from redundancy import load_task
from redundancy.__main__ import main
from redundancy.representations.runs import load_config, open_run, run
from redundancy.data.tasks import TaskData, _finalise
from redundancy.data.readers import TokenCorpus

CONLL_TRAIN = "the DT\ncat NN\nsat VBD\n\na DT\ndog NN\nran VBD\nfast RB\n\n"
CONLL_DEV = "the DT\ndog NN\nsat VBD\n\n"
CONLL_TEST = "a DT\ncat NN\nran VBD\n\n"


def _write_tiny_data(root):
    pos = root / "pos"
    pos.mkdir()
    (pos / "train.txt").write_text(CONLL_TRAIN)
    (pos / "dev.txt").write_text(CONLL_DEV)
    (pos / "test.txt").write_text(CONLL_TEST)
    glue = root / "SST-2"
    glue.mkdir()
    rows = [("the cat sat", 1), ("the dog ran fast", 0), ("a big red book", 1), ("it was slow", 0)] * 5
    (glue / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{l}\n" for s, l in rows))
    (glue / "dev.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{l}\n" for s, l in rows[:6]))
    return pos, glue


def _config(tmp_path, tiny_bert):
    pos, glue = _write_tiny_data(tmp_path)
    return {"name": "tiny", "models": [tiny_bert], "results_dir": str(tmp_path / "results"),
            "finetune": {"epochs": 1, "batch_size": 4, "seed": 1},
            "tasks": {"pos": {"train": str(pos / "train.txt"), "dev": str(pos / "dev.txt"),
                              "test": str(pos / "test.txt")},
                      "sst-2": {"path": str(glue)}}}


def test_run_end_to_end_and_rerun_reuses(tmp_path, tiny_bert, monkeypatch):
    cfg = _config(tmp_path, tiny_bert)
    index = run(cfg, progress=False, log=lambda *a: None)
    assert len(index["entries"]) == 6  # 2 tasks x 3 splits
    out = tmp_path / "results" / "tiny"
    stats = (out / "task_statistics.csv").read_text().splitlines()
    assert stats[0].startswith("task,unit,train,dev,test,labels")
    assert any(line.startswith("pos,tokens,7,3,3,4") for line in stats)
    assert any(line.startswith("sst-2,sentences,18,2,6,2") for line in stats)
    saved = json.loads((out / "activations.json").read_text())
    e = next(e for e in saved["entries"] if e["task"] == "pos" and e["split"] == "train")
    assert (e["rows"], e["layers"], e["hidden"]) == (7, 3, 16)
    sst = next(e for e in saved["entries"] if e["task"] == "sst-2" and e["split"] == "test")
    assert sst["rows"] == 6 and sst["finetune"]["steps"] == 5  # 18 train / batch 4

    # a second run recomputes nothing: extraction and fine-tuning must not be called
    import redundancy.representations.activations as A
    import redundancy.representations.finetune as F

    monkeypatch.setattr(A, "word_activations", lambda *a, **k: pytest.fail("recomputed activations"))
    monkeypatch.setattr(A, "sentence_activations", lambda *a, **k: pytest.fail("recomputed activations"))
    monkeypatch.setattr(F, "atomic_dir", lambda *a, **k: pytest.fail("fine-tuned again"))
    index2 = run(cfg, progress=False, log=lambda *a: None)
    assert [e["key"] for e in index2["entries"]] == [e["key"] for e in index["entries"]]

    # the index keeps every finished invocation: the one that computed the steps is not lost to
    # the rerun that found them cached, and publishing reports the largest peak of all
    first, = index["invocations"]
    assert first["peak_rss_mib"] > 50 and 0 < first["peak_anon_mib"] <= first["peak_rss_mib"]
    assert index2["invocations"][0] == first and len(index2["invocations"]) == 2
    assert index2["invocations"][1]["wall_time_s"] == index2["wall_time_s"] < first["wall_time_s"]
    from redundancy.run.publish import _pipeline_record

    first["peak_anon_mib"] = 1e6  # a peak the rerun cannot have reached: the record must take the max
    rec = _pipeline_record({**index2, "invocations": [first, index2["invocations"][1]]})
    assert rec["peak_anon_mib"] == 1e6 and rec["peak_rss_mib"] == max(r["peak_rss_mib"] for r in index2["invocations"])
    assert rec["invocations_wall_time_s"] == pytest.approx(first["wall_time_s"] + index2["wall_time_s"], abs=0.1)
    # a notebook's own invocation (a Study making sure of its activations) is in the notebook's time
    assert first["caller"] == "run"
    nb_inv = {**index2["invocations"][1], "caller": "notebook"}
    rec = _pipeline_record({**index2, "invocations": [first, nb_inv]})
    assert rec["invocations_wall_time_s"] == pytest.approx(first["wall_time_s"], abs=0.1)
    # an index written before invocations were kept: its own (last) invocation counts
    old = {k: v for k, v in index2.items() if k != "invocations"}
    assert _pipeline_record(old)["invocations"] == [{"wall_time_s": old["wall_time_s"],
                                                      "peak_rss_mib": old["peak_rss_mib"]}]


def test_open_run_reads_the_index(tmp_path, tiny_bert):
    cfg = _config(tmp_path, tiny_bert)
    cfg["tasks"].pop("sst-2")
    path = tmp_path / "tiny.yml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(FileNotFoundError, match=r"has not been run here .* redundancy run --config .*tiny\.yml"):
        open_run(path, tiny_bert, "pos", "dev")  # before the run: what to do, not a bare missing file
    run(cfg, progress=False, log=lambda *a: None)
    acts = open_run(path, tiny_bert, "pos", "dev")
    assert acts.n_rows == 3 and list(acts.labels) == [0, 1, 3]  # DT NN VBD in sorted label order
    with pytest.raises(KeyError, match="no activations"):
        open_run(path, tiny_bert, "pos", "nonsense")


@pytest.mark.parametrize("content, message", [
    ("models: [minilm]\ntasks: {ptb-pos: {}}\nbogus: 1\n", "unknown keys \\['bogus'\\]"),
    ("models: [minilm]\ntasks: {no-such-task: {}}\n", "unknown task 'no-such-task'"),
    ("tasks: {ptb-pos: {}}\n", "needs a list of 'models'"),
    ("models: [minilm]\ntasks: {ptb-pos: {}}\nsplits: [train, validation]\n", "unknown split 'validation'"),
    ("models: [minilm\n", "not valid YAML"),
    ("models: [minilm]\ntasks: {ptb-pos: {}}\ngoal: {hours: 2}\n", "'goal' .* must be"),
    ("models: [minilm]\ntasks: {ptb-pos: {}}\ngoal: {hours: 0, gb: 16}\n", "'goal' .* must be"),
    ("models: [minilm]\ntasks: {ptb-pos: {}}\ngoal: {hours: true, gb: 16}\n", "'goal' .* must be"),
])
def test_bad_config_names_the_problem(tmp_path, content, message):
    path = tmp_path / "run.yml"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_config(path)


def test_goal_of_a_run_is_read_from_its_config(tmp_path):
    path = tmp_path / "run.yml"
    path.write_text("models: [minilm]\ntasks: {ptb-pos: {}}\ngoal: {hours: 2.5, gb: 16}\n")
    assert load_config(path)["goal"] == {"hours": 2.5, "gb": 16}
    assert load_config(Path(__file__).resolve().parents[2] / "configs" / "paper-scale.yml")["goal"]["hours"] > 0


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    path = tmp_path / "run.yml"
    path.write_text("models: [minilm]\ntasks: {no-such-task: {}}\n")
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no-such-task" in err and "Traceback" not in err


def test_cli_lists_tasks(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    for name in ("ptb-pos", "oanc-pos", "sentiment", "chunking", "mrpc", "sts-b"):
        assert name in out


def test_token_tag_count_mismatch_is_an_error():
    corpus = TokenCorpus([["a", "b"]], [["DT"]], ["f.txt:3"])
    ok = TokenCorpus([["a"]], [["DT"]], ["g:1"])
    with pytest.raises(DataError, match="f.txt:3: 2 tokens but 1 tags"):
        _finalise(TaskData("t", "token", {"train": corpus, "dev": ok, "test": ok}))


def test_glue_without_hub_or_path_says_what_to_do(monkeypatch):
    import datasets

    def offline(*a, **k):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="path='/path/to/MRPC'"):
        load_task("mrpc")


def test_glue_through_datasets_follows_the_paper_split(monkeypatch):
    """With the hub (here a stand-in DatasetDict), train is split 90/10 and validation is test."""
    import datasets

    n = 50
    labels = datasets.ClassLabel(names=["not_equivalent", "equivalent"])
    feats = datasets.Features({"sentence1": datasets.Value("string"), "sentence2": datasets.Value("string"),
                               "label": labels})

    def fake(path, name):
        assert (path, name) == ("nyu-mll/glue", "mrpc")
        mk = lambda k: datasets.Dataset.from_dict(  # noqa: E731
            {"sentence1": [f"a{i}" for i in range(k)], "sentence2": [f"b{i}" for i in range(k)],
             "label": [i % 2 for i in range(k)]}, features=feats)
        return datasets.DatasetDict({"train": mk(n), "validation": mk(8)})

    monkeypatch.setattr(datasets, "load_dataset", fake)
    task = load_task("mrpc")
    assert (len(task["train"]), len(task["dev"]), len(task["test"])) == (45, 5, 8)
    assert task.label_names == ["equivalent", "not_equivalent"]
    assert set(task["train"].texts).isdisjoint(task["dev"].texts)
    assert task["test"].pairs[:2] == ["b0", "b1"]
    assert np.array_equal(task.label_ids("test")[:2], [1, 0])


GOAL = {"hours": 2.0, "gb": 16.0}  # configs/paper-scale.yml's


def test_published_run_summary_against_the_goal():
    from redundancy.run.publish import summary

    nb = lambda wall, rss, anon=None: {"wall_time_s": wall, "peak_rss_mib": rss,  # noqa: E731
                                       **({"peak_anon_mib": anon} if anon is not None else {})}
    prov = {"pipeline": {"extract_time_s": 1000.0, "finetune_time_s": 2000.0, "invocations_wall_time_s": 3300.0,
                         "peak_rss_mib": 900.0, "peak_anon_mib": 700.0},
            "notebooks": {"a": nb(600.0, 18000.0, 3000.0), "b": {**nb(100.0, 5000.0, 9000.0),
                                                                 "earlier": [nb(200.0, 4000.0, 8000.0)]}}}
    s = summary(prov, GOAL)
    # 3,300 s of pipeline (more than its steps' 3,000) + 900 s of notebook batches
    assert s["total_s"] == 4200.0 and s["pipeline_s"] == 3300.0 and s["notebooks_s"] == 900.0
    assert s["peak_rss_mib"] == 18000.0 and s["peak_anon_mib"] == 9000.0
    # every batch has an anonymous peak: judged on it, 9,000 MiB <= 16 GiB, and 1.17 h <= 2 h
    assert s["memory_basis"] == "anonymous" and s["memory_mib"] == 9000.0 and s["within_goal"]
    # one batch without it: the resident peaks (18,000 MiB > 16 GiB) are judged instead
    del prov["notebooks"]["b"]["earlier"][0]["peak_anon_mib"]
    s = summary(prov, GOAL)
    assert s["memory_basis"] == "resident" and s["memory_mib"] == 18000.0 and not s["within_goal"]
    # a killed invocation left no record: the steps' own times count (3,000 s > 100 s recorded)
    prov["notebooks"]["a"]["peak_rss_mib"] = 1000.0
    prov["pipeline"]["invocations_wall_time_s"] = 100.0
    s = summary(prov, GOAL)
    assert s["pipeline_s"] == 3000.0 and s["memory_mib"] == 5000.0 and s["within_goal"]
    prov["notebooks"]["a"]["wall_time_s"] = 5000.0  # 3,000 + 5,300 s > 2 h
    assert not summary(prov, GOAL)["within_goal"]
    # the goal is the run's (its published config's), not the library's; with none, no verdict
    assert summary(prov)["within_goal"] is None and summary(prov)["goal"] is None
    assert summary({**prov, "config": {"goal": {"hours": 3.0, "gb": 16.0}}})["within_goal"] is True


def test_summary_edge_cases_and_kept_invocations():
    from redundancy.representations.runs import MAX_NOTEBOOK_INVOCATIONS, _keep
    from redundancy.run.publish import summary

    # nothing recorded: no verdict, not "within the goal"
    assert summary({"pipeline": {}, "notebooks": {}}, GOAL)["within_goal"] is None
    # an old invocation with only a resident peak is judged by it on the anonymous basis
    prov = {"pipeline": {"invocations": [{"wall_time_s": 100.0, "peak_rss_mib": 20000.0, "caller": "run"},
                                         {"wall_time_s": 5.0, "peak_rss_mib": 600.0, "peak_anon_mib": 500.0,
                                          "caller": "run"}],
                         "invocations_wall_time_s": 105.0},
            "notebooks": {"a": {"wall_time_s": 10.0, "peak_rss_mib": 900.0, "peak_anon_mib": 400.0}}}
    s = summary(prov, GOAL)
    assert s["memory_basis"] == "anonymous" and s["memory_mib"] == 20000.0 and s["within_goal"] is False
    # 16 GB is 10^9 bytes: 15,259 MiB passes, 15,260 does not
    prov["pipeline"]["invocations"][0]["peak_rss_mib"] = 15258.0
    assert summary(prov, GOAL)["within_goal"] is True
    prov["pipeline"]["invocations"][0]["peak_rss_mib"] = 15260.0
    assert summary(prov, GOAL)["within_goal"] is False
    # a recorded total of 0 s (only notebooks' invocations) is not replaced by the last one's time
    prov = {"pipeline": {"invocations_wall_time_s": 0.0, "last_invocation_wall_time_s": 7.0},
            "notebooks": {"a": {"wall_time_s": 10.0, "peak_rss_mib": 900.0}}}
    assert summary(prov, GOAL)["pipeline_s"] == 0.0
    # the command's invocations are never dropped, however many notebooks' follow them
    inv = [{"caller": "run", "i": 0}] + [{"caller": "notebook", "i": i} for i in range(1, 80)] + [{"caller": "run", "i": 80}]
    kept = _keep(inv)
    assert [r["i"] for r in kept if r["caller"] == "run"] == [0, 80]
    assert [r["i"] for r in kept if r["caller"] == "notebook"] == list(range(80 - MAX_NOTEBOOK_INVOCATIONS, 80))


def test_relative_paths_in_a_config_are_relative_to_its_folder_from_any_working_directory(tmp_path, monkeypatch,
                                                                                         tiny_bert):
    """`run --config my.yml` from the user's folder and `notebooks --config my.yml` (kernels start
    in notebooks/) read the same files: task files, results_dir and a model folder resolve
    against the configuration's folder; hub and embedded names are left alone."""
    import shutil

    from redundancy.representations.runs import load_config

    user = tmp_path / "project"
    (user / "data").mkdir(parents=True)
    shutil.copytree(tiny_bert, user / "mymodel")
    for s in ("train", "dev", "test"):
        (user / "data" / f"{s}.conll").write_text("the DT\ncat NN\n")
    (user / "my.yml").write_text("models: [mymodel, minilm]\nresults_dir: out\nfinetune_seeds: {mymodel: [1]}\n"
                                 "tasks:\n  conll: {train: data/train.conll, dev: data/dev.conll, test: data/test.conll}\n")
    seen = []
    for cwd in (user, tmp_path, user / "data"):
        monkeypatch.chdir(cwd)
        cfg = load_config(Path(os.path.relpath(user / "my.yml", cwd)))
        seen.append(cfg)
        assert cfg["tasks"]["conll"]["dev"] == str(user / "data" / "dev.conll")
        assert cfg["results_dir"] == str(user / "out")
        assert cfg["models"] == [str(user / "mymodel"), "minilm"]
        assert cfg["finetune_seeds"] == {str(user / "mymodel"): [1]}
    assert seen[0] == seen[1] == seen[2]


def test_the_template_config_documents_every_key_and_every_file_task_option():
    """configs/template.yml is the configuration's reference: it loads, sets every key the
    loader knows, and names every option of the file-reading tasks (a new key or option that
    is not documented there fails here)."""
    import re

    from redundancy.data.tasks import _SENTENCE_FILE_OPTIONS, _TOKEN_FILE_OPTIONS
    from redundancy.representations.runs import KNOWN_KEYS, load_config

    path = Path(__file__).resolve().parents[2] / "configs" / "template.yml"
    cfg = load_config(path)
    assert set(cfg) == KNOWN_KEYS
    text = path.read_text()
    for option in set(_SENTENCE_FILE_OPTIONS) | set(_TOKEN_FILE_OPTIONS) | {"task", "paper_analogue", "finetune"}:
        assert re.search(rf"^\s*#?\s*{option}:", text, re.M), f"task option {option!r} is not in the template"


def test_a_run_that_fails_before_writing_leaves_no_results_folder(tmp_path):
    from redundancy.__main__ import main

    cfg = tmp_path / "run.yml"
    cfg.write_text(f"name: broken\nmodels: [minilm]\nresults_dir: {tmp_path / 'results'}\n"
                   "tasks:\n  pos: {train: missing.conll, dev: missing.conll, test: missing.conll}\n")
    assert main(["run", "--config", str(cfg), "--no-progress"]) == 2
    assert not (tmp_path / "results").exists()
