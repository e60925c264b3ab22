"""`dropout` on every dense autoencoder: active in training only, saved in the config."""

import keras
import numpy as np
import pytest

from keras_deepad.models import AAE, AE, VAE, WAE

FAMILIES = {"AE": AE, "VAE": VAE, "AAE": AAE, "WAE": WAE}


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize(
    ("rate", "message"),
    [
        (float("nan"), "dropout must be a finite number"),
        (1.0, r"dropout must be in \[0, 1\)"),
        (-0.1, r"dropout must be in \[0, 1\)"),
    ],
)
def test_bad_dropout_is_refused(name, rate, message):
    with pytest.raises(ValueError, match=message):
        FAMILIES[name](dropout=rate)


@pytest.mark.parametrize("name", FAMILIES)
def test_dropout_acts_in_training_only(name):
    model = FAMILIES[name](hidden_units=(32,), latent_dim=4, dropout=0.5, seed=0)
    model.build((None, 6))
    rates = [
        layer.rate
        for network in (model.encoder, model.decoder)
        for layer in network.layers
        if isinstance(layer, keras.layers.Dropout)
    ]
    assert rates == [0.5, 0.5]
    x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
    z = model.encoder(x, training=True)
    assert not np.allclose(z, model.encoder(x, training=True))
    np.testing.assert_array_equal(model.encoder(x), model.encoder(x))
    # The rate travels with the config, so a reloaded model builds the same networks.
    clone = type(model).from_config(model.get_config())
    assert clone.dropout == 0.5


@pytest.mark.parametrize("name", ["VAE", "AAE", "WAE"])
def test_no_dropout_layers_at_zero(name):
    model = FAMILIES[name](hidden_units=(8,), latent_dim=2, dropout=0.0, seed=0)
    model.build((None, 3))
    layers = model.encoder.layers + model.decoder.layers
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in layers)


@pytest.mark.parametrize("name", ["AAE", "WAE"])
def test_a_config_saved_before_dropout_existed_loads_without_it(name):
    # AAE/WAE default to dropout 0.2 now; a model saved earlier was trained without it.
    config = FAMILIES[name](hidden_units=(8,), latent_dim=2).get_config()
    del config["dropout"]
    assert FAMILIES[name].from_config(config).dropout == 0.0
