import keras

from keras_deepad.networks.precision import float32_model


def build_latent_discriminator(
    latent_dim,
    hidden_units=(64, 64),
    activation="relu",
    dropout=0.0,
    name="discriminator",
):
    """Dense discriminator (critic) on the latent space: `z -> logit`.

    The output is one unnormalised logit per sample; `sigmoid(logit)` is the
    probability `D(z)` that `z` was drawn from the prior rather than
    produced by the encoder. Losses use the logits directly (numerically
    stable cross-entropy).

    Args:
        latent_dim: size of the codes.
        hidden_units: sizes of the hidden Dense layers.
        activation: activation of the hidden layers.
        dropout: dropout rate after each hidden layer.
        name: the model's name.

    Example:
        >>> critic = build_latent_discriminator(8, hidden_units=(32, 32))
        >>> logits = critic(keras.random.normal((4, 8)))  # shape (4, 1)
    """
    latent_dim = int(latent_dim)
    if latent_dim < 1:
        raise ValueError(f"latent_dim must be a positive int. Received: latent_dim={latent_dim}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout}")
    inputs = keras.Input(shape=(latent_dim,), name="z")
    h = inputs
    for i, units in enumerate(hidden_units):
        h = keras.layers.Dense(int(units), activation=activation, name=f"dense_{i}")(h)
        if dropout:
            h = keras.layers.Dropout(dropout)(h)
    logit = keras.layers.Dense(1, name="logit")(h)
    return float32_model(inputs, logit, name=name)
