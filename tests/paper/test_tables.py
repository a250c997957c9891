"""The paper's facts the comparisons use: every analogue names a task of the paper's tables,
and its model size is BERT-base's."""

from __future__ import annotations

import pytest

from redundancy.paper.tables import ANALOGUE, PAPER_NEURONS, paper_table


def test_every_analogue_is_a_task_of_the_papers_tables():
    paper_tasks = set(paper_table("table7_layers").task) | set(paper_table("table8_minimal_sets").task)
    assert set(ANALOGUE.values()) <= paper_tasks, set(ANALOGUE.values()) - paper_tasks


def test_the_papers_model_size():
    assert PAPER_NEURONS == 13 * 768 == 9984


def test_a_missing_table_says_where_it_looked():
    with pytest.raises(FileNotFoundError, match="table99"):
        paper_table("table99")
