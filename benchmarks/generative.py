"""AUROC of the generative detectors (AAE, WAE-MMD, WAE-GAN, VAE) for every score method,
on breast cancer (benign normal) and the scikit-learn digits one-class protocol.

Usage:
    python benchmarks/generative.py [--epochs 30] [--seed 0] [--output FILE.md]

Each detector is the registered preset (`keras-deepad models`), trained once per data set
with Adam (learning rate 1e-3, batch 32) and scored with every one of its score methods.
Digits: each digit 0-9 in turn is the normal class (`load_builtin("digits", normal_class=k)`),
training on that digit's training images only and testing on the held-out split with every
other digit anomalous; the table gives the mean over the ten digits. The "best" column picks
the best method on the test data, so it is optimistic; the default method is shown as well.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)
from sklearn.metrics import roc_auc_score  # noqa: E402

from keras_deepad.data import load_builtin  # noqa: E402
from keras_deepad.registry import get_detector  # noqa: E402

MODELS = ("aae", "wae-mmd", "wae-gan", "vae")
METHODS = (
    "reconstruction",
    "reconstruction_sampled",
    "reconstruction_probability",
    "elbo",
    "latent",
    "discriminator",
    "combined",
    "jacodeco",
)


def method_aurocs(name, data, epochs, seed):
    """`{score method: AUROC}` of one detector trained on `data.x_train`."""
    keras.utils.set_random_seed(seed)
    model = get_detector(name, seed=seed)
    # Several steps per compiled call: the same training, less Python overhead per step.
    model.compile(optimizer=keras.optimizers.Adam(1e-3), steps_per_execution=8)
    model.fit(data.x_train, epochs=epochs, batch_size=32, verbose=0)
    return model.score_method, {
        method: roc_auc_score(data.y_test, model.score(data.x_test, method=method))
        for method in model.score_methods
    }


def _table(title, results):
    lines = [
        f"### {title}",
        "",
        "| model | " + " | ".join(METHODS) + " | best | default |",
        "|---" * (len(METHODS) + 3) + "|",
    ]
    for name, (default, scores) in results.items():
        best = max(scores, key=scores.get)
        cells = [
            ("**%.3f**" if m == best else "%.3f") % scores[m] if m in scores else "-"
            for m in METHODS
        ]
        lines.append(
            f"| {name} | {' | '.join(cells)} | {best} {scores[best]:.3f} | "
            f"{default} {scores[default]:.3f} |"
        )
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--output", default="benchmarks/results/generative.md")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    cancer, digits, per_digit = {}, {}, {}
    for name in args.models:
        t0 = time.perf_counter()
        cancer[name] = method_aurocs(
            name, load_builtin("breast_cancer", seed=args.seed), args.epochs, args.seed
        )
        runs = [
            method_aurocs(
                name, load_builtin("digits", seed=args.seed, normal_class=k), args.epochs, args.seed
            )
            for k in range(10)
        ]
        default = runs[0][0]
        methods = runs[0][1]
        digits[name] = (default, {m: float(np.mean([r[1][m] for r in runs])) for m in methods})
        per_digit[name] = [r[1][default] for r in runs]
        print(
            f"{name:8s} breast cancer best {max(cancer[name][1].values()):.3f}  digits mean best "
            f"{max(digits[name][1].values()):.3f}  ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )

    command = " ".join(["python", "benchmarks/generative.py", *(argv or sys.argv[1:])])
    lines = [
        "# Generative detectors: AUROC per score method",
        "",
        f"Command: `{command}`",
        f"Machine: {os.cpu_count()} CPU cores ({cpu_model()}), no GPU; "
        f"total {time.perf_counter() - start:.0f} s.",
        "",
        "Presets from `keras-deepad models` (AAE and WAE: 64-32 encoder, 8-D latent, N(0, I) "
        "prior; VAE: 64-32, 8-D latent, Gaussian decoder with learned per-feature variance), "
        f"{args.epochs} epochs, batch 32, Adam 1e-3 (the AAE's and WAE-GAN's other optimizers "
        f"at their defaults), seed {args.seed}, one run each. Breast cancer: benign normal "
        "(scikit-learn target 1), malignant anomalous, trained on benign only. Digits: "
        "scikit-learn 8x8 digits, one-class protocol, mean over the ten normal digits. "
        "'-': the method does not exist for that model. **Bold**: the best method, picked on "
        "the test data (optimistic).",
        "",
        *_table("Breast cancer", cancer),
        "",
        *_table("Digits, one-class, mean over digits 0-9", digits),
        "",
        "### Digits per normal class (default score method)",
        "",
        "| model | " + " | ".join(str(k) for k in range(10)) + " | mean |",
        "|---" * 12 + "|",
    ]
    for name, values in per_digit.items():
        lines.append(
            f"| {name} | {' | '.join(f'{v:.3f}' for v in values)} | {np.mean(values):.3f} |"
        )
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
