"""Training with MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1.

Each test starts the workers of `multiworker_script.py` with their own
`TF_CONFIG` (free ports chosen at run time), bounded by a timeout, and ends
every process it started by PID. Two workers with one replica each and a
global batch of 64 take the same SGD steps as one process with batch 64.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("multiworker_script.py")
TIMEOUT = 150


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Cluster:
    """Worker processes of one test; `close` kills whatever still runs."""

    def __init__(self, out):
        self.out, self.procs, self.logs = out, [], []

    def start(self, *args, workers=2, ports=None):
        ports = ports or _free_ports(workers)
        cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
        started = []
        for index in range(workers):
            config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
            started.append(self._spawn(args, {"TF_CONFIG": json.dumps(config)}, f"w{index}"))
        return started, ports

    def single(self, *args):
        return self._spawn(args, {}, "single")

    def _spawn(self, args, env, name):
        log = open(self.out / f"{name}-{len(self.procs)}.log", "w")  # noqa: SIM115
        environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
        environment.pop("TF_CONFIG", None) if not env else None
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), *map(str, args)],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    def wait(self, procs, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        for proc in procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        failed = [p for p in procs if p.returncode != 0]
        if failed:
            for log in self.logs:
                log.flush()
            tails = "\n".join(
                Path(log.name).read_text()[-3000:] for log in self.logs if Path(log.name).exists()
            )
            raise AssertionError(f"{len(failed)} process(es) failed:\n{tails}")

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        for log in self.logs:
            log.close()


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


def _load(path):
    with np.load(path) as values:
        return {key: values[key] for key in values.files}


def _assert_same(a, b, atol, label):
    assert sorted(a) == sorted(b), label
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=0, atol=atol, err_msg=f"{label}: {key}")


DETERMINISTIC = "ae,deep-svdd,deep-svdd-soft,ocnn"
#: Noise drawn for the global batch (each replica its rows) and the WAE's MMD over the gathered
#: batch: also the single-process SGD steps.
STOCHASTIC = "vae,aae,wae,wae-gan"
#: Deep SVDD's pretraining runs Adam (its own optimizer): the first Adam steps move each weight
#: by about the learning rate (1e-3) in the direction of its gradient's sign, so float sums of
#: two halves instead of one batch change weights whose gradient is about 0 by a few 1e-3
#: (measured 2.7e-3). Its workers agree exactly; its deterministic variant is checked above.
ADAM_PRETRAINED = "deep-svdd-pretrained"
ADAM_ATOL = 1e-2


def test_every_family_trains_on_two_workers_as_in_one_process(cluster, tmp_path):
    names = f"{DETERMINISTIC},{STOCHASTIC},{ADAM_PRETRAINED}"
    workers, _ = cluster.start("families", tmp_path, names)
    single = cluster.single("families", tmp_path, names)
    cluster.wait([*workers, single])
    for name in names.split(","):
        first, second = (_load(tmp_path / f"{name}-{i}.npz") for i in (0, 1))
        # All-reduced updates: both workers hold the same model, fitted state included.
        _assert_same(first, second, 0.0, f"{name}: worker 0 vs worker 1")
        assert all(np.isfinite(v).all() for v in first.values()), name
    for name in names.split(","):
        atol = ADAM_ATOL if name in ADAM_PRETRAINED.split(",") else 1e-5
        reference = _load(tmp_path / f"{name}-single.npz")
        # Weights, normaliser statistics, threshold, Deep SVDD's c and R, OC-NN's r.
        _assert_same(reference, _load(tmp_path / f"{name}-0.npz"), atol, f"{name}: vs single")


def test_training_from_sharded_tfrecord_files(cluster, tmp_path):
    from keras_deepad.data import write_tfrecords
    from tests.distribute.multiworker_script import data

    x = data(512)
    write_tfrecords(x, tmp_path / "shards" / "train", num_shards=4)
    pattern = str(tmp_path / "shards" / "train-*.tfrecord")
    workers, _ = cluster.start("files", tmp_path, pattern)
    cluster.wait(workers)
    first, second = (_load(tmp_path / f"files-{i}.npz") for i in (0, 1))
    _assert_same(first, second, 0.0, "worker 0 vs worker 1")
    # The normaliser adapted on every file, not on the worker's shard.
    np.testing.assert_allclose(first["offset"], x.mean(axis=0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(1 / first["scale"], x.std(axis=0), rtol=1e-3)  # x * scale


def test_a_killed_worker_restarts_and_resumes_from_the_backup(cluster, tmp_path):
    workers, ports = cluster.start("resume", tmp_path, 2)
    marker = tmp_path / "stalled-1"
    deadline = time.monotonic() + TIMEOUT
    while not marker.exists():
        assert time.monotonic() < deadline, "the workers never reached epoch 3"
        assert all(p.poll() is None for p in workers), "a worker ended before the kill"
        time.sleep(0.5)
    workers[1].kill()  # a machine is lost after its third epoch...
    workers[0].kill()  # ...and the job is restarted, as a cluster manager does
    for proc in workers:
        proc.wait(timeout=30)
    restarted, _ = cluster.start("resume", tmp_path, -1, ports=_free_ports(2))
    cluster.wait(restarted)
    for index in (0, 1):
        resumed = _load(tmp_path / f"resume-{index}.npz")
        # Epochs 0-2 were backed up: the restarted job runs epochs 3-5 only.
        np.testing.assert_array_equal(resumed["epochs"], [3, 4, 5])
        assert all(np.isfinite(v).all() for v in resumed.values())
    first, second = (_load(tmp_path / f"resume-{i}.npz") for i in (0, 1))
    _assert_same(first, second, 0.0, "worker 0 vs worker 1 after the restart")


def test_the_cli_trains_on_two_workers_and_only_the_chief_saves(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs, logs = [], []
    try:
        for index in range(2):
            config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
            log = open(tmp_path / f"cli-{index}.log", "w")  # noqa: SIM115
            logs.append(log)
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "keras_deepad.cli", "train", "--data", "blobs",
                     "--model", "ae", "--epochs", "2", "--batch-size", "64", "--json",
                     "--strategy", "multiworker", "--backup-dir", str(tmp_path / "backup"),
                     "--output", str(tmp_path / f"ae-{index}.keras")],
                    env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CONFIG": json.dumps(config)},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )  # fmt: skip
        for proc in procs:
            proc.wait(timeout=TIMEOUT)
        for log in logs:
            log.flush()
        outputs = [(tmp_path / f"cli-{i}.log").read_text() for i in range(2)]
        assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        for log in logs:
            log.close()
    assert (tmp_path / "ae-0.keras").exists()
    assert not (tmp_path / "ae-1.keras").exists()
    results = [json.loads(o[o.index("{") :]) for o in outputs]
    assert [r["saved"] for r in results] == [True, False]
    assert results[0]["threshold"] == results[1]["threshold"]
    # The backups are removed once training has finished.
    assert not any((tmp_path / "backup").rglob("*.h5"))
