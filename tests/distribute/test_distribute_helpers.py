"""`keras_deepad.distribute`: TF_CONFIG parsing, the chief, strategies, per-worker backups."""

import json

import pytest
import tensorflow as tf

from keras_deepad import distribute

CLUSTER = {"worker": ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]}


def _config(monkeypatch, task, cluster=CLUSTER):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))


def test_without_tf_config_this_process_is_the_only_worker(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.task() == ("worker", 0)
    assert distribute.num_workers() == 1
    assert distribute.is_chief()
    assert distribute.get_strategy("auto") is tf.distribute.get_strategy()


@pytest.mark.parametrize(
    ("task", "cluster", "chief"),
    [
        ({"type": "worker", "index": 0}, CLUSTER, True),
        ({"type": "worker", "index": 2}, CLUSTER, False),
        ({"type": "chief", "index": 0}, {**CLUSTER, "chief": ["127.0.0.1:4"]}, True),
        ({"type": "worker", "index": 0}, {**CLUSTER, "chief": ["127.0.0.1:4"]}, False),
    ],
)
def test_the_chief_is_the_chief_task_else_worker_0(monkeypatch, task, cluster, chief):
    _config(monkeypatch, task, cluster)
    assert distribute.is_chief() is chief
    assert distribute.num_workers() == len(cluster["worker"]) + len(cluster.get("chief", []))


def test_bad_tf_config_and_strategy_names_are_refused(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        distribute.task()
    monkeypatch.delenv("TF_CONFIG")
    with pytest.raises(ValueError, match="needs TF_CONFIG"):
        distribute.get_strategy("multiworker")
    with pytest.raises(ValueError, match="strategy must be one of"):
        distribute.get_strategy("tpu")


def test_each_worker_backs_up_to_its_own_folder(monkeypatch, tmp_path):
    _config(monkeypatch, {"type": "worker", "index": 2})
    callback = distribute.BackupAndRestore(tmp_path)
    assert callback.backup_dir == str(tmp_path / "worker-2")
    monkeypatch.delenv("TF_CONFIG")
    assert distribute.BackupAndRestore(tmp_path).backup_dir == str(tmp_path)
