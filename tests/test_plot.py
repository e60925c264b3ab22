"""`keras_deepad.plot`: every figure renders to a PNG, draws what it says, and refuses misuse."""

import json
import shutil
import sys
from types import SimpleNamespace

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib", reason="the dev extra installs matplotlib")
matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import average_precision_score, roc_auc_score  # noqa: E402

from keras_deepad import plot  # noqa: E402
from keras_deepad.cli import main  # noqa: E402
from keras_deepad.data import load_builtin  # noqa: E402
from keras_deepad.models import AAE, AE, OCNN, VAE, DeepSVDD  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > 1024, (path, len(data))


def save(fig, directory, name):
    assert isinstance(fig, Figure)
    path = directory / f"{name}.png"
    fig.savefig(path, dpi=60)
    assert_png(path)
    return path


def trained(model, x, epochs):
    history = model.fit(x, epochs=epochs, batch_size=64, verbose=0)
    model.calibrate(x, contamination=0.05)
    return SimpleNamespace(model=model, history=history)


@pytest.fixture(scope="module")
def ae(blobs):
    return trained(AE(hidden_units=(16,), latent_dim=4, seed=0), blobs.x_train, epochs=5)


@pytest.fixture(scope="module")
def vae(blobs):
    return trained(VAE(hidden_units=(16,), latent_dim=2, seed=0), blobs.x_train, epochs=5)


@pytest.fixture(scope="module")
def aae(blobs):
    model = AAE(hidden_units=(16,), latent_dim=3, prior="mog", seed=0)
    return trained(model, blobs.x_train, epochs=3)


@pytest.fixture(scope="module")
def digits():
    data = load_builtin("digits", seed=0, normal_class=0)
    images = SimpleNamespace(
        x_train=data.x_train.reshape(-1, 8, 8, 1), x_test=data.x_test.reshape(-1, 8, 8, 1)
    )
    model = AE(architecture="conv", conv_filters=(8,), latent_dim=4, seed=0)
    return SimpleNamespace(data=images, **vars(trained(model, images.x_train, epochs=5)))


def threshold_lines(fig):
    return [line for line in fig.axes[0].get_lines() if line.get_gid() == "threshold"]


def legend_texts(ax):
    return [text.get_text() for text in ax.get_legend().get_texts()]


def test_score_histogram_draws_the_models_threshold(ae, blobs, tmp_path):
    model = ae.model
    fig = plot.score_histogram(model, blobs.x_test, blobs.y_test)
    (line,) = threshold_lines(fig)
    assert line.get_xdata()[0] == pytest.approx(model.threshold)
    assert any(t.startswith("anomaly (n=50)") for t in legend_texts(fig.axes[0]))
    save(fig, tmp_path, "histogram")

    scores = model.score(blobs.x_test)
    fig = plot.score_histogram(scores, threshold=1.5, bins=20)
    (line,) = threshold_lines(fig)
    assert line.get_xdata()[0] == 1.5
    save(fig, tmp_path, "histogram_scores")
    # Another score method than the calibrated one: no threshold to draw.
    assert not threshold_lines(plot.score_histogram(model, blobs.x_test, method="max"))
    # Far-out anomalies: log-spaced bins on a log axis.
    assert plot.score_histogram(np.r_[np.ones(50), 1e4]).axes[0].get_xscale() == "log"
    assert plot.score_histogram(np.r_[np.ones(50), 1e4], log=False).axes[0].get_xscale() == "linear"
    with pytest.raises(ValueError, match="needs x"):
        plot.score_histogram(model)
    with pytest.raises(ValueError, match="labels"):
        plot.score_histogram(scores, y=blobs.y_test[:10])


def test_roc_and_precision_recall_legends_hold_sklearns_values(ae, blobs, tmp_path):
    scores = ae.model.score(blobs.x_test)
    fig = plot.roc_curve(blobs.y_test, scores, name="AE")
    auroc = f"{roc_auc_score(blobs.y_test, scores):.4f}"
    assert any(f"AUROC = {auroc}" in t for t in legend_texts(fig.axes[0]))
    save(fig, tmp_path, "roc")
    fig = plot.precision_recall_curve(blobs.y_test, scores)
    ap = f"{average_precision_score(blobs.y_test, scores):.4f}"
    assert any(f"AP = {ap}" in t for t in legend_texts(fig.axes[0]))
    save(fig, tmp_path, "pr")
    with pytest.raises(ValueError, match="both normal"):
        plot.roc_curve(np.zeros(len(scores)), scores)
    with pytest.raises(ValueError, match="NaN"):
        plot.precision_recall_curve(blobs.y_test, np.full(len(scores), np.nan))


