"""Many outlier tasks from the labelled real sets: one per class, in two kinds.

Usage:
    python benchmarks/class_tasks.py [--methods IsolationForest AE 'VAE:{"latent_dim": 8}' ...]
        [--protocols one-class rare] [--seeds 1] [--sources vowels vehicle ...]
        [--rerun VAE ...] [--output benchmarks/results/class_tasks.md]

The suite (`benchmarks/suite.py`) has one outlier task per set, and three of its seven sets have
a handful of test anomalies each, so its means move by about 0.01 with the training seed alone.
This benchmark builds one task per class of every labelled real set at hand: the UCI sets'
full labelled data (`X_all`, `classes` in `benchmarks/data/`, R's mlbench, GPL-2) and
scikit-learn's bundled wine, breast cancer and digits, 61 classes in all, and each class gives
a task of each kind:

- `one-class`: class c is normal; the anomalies are a seeded draw (seed 0) of the other
  classes, 5 % of the rows.
- `rare`: class c is the anomaly class and every other class is normal; the anomalies are a
  seeded draw of class c, at most 5 % of the rows and at most half the smallest normal class,
  so the anomaly class is rarer than every normal class (letter's normal rows: a seeded draw
  of 2,000). On a two-class set the two kinds give the same tasks.

Each task then runs exactly as the suite's tabular tasks do (ADBench protocol: stratified 70/30
split per seed, MinMaxScaler fitted on the training split, unsupervised training on the
contaminated training split, AUROC on the test split; ours `compile()`, `fit(epochs=50,
batch_size=64)`, peers as the suite fits them; a candidate `Class:{json}` as
`benchmarks/tune.py` trains it), every method on the same splits in one process.

Results are cached per (kind, task, method, seed) in `benchmarks/results/class_tasks.json` (a
run already there is not repeated unless `--rerun` names its method); the tables (per set: the
mean over its tasks; the mean over all tasks; the tasks on which a method is at or above
IsolationForest on the same splits) go to `--output`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
from machine import cpu_model  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from suite import (  # noqa: E402
    DATA_DIR,
    PEERS,
    TABULAR_BATCH,
    TABULAR_DETECTORS,
    TABULAR_EPOCHS,
    _subsample_anomalies,
    fit_peer,
    tabular_split,
)
from tune import fit_candidate, parse_candidate  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PROTOCOLS = ("one-class", "rare")
SOURCES = ("vowels", "vehicle", "sonar", "letter", "dna", "wine", "breast_cancer", "digits")
ANOMALY_FRACTION = 0.05
LETTER_NORMAL_ROWS = 2000


def labelled(source):
    """`(X, classes, class names)` of a labelled real set."""
    if source in ("wine", "breast_cancer", "digits"):
        from sklearn import datasets

        raw = getattr(datasets, f"load_{source}")()
        names = [str(n) for n in getattr(raw, "target_names", range(raw.target.max() + 1))]
        return raw.data.astype(np.float64), raw.target.astype(np.int64), names
    with np.load(DATA_DIR / f"{source}.npz", allow_pickle=False) as data:
        return (
            data["X_all"].astype(np.float64),
            data["classes"].astype(np.int64),
            [str(n) for n in data["class_names"]],
        )


def class_task(source, task_class, protocol="rare"):
    """`(X, y)` of one task; `task_class` is the anomaly class (`rare`) or the normal one."""
    x, classes, _ = labelled(source)
    if protocol == "one-class":  # the suite's own draw of the anomalies (seed 0)
        return _subsample_anomalies(x, (classes != task_class).astype(np.int64), ANOMALY_FRACTION)
    rng = np.random.default_rng(0)
    anomaly_class = task_class
    normal = np.flatnonzero(classes != anomaly_class)
    if source == "letter":
        normal = np.sort(rng.choice(normal, size=LETTER_NORMAL_ROWS, replace=False))
    smallest = np.bincount(classes[normal])
    smallest = smallest[smallest > 0].min()
    count = min(round(ANOMALY_FRACTION * len(normal) / (1 - ANOMALY_FRACTION)), smallest // 2)
    anomalous = np.flatnonzero(classes == anomaly_class)
    chosen = rng.choice(anomalous, size=min(max(count, 2), len(anomalous)), replace=False)
    rows = np.sort(np.concatenate([normal, chosen]))
    return x[rows], (classes[rows] == anomaly_class).astype(np.int64)


def tasks(sources):
    for source in sources:
        _, classes, names = labelled(source)
        for c in np.unique(classes):
            yield source, int(c), names[c]


def run_method(method, x_train, x_test, seed):
    """Test scores of a peer, a default (`AE`) or a candidate (`AE:{"latent_dim": 8}`).

    A default is a candidate without arguments: `fit_candidate` trains it as the suite does.
    """
    if method in PEERS:
        return fit_peer(method, x_train, seed)(x_test)
    name, params = parse_candidate(method)
    return fit_candidate(name, params, x_train, seed, TABULAR_EPOCHS, TABULAR_BATCH).score(x_test)


def render(results, methods, sources, seeds, command, protocol):
    def auroc(method, source, c):
        values = [results.get(f"{protocol}/{source}/{c}/{method}/{s}") for s in seeds]
        return None if None in values else float(np.mean(values))

    task_list = list(tasks(sources))
    header = "| method | " + " | ".join(sources) + " | **mean over tasks** | ≥ IsolationForest |"
    title = {
        "rare": "every class of the labelled real sets as the rare anomaly class",
        "one-class": "every class of the labelled real sets as the normal class",
    }[protocol]
    lines = [
        f"# Class tasks ({protocol}): {title}",
        "",
        f"`{command}`: {len(task_list)} tasks; seeds {', '.join(map(str, seeds))}. AUROC per set "
        "= the mean over its tasks (one per class); the mean over tasks weighs each task once. "
        "The last column counts the tasks on which the method's AUROC is at least "
        "IsolationForest's on the same splits.",
        "",
        header,
        "|---" * (len(sources) + 3) + "|",
    ]
    for method in methods:
        cells, every = [], []
        for source in sources:
            values = [auroc(method, s, c) for s, c, _ in task_list if s == source]
            values = [v for v in values if v is not None]
            every += values
            cells.append(f"{np.mean(values):.3f}" if values else "")
        wins = [(auroc(method, s, c), auroc("IsolationForest", s, c)) for s, c, _ in task_list]
        wins = [a >= b for a, b in wins if a is not None and b is not None]
        mean = f"**{np.mean(every):.3f}**" if len(every) == len(task_list) else "(partial)"
        lines.append(
            f"| {method} | " + " | ".join(cells) + f" | {mean} | {sum(wins)}/{len(wins)} |"
        )
    counts = {s: sum(1 for t in task_list if t[0] == s) for s in sources}
    lines += [
        "",
        "Tasks per set: " + ", ".join(f"{s} {n}" for s, n in counts.items()) + ".",
        "",
        f"Machine: {os.cpu_count()} CPU cores ({cpu_model()}), no GPU; python "
        f"{platform.python_version()}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=["IsolationForest", *TABULAR_DETECTORS])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument(
        "--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS), help="task kinds"
    )
    parser.add_argument("--sources", nargs="+", default=list(SOURCES), choices=SOURCES)
    parser.add_argument("--cache", default=str(RESULTS / "class_tasks.json"))
    parser.add_argument("--output", default=str(RESULTS / "class_tasks.md"))
    parser.add_argument("--merge", nargs="*", default=[], help="more result files to read")
    parser.add_argument("--rerun", nargs="*", default=[], help="methods to measure again")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    cache = Path(args.cache)
    results = json.loads(cache.read_text()) if cache.exists() else {}
    for extra in args.merge:
        results = {**json.loads(Path(extra).read_text()), **results}
    words = sys.argv[1:] if argv is None else argv
    command = "python benchmarks/class_tasks.py " + shlex.join(words)
    for protocol in [] if args.render_only else args.protocols:
        for source, c, name in tasks(args.sources):
            x, y = class_task(source, c, protocol)
            for seed in args.seeds:
                split = None
                for method in args.methods:
                    key = f"{protocol}/{source}/{c}/{method}/{seed}"
                    if key in results and method not in args.rerun:
                        continue
                    split = split or tabular_split(x, y, seed)
                    x_train, x_test, y_test = split
                    started = time.perf_counter()
                    scores = np.asarray(run_method(method, x_train, x_test, seed))
                    results[key] = float(roc_auc_score(y_test, scores))
                    print(
                        f"{protocol} {source} {name} seed {seed} {method}: {results[key]:.3f} "
                        f"({time.perf_counter() - started:.1f} s)",
                        flush=True,
                    )
                    tmp = cache.with_suffix(".tmp")
                    tmp.write_text(json.dumps(results, indent=0, sort_keys=True))
                    tmp.replace(cache)
    text = "\n".join(
        render(results, args.methods, args.sources, args.seeds, command, protocol)
        for protocol in args.protocols
    )
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
