"""`check_bias_free`: every route to the Deep SVDD hypersphere collapse is refused."""

import functools

import keras
import pytest

from keras_deepad.networks.bias_free import (
    build_bias_free_conv,
    build_bias_free_conv_decoder,
    build_bias_free_mlp,
    build_bias_free_mlp_decoder,
    check_bias_free,
)


def _dense_net(*layers, width=5):
    inputs = keras.Input((width,))
    h = keras.layers.Dense(4, use_bias=False, name="kernel_only")(inputs)
    for layer in layers:
        h = layer(h)
    return keras.Model(inputs, h)


def _image_net(*layers):
    inputs = keras.Input((8, 8, 2))
    h = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="kernel_only")(inputs)
    for layer in layers:
        h = layer(h)
    return keras.Model(inputs, h)


class Shift(keras.layers.Layer):
    """A custom layer with a learnable offset vector (a bias by another name)."""

    def build(self, input_shape):
        self.offset = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="offset")

    def call(self, x):
        return x + self.offset


class Temperature(keras.layers.Layer):
    """A custom layer with a learnable scalar."""

    def build(self, input_shape):
        self.t = self.add_weight(shape=(), initializer="ones", name="temperature")

    def call(self, x):
        return x * self.t


BIASED = {
    "dense_bias": (lambda: _dense_net(keras.layers.Dense(3, name="bad")), r"'bad' has a bias"),
    "conv_bias": (
        lambda: _image_net(keras.layers.Conv2D(3, 3, name="bad")),
        r"'bad' has a bias",
    ),
    "batch_norm_center": (
        lambda: _dense_net(keras.layers.BatchNormalization(scale=False, name="bad")),
        r"'bad' has a learnable shift/scale",
    ),
    "batch_norm_scale": (
        lambda: _dense_net(keras.layers.BatchNormalization(center=False, name="bad")),
        r"'bad' has a learnable shift/scale",
    ),
    "layer_norm": (
        lambda: _dense_net(keras.layers.LayerNormalization(name="bad")),
        r"'bad' has a learnable shift/scale",
    ),
    "group_norm": (
        lambda: _dense_net(keras.layers.GroupNormalization(groups=2, name="bad")),
        r"'bad' has a learnable shift/scale",
    ),
    "prelu_dense": (lambda: _dense_net(keras.layers.PReLU(name="bad")), r"'bad' .*PReLU"),
    # On images PReLU's slopes are a rank-3 variable: refused by type, not by rank.
    "prelu_conv": (lambda: _image_net(keras.layers.PReLU(name="bad")), r"'bad' .*PReLU"),
    "custom_vector": (
        lambda: _dense_net(Shift(name="bad")),
        r"'bad' has the learnable 1-d variable 'offset' of shape \(4,\)",
    ),
    "custom_scalar": (
        lambda: _dense_net(Temperature(name="bad")),
        r"'bad' has the learnable 0-d variable 'temperature'",
    ),
}

BOUNDED = {
    "relu_max_value": (
        lambda: _dense_net(keras.layers.ReLU(max_value=6, name="bad")),
        r"'bad' has the bounded activation 'relu' with max_value=6",
    ),
    "activation_relu6": (
        lambda: _dense_net(keras.layers.Activation("relu6", name="bad")),
        r"'bad' has the bounded activation 'relu6'",
    ),
    "activation_function_sigmoid": (
        lambda: _dense_net(keras.layers.Activation(keras.activations.sigmoid, name="bad")),
        r"'bad' has the bounded activation 'sigmoid'",
    ),
    "dense_tanh": (
        lambda: _dense_net(keras.layers.Dense(3, use_bias=False, activation="tanh", name="bad")),
        r"'bad' has the bounded activation 'tanh'",
    ),
    "relu_partial_max_value": (
        lambda: _dense_net(
            keras.layers.Activation(
                functools.partial(keras.activations.relu, max_value=1.0), name="bad"
            )
        ),
        r"'bad' has the bounded activation 'relu' with max_value=1.0",
    ),
    "softmax_layer": (lambda: _dense_net(keras.layers.Softmax(name="bad")), r"'bad' has a softmax"),
    "conv_hard_sigmoid": (
        lambda: _image_net(
            keras.layers.Conv2D(3, 3, use_bias=False, activation="hard_sigmoid", name="bad")
        ),
        r"'bad' has the bounded activation 'hard_sigmoid'",
    ),
}


@pytest.mark.parametrize("case", sorted(BIASED))
def test_biases_and_learnable_vectors_are_refused_and_allow_bias_lets_them_through(case):
    make, message = BIASED[case]
    network = make()
    with pytest.raises(ValueError, match=message):
        check_bias_free(network)
    with pytest.raises(ValueError, match="hypersphere collapse"):
        check_bias_free(network, allow_bounded_activation=True)  # the wrong escape hatch
    check_bias_free(network, allow_bias=True)


@pytest.mark.parametrize("case", sorted(BOUNDED))
def test_bounded_activations_are_refused_and_the_flag_lets_them_through(case):
    make, message = BOUNDED[case]
    network = make()
    with pytest.raises(ValueError, match=message):
        check_bias_free(network)
    with pytest.raises(ValueError, match="bounded activation|softmax"):
        check_bias_free(network, allow_bias=True)  # the wrong escape hatch
    check_bias_free(network, allow_bounded_activation=True)


def test_every_problem_is_named_in_one_error():
    network = _dense_net(
        keras.layers.Dense(3, activation="sigmoid", name="first"),
        keras.layers.LayerNormalization(name="second"),
    )
    with pytest.raises(ValueError) as error:
        check_bias_free(network)
    text = str(error.value)
    assert "'first' has a bias" in text
    assert "'first' has the bounded activation 'sigmoid'" in text
    assert "'second' has a learnable shift/scale" in text
    check_bias_free(network, allow_bias=True, allow_bounded_activation=True)


def test_nested_models_are_searched():
    inner = _dense_net(keras.layers.Dense(3, name="deep_bias"))
    inputs = keras.Input((5,))
    outer = keras.Model(inputs, keras.layers.Dense(2, use_bias=False)(inner(inputs)))
    with pytest.raises(ValueError, match="'deep_bias' has a bias"):
        check_bias_free(outer)


def test_unbounded_and_bias_free_layers_pass():
    check_bias_free(
        _dense_net(
            keras.layers.BatchNormalization(center=False, scale=False),
            keras.layers.LayerNormalization(center=False, scale=False),
            keras.layers.LeakyReLU(),
            keras.layers.ReLU(),
            keras.layers.Activation("elu"),
            keras.layers.Dense(3, use_bias=False, activation="relu"),
        )
    )


def test_the_built_in_networks_pass():
    check_bias_free(build_bias_free_mlp((12,), 4, hidden_units=(16, 8)))
    check_bias_free(build_bias_free_mlp_decoder(4, (12,), hidden_units=(8, 16)))
    check_bias_free(build_bias_free_conv((28, 28, 1), 32, filters=(8, 4)))
    check_bias_free(build_bias_free_conv_decoder(32, (28, 28, 1), filters=(4, 8)))


def test_the_built_in_batch_norm_follows_the_pytorch_reference():
    network = build_bias_free_mlp((12,), 4, hidden_units=(16, 8))
    norms = [x for x in network.layers if isinstance(x, keras.layers.BatchNormalization)]
    assert len(norms) == 2
    for layer in norms:
        # PyTorch momentum 0.1 weights the new batch; Keras' momentum weights the old average.
        assert layer.momentum == pytest.approx(0.9)
        assert layer.epsilon == pytest.approx(1e-4)
        assert not layer.center and not layer.scale
