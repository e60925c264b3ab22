"""How much a default's suite figure moves with the training seed alone.

Usage:
    python benchmarks/seed_bags.py [--candidates AE VAE OCNN ...] [--bags 0 1 2]
        [--cache DIR] [--output benchmarks/results/seed_bags.md]

The tabular suite's splits (seeds 1-3) are kept; each candidate (`Class` or
`Class:{json}`, as in `benchmarks/tune.py`) is trained as the suite trains a
default (`compile()`, `fit(epochs=50, batch_size=64)`) once per "bag" `k`
with the training seed `split seed + 10 k` (bag 0 is the suite's own run).
Each bag gives a suite mean as the suite reports it; the spread of those
means over bags is how far a mean over seeds 1-3 moves when only the
networks' initialisation and the shuffling change. `members` rows combine
cached runs offline as `DetectorEnsemble` does (median/IQR standardisation
on the training scores, then the mean). Scores are cached per set, split,
candidate and bag (`.npz`), so combinations cost nothing.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from suite import TABULAR_SETS, load_tabular, tabular_split  # noqa: E402
from tune import fit_candidate, parse_candidate  # noqa: E402

from keras_deepad.models.ensemble import _location_scale  # noqa: E402

HERE = Path(__file__).resolve().parent
SEEDS = (1, 2, 3)


def cache_path(cache, dataset, seed, candidate, bag):
    name = candidate.replace("/", "_").replace(" ", "")
    return cache / f"{dataset}-{seed}-{name}@{bag}.npz"


def run(cache, candidates, bags):
    for dataset in TABULAR_SETS:
        x, y = load_tabular(dataset)
        for seed in SEEDS:
            split = tabular_split(x, y, seed)
            for candidate in candidates:
                for bag in bags:
                    path = cache_path(cache, dataset, seed, candidate, bag)
                    if path.exists():
                        continue
                    start = time.perf_counter()
                    name, params = parse_candidate(candidate)
                    model = fit_candidate(name, params, split[0], seed + 10 * bag, 50, 64)
                    train = model.score(split[0]).astype(np.float64)
                    test = model.score(split[1]).astype(np.float64)
                    np.savez(path, train=train, test=test, y=split[2])
                    auroc = roc_auc_score(split[2], np.nan_to_num(test))
                    print(
                        f"{dataset:13s} seed {seed} {candidate:40s} bag {bag} {auroc:.3f} "
                        f"({time.perf_counter() - start:.1f} s)",
                        flush=True,
                    )


def suite_mean(cache, members, bag_of):
    """Per-set AUROC (mean over seeds) of the offline mean of `members` in their bags."""
    per_set = {}
    for dataset in TABULAR_SETS:
        aurocs = []
        for seed in SEEDS:
            z, y = [], None
            for member, bag in zip(members, bag_of, strict=True):
                with np.load(cache_path(cache, dataset, seed, member, bag)) as data:
                    train, test, y = (np.nan_to_num(data[k]) for k in ("train", "test", "y"))
                location, scale, _ = _location_scale(train, "robust")
                z.append((test - location) / scale)
            aurocs.append(roc_auc_score(y, np.mean(z, axis=0)))
        per_set[dataset] = float(np.mean(aurocs))
    return per_set


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", nargs="+", default=["AE", "VAE", "DeepSVDD", "OCNN"])
    parser.add_argument("--bags", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--members", nargs="*", default=[], help="ensembles to combine, e.g. AE+OCNN"
    )
    parser.add_argument("--cache", default=str(HERE / ".cache" / "seed_bags"))
    parser.add_argument("--output", default=str(HERE / "results" / "seed_bags.md"))
    args = parser.parse_args(argv)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    run(cache, args.candidates, args.bags)

    lines = [
        "# Suite means under other training seeds",
        "",
        f"`python benchmarks/seed_bags.py --candidates {' '.join(args.candidates)}"
        + (f" --members {' '.join(args.members)}" if args.members else "")
        + "`: the suite's splits (seeds 1-3), training seed `split seed + 10 k` for bag k "
        "(bag 0 = the suite's own run). AUROC, mean over the three splits; the last "
        "columns: the suite mean of each bag, and their range.",
        "",
        "| candidate | "
        + " | ".join(TABULAR_SETS)
        + " | "
        + " | ".join(f"bag {b}" for b in args.bags)
        + " | **mean of bags** | range |",
        "|---" * (len(TABULAR_SETS) + len(args.bags) + 3) + "|",
    ]
    rows = [(c, [c]) for c in args.candidates] + [(m, m.split("+")) for m in args.members]
    for label, members in rows:
        per_bag = [suite_mean(cache, members, [b] * len(members)) for b in args.bags]
        means = [float(np.mean(list(p.values()))) for p in per_bag]
        cells = [f"{np.mean([p[d] for p in per_bag]):.3f}" for d in TABULAR_SETS]
        lines.append(
            f"| `{label}` | "
            + " | ".join(cells)
            + " | "
            + " | ".join(f"{m:.3f}" for m in means)
            + f" | **{np.mean(means):.3f}** | {max(means) - min(means):.3f} |"
        )
    Path(args.output).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
