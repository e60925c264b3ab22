"""Every subset of the tabular defaults as `DetectorEnsemble` members, from one training each.

Usage:
    python benchmarks/ensemble_search.py [--members AE VAE AAE WAE DeepSVDD OCNN]
        [--cache DIR] [--output benchmarks/results/ensemble_search.md]

Each family is trained once per tabular set and seed exactly as the suite trains a default
(`compile()`, `fit(epochs=50, batch_size=64)`: bag 0 of `benchmarks/seed_bags.py`, whose
cache it shares); its training and test scores are cached in `--cache` (`.npz` per set, seed
and family). Every subset is then combined offline as the
ensemble does (each member standardised by the median and IQR of its training scores with
`DetectorEnsemble`'s own rule, then the mean or the max) and ranked by the mean AUROC over all
sets and seeds. The members of a real
`DetectorEnsemble` draw other seeds (`seed + i`), so a subset's figure here approximates, within
the suite's seed noise, what `benchmarks/tune.py 'DetectorEnsemble:{"members": [...]}'` measures.
"""

from __future__ import annotations

import argparse
import itertools
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
from seed_bags import cache_path, run  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from suite import TABULAR_SETS  # noqa: E402

from keras_deepad.models.ensemble import _location_scale  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FAMILIES = ("AE", "VAE", "AAE", "WAE", "DeepSVDD", "OCNN")
SEEDS = (1, 2, 3)


def standardise(train_scores, test_scores):
    """The ensemble's own robust standardisation of one member."""
    location, scale, _ = _location_scale(train_scores, "robust")
    return (test_scores - location) / scale


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", nargs="+", default=list(FAMILIES))
    parser.add_argument("--cache", default=str(HERE / ".cache" / "seed_bags"))
    parser.add_argument("--output", default=str(RESULTS / "ensemble_search.md"))
    args = parser.parse_args(argv)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)

    # Each family trained as the suite trains it: bag 0 of benchmarks/seed_bags.py (shared cache).
    run(cache, args.members, bags=[0])

    def load(dataset, seed, name):
        with np.load(cache_path(cache, dataset, seed, name, 0)) as data:
            return np.nan_to_num(data["train"]), np.nan_to_num(data["test"]), data["y"]

    rows = []
    for k in range(1, len(args.members) + 1):
        for subset in itertools.combinations(args.members, k):
            for combine in ("mean", "max") if k > 1 else ("mean",):
                per_set = {}
                for dataset in TABULAR_SETS:
                    aurocs = []
                    for seed in SEEDS:
                        z = []
                        for name in subset:
                            train_scores, test_scores, y = load(dataset, seed, name)
                            z.append(standardise(train_scores, test_scores))
                        combined = np.mean(z, axis=0) if combine == "mean" else np.max(z, axis=0)
                        aurocs.append(roc_auc_score(y, combined))
                    per_set[dataset] = np.mean(aurocs)
                rows.append((np.mean(list(per_set.values())), "+".join(subset), combine, per_set))
    rows.sort(key=lambda row: -row[0])
    lines = [
        "# Ensemble members: every subset of the tabular defaults",
        "",
        "`python benchmarks/ensemble_search.py`: each family trained once per set and seed "
        "as the suite trains it, combined offline (median/IQR standardisation of the training "
        "scores, then mean or max). AUROC, mean over seeds 1-3.",
        "",
        "| members | combine | " + " | ".join(TABULAR_SETS) + " | **mean** |",
        "|---" * (len(TABULAR_SETS) + 3) + "|",
    ]
    for mean, subset, combine, per_set in rows:
        cells = " | ".join(f"{per_set[d]:.3f}" for d in TABULAR_SETS)
        lines.append(f"| {subset} | {combine} | {cells} | **{mean:.3f}** |")
    Path(args.output).write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:20]))


if __name__ == "__main__":
    main()
