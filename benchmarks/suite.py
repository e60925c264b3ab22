"""Detection quality suite: keras-deepad's defaults beside IsolationForest, scikit-learn and PyOD.

Usage:
    python benchmarks/suite.py --quick     # about 10 minutes: seed 1, three sets, two image classes
    python benchmarks/suite.py             # full: seeds 1-3, every set, all 10 classes
    python benchmarks/suite.py --only tabular --detectors AE VAE --peers IsolationForest

Every method, ours and the peers', runs in the same process on the same splits:

- Tabular (ADBench protocol, Han et al. 2022): stratified 70/30 split per seed, MinMaxScaler
  fitted on the training split, unsupervised training on the contaminated training split, AUROC
  and AUPRC on the test split. Sets: the five UCI sets in `benchmarks/data/` (R's mlbench,
  GPL-2) plus scikit-learn's breast cancer (malignant anomalous) and wine (class 0 anomalous),
  the anomaly class subsampled to about 10 % with seed 0.
  Ours: each detector built with its class defaults, `compile()`, `fit(epochs=50,
  batch_size=64)`, `score`.
- One-class Fashion-MNIST (Debian's `dataset-fashion-mnist`): class k normal; 2,000 training
  images of class k (seeded draw), the whole test set (class k normal, the rest anomalous),
  pixels / 255. Ours: the registered presets trained with `train_detector` (20 epochs).

Peers: scikit-learn's IsolationForest, OneClassSVM (rbf) and LocalOutlierFactor (novelty), and
PyOD's AutoEncoder, VAE and DeepSVDD (their defaults, 30 epochs), from the `bench` extra, and
PyOD's classical KNN (its defaults: the distance to the 5th nearest training row); on the
tabular sets also ECOD and HBOS. The classical ones show how far any detector gets.

Results go to `benchmarks/results/suite.json` (every run, with machine, versions, seeds and wall
times) and `benchmarks/results/suite.md` (tables and the issue's targets, met or not). Runs
already in the JSON with the same configuration are reused unless `--fresh` is given, so an
interrupted full run resumes where it stopped.
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
from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)
from sklearn.metrics import average_precision_score, roc_auc_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import MinMaxScaler  # noqa: E402

HERE = Path(__file__).resolve().parent
_STARTED = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
DATA_DIR = HERE / "data"
RESULTS = HERE / "results"

UCI_SETS = ("vowels", "vehicle", "sonar", "letter", "dna")
SKLEARN_SETS = ("breast_cancer", "wine")
TABULAR_SETS = (*UCI_SETS, *SKLEARN_SETS)
QUICK_SETS = ("vowels", "vehicle", "breast_cancer")

#: Our default detectors on tabular data: class name -> constructor (class defaults).
TABULAR_DETECTORS = ("AE", "VAE", "AAE", "WAE", "DeepSVDD", "OCNN", "DetectorEnsemble")
TABULAR_EPOCHS, TABULAR_BATCH = 50, 64
#: Registered presets on Fashion-MNIST, trained with `train_detector`.
IMAGE_DETECTORS = (
    "ae",
    "ae-conv",
    "vae",
    "deep-svdd-mnist",
    "ocnn",
    "geom",
    "ensemble",
    "ensemble-image",
)
IMAGE_EPOCHS = 20
IMAGE_TRAIN_PER_CLASS = 2000

PEERS = (
    "IsolationForest",
    "OneClassSVM",
    "LocalOutlierFactor",
    "PyOD AutoEncoder",
    "PyOD VAE",
    "PyOD DeepSVDD",
    "PyOD KNN",
    "PyOD ECOD",
    "PyOD HBOS",
)
IMAGE_PEERS = ("IsolationForest", "OneClassSVM", "PyOD AutoEncoder", "PyOD DeepSVDD", "PyOD KNN")
PYOD_EPOCHS = 30


# ------------------------------------------------------------------ data
def _subsample_anomalies(x, y, fraction, seed=0):
    """Keeps every normal row and enough anomalies (seeded draw) to make `fraction` of the rows."""
    rng = np.random.default_rng(seed)
    normal, anomalous = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    keep = max(2, round(fraction * len(normal) / (1 - fraction)))
    chosen = rng.choice(anomalous, size=min(keep, len(anomalous)), replace=False)
    rows = np.sort(np.concatenate([normal, chosen]))
    return x[rows], y[rows]


def load_tabular(name):
    """`(X, y)` of an outlier task, y = 1 for anomalies."""
    if name in UCI_SETS:
        with np.load(DATA_DIR / f"{name}.npz", allow_pickle=False) as data:
            return data["X"].astype(np.float64), data["y"].astype(np.int64)
    from sklearn import datasets

    if name == "breast_cancer":
        raw = datasets.load_breast_cancer()
        y = (raw.target == 0).astype(np.int64)  # 0 = malignant in scikit-learn
    elif name == "wine":
        raw = datasets.load_wine()
        y = (raw.target == 0).astype(np.int64)
    else:
        raise ValueError(f"unknown tabular set {name!r}; choose one of {TABULAR_SETS}.")
    return _subsample_anomalies(raw.data.astype(np.float64), y, 0.1)


def tabular_split(x, y, seed):
    """ADBench: stratified 70/30 split, MinMaxScaler fitted on the training split."""
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=0.3, stratify=y, random_state=seed, shuffle=True
    )
    scaler = MinMaxScaler().fit(x_tr)
    return (
        scaler.transform(x_tr).astype(np.float32),
        np.clip(scaler.transform(x_te), -10, 10).astype(np.float32),
        y_te,
    )


def load_fashion_split(normal_class, seed):
    """2,000 training images of `normal_class`, the whole test set, pixels / 255."""
    from keras_deepad.data.images import load_fashion_mnist

    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    rng = np.random.default_rng(seed)
    rows = np.flatnonzero(y_train == normal_class)
    rows = np.sort(rng.choice(rows, size=IMAGE_TRAIN_PER_CLASS, replace=False))
    x_tr = (x_train[rows].astype(np.float32) / 255.0)[..., None]
    x_te = (x_test.astype(np.float32) / 255.0)[..., None]
    return x_tr, x_te, (y_test != normal_class).astype(np.int64)


# ----------------------------------------------------------------- methods
def run_ours(name, x_train, x_test, seed, task):
    import keras

    keras.utils.set_random_seed(seed)
    if task == "tabular":
        from keras_deepad import models

        model = getattr(models, name)(seed=seed)
        model.compile()
        model.fit(x_train, epochs=TABULAR_EPOCHS, batch_size=TABULAR_BATCH, verbose=0)
    else:
        from keras_deepad.registry import train_detector

        model, _ = train_detector(name, x_train, epochs=IMAGE_EPOCHS, seed=seed, verbose=0)
    return model.score(x_test)


def run_peer(name, x_train, x_test, seed):
    return fit_peer(name, x_train, seed)(x_test)


def fit_peer(name, x_train, seed):
    """Peer `name` fitted on `x_train`: `score(x)`, higher = more anomalous."""

    def flat(x):
        return x.reshape(len(x), -1)

    x_train = flat(x_train)
    if name in ("IsolationForest", "OneClassSVM", "LocalOutlierFactor"):
        if name == "IsolationForest":
            from sklearn.ensemble import IsolationForest

            model = IsolationForest(random_state=seed)
        elif name == "OneClassSVM":
            from sklearn.svm import OneClassSVM

            model = OneClassSVM(kernel="rbf")
        else:
            from sklearn.neighbors import LocalOutlierFactor

            model = LocalOutlierFactor(novelty=True)
        model.fit(x_train)
        return lambda x: -model.score_samples(flat(x))
    import torch

    torch.manual_seed(seed)
    if name == "PyOD AutoEncoder":
        from pyod.models.auto_encoder import AutoEncoder

        model = AutoEncoder(epoch_num=PYOD_EPOCHS, random_state=seed, verbose=0)
    elif name == "PyOD VAE":
        from pyod.models.vae import VAE

        model = VAE(epoch_num=PYOD_EPOCHS, random_state=seed, verbose=0)
    elif name == "PyOD DeepSVDD":
        from pyod.models.deep_svdd import DeepSVDD

        model = DeepSVDD(
            n_features=x_train.shape[1], epochs=PYOD_EPOCHS, random_state=seed, verbose=0
        )
    elif name == "PyOD KNN":
        from pyod.models.knn import KNN

        model = KNN()
    elif name == "PyOD ECOD":
        from pyod.models.ecod import ECOD

        model = ECOD()
    elif name == "PyOD HBOS":
        from pyod.models.hbos import HBOS

        model = HBOS()
    else:
        raise ValueError(f"unknown peer {name!r}; choose from {PEERS}.")
    model.fit(x_train)
    return lambda x: model.decision_function(flat(x))


# ------------------------------------------------------------------- runs
def measure(task, dataset, method, kind, seed, split):
    x_train, x_test, y_test = split
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "ours":
            scores = run_ours(method, x_train, x_test, seed, task)
        else:
            scores = run_peer(method, x_train, x_test, seed)
    seconds = time.perf_counter() - start
    scores = np.asarray(scores, dtype=np.float64)
    finite = bool(np.isfinite(scores).all())
    scores = np.nan_to_num(scores, nan=0.0, posinf=1e300, neginf=-1e300)
    return {
        "task": task,
        "dataset": dataset,
        "method": method,
        "kind": kind,
        "seed": seed,
        "auroc": float(roc_auc_score(y_test, scores)),
        "auprc": float(average_precision_score(y_test, scores)),
        "finite": finite,
        "seconds": round(seconds, 2),
    }


def versions():
    import keras
    import sklearn
    import tensorflow as tf

    found = {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
    }
    for module in ("torch", "pyod"):
        try:
            found[module] = __import__(module).__version__
        except ImportError:
            found[module] = None
    from keras_deepad import __version__

    found["keras-deepad"] = __version__
    return found


def _key(record):
    return (record["task"], record["dataset"], record["method"], record["seed"])


def _pick(chosen, default):
    """The methods named on the command line (an empty list: none), else the defaults."""
    return default if chosen is None else chosen


def run_suite(args):
    json_path = RESULTS / args.name / "suite.json" if args.name else RESULTS / "suite.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    previous = []
    if json_path.exists() and not args.fresh:
        previous = json.loads(json_path.read_text()).get("runs", [])
    done = {_key(r): r for r in previous}
    plan = []
    if args.only in (None, "tabular"):
        for dataset in args.datasets or (QUICK_SETS if args.quick else TABULAR_SETS):
            x, y = load_tabular(dataset)
            for seed in args.seeds:
                methods = [(m, "peer") for m in _pick(args.peers, PEERS)]
                methods += [(m, "ours") for m in _pick(args.detectors, TABULAR_DETECTORS)]
                for method, kind in methods:
                    plan.append(("tabular", dataset, method, kind, seed, (x, y)))
    if args.only in (None, "fashion_mnist"):
        classes = (
            args.classes if args.classes is not None else ((0, 6) if args.quick else range(10))
        )
        image_seeds = args.seeds[:1] if args.quick else args.image_seeds
        for k in classes:
            for seed in image_seeds:
                methods = [(m, "peer") for m in _pick(args.image_peers, IMAGE_PEERS)]
                methods += [(m, "ours") for m in _pick(args.image_detectors, IMAGE_DETECTORS)]
                for method, kind in methods:
                    plan.append(("fashion_mnist", f"class {k}", method, kind, seed, k))

    started = time.perf_counter()
    runs = dict(done)
    cache = {}
    for i, (task, dataset, method, kind, seed, source) in enumerate(plan, 1):
        key = (task, dataset, method, seed)
        if key in done and not (args.rerun and method in args.rerun):
            continue
        if (task, dataset, seed) not in cache:
            cache.clear()
            if task == "tabular":
                cache[(task, dataset, seed)] = tabular_split(*source, seed)
            else:
                cache[(task, dataset, seed)] = load_fashion_split(source, seed)
        record = measure(task, dataset, method, kind, seed, cache[(task, dataset, seed)])
        runs[key] = record
        print(
            f"[{i}/{len(plan)}] {task:13s} {dataset:14s} {method:20s} seed {seed}: "
            f"AUROC {record['auroc']:.3f}  ({record['seconds']:.1f} s)",
            flush=True,
        )
        _write(json_path, args, list(runs.values()), time.perf_counter() - started)
    _write(json_path, args, list(runs.values()), time.perf_counter() - started)
    report = render(list(runs.values()), json.loads(json_path.read_text()))
    md_path = json_path.with_suffix(".md")
    md_path.write_text(report)
    print(report)
    print(f"wrote {json_path} and {md_path}")


def _invocations(path):
    """The invocations recorded in an existing results file (each adds or reuses runs)."""
    if not path.exists():
        return []
    meta = json.loads(path.read_text()).get("meta", {})
    return meta.get("invocations") or [
        {"command": meta.get("command"), "wall_seconds": meta.get("wall_seconds_last_invocation")}
    ]


def _write(path, args, runs, seconds, invocations=None):
    command = "python benchmarks/suite.py " + shlex.join(sys.argv[1:])
    if invocations is None:
        invocations = [i for i in _invocations(path) if i.get("started") != _STARTED]
        invocations.append(
            {"command": command, "started": _STARTED, "wall_seconds": round(seconds, 1)}
        )
    meta = {
        "command": command,
        "invocations": invocations,
        "machine": f"{os.cpu_count()} CPU cores ({cpu_model()}), no GPU",
        "versions": versions(),
        "seeds": args.seeds,
        "tabular_fit": {"epochs": TABULAR_EPOCHS, "batch_size": TABULAR_BATCH},
        "image_fit": {"epochs": IMAGE_EPOCHS, "train_per_class": IMAGE_TRAIN_PER_CLASS},
        "pyod_epochs": PYOD_EPOCHS,
        "wall_seconds_last_invocation": round(seconds, 1),
        "total_method_seconds": round(sum(r["seconds"] for r in runs), 1),
    }
    runs = sorted(runs, key=lambda r: (r["task"], r["dataset"], r["kind"], r["method"], r["seed"]))
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"meta": meta, "runs": runs}, indent=1) + "\n")
    os.replace(tmp, path)


# ------------------------------------------------------------------ report
def _table(runs, task):
    """`{method: {dataset: [aurocs over seeds]}}` and the order of methods and sets."""
    table, methods, sets = {}, [], []
    for r in runs:
        if r["task"] != task:
            continue
        if r["method"] not in table:
            methods.append((r["kind"] != "peer", r["method"]))
        if r["dataset"] not in sets:
            sets.append(r["dataset"])
        table.setdefault(r["method"], {}).setdefault(r["dataset"], []).append(r["auroc"])
    methods = [m for _, m in sorted(methods, key=lambda t: t[0])]
    return table, methods, sets


def _mean_over_sets(cells):
    return float(np.mean([np.mean(v) for v in cells.values()]))


def render(runs, payload):
    meta = payload["meta"]
    lines = [
        "# Detection quality suite",
        "",
        "Commands: "
        + "; ".join(
            f"`{i['command']}`"
            for i in meta.get("invocations", [])
            if "--merge" not in i["command"]
        )
        + "  ",
        f"Machine: {meta['machine']}; versions: "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v)
        + f"; sum of method wall times {meta['total_method_seconds']:.0f} s.",
        "",
        "AUROC, mean over seeds (spread max - min over seeds in brackets where more than one "
        "seed ran). Peers and keras-deepad run on the same splits on the same machine; a run "
        "is cached per (set, method, seed), so the table can gather several invocations of "
        "the suite (listed in the JSON's `invocations`).",
    ]
    targets = []
    for task, title in (
        ("tabular", "Tabular (ADBench protocol)"),
        ("fashion_mnist", "One-class Fashion-MNIST"),
    ):
        table, methods, sets = _table(runs, task)
        if not table:
            continue
        sets = sorted(sets, key=lambda s: (TABULAR_SETS.index(s) if s in TABULAR_SETS else 99, s))
        lines += ["", f"## {title}", "", "| method | " + " | ".join(sets) + " | **mean** |"]
        lines.append("|---" * (len(sets) + 2) + "|")
        for method in methods:
            cells = table[method]
            row = []
            for s in sets:
                values = cells.get(s)
                if not values:
                    row.append("–")
                elif len(values) > 1:
                    row.append(f"{np.mean(values):.3f} ({max(values) - min(values):.2f})")
                else:
                    row.append(f"{values[0]:.3f}")
            complete = all(s in cells for s in sets)
            mean = f"**{_mean_over_sets(cells):.3f}**" if complete else "–"
            lines.append(f"| {method} | " + " | ".join(row) + f" | {mean} |")
        targets += check_targets(task, table, sets)
    if targets:
        lines += ["", "## Targets", ""] + [f"- {t}" for t in targets]
    return "\n".join(lines) + "\n"


def check_targets(task, table, sets):
    def complete(method):
        return method in table and all(s in table[method] for s in sets)

    def mean(method):
        return _mean_over_sets(table[method])

    out = []
    ours = [m for m in table if m in TABULAR_DETECTORS or m in IMAGE_DETECTORS]
    if task == "tabular" and complete("IsolationForest"):
        iforest = mean("IsolationForest")
        singles = [m for m in ours if m != "DetectorEnsemble" and complete(m)]
        for m in singles:
            ok = mean(m) >= iforest - 0.01
            low = [s for s in sets if np.mean(table[m][s]) < 0.5]
            spread_bad = [
                s
                for s in sets
                if len(table[m][s]) > 1
                and (max(table[m][s]) - min(table[m][s]))
                > (max(table["IsolationForest"][s]) - min(table["IsolationForest"][s])) + 0.10
            ]
            out.append(
                f"{m}: mean {mean(m):.3f} vs IsolationForest {iforest:.3f} - 0.01: "
                f"{'met' if ok else 'NOT met'}; sets below 0.5: {low or 'none'}; "
                f"sets whose seed spread exceeds IsolationForest's + 0.10: {spread_bad or 'none'}"
            )
        if singles:
            best = max(singles, key=mean)
            pyod_ae = mean("PyOD AutoEncoder") if complete("PyOD AutoEncoder") else None
            ok = mean(best) >= iforest + 0.02 and (pyod_ae is None or mean(best) >= pyod_ae)
            out.append(
                f"best single default {best} {mean(best):.3f} >= IsolationForest + 0.02 "
                f"({iforest + 0.02:.3f}) and >= PyOD AutoEncoder "
                f"({'n/a' if pyod_ae is None else f'{pyod_ae:.3f}'}): "
                f"{'met' if ok else 'NOT met'}"
            )
        if complete("DetectorEnsemble"):
            ok = mean("DetectorEnsemble") >= iforest + 0.04
            out.append(
                f"ensemble {mean('DetectorEnsemble'):.3f} >= IsolationForest + 0.04 "
                f"({iforest + 0.04:.3f}): {'met' if ok else 'NOT met'}"
            )
    if task == "fashion_mnist":
        done = [m for m in ours if complete(m)]
        if done and len(sets) == 10:
            best = max(done, key=mean)
            out.append(
                f"Fashion-MNIST best detector {best} {mean(best):.3f} >= 0.94: "
                f"{'met' if mean(best) >= 0.94 else 'NOT met'}"
            )
            svdd = [m for m in done if "svdd" in m]
            for m in svdd:
                out.append(
                    f"Fashion-MNIST {m} {mean(m):.3f} >= 0.92: "
                    f"{'met' if mean(m) >= 0.92 else 'NOT met'}"
                )
        elif done:
            out.append("Fashion-MNIST targets need all 10 classes (quick mode runs two).")
    return out


def merge(args):
    """Adds the runs (and invocations) of other result files to this one and renders it."""
    json_path = RESULTS / args.name / "suite.json" if args.name else RESULTS / "suite.json"
    runs = {}
    invocations = []
    # Each file once (merging the results file into itself is the way to re-render it), and
    # each invocation once: files merged before share their invocations.
    for path in dict.fromkeys(p.resolve() for p in [json_path, *map(Path, args.merge)]):
        if path.exists():
            for invocation in _invocations(path):
                if invocation not in invocations:
                    invocations.append(invocation)
            runs.update({_key(r): r for r in json.loads(path.read_text())["runs"]})
    args.seeds = sorted({r["seed"] for r in runs.values()})
    _write(json_path, args, list(runs.values()), 0.0, invocations=invocations)
    md_path = json_path.with_suffix(".md")
    md_path.write_text(render(list(runs.values()), json.loads(json_path.read_text())))
    print(md_path.read_text())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seed 1, 3 sets, 2 image classes")
    parser.add_argument("--only", choices=("tabular", "fashion_mnist"))
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--image-seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--datasets", nargs="+", choices=TABULAR_SETS)
    parser.add_argument("--classes", type=int, nargs="+")
    parser.add_argument("--detectors", nargs="*", help=f"default: {' '.join(TABULAR_DETECTORS)}")
    parser.add_argument(
        "--image-detectors", nargs="*", help=f"default: {' '.join(IMAGE_DETECTORS)}"
    )
    parser.add_argument("--peers", nargs="*", choices=PEERS)
    parser.add_argument("--image-peers", nargs="*", choices=PEERS)
    parser.add_argument("--rerun", nargs="+", help="methods to measure again even if cached")
    parser.add_argument("--fresh", action="store_true", help="ignore the cached runs")
    parser.add_argument("--name", help="write to benchmarks/results/NAME/ instead")
    parser.add_argument(
        "--merge", nargs="+", metavar="JSON", help="add the runs of other result files and render"
    )
    args = parser.parse_args(argv)
    if args.merge:
        merge(args)
        return
    if args.seeds is None:
        args.seeds = [1] if args.quick else [1, 2, 3]
    if args.quick and not args.name:
        args.name = "quick"
    run_suite(args)


if __name__ == "__main__":
    main()
