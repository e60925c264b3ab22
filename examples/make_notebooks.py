"""Builds the method notebooks in this folder from the cell lists below.

Run `python examples/make_notebooks.py` after editing a cell list: it rewrites
the `.ipynb` files (without outputs, with fixed cell ids, so the files only
change where the cells do). `--check` writes nothing and exits with status 1
when a committed notebook differs from what this script builds
(`tests/test_notebooks.py` checks the same).

Every notebook reads `KERAS_DEEPAD_QUICK=1` in its first code cell and then
runs on a few hundred samples for a few epochs (the test suite's mode).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def md(text):
    return ("markdown", text)


def code(text):
    return ("code", text)


def quick_cell(sizes):
    """The first code cell: the QUICK switch and the sizes that depend on it."""
    return code(
        'import os\n\nQUICK = os.environ.get("KERAS_DEEPAD_QUICK", "0") == "1"\n'
        'os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported\n\n'
        + textwrap.dedent(sizes).strip()
    )


# --------------------------------------------------------------------- 01
GENERATIVE = [
    md(
        """
        # Generative autoencoders on Fashion-MNIST: AE, VAE, AAE, WAE

        One-class protocol: the detectors train on images of one class (here T-shirts/tops) and
        every other class is anomalous at test time. All four reconstruct their input; they differ
        in what they ask of the latent code, and so in the scores they offer (`score_methods`):

        - **AE** minimises the reconstruction error; scores `mse`, `mae`, `max` of the error.
        - **VAE** maximises the ELBO, `E_q[log p(x|z)] - KL(q(z|x) || N(0, I))`; scores
          `reconstruction_probability` (the default, `-(1/L) sum_l log p(x|z_l)`, `z_l ~ q(z|x)`),
          `elbo` (the negative ELBO), `latent` (`-log N(mu; 0, I)`), `reconstruction`, `jacodeco`.
        - **AAE** adds a latent discriminator that pushes the codes `E(x)` towards the prior;
          scores `reconstruction`, `latent` (`-log p(E(x))`), `discriminator` (`-log D(E(x))`),
          `combined`, `jacodeco` (reconstruction + prior + the decoder Jacobian's log-volume).
        - **WAE** (MMD) adds `lambda * MMD(codes, prior samples)`; the AAE's scores but the
          discriminator's.

        Every score is *higher = more anomalous*. The last section ranks **groups** of images with
        `keras_deepad.scores.group_anomalies` (Chalapathy, Toth & Chawla, ECML-PKDD 2018).

        Data: Debian's `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist`) or the folder
        in `KERAS_DEEPAD_FASHION_MNIST`; this notebook never downloads. Runtime on 2 CPU cores:
        about 4 minutes (all 6,000 training images, the whole test set, 20 epochs);
        `KERAS_DEEPAD_QUICK=1` runs 500 images for 2 epochs in about half a minute.
        """
    ),
    quick_cell(
        """
        NORMAL_CLASS = 0  # T-shirt/top
        N_TRAIN = 500 if QUICK else 6000  # images of the normal class (6,000: all of them)
        N_TEST = 500 if QUICK else 10000  # test images, about 10 % of them normal
        N_JACODECO = 50 if QUICK else 1000  # JacoDeco takes a decoder Jacobian per image: slow
        EPOCHS = 2 if QUICK else 20
        BATCH_SIZE = 64
        """
    ),
    code(
        """
        %matplotlib inline
        import numpy as np
        import pandas as pd
        import tensorflow as tf
        from IPython.display import display
        from matplotlib.figure import Figure

        from keras_deepad import plot
        from keras_deepad.data import load_builtin
        from keras_deepad.data.images import find_fashion_mnist_files, load_fashion_mnist
        from keras_deepad.evaluation import evaluate_scores
        from keras_deepad.models import AAE, AE, VAE, WAE
        from keras_deepad.scores import group_anomalies

        tf.get_logger().setLevel("ERROR")  # one score function per method: retracing notices
        CLASSES = [
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ]
        """
    ),
    md(
        """
        ## Data

        `load_builtin("fashion_mnist", normal_class=k)` gives the training images of class k and the
        whole official test set labelled 1 (anomaly) for every other class; pixels are in [0, 1],
        shape `(N, 28, 28, 1)`.
        """
    ),
    code(
        """
        local = [
            os.environ.get("KERAS_DEEPAD_FASHION_MNIST"),
            "/usr/share/datasets/fashion-mnist",
            "~/.keras/datasets/fashion-mnist",
        ]
        if not any(folder and find_fashion_mnist_files(folder) for folder in local):
            raise FileNotFoundError(
                "Fashion-MNIST is not on this machine: `apt-get install dataset-fashion-mnist`, "
                "or set KERAS_DEEPAD_FASHION_MNIST to a folder holding the four idx files."
            )
        data = load_builtin("fashion_mnist", normal_class=NORMAL_CLASS)
        rng = np.random.default_rng(0)
        x_train = data.x_train[:N_TRAIN]
        pick = rng.permutation(len(data.x_test))[:N_TEST]
        x_test, y_test = data.x_test[pick], data.y_test[pick]
        print(
            f"normal class: {CLASSES[NORMAL_CLASS]}; train {x_train.shape}, "
            f"test {x_test.shape} ({y_test.mean():.0%} anomalous)"
        )
        """
    ),
    md(
        """
        ## Four detectors, side by side

        Class defaults (dense networks on the flattened image): AE 64-32-64, VAE with a 2-d code
        and a Gaussian decoder with a learned variance per pixel, AAE and WAE with 64 hidden units
        and a 32-d code under a standard normal prior. Each is calibrated to flag 5 % of its
        training images.
        """
    ),
    code(
        """
        models = {
            "AE": AE(seed=0),
            "VAE": VAE(seed=0),
            "AAE": AAE(seed=0),
            "WAE": WAE(penalty="mmd", seed=0),
        }
        histories = {}
        for name, model in models.items():
            histories[name] = model.fit(x_train, epochs=EPOCHS, batch_size=BATCH_SIZE, verbose=0)
            model.calibrate(x_train, fpr=0.05)
            print(f"{name}: default {model.score_method!r}, all {model.score_methods}")
        """
    ),
    md(
        """
        Every score method of every model on the same test images (JacoDeco on the first
        `N_JACODECO` of them: it computes a 784 x d decoder Jacobian per image). With quick-mode
        training the numbers are only a smoke test; the README's tables hold the measured ones.
        """
    ),
    code(
        """
        rows, scores = [], {}
        for name, model in models.items():
            for method in model.score_methods:
                n = N_JACODECO if method == "jacodeco" else len(x_test)
                scores[name, method] = model.score(x_test[:n], method=method)
                auroc = evaluate_scores(y_test[:n], scores[name, method])["auroc"]
                rows.append({"model": name, "score": method, "AUROC": auroc})
        table = pd.DataFrame(rows).pivot(index="score", columns="model", values="AUROC")
        table[list(models)].round(3)
        """
    ),
    md(
        """
        ## Score histograms

        Each model's default score on the test images, normal and anomalous classes as fractions of
        their class, with the calibrated threshold (dashed). Then the generative scores that are
        not reconstruction errors.
        """
    ),
    code(
        """
        fig = Figure(figsize=(12, 7.5), layout="constrained")
        for ax, model in zip(fig.subplots(2, 2).flat, models.values(), strict=True):
            plot.score_histogram(model, x_test, y_test, ax=ax)
        fig
        """
    ),
    code(
        """
        fig = Figure(figsize=(12, 7.5), layout="constrained")
        panels = [("VAE", "elbo"), ("VAE", "latent"), ("AAE", "discriminator"), ("WAE", "jacodeco")]
        for ax, (name, method) in zip(fig.subplots(2, 2).flat, panels, strict=True):
            s = scores[name, method]
            plot.score_histogram(s, y=y_test[: len(s)], ax=ax)
            ax.set_title(f"{name} {method}")
        fig
        """
    ),
    md(
        """
        ## Latent codes

        The VAE's 2-d posterior means as they are, the AAE's and WAE's 32-d codes on their two
        principal directions, over the (projected) prior's density. Codes of anomalies that fall in
        the prior's bulk get a low `latent` score, which is why that score is weak here.
        """
    ),
    code(
        """
        fig = Figure(figsize=(16, 4.8), layout="constrained")
        for ax, name in zip(fig.subplots(1, 3), ["VAE", "AAE", "WAE"], strict=True):
            plot.latent_scatter(models[name], x_test, y_test, ax=ax)
        fig
        """
    ),
    md(
        """
        ## Reconstructions

        Four normal images, then four anomalies (three of each in quick mode): original, reconstruction and absolute error; the
        column titles are the scores. The models reconstruct the anomalies as T-shirt-like shapes.
        """
    ),
    code(
        """
        k = 3 if QUICK else 4
        shown = np.concatenate([x_test[y_test == 0][:k], x_test[y_test == 1][:k]])
        for name in ["AE", "VAE"]:
            display(plot.image_reconstructions(models[name], shown, n=len(shown)))
        """
    ),
    md(
        """
        ## Group anomalies

        Point scores find single odd images. `group_anomalies` scores *groups*: the posteriors of a
        VAE (or AAE, WAE) are moment-matched into one Gaussian; M references are drawn from it and
        decoded, and every input is scored by its mean distance to the references; with `groups=`
        each group is scored by its members' mean. Here 19 groups of 25 unseen T-shirts (test
        images) and one planted group of 25 sneakers, scored with the VAE above. The method is
        unsupervised: on unlabelled data, train the VAE on all the inputs (`keras-deepad group
        --model vae --data inputs.csv` does both).
        """
    ),
    code(
        """
        _, (x_all, y_all) = load_fashion_mnist(allow_download=False)
        normal = x_all[y_all == NORMAL_CLASS][:475]
        planted = x_all[y_all == 7][:25]  # sneakers
        x_groups = (np.concatenate([normal, planted]).astype("float32") / 255.0)[..., None]
        groups = np.repeat(np.arange(20), 25)  # group 19 is the planted one

        result = group_anomalies(models["VAE"], x_groups, n_references=20, groups=groups)
        print("groups, most anomalous first:", result.group_ranking[:5])
        print("rank of the planted group:", list(result.group_ranking).index(19) + 1, "of 20")
        print(f"planted images among the 25 top-scored inputs: {np.mean(result.top(25) >= 475):.0%}")
        """
    ),
    code(
        """
        fig = Figure(figsize=(12, 2.2), layout="constrained")
        for ax, image in zip(fig.subplots(1, 10), result.references[:10], strict=True):
            ax.imshow(image[..., 0], cmap="gray")
            ax.set_axis_off()
        fig.suptitle("references decoded from the aggregated posterior")
        fig
        """
    ),
]


# --------------------------------------------------------------------- 02
DEEP_SVDD = [
    md(
        """
        # Deep SVDD: one-class and soft-boundary

        Deep SVDD (Ruff et al., ICML 2018) maps the normal data into a small hypersphere. A
        bias-free network `phi` (no biases, affine-free batch norm, leaky ReLU: otherwise it could
        map everything to one point) is first pretrained as an autoencoder's encoder; the centre
        `c` is then fixed to the mean of `phi(x)` over the training data. Training minimises

        - **one-class**: `mean ||phi(x) - c||^2 + (lambda/2) sum ||W||^2`; score `distance`,
          `||phi(x) - c||^2`;
        - **soft-boundary**: `R^2 + (1/nu) mean max(0, ||phi(x) - c||^2 - R^2) + weight decay`,
          with R set after every epoch (from `warm_up_epochs` on) to the `(1 - nu)` quantile of the
          training distances, so a fraction `nu` of the training data lies outside; score
          `boundary`, `||phi(x) - c||^2 - R^2` (positive: outside the sphere).

        Data: scikit-learn's 8x8 digits, zeros normal, the nine other digits anomalous. Runtime on
        2 CPU cores: about 1 minute (`KERAS_DEEPAD_QUICK=1`: about 15 seconds).
        """
    ),
    quick_cell(
        """
        EPOCHS = 5 if QUICK else 50
        PRETRAIN_EPOCHS = 2 if QUICK else 20
        NUS = (0.3,) if QUICK else (0.02, 0.05, 0.2, 0.3, 0.5)  # besides nu = 0.1
        BATCH_SIZE = 32
        """
    ),
    code(
        """
        %matplotlib inline
        import numpy as np
        import pandas as pd
        import tensorflow as tf
        from IPython.display import display
        from matplotlib.figure import Figure

        from keras_deepad import plot
        from keras_deepad.data import load_builtin
        from keras_deepad.evaluation import evaluate_scores
        from keras_deepad.models import DeepSVDD

        tf.get_logger().setLevel("ERROR")  # one model per nu: retracing notices

        data = load_builtin("digits", normal_class=0)
        x_train, x_test, y_test = data.x_train, data.x_test, data.y_test
        print(f"train {x_train.shape} (zeros), test {x_test.shape} ({y_test.mean():.0%} anomalous)")
        """
    ),
    md(
        """
        ## One-class Deep SVDD

        The score is the squared distance to `c`. `calibrate(x_train, fpr=0.05)` sets the
        threshold that flags 5 % of the training data.
        """
    ),
    code(
        """
        svdd = DeepSVDD(objective="one-class", pretrain_epochs=PRETRAIN_EPOCHS, seed=0)
        svdd.fit(x_train, epochs=EPOCHS, batch_size=BATCH_SIZE, verbose=0)
        svdd.calibrate(x_train, fpr=0.05)
        print("c =", np.round(svdd.center.numpy(), 2))
        print("AUROC", round(evaluate_scores(y_test, svdd.score(x_test))["auroc"], 3))
        plot.score_histogram(svdd, x_test, y_test)
        """
    ),
    md(
        """
        ## Soft-boundary Deep SVDD and the hypersphere

        With `nu = 0.1`, R is the 90 % quantile of the training distances. The figure places every
        test sample at its true distance `||phi(x) - c||` from the centre (the angle is the
        direction of `phi(x) - c` on its first two principal axes, for display only); the circle is
        R.
        """
    ),
    code(
        """
        soft = DeepSVDD(objective="soft-boundary", nu=0.1, pretrain_epochs=PRETRAIN_EPOCHS, seed=0)
        soft.fit(x_train, epochs=EPOCHS, batch_size=BATCH_SIZE, verbose=0)
        R = float(soft.radius.numpy())
        d_test = np.sqrt(soft.score(x_test, method="distance"))
        d_train = np.sqrt(soft.score(x_train, method="distance"))
        print(
            f"R = {R:.4f}; outside R: train {np.mean(d_train > R):.1%} (nu = 10 %), "
            f"normal test {np.mean(d_test[y_test == 0] > R):.1%}, "
            f"anomalies {np.mean(d_test[y_test == 1] > R):.1%}"
        )

        offsets = soft.embed(x_test) - soft.center.numpy()
        _, _, axes = np.linalg.svd(offsets - offsets.mean(axis=0), full_matrices=False)
        angle = np.arctan2(offsets @ axes[1], offsets @ axes[0])
        fig = Figure(figsize=(5.5, 5.5), layout="constrained")
        ax = fig.subplots()
        for label, name, color in [(1, "anomaly", "C3"), (0, "normal", "C0")]:
            r = d_test[y_test == label]
            ax.scatter(
                r * np.cos(angle[y_test == label]),
                r * np.sin(angle[y_test == label]),
                s=8,
                alpha=0.6,
                color=color,
                label=name,
            )
        t = np.linspace(0, 2 * np.pi, 200)
        ax.plot(R * np.cos(t), R * np.sin(t), "k--", label=f"R = {R:.3g}")
        ax.plot(0, 0, "k+", markersize=12)
        ax.set_aspect("equal")
        ax.set_title("test samples at their distance to c")
        ax.legend()
        fig
        """
    ),
    md(
        """
        The same distances as a histogram of `||phi(x) - c||^2` with `R^2` as the threshold (the
        `boundary` score is this distance minus `R^2`, so its threshold is 0):
        """
    ),
    code(
        """
        plot.score_histogram(soft, x_test, y_test, method="distance", threshold=R**2)
        """
    ),
    md(
        """
        ## nu bounds the fraction outside

        The training fraction outside R is `nu` by construction (R is that quantile); what matters
        is how the sphere generalises: the fraction of normal test samples outside R should stay
        near `nu`, and that of anomalies should be high.
        """
    ),
    code(
        """
        rows = []
        for nu in sorted({0.1, *NUS}):
            model = (
                soft
                if nu == 0.1
                else DeepSVDD(objective="soft-boundary", nu=nu, pretrain_epochs=PRETRAIN_EPOCHS, seed=0)
            )
            if model is not soft:
                model.fit(x_train, epochs=EPOCHS, batch_size=BATCH_SIZE, verbose=0)
            outside_train = np.mean(model.score(x_train) > 0)
            s = model.score(x_test)
            rows.append(
                {
                    "nu": nu,
                    "R": float(model.radius.numpy()),
                    "outside R, train": outside_train,
                    "outside R, normal test": np.mean(s[y_test == 0] > 0),
                    "outside R, anomalies": np.mean(s[y_test == 1] > 0),
                    "AUROC": evaluate_scores(y_test, s)["auroc"],
                }
            )
        table = pd.DataFrame(rows).set_index("nu")
        display(table.round(3))

        fig = Figure(figsize=(5.5, 4), layout="constrained")
        ax = fig.subplots()
        for column in ["outside R, train", "outside R, normal test", "outside R, anomalies"]:
            ax.plot(table.index, table[column], "o-", label=column)
        ax.plot([0, max(table.index)], [0, max(table.index)], "k:", label="fraction = nu")
        ax.set_xlabel("nu")
        ax.set_ylabel("fraction outside R")
        ax.legend()
        fig
        """
    ),
]


# --------------------------------------------------------------------- 03
OCNN_CELLS = [
    md(
        """
        # OC-NN: one-class neural networks

        OC-NN (Chalapathy, Menon & Chawla, arXiv:1802.06360) puts a one-class SVM objective on a
        neural feature map `h(x) = g(Vx)` with output `y(x) = <w, h(x)>`:

        `min 0.5 ||w||^2 + 0.5 ||V||_F^2 + (1/nu) mean(max(0, r - y(x))) - r`.

        **The r rule**: r is not a gradient variable; it is set to the `nu`-quantile of `y` over
        the training data at the start of `fit` and after every epoch, so a fraction `nu` of the
        training data lies below it. The score is the margin `r - y(x)` (the paper's `S(x)`
        negated: higher = more anomalous, positive = outside the boundary). keras_deepad's default
        `g` is the authors' later **cosine random features**, `cos(Vx + b) / sqrt(h)` with `V` and
        `b` fixed: a kernel (RBF) one-class SVM. The paper's linear `g` separates the data from the
        origin, which has a **direction problem**, shown below.

        Data: scikit-learn's breast cancer (benign normal, malignant anomalous) and a 2-D toy set.
        Runtime on 2 CPU cores: about 40 seconds (`KERAS_DEEPAD_QUICK=1`: about 15 seconds).
        """
    ),
    quick_cell(
        """
        EPOCHS = 10 if QUICK else 30
        BATCH_SIZE = 64
        """
    ),
    code(
        """
        %matplotlib inline
        import keras
        import numpy as np
        import pandas as pd
        from IPython.display import display
        from matplotlib.figure import Figure

        from keras_deepad import plot
        from keras_deepad.data import load_builtin
        from keras_deepad.evaluation import evaluate_scores
        from keras_deepad.models import OCNN

        data = load_builtin("breast_cancer", seed=0)
        x_train, x_test, y_test = data.x_train, data.x_test, data.y_test
        print(f"train {x_train.shape} (benign), test {x_test.shape} ({y_test.mean():.0%} malignant)")
        """
    ),
    md(
        """
        ## Cosine random features and the r rule

        `nu = 0.5` (the default): r is the median training output. A callback records r after
        every epoch.
        """
    ),
    code(
        """
        ocnn = OCNN(seed=0)  # 1024 cosine features, width from the data, nu=0.5
        r_per_epoch = []
        record_r = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: r_per_epoch.append(float(ocnn.rho.numpy()))
        )
        history = ocnn.fit(x_train, epochs=EPOCHS, batch_size=BATCH_SIZE, verbose=0, callbacks=[record_r])
        y_train = ocnn.outputs(x_train)  # <w, g(Vx)>, higher = more normal
        r = float(ocnn.rho.numpy())
        print("r per epoch:", np.round(r_per_epoch, 4))
        print(f"r = {r:.4f}; training outputs below r: {np.mean(y_train < r):.1%} (nu = 50 %)")
        scores = ocnn.score(x_test)  # r - y(x)
        print("margin scores r - y(x) of the first test samples:", np.round(scores[:5], 4))
        print(
            f"positive margin (outside): normal {np.mean(scores[y_test == 0] > 0):.0%}, "
            f"anomalies {np.mean(scores[y_test == 1] > 0):.0%}"
        )
        print("AUROC", round(evaluate_scores(y_test, scores)["auroc"], 3))
        plot.score_histogram(scores, y=y_test, threshold=0.0)
        """
    ),
    md(
        """
        `nu` is a quantile, not a threshold: with `nu = 0.5` half of the normal data lies outside.
        For a decision threshold calibrate it, e.g. to a 5 % false-positive rate on the training
        data:
        """
    ),
    code(
        """
        ocnn.calibrate(x_train, fpr=0.05)
        print(evaluate_scores(y_test, ocnn.score(x_test), threshold=ocnn.threshold))
        plot.score_histogram(ocnn, x_test, y_test)
        """
    ),
    md(
        """
        ## The linear variant's direction problem

        With the paper's `activation="linear"` (V trained), `y(x) = <w, Vx>` is linear in x: the
        boundary `y = r` is a hyperplane, and everything on the far side of the normal data in the
        direction of `w` scores as *more* normal. Malignant tumours have larger features than
        benign ones, and they fall on exactly that side: the linear OC-NN ranks them backwards.
        """
    ),
    code(
        """
        linear = OCNN(activation="linear", seed=0)
        linear.fit(x_train, epochs=EPOCHS, batch_size=BATCH_SIZE, verbose=0)
        s_linear = linear.score(x_test)
        y_max = linear.outputs(x_train).max()
        beyond = np.mean(linear.outputs(x_test[y_test == 1]) > y_max)
        print(f"anomalies with an output above every training output: {beyond:.0%}")
        pd.DataFrame(
            {
                "OC-NN (cos)": evaluate_scores(y_test, scores),
                "OC-NN (linear)": evaluate_scores(y_test, s_linear),
            }
        ).loc[["auroc", "auprc"]].round(3)
        """
    ),
    code(
        """
        fig = Figure(figsize=(12, 4.2), layout="constrained")
        left, right = fig.subplots(1, 2)
        plot.score_histogram(scores, y=y_test, threshold=0.0, ax=left)
        left.set_title("cosine features: r - y(x)")
        plot.score_histogram(s_linear, y=y_test, threshold=0.0, ax=right)
        right.set_title("linear: r - y(x), anomalies on the 'normal' side")
        fig
        """
    ),
    md(
        """
        ## In two dimensions

        A Gaussian cloud with anomalies on a ring around it. The cosine features draw a closed
        boundary; the linear model can only cut the plane with a line, and the ring lies on both
        sides of it. Contours: the margin score `r - y(x)`, with the boundary `r - y(x) = 0` in
        black.
        """
    ),
    code(
        """
        rng = np.random.default_rng(0)
        x2_train = rng.normal(size=(500, 2)).astype("float32")
        ring = rng.uniform(0, 2 * np.pi, 100)
        x2_test = np.concatenate(
            [
                rng.normal(size=(300, 2)),
                np.stack([4 * np.cos(ring), 4 * np.sin(ring)], axis=1),
            ]
        ).astype("float32")
        y2_test = np.repeat([0, 1], [300, 100])
        grid = np.stack(np.meshgrid(np.linspace(-5, 5, 80), np.linspace(-5, 5, 80)), axis=-1)

        fig = Figure(figsize=(11, 5), layout="constrained")
        for ax, activation in zip(fig.subplots(1, 2), ["cos", "linear"], strict=True):
            toy = OCNN(activation=activation, seed=0)
            toy.fit(x2_train, epochs=EPOCHS, batch_size=BATCH_SIZE, verbose=0)
            surface = toy.score(grid.reshape(-1, 2).astype("float32")).reshape(80, 80)
            ax.contourf(grid[..., 0], grid[..., 1], surface, levels=20, cmap="coolwarm")
            ax.contour(grid[..., 0], grid[..., 1], surface, levels=[0.0], colors="k")
            for label, color in [(0, "C0"), (1, "C3")]:
                ax.scatter(*x2_test[y2_test == label].T, s=6, color=color)
            auroc = evaluate_scores(y2_test, toy.score(x2_test))["auroc"]
            ax.set_title(f"activation={activation!r}: AUROC {auroc:.3f}")
            ax.set_aspect("equal")
        display(fig)
        """
    ),
]


# --------------------------------------------------------------------- 04
ROBUST = [
    md(
        """
        # Robust training on contaminated data

        Unsupervised detectors often train on data that already holds anomalies, and a plain
        autoencoder learns to reconstruct them too. Three techniques of Merrill & Eskandarian
        (IEEE Access 2020), for every reconstruction detector (`AE`, `VAE`, `AAE`, `WAE`):

        - **percentile loss** (`percentile_loss=q`, presets `ae-robust` and `vae-robust` with
          q = 0.95): in every batch the samples whose loss is at or above the batch's q-quantile
          get zero weight, so the worst-reconstructed rows stop shaping the model;
        - **cumulative error scoring** (`keras_deepad.callbacks.CumulativeErrorScoring(x)`): the
          score of a training row is its reconstruction error summed over the epochs;
        - **knee early stopping** (`keras_deepad.callbacks.KneeEarlyStopping()`): stop shortly
          after the knee of the running-mean loss curve (Kneedle), before the model has learned
          the anomalies; it stops once `1.2 * knee epoch < epoch`.

        The question here is transductive: which rows *of the training data* are anomalies
        (AUROC on the contaminated training set). Data: breast cancer, benign rows plus malignant
        ones at several contamination levels. Runtime on 2 CPU cores: about 1.5 minutes
        (`KERAS_DEEPAD_QUICK=1`: about 20 seconds).
        """
    ),
    quick_cell(
        """
        LEVELS = (0.05, 0.2) if QUICK else (0.02, 0.05, 0.1, 0.2)  # fraction of anomalies
        EPOCHS = 10 if QUICK else 60
        KNEE_EPOCHS = 20 if QUICK else 200  # the upper bound for knee stopping
        BATCH_SIZE = 32
        """
    ),
    code(
        """
        %matplotlib inline
        import numpy as np
        import pandas as pd
        import tensorflow as tf
        from IPython.display import display

        from keras_deepad import plot
        from keras_deepad.callbacks import CumulativeErrorScoring, KneeEarlyStopping, running_mean
        from keras_deepad.data import load_builtin
        from keras_deepad.evaluation import evaluate_scores
        from keras_deepad.registry import get_detector

        tf.get_logger().setLevel("ERROR")  # one model per level: retracing notices

        data = load_builtin("breast_cancer", seed=0)
        benign = data.x_train
        malignant = data.x_test[data.y_test == 1]


        def contaminate(level):
            \"\"\"Benign training rows plus malignant rows making up `level` of the result.\"\"\"
            n = min(round(level / (1 - level) * len(benign)), len(malignant))
            x = np.concatenate([benign, malignant[:n]])
            return x, np.repeat([0, 1], [len(benign), n])


        print(f"{len(benign)} benign rows, {len(malignant)} malignant rows to contaminate with")
        """
    ),
    md(
        """
        ## Plain AE against `ae-robust`, per contamination level

        `get_detector("ae-robust")` is `AE(percentile_loss=0.95)`; the VAE gets the same with
        `vae-robust` (for a VAE the dropped loss is the whole objective, KL included).
        """
    ),
    code(
        """
        rows = []
        for level in LEVELS:
            x, y = contaminate(level)
            row = {"contamination": f"{y.mean():.0%}", "anomalies": int(y.sum())}
            for name in ["ae", "ae-robust"] + ([] if QUICK else ["vae", "vae-robust"]):
                model = get_detector(name, seed=0)
                model.fit(x, epochs=EPOCHS, batch_size=BATCH_SIZE, verbose=0)
                row[name] = evaluate_scores(y, model.score(x))["auroc"] if y.any() else np.nan
            rows.append(row)
        pd.DataFrame(rows).set_index("contamination").round(3)
        """
    ),
    md(
        """
        ## Knee early stopping and cumulative error scoring

        At 10 % contamination, `ae-robust` trained with both callbacks. `KneeEarlyStopping`
        records the monitored loss; `knee_epoch` and `stopped_epoch` are 0-based.
        `CumulativeErrorScoring` keeps the per-epoch errors (`errors`, epochs x rows) and their
        sum (`scores`); `flag(contamination=0.1)` marks the 10 % highest.
        """
    ),
    code(
        """
        x, y = contaminate(0.1)
        model = get_detector("ae-robust", seed=0)
        ces = CumulativeErrorScoring(x)
        knee = KneeEarlyStopping(min_epochs=5 if QUICK else 10)
        history = model.fit(x, epochs=KNEE_EPOCHS, batch_size=BATCH_SIZE, verbose=0, callbacks=[ces, knee])
        print(
            f"trained {len(history.history['loss'])} of {KNEE_EPOCHS} epochs; "
            f"knee at epoch {knee.knee_epoch}, stopped after epoch {knee.stopped_epoch}"
        )
        flags = ces.flag(contamination=0.1)
        pd.DataFrame(
            {
                "final error (model.score)": evaluate_scores(y, model.score(x)),
                "cumulative error (ces.scores)": evaluate_scores(y, ces.scores),
            }
        ).loc[["auroc", "auprc", "precision_at_n"]].round(3)
        """
    ),
    code(
        """
        fig = plot.training_curves(history)
        ax = fig.axes[0]
        ax.plot(np.arange(1, len(knee.history) + 1), running_mean(knee.history), "k:", label="running mean")
        if knee.knee_epoch is not None:
            ax.axvline(knee.knee_epoch + 1, color="C3", linestyle="--", label="knee")
        ax.legend()
        display(fig)
        print(
            f"flagged rows that are anomalies: {y[flags == 1].mean():.0%} "
            f"({flags.sum()} flagged, {y.sum()} anomalies)"
        )
        display(plot.score_histogram(ces.scores, y=y, threshold=ces.threshold(0.1)))
        """
    ),
]


# --------------------------------------------------------------------- 05
EXPORT = [
    md(
        """
        # Export to TF Serving and TFLite, scoring on the edge

        A trained, calibrated detector leaves Python in two forms:

        - `keras_deepad.export.export_saved_model(model, base_dir, name)` writes
          `<base_dir>/<name>/<version>/`, the layout TF Serving loads, with the signature
          `serving_default` (`x` -> `score`, `is_anomaly`, `threshold`; normalisation inside the
          graph) and the family's extra ones (`reconstruct`, `feature_scores`, `embed`, ...);
        - `keras_deepad.export.export_tflite(model, path, quantization=...)` writes a `.tflite`
          file plus `path.json` metadata (threshold, score quantiles, normalisation, SHA-256 and
          an integrity digest). `float32` runs the scoring graph; full-integer `int8` runs the
          family's edge head (here the reconstruction) and the host finishes the score in float.

        On the device, `keras_deepad.edge.EdgeDetector` needs only numpy and `ai-edge-litert` (no
        TensorFlow): `score`, `predict_labels` and `drift` (a Kolmogorov-Smirnov test of recent
        scores against the calibration quantiles). Every file is written to a temporary folder.
        Runtime on 2 CPU cores: about 30 seconds (`KERAS_DEEPAD_QUICK=1`: about 20 seconds).
        """
    ),
    quick_cell(
        """
        EPOCHS = 20 if QUICK else 100
        BATCH_SIZE = 32
        """
    ),
    code(
        """
        %matplotlib inline
        import json
        import tempfile
        from pathlib import Path

        import numpy as np
        import pandas as pd
        import tensorflow as tf

        from keras_deepad import plot
        from keras_deepad.data import load_builtin
        from keras_deepad.edge import EdgeDetector
        from keras_deepad.evaluation import evaluate_scores
        from keras_deepad.export import export_saved_model, export_tflite
        from keras_deepad.models import AE

        tf.get_logger().setLevel("ERROR")  # no "Assets written to" lines
        data = load_builtin("breast_cancer", seed=0)
        x_test, y_test = data.x_test, data.y_test
        # Fit on 175 benign rows; hold 75 out for the threshold and the drift reference.
        x_fit, x_holdout = data.x_train[:175], data.x_train[175:]
        model = AE(seed=0)
        model.fit(x_fit, epochs=EPOCHS, batch_size=BATCH_SIZE, verbose=0)
        model.calibrate(x_holdout, fpr=0.05)
        keras_scores = model.score(x_test)
        print(
            f"threshold {model.threshold:.4f}, AUROC {evaluate_scores(y_test, keras_scores)['auroc']:.3f}"
        )
        out = Path(tempfile.mkdtemp(prefix="keras_deepad_export_"))
        """
    ),
    md(
        """
        ## TF Serving: the SavedModel

        Loaded back with plain `tf.saved_model.load`, as TF Serving would: the scores equal the
        Keras ones. (To serve it: `docker run -p 8501:8501 --mount
        type=bind,source=<base_dir>/ae,target=/models/ae -e MODEL_NAME=ae -t tensorflow/serving`.)
        """
    ),
    code(
        """
        version_dir = export_saved_model(model, out / "serving", "ae")
        print(version_dir, sorted(p.name for p in version_dir.iterdir()))
        loaded = tf.saved_model.load(str(version_dir))
        print("signatures:", sorted(loaded.signatures))
        served = loaded.signatures["serving_default"](x=tf.constant(x_test))
        print({k: v.shape for k, v in served.items()})
        gap = np.max(np.abs(served["score"].numpy() - keras_scores))
        print(f"max |SavedModel - Keras| score: {gap:.2e}")
        meta = json.loads((version_dir / "assets.extra" / "keras_deepad.json").read_text())
        print("metadata keys:", sorted(meta))
        """
    ),
    md(
        """
        ## TFLite: float32 and int8

        The int8 file is calibrated on `representative_data`, normal rows (here the held-out
        ones), whose scores are also recorded as the file's score quantiles for drift monitoring.
        The int8 scores are not the float scores, only their ranking is kept, so its threshold is
        recalibrated to flag the same fraction of the representative data (the float one is kept
        as `float_threshold`).
        """
    ),
    code(
        """
        artifacts = {
            quantization: export_tflite(
                model,
                out / f"ae-{quantization}.tflite",
                quantization=quantization,
                representative_data=x_holdout,
            )
            for quantization in ["float32", "int8"]
        }
        edges = {q: EdgeDetector(a.path) for q, a in artifacts.items()}
        keras_labels = model.predict_labels(x_test)


        def rank_correlation(a, b):
            return np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1]


        rows = {}
        for q, edge in edges.items():
            s = edge.score(x_test)
            rows[q] = {
                "size (KiB)": artifacts[q].size_bytes / 1024,
                "scoring": artifacts[q].scoring,
                "threshold": edge.threshold,
                "max rel. gap to Keras": np.max(np.abs(s - keras_scores)) / np.max(keras_scores),
                "rank correlation": rank_correlation(s, keras_scores),
                "labels = Keras labels": np.mean(edge.predict_labels(x_test) == keras_labels),
                "AUROC": evaluate_scores(y_test, s)["auroc"],
            }
        rows["Keras"] = {
            "threshold": float(model.threshold),
            "AUROC": evaluate_scores(y_test, keras_scores)["auroc"],
        }
        pd.DataFrame(rows).T
        """
    ),
    code(
        """
        meta = json.loads(artifacts["int8"].metadata_path.read_text())
        print({k: meta[k] for k in ["quantization", "threshold", "float_threshold"] if k in meta})
        edge8 = edges["int8"]
        plot.score_histogram(edge8.score(x_test), y=y_test, threshold=edge8.threshold)
        """
    ),
    md(
        """
        ## Drift on the device

        `drift(x_recent)` compares a window of recent scores with the calibration quantiles stored
        in the metadata (a KS test, plus the flagged fraction and the median shift). Normal rows
        should pass; a window of anomalies, or of normal rows seen through a miscalibrated
        sensor (every feature + 0.3), should not. The reference must be normal data the model
        was *not* fit on: the rows it was fit on score optimistically low, and new normal rows
        would then look drifted.
        """
    ),
    code(
        """
        normal_test = x_test[y_test == 0]
        windows = {
            "normal test rows": normal_test,
            "malignant rows": x_test[y_test == 1],
            "normal rows, sensor offset +0.3": normal_test + 0.3,
        }
        for name, window in windows.items():
            report = edges["float32"].drift(window)
            print(f"{name}: drifted={report.drifted}\\n    {report.message}")
        """
    ),
]


NOTEBOOKS = {
    "01_generative_autoencoders.ipynb": GENERATIVE,
    "02_deep_svdd.ipynb": DEEP_SVDD,
    "03_ocnn.ipynb": OCNN_CELLS,
    "04_robust_training.ipynb": ROBUST,
    "05_export_and_edge.ipynb": EXPORT,
}


def build(cells):
    """A notebook (nbformat 4) without outputs from `(kind, source)` pairs."""
    notebook = new_notebook(
        metadata={"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    )
    for i, (kind, source) in enumerate(cells):
        source = textwrap.dedent(source).strip()
        cell = new_markdown_cell(source) if kind == "markdown" else new_code_cell(source)
        cell.id = f"cell-{i:02d}"  # fixed ids: regenerating changes nothing
        notebook.cells.append(cell)
    nbformat.validate(notebook)
    return notebook


def build_notebooks():
    """File name -> notebook, for every notebook in `NOTEBOOKS`."""
    return {name: build(cells) for name, cells in NOTEBOOKS.items()}


def render(notebook):
    return nbformat.writes(notebook) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    args = parser.parse_args(argv)
    stale = []
    for name, notebook in build_notebooks().items():
        path = HERE / name
        text = render(notebook)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"out of date (run python {Path(__file__).name}): {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
