"""Training and scoring speed: keras-deepad vs PyOD's AutoEncoder vs a bare torch loop.

Usage:
    python benchmarks/training_speed.py [--repeats 5]
        [--output benchmarks/results/training_speed.md]

Side by side in one process, on the same data and the same network (dense 64-64-32-64-64,
ReLU, linear output, standardised inputs, Adam 1e-3, no dropout or batch norm):

- large: 100,000 x 64, 3 epochs, batch 256: samples/s of the whole `fit` call (tracing,
  input pipeline and all) and of the steady epochs (epochs 2-3, from the per-epoch times);
- small: 500 x 9, 50 epochs, batch 64 (a typical tabular set): seconds of the whole `fit`;
- scoring: the first `score` of 500 rows right after `fit`, and the median of later calls.

keras-deepad runs with its defaults (`AE(...)`, `compile()`, `fit`), nothing tuned; the
`bench` extra brings PyOD and torch (`make bench`). Each figure is the median over
`--repeats` fresh models; keras-deepad runs twice, sharing one traced training loop between
the models of one configuration (its default) and with every model tracing its own. The
result (with the machine) goes to the `--output` markdown file.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)

HIDDEN = (64, 64)
LATENT = 32
CASES = {
    "large": {"rows": 100_000, "features": 64, "epochs": 3, "batch_size": 256},
    "small": {"rows": 500, "features": 9, "epochs": 50, "batch_size": 64},
}


def make_data(rows, features, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(rows, 8))
    return (z @ rng.normal(size=(8, features)) + 0.1 * rng.normal(size=(rows, features))).astype(
        np.float32
    )


class EpochTimes:
    """Wall time of each epoch (a Keras callback, or called by hand in torch loops)."""

    def __init__(self):
        self.times, self._start = [], None

    def begin(self):
        self._start = time.perf_counter()

    def end(self):
        self.times.append(time.perf_counter() - self._start)


def run_keras(x, epochs, batch_size, score_rows, share=True):
    import keras

    from keras_deepad.models import AE

    times = EpochTimes()
    callback = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda *_: times.begin(), on_epoch_end=lambda *_: times.end()
    )
    model = AE(hidden_units=HIDDEN, latent_dim=LATENT, latent_activation="relu", dropout=0.0)
    model.compile(keras.optimizers.Adam(1e-3))
    model.share_training_graph = share
    start = time.perf_counter()
    model.fit(x, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=[callback])
    fit_s = time.perf_counter() - start
    return fit_s, times.times, score_latency(lambda a: model.score(a), x[:score_rows])


def run_pyod(x, epochs, batch_size, score_rows):
    from pyod.models.auto_encoder import AutoEncoder

    model = AutoEncoder(
        hidden_neuron_list=[*HIDDEN, LATENT],
        epoch_num=epochs,
        batch_size=batch_size,
        lr=1e-3,
        batch_norm=False,
        dropout_rate=0.0,
        optimizer_params={"weight_decay": 0.0},
        verbose=0,
        random_state=0,
    )
    start = time.perf_counter()
    model.fit(x)
    fit_s = time.perf_counter() - start
    return fit_s, None, score_latency(lambda a: model.decision_function(a), x[:score_rows])


def run_torch(x, epochs, batch_size, score_rows):
    import torch

    torch.manual_seed(0)
    d = x.shape[1]
    sizes = [d, *HIDDEN, LATENT, *HIDDEN[::-1], d]
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    times = EpochTimes()
    start = time.perf_counter()
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-12
    data = torch.from_numpy((x - mean) / std)
    for _ in range(epochs):
        times.begin()
        order = torch.randperm(len(data))
        for i in range(0, len(data), batch_size):
            batch = data[order[i : i + batch_size]]
            optimizer.zero_grad()
            loss = ((net(batch) - batch) ** 2).mean()
            loss.backward()
            optimizer.step()
        times.end()
    fit_s = time.perf_counter() - start

    def score(a):
        with torch.no_grad():
            t = torch.from_numpy((a - mean) / std)
            return ((net(t) - t) ** 2).mean(dim=1).numpy()

    return fit_s, times.times, score_latency(score, x[:score_rows])


def score_latency(score, x, repeats=20):
    start = time.perf_counter()
    score(x)
    first = time.perf_counter() - start
    later = []
    for _ in range(repeats):
        start = time.perf_counter()
        score(x)
        later.append(time.perf_counter() - start)
    return first, statistics.median(later)


def run_keras_own_trace(x, epochs, batch_size, score_rows):
    """Every model traces its own training loop: the first model of a configuration."""
    return run_keras(x, epochs, batch_size, score_rows, share=False)


RUNNERS = {
    "keras-deepad": run_keras,
    "keras-deepad, own trace": run_keras_own_trace,
    "PyOD AutoEncoder": run_pyod,
    "bare torch loop": run_torch,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--output", default=str(Path(__file__).parent / "results" / "training_speed.md")
    )
    args = parser.parse_args()
    import keras
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    rows = []
    for case, spec in CASES.items():
        x = make_data(spec["rows"], spec["features"])
        for name, runner in RUNNERS.items():
            results = [
                runner(x, spec["epochs"], spec["batch_size"], score_rows=500)
                for _ in range(args.repeats)
            ]
            fit_s = statistics.median(r[0] for r in results)
            steady = [r[1] for r in results if r[1] is not None]
            steady_s = (
                statistics.median(sum(t[1:]) / (len(t) - 1) for t in steady) if steady else None
            )
            first = statistics.median(r[2][0] for r in results)
            later = statistics.median(r[2][1] for r in results)
            samples = spec["rows"] * spec["epochs"]
            rows.append(
                {
                    "case": case,
                    "method": name,
                    "fit_s": fit_s,
                    "first_fit_s": results[0][0],
                    "fit_samples_per_s": samples / fit_s,
                    "steady_samples_per_s": spec["rows"] / steady_s if steady_s else None,
                    "first_score_ms": 1000 * first,
                    "score_ms": 1000 * later,
                }
            )
            print(rows[-1], flush=True)
    lines = [
        "# Training and scoring speed",
        "",
        "Command: `python benchmarks/training_speed.py` (`--repeats "
        f"{args.repeats}`, the median of fresh models). Machine: {os.cpu_count()} CPU cores "
        f"({cpu_model()}), no GPU; python {platform.python_version()}, keras "
        f"{keras.__version__}, torch {torch.__version__}.",
        "",
        "Network 64-64-32-64-64 (ReLU, linear output), standardised inputs, Adam 1e-3, no "
        "dropout or batch norm, the same data for all three. large: 100,000 x 64, 3 epochs, "
        "batch 256; small: 500 x 9, 50 epochs, batch 64; scoring: 500 rows.",
        "",
        "`keras-deepad` is the default: the second and later models of one configuration "
        "train on the first one's traced loop (`share_training_graph`); `own trace` sets "
        "`share_training_graph = False`, so every model pays the tracing, as the first model "
        "of a configuration in a process does. `first fit` is the first of the repeats (the "
        "process's first use of that library and network).",
        "",
        "| case | method | whole fit (s) | first fit (s) | whole fit (samples/s) "
        "| steady epochs (samples/s) | first score (ms) | later scores (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        steady = f"{r['steady_samples_per_s']:,.0f}" if r["steady_samples_per_s"] else "-"
        lines.append(
            f"| {r['case']} | {r['method']} | {r['fit_s']:.2f} | {r['first_fit_s']:.2f} "
            f"| {r['fit_samples_per_s']:,.0f} "
            f"| {steady} | {r['first_score_ms']:.1f} | {r['score_ms']:.1f} |"
        )
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