def test_feature_errors_bars_are_the_feature_scores(ae, blobs, tmp_path):
    model, x = ae.model, blobs.x_test
    values = model.feature_scores(x)
    fig = plot.feature_errors(model, x, index=3)
    bars = fig.axes[0].patches
    assert len(bars) == 16
    np.testing.assert_allclose([b.get_width() for b in bars], values[3], rtol=1e-6)
    assert "sample 3" in fig.axes[0].get_title()
    save(fig, tmp_path, "features_one")

    top = np.argsort(-model.score(x), kind="stable")[:5]
    names = [f"f{i}" for i in range(16)]
    fig = plot.feature_errors(model, x, top_k=5, feature_names=names, max_features=4)
    widths = [b.get_width() for b in fig.axes[0].patches]
    expected = np.sort(values[top].mean(axis=0))[::-1][:4]
    np.testing.assert_allclose(widths, expected, rtol=1e-5)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()][0] in names
    save(fig, tmp_path, "features_top")

    with pytest.raises(ValueError, match="not both"):
        plot.feature_errors(model, x, index=0, top_k=3)
    with pytest.raises(ValueError, match="3 names for 16 features"):
        plot.feature_errors(model, x, feature_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="out of range"):
        plot.feature_errors(model, x, index=len(x))


def test_image_reconstructions_grid(digits, ae, tmp_path):
    fig = plot.image_reconstructions(digits.model, digits.data.x_test, n=5)
    images = [ax for ax in fig.axes if ax.get_images()]
    assert len(images) == 15  # original, reconstruction, error for 5 images (+ a colour bar)
    assert images[0].get_ylabel() == "original"
    save(fig, tmp_path, "images")
    # Flat features shown as images when their shape is given.
    save(
        plot.image_reconstructions(ae.model, load_builtin("blobs").x_test, n=3, image_shape=(4, 4)),
        tmp_path,
        "flat_images",
    )
    with pytest.raises(ValueError, match=r"shape \(16,\).*image_shape"):
        plot.image_reconstructions(ae.model, load_builtin("blobs").x_test)
    with pytest.raises(ValueError, match="has 25 values"):
        plot.image_reconstructions(ae.model, load_builtin("blobs").x_test, image_shape=(5, 5))


@pytest.mark.parametrize("detector", [DeepSVDD, OCNN])
def test_image_reconstructions_needs_a_reconstruction_detector(detector, digits):
    with pytest.raises(ValueError, match=f"{detector.__name__} does not reconstruct"):
        plot.image_reconstructions(detector(), digits.data.x_test)


def test_training_curves_one_panel_per_family(aae, tmp_path):
    assert {"loss", "discriminator_loss", "discriminator_accuracy"} <= set(aae.history.history)
    fig = plot.training_curves(aae.history)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    assert "generator_loss" in legend_texts(fig.axes[0])
    save(fig, tmp_path, "history")

    logs = {
        "loss": [3.0, 2.0, 1.0],
        "val_loss": [3.5, 2.5, 1.5],
        "kl_loss": [0.5, 0.4, 0.3],
        "learning_rate": [1e-2, 1e-3, 1e-5],
        "hinge": [0.3, 0.2, 0.2],
    }
    fig = plot.training_curves(logs)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "learning_rate", "hinge"]
    assert fig.axes[1].get_yscale() == "log"
    (val,) = [line for line in fig.axes[0].get_lines() if line.get_label() == "val_loss"]
    assert val.get_linestyle() == "--"
    save(fig, tmp_path, "history_dict")
    with pytest.raises(ValueError, match="no metrics"):
        plot.training_curves({})
    with pytest.raises(ValueError, match="History"):
        plot.training_curves([1.0, 2.0])


def test_latent_scatter_two_dimensional_codes_over_the_prior(vae, blobs, tmp_path):
    fig = plot.latent_scatter(vae.model, blobs.x_test, blobs.y_test)
    ax = fig.axes[0]
    assert "prior StandardNormal" in legend_texts(ax)
    assert {"normal", "anomaly"} <= set(legend_texts(ax))
    assert "PCA" not in ax.get_title()
    save(fig, tmp_path, "latent")
    # Without labels the points are coloured by score (a colour bar).
    fig = plot.latent_scatter(vae.model, blobs.x_test[:100])
    assert len(fig.axes) == 2
    save(fig, tmp_path, "latent_scores")


