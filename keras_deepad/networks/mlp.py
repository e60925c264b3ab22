import math

import keras

from keras_deepad.networks.precision import float32_model


def _regularizer(l1):
    return keras.regularizers.L1(l1) if l1 else None


def dense_stack(h, hidden_units, activation, use_bias=True, activity_l1=0.0, dropout=0.0):
    """`Dense(units) [-> Dropout]` for each of `hidden_units`, named `dense_<i>`."""
    for i, units in enumerate(hidden_units):
        h = keras.layers.Dense(
            units,
            activation=activation,
            use_bias=use_bias,
            activity_regularizer=_regularizer(activity_l1),
            name=f"dense_{i}",
        )(h)
        if dropout:
            h = keras.layers.Dropout(dropout)(h)
    return h


def code_layer(h, output_dim, activation=None, use_bias=True, l1=0.0):
    """The encoder's output: `Dense(output_dim)` named `code`, with an optional L1 penalty."""
    return keras.layers.Dense(
        output_dim,
        activation=activation,
        use_bias=use_bias,
        activity_regularizer=_regularizer(l1),
        name="code",
    )(h)


def build_mlp_encoder(
    input_shape,
    output_dim,
    hidden_units=(64, 32),
    activation="relu",
    output_activation=None,
    output_l1=0.0,
    use_bias=True,
    dropout=0.0,
    activity_l1=0.0,
    name="encoder",
):
    """Dense encoder: flatten, `hidden_units` Dense layers, then `output_dim` units.

    Args:
        input_shape: shape of one sample; non-flat inputs are flattened.
        output_dim: size of the code (a VAE asks for `2 * latent_dim`).
        hidden_units: sizes of the hidden layers, input side first.
        activation: activation of the hidden layers.
        output_activation: activation of the code layer (`None`: linear).
        output_l1: L1 activity penalty on the code (sparse AEs).
        use_bias: whether Dense layers have biases.
        dropout: dropout rate after each hidden layer.
        activity_l1: L1 activity penalty on the hidden layers (sparse AEs).
        name: the model's name.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="x")
    h = keras.layers.Flatten()(inputs) if len(input_shape) > 1 else inputs
    h = dense_stack(h, hidden_units, activation, use_bias, activity_l1, dropout)
    return float32_model(
        inputs, code_layer(h, output_dim, output_activation, use_bias, output_l1), name=name
    )


def build_mlp_decoder(
    latent_dim,
    output_shape,
    hidden_units=(32, 64),
    activation="relu",
    output_activation=None,
    use_bias=True,
    dropout=0.0,
    activity_l1=0.0,
    name="decoder",
):
    """Dense decoder: `hidden_units` Dense layers, then the flat output, reshaped.

    `hidden_units` are listed latent side first (the mirror of the encoder's).
    """
    inputs = keras.Input(shape=(latent_dim,), name="z")
    h = inputs
    h = dense_stack(h, hidden_units, activation, use_bias, activity_l1, dropout)
    flat = keras.layers.Dense(
        math.prod(output_shape), activation=output_activation, use_bias=use_bias, name="output"
    )(h)
    if len(output_shape) > 1:
        flat = keras.layers.Reshape(tuple(output_shape))(flat)
    return float32_model(inputs, flat, name=name)
