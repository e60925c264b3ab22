"""Plain vs. robust autoencoder training on contaminated data (Merrill & Eskandarian 2020).

Usage:
    python benchmarks/robust_training.py [--seeds 1 2 3] [--contamination 0.1]
        [--datasets blobs breast_cancer digits manifold] [--digit 0] [--output FILE.md]

Every data set is split so that the training data contains a known fraction of
anomalies (default 10 %), as in unsupervised use:

- blobs: `load_builtin("blobs", seed)` training set (Gaussian mixture) plus
  uniform anomalies from the same box as its test anomalies; test = its test split.
- breast_cancer: benign split 70/30 by seed; malignant samples mixed into the
  training 70 %; test = the other 30 % of benign plus the unused malignant ones.
- digits: digit 0 (`--digit`) normal, split 70/30; other digits mixed into training; test =
  the rest (pixels / 16).
- manifold: generated; normal data on a curved 2-D manifold in 16-D, anomalies on
  another (1-D) one, easy for an autoencoder to learn once it sees them.

Each seed trains the same dense AE (64-32-8, otherwise the class defaults:
standardised inputs, ReLU code, dropout 0.2; Adam 1e-3, batch 32, the data set's
epochs) four ways: plain, percentile loss q = 0.95 and q = 0.9, and q = 0.95 with
knee early stopping (the same epochs as the maximum). Cumulative error scoring
records every run. Reported: AUROC of the training-set scores (finding the
anomalies in the data trained on: last-epoch error or cumulative error) and of
the test-set scores (new data; cumulative scores exist for training data only).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)
from sklearn.metrics import roc_auc_score  # noqa: E402

from keras_deepad.callbacks import CumulativeErrorScoring, KneeEarlyStopping  # noqa: E402
from keras_deepad.data import load_builtin  # noqa: E402
from keras_deepad.data.tabular import load_sklearn  # noqa: E402
from keras_deepad.models import AE  # noqa: E402

EPOCHS = {"blobs": 20, "breast_cancer": 60, "digits": 30, "manifold": 25}
#: name -> (percentile_loss, knee stopping)
VARIANTS = {
    "plain": (None, False),
    "percentile q=0.95": (0.95, False),
    "percentile q=0.9": (0.9, False),
    "percentile q=0.95 + knee": (0.95, True),
}


# --------------------------------------------------------------------- data
def _n_anomalies(n_normal, contamination):
    return round(contamination * n_normal / (1 - contamination))


def _mix(x_normal, x_anomal, rng):
    x = np.concatenate([x_normal, x_anomal]).astype("float32")
    y = np.repeat([0, 1], [len(x_normal), len(x_anomal)])
    order = rng.permutation(len(x))
    return x[order], y[order]


def blobs(seed, contamination):
    data = load_builtin("blobs", seed=seed)
    rng = np.random.default_rng(seed + 1000)
    n = _n_anomalies(len(data.x_train), contamination)
    anomalies = rng.uniform(-8.0, 8.0, size=(n, data.x_train.shape[1]))
    return (*_mix(data.x_train, anomalies, rng), data.x_test, data.y_test)


def _split_with_pool(x_normal, x_anomal, seed, contamination):
    rng = np.random.default_rng(seed)
    x_normal, x_anomal = x_normal[rng.permutation(len(x_normal))], rng.permutation(x_anomal)
    n_train = round(0.7 * len(x_normal))
    n_mixed = _n_anomalies(n_train, contamination)
    x_train, y_train = _mix(x_normal[:n_train], x_anomal[:n_mixed], rng)
    x_test, y_test = _mix(x_normal[n_train:], x_anomal[n_mixed:], rng)
    return x_train, y_train, x_test, y_test


def breast_cancer(seed, contamination):
    x, y = load_sklearn("breast_cancer")  # 1 = benign
    return _split_with_pool(x[y == 1], x[y == 0], seed, contamination)


def digits(seed, contamination, normal_class=0):
    x, y = load_sklearn("digits")
    x = x / np.float32(16.0)
    return _split_with_pool(x[y == normal_class], x[y != normal_class], seed, contamination)


def manifold(seed, contamination, n_normal=450, dim=16, noise=0.05):
    rng = np.random.default_rng(seed)
    w_normal, w_anomal = rng.normal(size=(2, dim)), rng.normal(size=(1, dim))

    def draw(n, w):
        return np.tanh(rng.normal(size=(n, len(w))) @ w) + noise * rng.normal(size=(n, dim))

    x_train, y_train = _mix(
        draw(n_normal, w_normal), draw(_n_anomalies(n_normal, contamination), w_anomal), rng
    )
    x_test, y_test = _mix(draw(300, w_normal), draw(30, w_anomal), rng)
    return x_train, y_train, x_test, y_test


DATASETS = {"blobs": blobs, "breast_cancer": breast_cancer, "digits": digits, "manifold": manifold}


# -------------------------------------------------------------------- runs
def run(x_train, y_train, x_test, y_test, epochs, seed, percentile, knee):
    keras.utils.set_random_seed(seed)
    # The last epoch's reconstruction error against the cumulative one: the paper's comparison.
    model = AE(
        hidden_units=(64, 32),
        latent_dim=8,
        percentile_loss=percentile,
        score_method="mse",
        seed=seed,
    )
    model.compile(keras.optimizers.Adam(1e-3))
    ces = CumulativeErrorScoring(x_train)
    callbacks = [ces] + ([KneeEarlyStopping()] if knee else [])
    history = model.fit(x_train, epochs=epochs, batch_size=32, verbose=0, callbacks=callbacks)
    return {
        "train_last": roc_auc_score(y_train, model.score(x_train)),
        "train_cumulative": roc_auc_score(y_train, ces.scores),
        "test": roc_auc_score(y_test, model.score(x_test)),
        "epochs": len(history.history["loss"]),
    }


def _cell(values):
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--contamination", type=float, default=0.1)
    parser.add_argument("--digit", type=int, default=0, help="normal class of digits")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--output", default="benchmarks/results/robust_training.md")
    args = parser.parse_args(argv)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    start = time.perf_counter()
    results = {}  # (dataset, variant) -> list of run dicts
    for name in args.datasets:
        t0 = time.perf_counter()
        for seed in args.seeds:
            extra = {"normal_class": args.digit} if name == "digits" else {}
            data = DATASETS[name](seed, args.contamination, **extra)
            for variant, (percentile, knee) in VARIANTS.items():
                results.setdefault((name, variant), []).append(
                    run(*data, EPOCHS[name], seed, percentile, knee)
                )
        n_train = len(data[0])
        print(f"{name} (train {n_train}, {time.perf_counter() - t0:.0f} s)", flush=True)
        for variant in VARIANTS:
            rs = results[(name, variant)]
            print(
                f"  {variant:26s} train last {_cell([r['train_last'] for r in rs])}  "
                f"train cumulative {_cell([r['train_cumulative'] for r in rs])}  "
                f"test {_cell([r['test'] for r in rs])}  "
                f"epochs {np.mean([r['epochs'] for r in rs]):.0f}",
                flush=True,
            )
    seconds = time.perf_counter() - start

    gpus = tf.config.list_physical_devices("GPU")
    command = "python benchmarks/robust_training.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    header = "| training | score | " + " | ".join(args.datasets) + " |"
    rule = "|---|---|" + "---|" * len(args.datasets)
    lines = [
        "# Robust training on contaminated data: AUROC",
        "",
        f"Command: `{command.strip()}`",
        f"Machine: {os.cpu_count()} CPU cores ({cpu_model()}), "
        + (f"{len(gpus)} GPU(s)" if gpus else "no GPU")
        + f"; TensorFlow {tf.__version__}, Keras {keras.__version__}; total {seconds:.0f} s "
        f"(1-minute load average {load:.1f} at the start).",
        "",
        f"Training data contaminated with {args.contamination:.0%} anomalies; mean ± std of "
        f"AUROC over seeds {', '.join(map(str, args.seeds))}. Dense AE 64-32-8 (otherwise the "
        "class defaults: standardised inputs, ReLU code, dropout 0.2), Adam 1e-3, "
        "batch 32, epochs per data set: "
        + ", ".join(f"{k} {EPOCHS[k]}" for k in args.datasets)
        + " (the maximum under knee stopping). Data sets and protocol: see the script's "
        "docstring.",
        "",
        "## Finding the anomalies in the training data",
        "",
        "Last epoch = the trained model's reconstruction error; cumulative = the sum of every "
        "epoch's error (`CumulativeErrorScoring`).",
        "",
        header,
        rule,
    ]
    for variant in VARIANTS:
        for key, label in (("train_last", "last epoch"), ("train_cumulative", "cumulative")):
            cells = [_cell([r[key] for r in results[(d, variant)]]) for d in args.datasets]
            lines.append(f"| {variant} | {label} | " + " | ".join(cells) + " |")
    lines += ["", "## New data (test split)", "", header, rule]
    for variant in VARIANTS:
        cells = [_cell([r["test"] for r in results[(d, variant)]]) for d in args.datasets]
        lines.append(f"| {variant} | last epoch | " + " | ".join(cells) + " |")
    epochs = [
        f"{d} {np.mean([r['epochs'] for r in results[(d, 'percentile q=0.95 + knee')]]):.1f}"
        for d in args.datasets
    ]
    lines += ["", "Epochs trained with knee stopping (mean): " + ", ".join(epochs) + "."]
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.output} ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
