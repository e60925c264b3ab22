"""Variants of the autoencoders' hybrid score, all read from the same trained models.

Usage:
    python benchmarks/hybrid_scores.py [--detectors AE AAE WAE] [--kinds suite one-class rare]
        [--output benchmarks/results/hybrid_scores.md]

Each detector is trained once per task exactly as the suite trains a default (`compile()`,
`fit(epochs=50, batch_size=64)`; the tabular suite's seven sets and seeds 1-3, or the 61 class
tasks of `benchmarks/class_tasks.py`, seed 1), and every variant is computed from that one
model's codes and reconstructions (normalised units), so the variants differ only in how they
score:

- `default`: the model's own `score` (the current hybrid);
- `mse`: the mean squared error alone;
- `weighted mse`: each feature's squared error in units of its usual error (the hybrid's error
  part alone);
- `unweighted hybrid`: the hybrid as it was before the per-feature weights (log mean squared
  error + log squared Mahalanobis distance of the code, each standardised on the training data);
- `knn hybrid`, `weighted knn hybrid`: the Mahalanobis distance replaced by the mean distance of
  the code to its 10 nearest training codes (a training code leaves itself out).
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
from class_tasks import SOURCES, class_task, tasks  # noqa: E402
from sklearn.covariance import LedoitWolf  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.neighbors import NearestNeighbors  # noqa: E402
from suite import TABULAR_BATCH, TABULAR_EPOCHS, TABULAR_SETS, load_tabular, tabular_split  # noqa: E402
from tune import fit_candidate  # noqa: E402

HERE = Path(__file__).resolve().parent
VARIANTS = (
    "default",
    "mse",
    "weighted mse",
    "unweighted hybrid",
    "knn hybrid",
    "weighted knn hybrid",
)
NEIGHBOURS = 10


def _log_z(train, test):
    """`log` of the test values standardised by the training values' logs."""
    log_train, log_test = np.log(train + 1e-12), np.log(test + 1e-12)
    return (log_test - log_train.mean()) / (log_train.std() + 1e-12)


def variant_scores(name, x_train, x_test, seed):
    """`{variant: test scores}` of one model trained as the suite trains a default."""
    from keras_deepad.layers.code_density import ERROR_WEIGHT_FLOOR, ERROR_WEIGHT_QUANTILE

    model = fit_candidate(name, {}, x_train, seed, TABULAR_EPOCHS, TABULAR_BATCH)

    def parts(x):
        x_scaled = model.scaler(x.astype("float32"))
        code, reconstruction = model.code_and_reconstruction(x_scaled)
        squared = (np.asarray(x_scaled, np.float64) - np.asarray(reconstruction)) ** 2
        return squared, np.asarray(code, np.float64)

    squared_train, code_train = parts(x_train)
    squared_test, code_test = parts(x_test)
    rows = squared_train.mean(axis=1)
    usual = squared_train[rows <= np.quantile(rows, ERROR_WEIGHT_QUANTILE)].mean(axis=0)
    weights = 1.0 / (usual + ERROR_WEIGHT_FLOOR * usual.mean() + 1e-30)
    mse = squared_train.mean(axis=1), squared_test.mean(axis=1)
    weighted = (squared_train * weights).mean(axis=1), (squared_test * weights).mean(axis=1)
    covariance = LedoitWolf().fit(code_train)
    maha = covariance.mahalanobis(code_train), covariance.mahalanobis(code_test)
    neighbours = NearestNeighbors(n_neighbors=NEIGHBOURS + 1).fit(code_train)
    knn_train = neighbours.kneighbors(code_train)[0][:, 1:].mean(axis=1)
    knn = knn_train, neighbours.kneighbors(code_test, n_neighbors=NEIGHBOURS)[0].mean(axis=1)
    return {
        "default": model.score(x_test),
        "mse": mse[1],
        "weighted mse": weighted[1],
        "unweighted hybrid": _log_z(*mse) + _log_z(*maha),
        "knn hybrid": _log_z(*mse) + _log_z(*knn),
        "weighted knn hybrid": _log_z(*weighted) + _log_z(*knn),
    }


def run(kind, name):
    """`{variant: mean AUROC}`: over sets (each the mean over seeds 1-3) or over the tasks."""
    aurocs = {v: [] for v in VARIANTS}
    if kind == "suite":
        for dataset in TABULAR_SETS:
            x, y = load_tabular(dataset)
            per_set = {v: [] for v in VARIANTS}
            for seed in (1, 2, 3):
                x_train, x_test, y_test = tabular_split(x, y, seed)
                for v, s in variant_scores(name, x_train, x_test, seed).items():
                    per_set[v].append(roc_auc_score(y_test, s))
            for v in VARIANTS:
                aurocs[v].append(np.mean(per_set[v]))
    else:
        for source, task_class, _ in tasks(SOURCES):
            x, y = class_task(source, task_class, kind)
            x_train, x_test, y_test = tabular_split(x, y, 1)
            for v, s in variant_scores(name, x_train, x_test, 1).items():
                aurocs[v].append(roc_auc_score(y_test, s))
    return {v: float(np.mean(a)) for v, a in aurocs.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detectors", nargs="+", default=["AE", "AAE", "WAE"])
    parser.add_argument("--kinds", nargs="+", default=["suite", "one-class", "rare"],
                        choices=("suite", "one-class", "rare"))  # fmt: skip
    parser.add_argument("--output", default=str(HERE / "results" / "hybrid_scores.md"))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    lines = [
        "# The hybrid score's variants on the same trained models",
        "",
        f"`python benchmarks/hybrid_scores.py --detectors {' '.join(args.detectors)} --kinds "
        f"{' '.join(args.kinds)}`. Mean AUROC: the tabular suite (mean over its seven sets of "
        "the mean over seeds 1-3) and the class tasks (61 tasks of each kind, seed 1). "
        "Variants: see the script's docstring.",
        "",
        "| detector | kind | " + " | ".join(VARIANTS) + " |",
        "|---|---|" + "---|" * len(VARIANTS),
    ]
    for name in args.detectors:
        for kind in args.kinds:
            result = run(kind, name)
            row = f"| {name} | {kind} | " + " | ".join(f"{result[v]:.3f}" for v in VARIANTS) + " |"
            print(row, flush=True)
            lines.append(row)
    Path(args.output).write_text("\n".join(lines) + "\n")
    print("wrote", args.output)


if __name__ == "__main__":
    main()
