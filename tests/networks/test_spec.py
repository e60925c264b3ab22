"""`AutoEncoderSpec`: the one place the autoencoder families' networks are checked and built."""

import dataclasses

import numpy as np
import pytest

from keras_deepad.models import AAE, AE, VAE, WAE
from keras_deepad.networks import AutoEncoderSpec


def _layer_summary(model):
    return [(type(layer).__name__, tuple(w.shape for w in layer.weights)) for layer in model.layers]


@pytest.mark.parametrize(
    "family, kwargs, shape, code_dim",
    [
        (AE, {"hidden_units": (12, 6), "latent_dim": 3, "latent_activation": None}, (9,), 3),
        (AE, {"architecture": "seed", "latent_dim": "2x"}, (4,), 8),
        (AE, {"architecture": "conv", "conv_filters": (4, 8)}, (8, 8, 1), 16),
        (VAE, {"hidden_units": (10,), "latent_dim": 3}, (6,), 6),
        (AAE, {"hidden_units": (10,), "latent_dim": 4, "output_activation": "sigmoid"}, (6,), 4),
        (WAE, {"latent_dim": 4, "stochastic_encoder": True}, (6,), 8),
    ],
)
def test_families_build_their_networks_from_the_spec(family, kwargs, shape, code_dim):
    model = family(seed=0, **kwargs)
    model.build((None, *shape))
    encoder, decoder = model.network_spec.build(shape, code_dim=code_dim)
    assert _layer_summary(model.encoder) == _layer_summary(encoder)
    assert _layer_summary(model.decoder) == _layer_summary(decoder)
    assert model.encoder.output.shape[-1] == code_dim
    # Every declared argument is read from the spec and stored in the config.
    config = model.get_config()
    for name in family.network_arguments:
        value = getattr(model.network_spec, name)
        assert getattr(model, name) == value
        assert config[name] == (list(value) if isinstance(value, tuple) else value)


def test_architecture_arguments_are_read_only():
    model = AE(hidden_units=(8,))
    with pytest.raises(AttributeError):
        model.hidden_units = (4,)
    assert model.hidden_units == (8,)
    # A family offers only the arguments it declares.
    assert not hasattr(VAE(), "latent_activation")
    assert "latent_activation" not in VAE().get_config()


@pytest.mark.parametrize(
    "family, kwargs, message",
    [
        (AE, {"architecture": "rnn"}, r"architecture must be one of \('mlp', 'conv', 'seed'\)"),
        (VAE, {"architecture": "seed"}, r"architecture must be one of \('mlp', 'conv'\)"),
        (AE, {"hidden_units": (8, 0)}, r"hidden_units\[1\]"),
        (AE, {"latent_dim": 0}, "latent_dim must be a positive int"),
        (VAE, {"latent_dim": "2x"}, "VAE latent_dim must be an int"),
        (AAE, {"latent_dim": "2x"}, "AAE latent_dim must be an int"),
        (WAE, {"conv_filters": (8, -1)}, r"conv_filters\[1\]"),
        (AE, {"kernel_size": 0}, "kernel_size"),
        (AE, {"dropout": 1.0}, "dropout"),
        (VAE, {"dropout": float("nan")}, "dropout"),
        (AE, {"latent_l1": -1.0}, "latent_l1"),
    ],
)
def test_bad_architecture_arguments_name_the_argument(family, kwargs, message):
    with pytest.raises(ValueError, match=message):
        family(**kwargs)


def test_checked_refuses_unknown_fields_and_normalises_values():
    with pytest.raises(TypeError, match="unknown network arguments"):
        AutoEncoderSpec.checked(hidden_layers=(3,))
    spec = AutoEncoderSpec.checked(hidden_units=[np.int64(5)], latent_dim=np.int32(2), dropout=0)
    assert spec.hidden_units == (5,) and type(spec.hidden_units[0]) is int
    assert spec.latent_dim == 2 and type(spec.latent_dim) is int
    assert spec.dropout == 0.0
    assert spec.code_size((10,)) == 2
    assert dataclasses.replace(spec, latent_dim="1.5x").code_size((4,)) == 6


def test_a_family_must_pass_exactly_its_declared_arguments():
    class Partial(AE):
        network_arguments = ("architecture", "hidden_units")

        def __init__(self, **kwargs):
            super().__init__(**kwargs)

    with pytest.raises(TypeError, match="declares the network arguments"):
        Partial()
