"""Candidate defaults on the whole tabular suite: how each default in keras-deepad was chosen.

Usage:
    python benchmarks/tune.py 'AE' 'AE:{"normalization": "standard"}' [--seeds 1 2 3]
        [--sets vowels ...] [--epochs 50] [--batch-size 64]

Each candidate is `Class` or `Class:{json constructor arguments}`; it is trained exactly as the
suite trains a default (`compile()`, `fit(epochs=50, batch_size=64)`, `score`) on every tabular
set of `benchmarks/suite.py` and seeds 1-3, and IsolationForest runs on the same splits. A
candidate is judged by its mean over all sets and seeds, never by one set. Results accumulate in
`benchmarks/results/tuning.json` (a candidate already there is not run again); the table of every
candidate measured so far is printed and written to `benchmarks/results/tuning.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from suite import TABULAR_SETS, load_tabular, run_peer, tabular_split  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def parse_candidate(text):
    name, _, params = text.partition(":")
    return name, json.loads(params) if params else {}


def fit_candidate(name, params, x_train, seed, epochs, batch_size):
    """A candidate built, compiled and trained exactly as the suite trains a default."""
    import keras

    from keras_deepad import models

    keras.utils.set_random_seed(seed)
    params = dict(params)
    learning_rate = params.pop("_lr", None)  # compile(Adam(lr)) instead of compile()
    ema = params.pop("_ema", None)  # Adam(use_ema=True, ema_momentum=ema): averaged weights
    if "members" in params:  # DetectorEnsemble members by class name, default arguments
        params["members"] = [
            getattr(models, member)(seed=seed + i) for i, member in enumerate(params["members"])
        ]
    model = getattr(models, name)(**{"seed": seed, **params})
    if ema:
        rate = learning_rate or model.default_learning_rate
        model.compile(keras.optimizers.Adam(rate, use_ema=True, ema_momentum=ema))
    else:
        model.compile(*([keras.optimizers.Adam(learning_rate)] if learning_rate else []))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x_train, epochs=epochs, batch_size=batch_size, verbose=0)
    return model


def run_candidate(name, params, split, seed, epochs, batch_size):
    x_train, x_test, y_test = split
    model = fit_candidate(name, params, x_train, seed, epochs, batch_size)
    scores = np.nan_to_num(model.score(x_test).astype(np.float64), nan=0.0, posinf=1e300)
    return float(roc_auc_score(y_test, scores))


def render(results, sets):
    lines = [
        "# Candidate defaults on the tabular suite",
        "",
        "AUROC, mean over seeds; `python benchmarks/tune.py CANDIDATE ...` "
        "(fit: compile(), fit(epochs, batch_size) as the suite).",
        "",
        "| candidate | " + " | ".join(sets) + " | **mean** | min over seeds |",
        "|---" * (len(sets) + 3) + "|",
    ]
    for label, cells in sorted(
        results.items(),
        key=lambda kv: (
            -np.mean([np.mean(v) for v in kv[1].values()]) if all(s in kv[1] for s in sets) else 0
        ),
    ):
        if not all(s in cells for s in sets):
            continue
        row = [f"{np.mean(cells[s]):.3f}" for s in sets]
        mean = np.mean([np.mean(cells[s]) for s in sets])
        worst = min(min(cells[s]) for s in sets)
        lines.append(f"| `{label}` | " + " | ".join(row) + f" | **{mean:.3f}** | {worst:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidates", nargs="+")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--sets", nargs="+", default=list(TABULAR_SETS))
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--output", default=str(RESULTS / "tuning.json"))
    args = parser.parse_args(argv)

    path = Path(args.output)
    results = json.loads(path.read_text()) if path.exists() else {}
    suffix = (
        "" if (args.epochs, args.batch_size) == (50, 64) else f" @{args.epochs}x{args.batch_size}"
    )
    todo = ["IsolationForest", *args.candidates]
    for dataset in args.sets:
        x, y = load_tabular(dataset)
        for seed in args.seeds:
            split = tabular_split(x, y, seed)
            for text in todo:
                label = text + ("" if text == "IsolationForest" else suffix)
                cell = results.setdefault(label, {}).setdefault(dataset, [])
                if len(cell) >= args.seeds.index(seed) + 1:
                    continue
                start = time.perf_counter()
                if text == "IsolationForest":
                    s = run_peer(text, split[0], split[1], seed)
                    auroc = float(roc_auc_score(split[2], s))
                else:
                    name, params = parse_candidate(text)
                    auroc = run_candidate(name, params, split, seed, args.epochs, args.batch_size)
                cell.append(auroc)
                print(
                    f"{dataset:13s} seed {seed} {label:60s} {auroc:.3f} "
                    f"({time.perf_counter() - start:.1f} s)",
                    flush=True,
                )
                path.write_text(json.dumps(results, indent=1) + "\n")
    report = render(results, args.sets)
    path.with_suffix(".md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
