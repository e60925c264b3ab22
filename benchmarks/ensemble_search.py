"""Every subset of the tabular defaults as `DetectorEnsemble` members, from one training each.

Usage:
    python benchmarks/ensemble_search.py [--members AE VAE AAE WAE DeepSVDD OCNN]
        [--peers IsolationForest 'PyOD HBOS' ...] [--max-peers 2]
        [--standardization robust standard] [--bags 0 1 2] [--top N]
        [--cache DIR] [--output benchmarks/results/ensemble_search.md]

Each family is trained once per tabular set and seed exactly as the suite trains a default
(`compile()`, `fit(epochs=50, batch_size=64)`: bag 0 of `benchmarks/seed_bags.py`, whose
cache it shares; `--bags` adds its other training seeds, each bag combined with the same bag
of the other members); its training and test scores are cached in `--cache` (`.npz` per set, seed
and family). `--peers` adds the suite's classical peers (fitted as the suite fits them) as
candidate members, at most `--max-peers` of them in one subset. Every subset is then combined
offline as the ensemble does (each member standardised on its training scores with
`DetectorEnsemble`'s own rule: median/IQR for `robust`, mean/std for `standard`; then the mean
or the max) and ranked by the mean AUROC over all sets and seeds. The members of a real
`DetectorEnsemble` draw other seeds (`seed + i`), so a subset's figure here approximates, within
the suite's seed noise, what `benchmarks/tune.py 'DetectorEnsemble:{"members": [...]}'` measures.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shlex
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
from seed_bags import cache_path, run  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from suite import PEERS, TABULAR_SETS, fit_peer, load_tabular, tabular_split  # noqa: E402

from keras_deepad.models.ensemble import _location_scale  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FAMILIES = ("AE", "VAE", "AAE", "WAE", "DeepSVDD", "OCNN")
SEEDS = (1, 2, 3)


def standardise(train_scores, test_scores, standardization="robust"):
    """The ensemble's own standardisation of one member."""
    location, scale, _ = _location_scale(train_scores, standardization)
    return (test_scores - location) / scale


def run_peers(cache, peers):
    """Training and test scores of each classical peer, cached beside the families'."""
    for dataset in TABULAR_SETS:
        x, y = load_tabular(dataset)
        for seed in SEEDS:
            split = tabular_split(x, y, seed)
            for name in peers:
                path = cache_path(cache, dataset, seed, f"peer:{name}", 0)
                if not path.exists():
                    score = fit_peer(name, split[0], seed)
                    np.savez(path, train=score(split[0]), test=score(split[1]), y=split[2])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", nargs="+", default=list(FAMILIES))
    parser.add_argument("--peers", nargs="*", default=[], choices=PEERS)
    parser.add_argument("--max-peers", type=int, default=2)
    parser.add_argument(
        "--standardization", nargs="+", default=["robust"], choices=("robust", "standard")
    )
    parser.add_argument("--bags", type=int, nargs="+", default=[0], help="training seed bags")
    parser.add_argument("--top", type=int, help="write only the N best rows")
    parser.add_argument("--cache", default=str(HERE / ".cache" / "seed_bags"))
    parser.add_argument("--output", default=str(RESULTS / "ensemble_search.md"))
    args = parser.parse_args(argv)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)

    # Each family trained as the suite trains it: benchmarks/seed_bags.py's bags (shared cache).
    run(cache, args.members, bags=args.bags)
    run_peers(cache, args.peers)
    candidates = list(args.members) + [f"peer:{name}" for name in args.peers]
    peer_names = {f"peer:{name}" for name in args.peers}

    # Each member's standardised test scores, once per standardisation, and the labels.
    z_scores, labels = {}, {}
    for name in candidates:
        for dataset in TABULAR_SETS:
            for seed, bag in itertools.product(SEEDS, args.bags):
                # A classical peer has no training seed to vary: its one fit serves every bag.
                cached = cache_path(cache, dataset, seed, name, 0 if name in peer_names else bag)
                with np.load(cached) as data:
                    train, test = np.nan_to_num(data["train"]), np.nan_to_num(data["test"])
                    labels[dataset, seed, bag] = data["y"]
                for standardization in args.standardization:
                    key = (standardization, name, dataset, seed, bag)
                    z_scores[key] = standardise(train, test, standardization)

    rows = []
    for k in range(1, len(candidates) + 1):
        for subset in itertools.combinations(candidates, k):
            if sum(name in peer_names for name in subset) > args.max_peers:
                continue
            for standardization in args.standardization:
                for combine in ("mean", "max") if k > 1 else ("mean",):
                    per_set = {}
                    for dataset in TABULAR_SETS:
                        aurocs = []
                        for seed, bag in itertools.product(SEEDS, args.bags):
                            z = [
                                z_scores[standardization, name, dataset, seed, bag]
                                for name in subset
                            ]
                            combined = np.mean(z, axis=0) if combine == "mean" else np.max(z, 0)
                            aurocs.append(roc_auc_score(labels[dataset, seed, bag], combined))
                        per_set[dataset] = np.mean(aurocs)
                    mean = np.mean(list(per_set.values()))
                    rows.append((mean, "+".join(subset), standardization, combine, per_set))
    rows.sort(key=lambda row: -row[0])
    command = "python benchmarks/ensemble_search.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    shown = rows[: args.top] if args.top else rows
    peers_note = (
        f" Classical peers among the candidates (`peer:`), at most {args.max_peers} per subset."
        if args.peers
        else ""
    )
    bags_note = f" and training seed bags {args.bags}" if args.bags != [0] else ""
    lines = [
        "# Ensemble members: every subset of the tabular defaults",
        "",
        f"`{command}`: each "
        "family trained once per set, seed and bag as the suite trains it, combined offline "
        "(standardisation on the training scores, median/IQR = robust or mean/std = standard, "
        f"then mean or max). AUROC, mean over seeds 1-3{bags_note}.{peers_note}"
        + (f" The best {len(shown)} of {len(rows)} rows." if len(shown) < len(rows) else ""),
        "",
        "| members | standardisation | combine | " + " | ".join(TABULAR_SETS) + " | **mean** |",
        "|---" * (len(TABULAR_SETS) + 4) + "|",
    ]
    for mean, subset, standardization, combine, per_set in shown:
        cells = " | ".join(f"{per_set[d]:.3f}" for d in TABULAR_SETS)
        lines.append(f"| {subset} | {standardization} | {combine} | {cells} | **{mean:.3f}** |")
    Path(args.output).write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:20]))


if __name__ == "__main__":
    main()
