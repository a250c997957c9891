"""redundancy.paper.sections: the display names of a run's models."""

from __future__ import annotations

import pytest

from redundancy.paper.sections import model_labels


@pytest.mark.parametrize("models, labels", [
    (["minilm", "mpnet"], ["minilm", "mpnet"]),
    (["/u/a/mymodel", "minilm"], ["mymodel", "minilm"]),
    # two checkpoints saved under the same folder name: their parents tell them apart
    (["/u/run1/mymodel", "/u/run2/mymodel"], ["run1/mymodel", "run2/mymodel"]),
    (["/x/a/ckpt/final", "/y/a/ckpt/final", "/z/final"], ["x/a/ckpt/final", "y/a/ckpt/final", "z/final"]),
    (["org/bert", "bert"], ["org/bert", "bert"]),
])
def test_model_labels_are_short_and_unique_within_a_run(models, labels):
    got = model_labels(models)
    assert [got[m] for m in models] == labels and len(set(got.values())) == len(models)


def test_a_tasks_paper_analogue_comes_from_the_config_and_a_user_named_task_has_none_by_default(tmp_path):
    from redundancy.paper.sections import Study

    study = Study({"name": "mine", "models": ["minilm", "/u/run1/mymodel"], "results_dir": str(tmp_path),
                   "tasks": {"ptb-pos": {}, "tweets": {"task": "sentences", "train": "x.csv"},
                             "reviews": {"task": "sentences", "train": "y.csv", "paper_analogue": "SST-2"}}})
    assert study.analogue["ptb-pos"] == "POS" and study.analogue["reviews"] == "SST-2"
    assert "tweets" not in study.analogue  # compared with no paper task, whatever reads it
    assert study.label("/u/run1/mymodel") == "mymodel" and study.label("minilm") == "minilm"
