"""Every subset of image detectors and peers as ensemble members, on one-class Fashion-MNIST.

Usage:
    python benchmarks/image_ensemble_search.py [--members ae ae-conv deep-svdd-mnist knn5 ...]
        [--classes 0 1 ...] [--combine mean max] [--cache DIR]
        [--output benchmarks/results/image_ensemble_search.md]

The suite's one-class Fashion-MNIST protocol (`benchmarks/suite.py`: class k normal, 2,000
training images of class k, the whole test set, seed 1). Each candidate is trained once per
class (presets: `train_detector(name, x, epochs=20, seed=1)`, as the suite trains them;
`knn5`: the mean distance to the 5 nearest training images, leaving a training image itself
out of its own neighbours; `iforest`: scikit-learn's IsolationForest on the pixels;
`name@s`: the preset trained with seed `s` instead, on the same split) and its
training and test scores are cached in `--cache` (`.npz` per class and candidate). Every
subset is then combined offline as `DetectorEnsemble` does (median/IQR standardisation on the
training scores, then the mean, or with `--combine` the max too) and ranked by the mean AUROC
over the classes. It shows how far
`ensemble-image` is from the best combination of what the library and its peers offer.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
from ensemble_search import standardise  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from suite import IMAGE_EPOCHS, load_fashion_split  # noqa: E402

HERE = Path(__file__).resolve().parent
CANDIDATES = ("ae", "ae-conv", "deep-svdd-mnist", "vae", "ocnn", "knn5", "iforest")
SEED = 1


def scores_of(candidate, x_train, x_test):
    """`(training scores, test scores)` of one candidate trained on `x_train`."""
    name, _, seed = candidate.partition("@")
    seed = int(seed) if seed else SEED
    flat_train, flat_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    if name == "knn5":
        from sklearn.neighbors import NearestNeighbors

        neighbours = NearestNeighbors(n_neighbors=6).fit(flat_train)
        train = neighbours.kneighbors(flat_train)[0][:, 1:].mean(axis=1)
        return train, neighbours.kneighbors(flat_test, n_neighbors=5)[0].mean(axis=1)
    if name == "iforest":
        from sklearn.ensemble import IsolationForest

        forest = IsolationForest(random_state=seed).fit(flat_train)
        return -forest.score_samples(flat_train), -forest.score_samples(flat_test)
    from keras_deepad.registry import train_detector

    model, _ = train_detector(name, x_train, epochs=IMAGE_EPOCHS, seed=seed, verbose=0)
    return model.score(x_train), model.score(x_test)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", nargs="+", default=list(CANDIDATES))
    parser.add_argument("--classes", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--combine", nargs="+", default=["mean"], choices=("mean", "max"))
    parser.add_argument("--cache", default=str(HERE / ".cache" / "image_members"))
    parser.add_argument("--output", default=str(HERE / "results" / "image_ensemble_search.md"))
    args = parser.parse_args(argv)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)

    for k in args.classes:
        split = None
        for name in args.members:
            path = cache / f"{k}-{name}.npz"
            if path.exists():
                continue
            split = split or load_fashion_split(k, SEED)
            start = time.perf_counter()
            train, test = scores_of(name, split[0], split[1])
            np.savez(path, train=train, test=test, y=split[2])
            print(
                f"class {k} {name:16s} {roc_auc_score(split[2], test):.3f} "
                f"({time.perf_counter() - start:.1f} s)",
                flush=True,
            )

    def standardised(k, name):
        with np.load(cache / f"{k}-{name}.npz") as data:
            train, test, y = (np.nan_to_num(data[key]) for key in ("train", "test", "y"))
        return standardise(train, test), y

    rows = []
    for size in range(1, len(args.members) + 1):
        for subset in itertools.combinations(args.members, size):
            for combine in args.combine if size > 1 else args.combine[:1]:
                reduce = np.mean if combine == "mean" else np.max
                per_class = []
                for k in args.classes:
                    parts = [standardised(k, name) for name in subset]
                    combined = reduce([z for z, _ in parts], axis=0)
                    per_class.append(roc_auc_score(parts[0][1], combined))
                name = "+".join(subset) + (f" ({combine})" if len(args.combine) > 1 else "")
                rows.append((float(np.mean(per_class)), name, per_class))
    rows.sort(key=lambda row: -row[0])
    lines = [
        "# Image ensemble members: every subset, one-class Fashion-MNIST",
        "",
        f"`python benchmarks/image_ensemble_search.py --members {' '.join(args.members)}"
        + (f" --combine {' '.join(args.combine)}" if args.combine != ["mean"] else "")
        + "`: "
        "each candidate trained once per normal class as the suite trains it (seed 1; "
        "`name@s`: seed s), combined "
        "offline (median/IQR standardisation of the training scores, then the mean"
        + (" or, where the row says so, the max" if "max" in args.combine else "")
        + "). AUROC per "
        "normal class and their mean.",
        "",
        "| members | " + " | ".join(f"class {k}" for k in args.classes) + " | **mean** |",
        "|---" * (len(args.classes) + 2) + "|",
    ]
    for mean, subset, per_class in rows:
        cells = " | ".join(f"{a:.3f}" for a in per_class)
        lines.append(f"| {subset} | {cells} | **{mean:.3f}** |")
    Path(args.output).write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:20]))


if __name__ == "__main__":
    main()
