import math

import keras

from keras_deepad.networks.precision import float32_model


def _regularizer(l1):
    return keras.regularizers.L1(l1) if l1 else None


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
    code = keras.layers.Dense(
        output_dim,
        activation=output_activation,
        use_bias=use_bias,
        activity_regularizer=keras.regularizers.L1(output_l1) if output_l1 else None,
        name="code",
    )(h)
    return float32_model(inputs, code, name=name)


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
    flat = keras.layers.Dense(
        math.prod(output_shape), activation=output_activation, use_bias=use_bias, name="output"
    )(h)
    if len(output_shape) > 1:
        flat = keras.layers.Reshape(tuple(output_shape))(flat)
    return float32_model(inputs, flat, name=name)
