"""`benchmarks/suite.py --merge`: re-rendering keeps each run and invocation once."""

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def suite(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    sys.modules.pop("suite", None)
    import suite

    monkeypatch.setattr(suite, "RESULTS", tmp_path)
    return suite


def _record(dataset, method, seed, auroc):
    return {
        "task": "tabular",
        "dataset": dataset,
        "method": method,
        "kind": "peer",
        "seed": seed,
        "auroc": auroc,
        "auprc": auroc,
        "finite": True,
        "seconds": 1.0,
    }


def _results(path, command, started, runs):
    meta = {
        "command": command,
        "invocations": [{"command": command, "started": started, "wall_seconds": 1.0}],
    }
    path.write_text(json.dumps({"meta": meta, "runs": runs}))


def test_merge_into_itself_and_others_keeps_each_invocation_and_run_once(suite, tmp_path):
    main = tmp_path / "suite.json"
    other = tmp_path / "other.json"
    _results(
        main,
        "python benchmarks/suite.py --only tabular",
        "t1",
        [_record("wine", "IsolationForest", 1, 0.8)],
    )
    _results(
        other,
        "python benchmarks/suite.py --name other",
        "t2",
        [_record("wine", "IsolationForest", 1, 0.9), _record("wine", "AE", 1, 0.7)],
    )

    suite.main(["--merge", str(main), str(other)])
    suite.main(["--merge", str(main), str(other), str(main)])

    payload = json.loads(main.read_text())
    commands = [i["command"] for i in payload["meta"]["invocations"]]
    assert commands == [
        "python benchmarks/suite.py --only tabular",
        "python benchmarks/suite.py --name other",
    ]
    assert sorted((r["method"], r["auroc"]) for r in payload["runs"]) == [
        ("AE", 0.7),
        ("IsolationForest", 0.9),
    ]
    report = (tmp_path / "suite.md").read_text()
    assert report.count("`python benchmarks/suite.py --only tabular`") == 1
