"""Two-worker training (MultiWorkerMirroredStrategy on 127.0.0.1) against one process.

Usage:
    python benchmarks/multiworker.py [--rows 50000] [--epochs 3]
        [--output benchmarks/results/multiworker.md]

The same AE (keras-deepad's defaults) trains on the same rows (rows x 64, global batch 256,
3 epochs) in one process, then in two worker processes on this machine with their own
`TF_CONFIG`. Each process measures its own `fit`; the table gives the whole `fit` (tracing
and all) and the epochs after the first. Two workers on one machine share its cores and talk
over gRPC on the loopback device: the figure shows the overhead of the collective
all-reduce, not the speed-up of machines with cores of their own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def worker(rows, epochs, out):
    import keras
    import numpy as np

    from keras_deepad import distribute
    from keras_deepad.models import AE

    strategy = distribute.get_strategy("auto")
    x = np.random.default_rng(0).normal(size=(rows, 64)).astype("float32")
    starts = []
    timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda *_: starts.append(time.perf_counter())
    )
    with strategy.scope():
        model = AE()
        model.compile()
    start = time.perf_counter()
    model.fit(x, epochs=epochs, batch_size=256, verbose=0, callbacks=[timer])
    end = time.perf_counter()
    result = {
        "workers": distribute.num_workers(),
        "fit_s": end - start,
        "later_epochs_s": (end - starts[1]) / (epochs - 1) if epochs > 1 else None,
    }
    Path(out).write_text(json.dumps(result))


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run(workers, rows, epochs, tmp):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(workers)]}
    procs = []
    for index in range(workers):
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        if workers > 1:
            task = {"type": "worker", "index": index}
            env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": task})
        else:
            env.pop("TF_CONFIG", None)
        out = tmp / f"{workers}-{index}.json"
        args = [sys.executable, __file__, "--worker", str(out), "--rows", str(rows)]
        procs.append(subprocess.Popen([*args, "--epochs", str(epochs)], env=env))
    try:
        for proc in procs:
            if proc.wait(timeout=900) != 0:
                raise RuntimeError(f"a worker failed (exit {proc.returncode})")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return json.loads((tmp / f"{workers}-0.json").read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/multiworker.md"))
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.rows, args.epochs, args.worker)
    import tempfile

    from machine import cpu_model

    with tempfile.TemporaryDirectory() as tmp:
        results = [run(n, args.rows, args.epochs, Path(tmp)) for n in (1, 2)]
    lines = [
        "# Multi-worker training",
        "",
        f"Command: `python benchmarks/multiworker.py --rows {args.rows} --epochs {args.epochs}`. "
        f"Machine: {os.cpu_count()} CPU cores ({cpu_model()}), no GPU; python "
        f"{platform.python_version()}. Both workers run on this one machine.",
        "",
        f"AE with its defaults, {args.rows:,} x 64 rows, global batch 256, {args.epochs} epochs.",
        "",
        "| processes | whole fit (s) | whole fit (samples/s) | later epochs (s each) |",
        "|---|---|---|---|",
    ]
    for r in results:
        samples = args.rows * args.epochs / r["fit_s"]
        lines.append(
            f"| {r['workers']} | {r['fit_s']:.2f} | {samples:,.0f} | {r['later_epochs_s']:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
