import math

import keras

from keras_deepad.networks.mlp import code_layer
from keras_deepad.networks.precision import float32_model


def _check_image_shape(shape, what):
    if len(shape) != 3:
        raise ValueError(
            f"convolutional networks need image {what} of shape (height, width, channels). "
            f"Received: {tuple(shape)}"
        )


def crop_to(h, height, width):
    """Crops an upsampled map `h` (bottom and right) to `height x width`."""
    crop_h, crop_w = int(h.shape[1]) - height, int(h.shape[2]) - width
    if crop_h or crop_w:
        h = keras.layers.Cropping2D(((0, crop_h), (0, crop_w)))(h)
    return h


def build_conv_encoder(
    input_shape,
    output_dim,
    filters=(32, 64),
    kernel_size=3,
    activation="relu",
    output_activation=None,
    output_l1=0.0,
    use_bias=True,
    batch_norm=False,
    name="encoder",
):
    """Strided-convolution encoder for images `(H, W, C)`.

    Each entry of `filters` is a `Conv2D(stride 2, "same")`, optionally
    followed by batch norm; the feature map is flattened into a Dense code.
    """
    _check_image_shape(input_shape, "inputs")
    inputs = keras.Input(shape=tuple(input_shape), name="x")
    h = inputs
    for i, n in enumerate(filters):
        h = keras.layers.Conv2D(
            n, kernel_size, strides=2, padding="same", use_bias=use_bias, name=f"conv_{i}"
        )(h)
        if batch_norm:
            h = keras.layers.BatchNormalization(name=f"bn_{i}")(h)
        h = keras.layers.Activation(activation)(h)
    h = keras.layers.Flatten()(h)
    return float32_model(
        inputs, code_layer(h, output_dim, output_activation, use_bias, output_l1), name=name
    )


def build_conv_decoder(
    latent_dim,
    output_shape,
    filters=(64, 32),
    kernel_size=3,
    activation="relu",
    output_activation=None,
    use_bias=True,
    batch_norm=False,
    name="decoder",
):
    """Transposed-convolution decoder mirroring `build_conv_encoder`.

    `filters` are listed latent side first. The map is upsampled by 2 per
    entry from `ceil(H / 2**n)` and cropped to the exact output size.
    """
    _check_image_shape(output_shape, "outputs")
    height, width, channels = (int(d) for d in output_shape)
    factor = 2 ** len(filters)
    h0, w0 = math.ceil(height / factor), math.ceil(width / factor)
    first = filters[0] if filters else channels
    inputs = keras.Input(shape=(latent_dim,), name="z")
    h = keras.layers.Dense(h0 * w0 * first, activation=activation, use_bias=use_bias)(inputs)
    h = keras.layers.Reshape((h0, w0, first))(h)
    for i, n in enumerate(filters):
        h = keras.layers.Conv2DTranspose(
            n, kernel_size, strides=2, padding="same", use_bias=use_bias, name=f"deconv_{i}"
        )(h)
        if batch_norm:
            h = keras.layers.BatchNormalization(name=f"bn_{i}")(h)
        h = keras.layers.Activation(activation)(h)
    h = keras.layers.Conv2D(
        channels,
        kernel_size,
        padding="same",
        activation=output_activation,
        use_bias=use_bias,
        name="output",
    )(h)
    return float32_model(inputs, crop_to(h, height, width), name=name)