def test_latent_scatter_projects_larger_codes(aae, blobs, tmp_path):
    fig = plot.latent_scatter(aae.model, blobs.x_test, blobs.y_test)
    assert "PCA projection of 3-D codes" in fig.axes[0].get_title()
    assert "prior MixtureOfGaussians" in legend_texts(fig.axes[0])
    save(fig, tmp_path, "latent_pca")
    with pytest.raises(ValueError, match="latent size 3"):
        plot.latent_scatter(aae.model, blobs.x_test, pca=False)
    with pytest.raises(ValueError, match="DeepSVDD has no latent codes"):
        plot.latent_scatter(DeepSVDD(), blobs.x_test)


def test_functions_draw_into_a_given_axes(ae, aae, blobs):
    fig = Figure(layout="constrained")
    left, right = fig.subplots(1, 2)
    scores = ae.model.score(blobs.x_test)
    assert plot.score_histogram(scores, ax=left) is fig
    assert plot.training_curves(aae.history, ax=right) is fig
    assert right not in fig.axes and len(fig.axes) == 3  # the right cell split in two panels


def test_save_all_writes_the_applicable_figures(vae, blobs, digits, tmp_path):
    paths = plot.save_all(vae.model, blobs.x_test, blobs.y_test, tmp_path / "vae", vae.history)
    assert [p.stem for p in paths] == [
        "score_histogram",
        "roc_curve",
        "precision_recall_curve",
        "feature_errors",
        "latent_scatter",
        "training_curves",
    ]
    for path in paths:
        assert_png(path)
    assert sorted(p.name for p in (tmp_path / "vae").iterdir()) == sorted(p.name for p in paths)
    paths = plot.save_all(digits.model, digits.data.x_test, None, tmp_path / "conv")
    assert [p.stem for p in paths] == ["score_histogram", "image_reconstructions", "latent_scatter"]


def test_cli_evaluate_writes_plots(ae, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model_file = tmp_path / "ae.keras"
    ae.model.save(model_file)
    args = ["evaluate", "--model-file", str(model_file), "--data", "blobs"]
    assert main([*args, "--plot", str(tmp_path / "plots"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    names = [p.rsplit("/", 1)[-1] for p in result["plots"]]
    assert names == [
        "score_histogram.png",
        "roc_curve.png",
        "precision_recall_curve.png",
        "feature_errors.png",
        "latent_scatter.png",
    ]
    for path in result["plots"]:
        assert_png(tmp_path / "plots" / path.rsplit("/", 1)[-1])
    assert main([*args, "--method", "mae", "--plot", "plots2"]) == 0
    out = capsys.readouterr().out
    assert "score method: mae" in out and "wrote plots2/score_histogram.png" in out
    (tmp_path / "a_file").write_text("x")
    assert main([*args, "--plot", "a_file"]) == 2
    assert "--plot a_file is a file" in capsys.readouterr().err


def test_missing_matplotlib_says_how_to_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails
    with pytest.raises(ImportError, match=r'pip install "keras-deepad\[plot\]"'):
        plot.require_matplotlib()
    code = main(["evaluate", "--model-file", "m.keras", "--data", "blobs", "--plot", str(tmp_path)])
    assert code == 2
    assert 'pip install "keras-deepad[plot]"' in capsys.readouterr().err


def test_network_graph_draws_the_inner_networks_nested(aae, tmp_path, monkeypatch):
    aae = aae.model
    graph = plot.network_graph(aae)
    dot = graph.to_string()
    for network in ("encoder", "decoder", "discriminator"):
        assert f"cluster_{network}" in dot
        # Each nested network lists its own layers with their shapes.
        for layer in aae.get_layer(network).layers:
            assert f"<b>{layer.name}</b>" in dot
    if shutil.which("dot") is not None:
        path = plot.network_graph(aae, tmp_path / "aae.png")
        assert_png(path)
    # Without Graphviz's dot the graph is still returned; writing an image says what is missing.
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ImportError, match="Graphviz's dot program"):
        plot.network_graph(aae, tmp_path / "aae.png")
    assert not list(tmp_path.glob("*aae*"))  # nothing half-written


def test_network_graph_needs_a_trained_detector():
    with pytest.raises(ValueError, match="call fit"):
        plot.network_graph(AE())
