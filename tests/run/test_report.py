"""python -m redundancy report: one model folder and one user task to a redundancy report."""

from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

from redundancy.run.report import report

WORDS = ["the/DT", "cat/NN", "sat/VBD", "a/DT", "dog/NN", "ran/VBD", "fast/RB", "red/JJ", "book/NN", "was/VBD"]


def _conll(folder: Path) -> dict:
    rng = random.Random(0)
    files = {}
    for split, n in (("train", 80), ("dev", 25), ("test", 25)):
        sents = [[rng.choice(WORDS) for _ in range(rng.randint(3, 7))] for _ in range(n)]
        path = folder / f"{split}.conll"
        path.write_text("\n\n".join("\n".join(w.replace("/", " ") for w in s) for s in sents) + "\n")
        files[split] = str(path)
    return files


def test_a_model_folder_and_a_conll_task_give_a_report_and_a_second_call_reuses_everything(tmp_path, tiny_bert,
                                                                                             isolated_cache):
    model = tmp_path / "checkpoints" / "my-bert"
    shutil.copytree(tiny_bert, model)
    data = tmp_path / "data"
    data.mkdir()
    opts = {"task": "conll", **_conll(data), "paper_analogue": "POS"}
    logs = []
    s = report(str(model), "my-pos", opts, out=tmp_path / "rep", progress=False, log=logs.append)
    assert s["label"] == "my-bert" and s["task"] == "my-pos" and s["kind"] == "token"
    assert s["neurons"] == s["layers"] * s["hidden"] == 3 * 16
    assert len(s["per_layer"]) == 3 and len(s["adjacent_cka"]) == 2
    assert set(s["layers_within"]["layers"]) <= {0, 1, 2}
    assert 0 < s["clustering"]["neurons"] <= 48 and 0 < s["minimal_set"]["neurons"] <= 48
    assert 1 <= s["ls_ccfs"]["ls_layers"] <= 3
    assert json.loads((tmp_path / "rep" / "summary.json").read_text())["minimal_set"] == s["minimal_set"]
    for f in ("layers/layers.csv", "cka/cka.csv", "clustering/sweep.csv", "minimal_sets/minimal_sets.csv",
              "ls_ccfs/ls_ccfs.csv"):
        assert (tmp_path / "rep" / f).is_file(), f
    text = "\n".join(logs)
    assert "minimal set (97% of the oracle)" in text and "LayerSelector + CCFS" in text
    probes = sorted(p.name for p in (isolated_cache / "probes").glob("*.npz"))
    again = report(str(model), "my-pos", opts, out=tmp_path / "rep", progress=False, log=lambda *a: None)
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in s.items() if k != "seconds"}
    assert sorted(p.name for p in (isolated_cache / "probes").glob("*.npz")) == probes  # nothing trained again


def test_the_command_reads_a_users_sentence_csv(tmp_path, tiny_bert, capsys):
    from redundancy.__main__ import main

    rng = random.Random(1)
    for split, n in (("train", 60), ("test", 20)):
        with open(tmp_path / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["tweet", "sentiment"])
            for _ in range(n):
                good = rng.random() < 0.5
                words = rng.choices(["red", "book", "fast"] if good else ["dog", "sat", "was"], k=4)
                w.writerow([" ".join(["the"] + words), "pos" if good else "neg"])
    code = main(["report", "--model", tiny_bert, "--task", "tweets", "-o", "task=sentences",
                 "-o", f"train={tmp_path / 'train.csv'}", "-o", f"test={tmp_path / 'test.csv'}",
                 "-o", "text=tweet", "-o", "label=sentiment", "--out", str(tmp_path / "rep"), "--no-progress"])
    assert code == 0
    s = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert s["kind"] == "sentence" and s["task"] == "tweets" and s["metric"] == "accuracy"
    assert "LayerSelector + CCFS" in capsys.readouterr().out


def test_a_bad_option_is_one_clear_line(capsys):
    from redundancy.__main__ import main

    assert main(["report", "--model", "minilm", "--task", "ptb-pos", "-o", "train"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --option 'train': write KEY=VALUE") and len(err.splitlines()) == 1


def test_the_summary_text_marks_undefined_cka_and_unreached_sets():
    from redundancy.run.report import summary_text

    s = {"label": "m", "task": "t", "kind": "sentence", "metric": "accuracy", "neurons": 48, "layers": 3,
         "hidden": 16, "oracle": {"dev": 0.9, "test": 0.8}, "layers_within": {"delta": 0.01, "layers": []},
         "adjacent_cka": [{"layers": [0, 1], "cka": None}, {"layers": [1, 2], "cka": 0.91}],
         "clustering": {"threshold": 0.3, "neurons": 20, "fraction_kept": 20 / 48, "dev": 0.9, "test": 0.8},
         "minimal_set": {"delta": 0.03, "neurons": 48, "share": 1.0, "dev": 0.85, "test": 0.8,
                         "test_interval": [0.7, 0.9], "found": False},
         "ls_ccfs": {"ls_layers": 3, "ls_dev": 0.9, "ls_test": 0.8, "ccfs_neurons": 30, "ccfs_dev": 0.9,
                     "ccfs_test": 0.8, "reduction": 0.375, "ls_found": False, "ccfs_found": True}}
    text = summary_text(s)
    assert "n/a 0.91" in text and "(not reached)" in text and "none (of 0..2; 0 = embeddings)" in text
    assert "layers 0..2 together (no prefix within 1%: all layers)" in text
