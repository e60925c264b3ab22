"""`benchmarks/class_tasks.py`: how each task is built from a labelled set."""

import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def class_tasks(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    sys.modules.pop("class_tasks", None)
    import class_tasks

    return class_tasks


@pytest.mark.parametrize("source", ["vehicle", "letter", "wine"])
def test_rare_task_makes_the_anomaly_class_rarer_than_every_normal_class(class_tasks, source):
    x_all, classes, _ = class_tasks.labelled(source)
    for c in np.unique(classes):
        x, y = class_tasks.class_task(source, c, "rare")
        rows = {tuple(r) for r in x_all[classes == c]}
        assert all(tuple(r) in rows for r in x[y == 1])  # anomalies: class c only
        assert 2 <= y.sum() <= class_tasks.ANOMALY_FRACTION * len(y) + 1
        normal_rows = {tuple(r): k for r, k in zip(x_all, classes, strict=True)}
        normal_classes = np.array([normal_rows[tuple(r)] for r in x[y == 0]])
        assert c not in normal_classes
        assert y.sum() <= np.bincount(normal_classes)[np.unique(normal_classes)].min() // 2
    if source == "letter":
        assert (y == 0).sum() == class_tasks.LETTER_NORMAL_ROWS


def test_one_class_task_has_one_normal_class_and_five_percent_others(class_tasks):
    x_all, classes, _ = class_tasks.labelled("vehicle")
    x, y = class_tasks.class_task("vehicle", 2, "one-class")
    assert (y == 0).sum() == (classes == 2).sum()
    assert abs(y.mean() - class_tasks.ANOMALY_FRACTION) < 0.01
    others = {tuple(r) for r in x_all[classes != 2]}
    assert all(tuple(r) in others for r in x[y == 1])
    again = class_tasks.class_task("vehicle", 2, "one-class")
    np.testing.assert_array_equal(x, again[0])  # a seeded draw: the same task every run


def test_render_counts_tasks_at_or_above_isolation_forest(class_tasks):
    results = {}
    for i, (source, c, _) in enumerate(class_tasks.tasks(["wine"])):
        results[f"rare/{source}/{c}/IsolationForest/1"] = 0.8
        results[f"rare/{source}/{c}/AE/1"] = 0.9 if i else 0.7
    text = class_tasks.render(results, ["IsolationForest", "AE"], ["wine"], [1], "cmd", "rare")
    assert "| AE | 0.833 | **0.833** | 2/3 |" in text
    assert "| IsolationForest | 0.800 | **0.800** | 3/3 |" in text
