"""AUROC of the one-class detectors on the scikit-learn digits one-class protocol and on
breast cancer (benign normal), with the registered presets.

Usage:
    python benchmarks/one_class.py [--epochs 30] [--seeds 0 1 2] [--output FILE.md]

Each digit 0-9 in turn is the normal class (`load_builtin("digits", normal_class=k)`): the
detector trains on that digit's training images only and is scored on the test split with
every other digit anomalous. Breast cancer trains on benign samples only.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)
from sklearn.metrics import roc_auc_score  # noqa: E402

from keras_deepad.data import load_builtin  # noqa: E402
from keras_deepad.registry import train_detector  # noqa: E402

MODELS = ("deep-svdd", "deep-svdd-soft", "ocnn", "ocnn-linear", "ocnn-sigmoid", "ae")


def auroc(name, data, epochs, seed):
    model, _ = train_detector(name, data.x_train, epochs=epochs, seed=seed, verbose=0)
    return roc_auc_score(data.y_test, model.score(data.x_test))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--output", default="benchmarks/results/one_class.md")
    args = parser.parse_args(argv)

    rows = []
    start = time.perf_counter()
    for name in args.models:
        t0 = time.perf_counter()
        digits = [
            [
                auroc(name, load_builtin("digits", seed=s, normal_class=k), args.epochs, s)
                for s in args.seeds
            ]
            for k in range(10)
        ]
        per_digit = np.mean(digits, axis=1)
        cancer = [
            auroc(name, load_builtin("breast_cancer", seed=s), args.epochs, s) for s in args.seeds
        ]
        rows.append((name, per_digit, float(np.mean(cancer)), time.perf_counter() - t0))
        print(
            f"{name:16s} digits mean {per_digit.mean():.3f}  breast cancer "
            f"{np.mean(cancer):.3f}  ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )

    lines = [
        "# One-class detectors: AUROC",
        "",
        f"Command: `python benchmarks/one_class.py --epochs {args.epochs} --seeds "
        f"{' '.join(map(str, args.seeds))}`",
        f"Machine: {os.cpu_count()} CPU cores ({cpu_model()}), no GPU; "
        f"total {time.perf_counter() - start:.0f} s.",
        "",
        "Digits: scikit-learn 8x8 digits, one-class protocol (train on digit k only, test on "
        "the held-out split with the other digits anomalous), mean over seeds. Breast cancer: "
        "benign normal, malignant anomalous. Presets from `keras-deepad models`, "
        f"{args.epochs} epochs, Adam at the preset's learning rate.",
        "",
        "| model | " + " | ".join(str(k) for k in range(10)) + " | digits mean | breast cancer |",
        "|---" * 13 + "|",
    ]
    for name, per_digit, cancer, _ in rows:
        cells = " | ".join(f"{v:.3f}" for v in per_digit)
        lines.append(f"| {name} | {cells} | **{per_digit.mean():.3f}** | {cancer:.3f} |")
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
