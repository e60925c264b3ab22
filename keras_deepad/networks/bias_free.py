"""Bias-free networks for hypersphere detectors (Deep SVDD, Ruff et al. 2018).

A network with a bias term, a learnable batch-norm shift or a bounded
activation can map every input to the same point (the "hypersphere
collapse"): the Deep SVDD loss is then zero and the detector useless. The
builders here use `use_bias=False` everywhere, batch norm without learnable
centre and scale (PyTorch reference settings: eps 1e-4, momentum 0.1), leaky
ReLU and no output activation; `check_bias_free` refuses user networks that
break these rules.
"""

import functools
import math

import keras

from keras_deepad.networks.conv import crop_to
from keras_deepad.networks.precision import float32_model

#: Activations with a bounded range: a network ending in one can be constant.
BOUNDED_ACTIVATIONS = frozenset(
    {
        "sigmoid",
        "tanh",
        "softmax",
        "softsign",
        "hard_sigmoid",
        "hard_tanh",
        "relu6",
        "hard_silu",
        "hard_swish",
        "log_sigmoid",
        "sparse_sigmoid",
        "sparsemax",
    }
)
NEGATIVE_SLOPE = 0.01  # leaky ReLU slope of the reference implementation
BN_EPSILON = 1e-4
#: PyTorch's `momentum=0.1` (weight of the new batch) is Keras' `momentum=0.9`
#: (weight of the old average). Keras' default 0.99 leaves the moving statistics
#: far from the batch statistics the objective was trained on, so the centre,
#: the radius and every score computed in inference mode drift.
BN_MOMENTUM = 0.9


def _batch_norm(name):
    return keras.layers.BatchNormalization(
        center=False, scale=False, epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name
    )


def _leaky(name):
    return keras.layers.LeakyReLU(negative_slope=NEGATIVE_SLOPE, name=name)


def build_bias_free_mlp(
    input_shape, rep_dim, hidden_units=(64, 32), batch_norm=True, name="network"
):
    """Dense `phi`: flatten, `[Dense(no bias) -> BN(no affine) -> leaky ReLU]*`, linear code."""
    inputs = keras.Input(shape=tuple(input_shape), name="x")
    h = keras.layers.Flatten()(inputs) if len(input_shape) > 1 else inputs
    for i, units in enumerate(hidden_units):
        h = keras.layers.Dense(units, use_bias=False, name=f"dense_{i}")(h)
        if batch_norm:
            h = _batch_norm(f"bn_{i}")(h)
        h = _leaky(f"leaky_relu_{i}")(h)
    code = keras.layers.Dense(rep_dim, use_bias=False, name="code")(h)
    return float32_model(inputs, code, name=name)


def build_bias_free_mlp_decoder(
    rep_dim,
    output_shape,
    hidden_units=(32, 64),
    batch_norm=True,
    output_activation=None,
    name="decoder",
):
    """Mirror of `build_bias_free_mlp` for pretraining; `hidden_units` latent side first."""
    inputs = keras.Input(shape=(rep_dim,), name="z")
    h = inputs
    for i, units in enumerate(hidden_units):
        h = keras.layers.Dense(units, use_bias=False, name=f"dense_{i}")(h)
        if batch_norm:
            h = _batch_norm(f"bn_{i}")(h)
        h = _leaky(f"leaky_relu_{i}")(h)
    out = keras.layers.Dense(
        math.prod(output_shape), activation=output_activation, use_bias=False, name="output"
    )(h)
    if len(output_shape) > 1:
        out = keras.layers.Reshape(tuple(output_shape))(out)
    return float32_model(inputs, out, name=name)


def build_bias_free_conv(
    input_shape, rep_dim, filters=(8, 4), kernel_size=5, batch_norm=True, name="network"
):
    """Convolutional `phi` of the Deep SVDD reference networks.

    Each entry of `filters` is `Conv2D(kernel_size, "same", no bias) -> BN
    (no affine) -> leaky ReLU -> 2x2 max-pool`; the map is flattened into a
    bias-free Dense code of `rep_dim` units. With `filters=(8, 4)`,
    `kernel_size=5`, `rep_dim=32` this is the MNIST network of Ruff et al.;
    with `(32, 64, 128)` and `rep_dim=128` the CIFAR-10 one.
    """
    if len(input_shape) != 3:
        raise ValueError(
            "the convolutional network needs images of shape (height, width, channels). "
            f"Received: {tuple(input_shape)}"
        )
    inputs = keras.Input(shape=tuple(input_shape), name="x")
    h = inputs
    for i, n in enumerate(filters):
        h = keras.layers.Conv2D(n, kernel_size, padding="same", use_bias=False, name=f"conv_{i}")(h)
        if batch_norm:
            h = _batch_norm(f"bn_{i}")(h)
        h = _leaky(f"leaky_relu_{i}")(h)
        h = keras.layers.MaxPooling2D(2, padding="same", name=f"pool_{i}")(h)
    h = keras.layers.Flatten()(h)
    code = keras.layers.Dense(rep_dim, use_bias=False, name="code")(h)
    return float32_model(inputs, code, name=name)


def build_bias_free_conv_decoder(
    rep_dim,
    output_shape,
    filters=(4, 8),
    kernel_size=5,
    batch_norm=True,
    output_activation=None,
    name="decoder",
):
    """Mirror of `build_bias_free_conv`: upsample x2 and transposed convolution per entry.

    `filters` are listed latent side first. The code is mapped to a
    `ceil(H / 2**n) x ceil(W / 2**n)` map and the result cropped to `output_shape`.
    """
    height, width, channels = (int(d) for d in output_shape)
    factor = 2 ** len(filters)
    h0, w0 = math.ceil(height / factor), math.ceil(width / factor)
    first = filters[0] if filters else channels
    inputs = keras.Input(shape=(rep_dim,), name="z")
    h = keras.layers.Dense(h0 * w0 * first, use_bias=False, name="dense")(inputs)
    h = keras.layers.Reshape((h0, w0, first))(h)
    if batch_norm:
        h = _batch_norm("bn_dense")(h)
    h = _leaky("leaky_relu_dense")(h)
    for i, n in enumerate(filters):
        h = keras.layers.UpSampling2D(2, name=f"upsample_{i}")(h)
        h = keras.layers.Conv2DTranspose(
            n, kernel_size, padding="same", use_bias=False, name=f"deconv_{i}"
        )(h)
        if batch_norm:
            h = _batch_norm(f"bn_{i}")(h)
        h = _leaky(f"leaky_relu_{i}")(h)
    h = keras.layers.Conv2DTranspose(
        channels,
        kernel_size,
        padding="same",
        activation=output_activation,
        use_bias=False,
        name="output",
    )(h)
    return float32_model(inputs, crop_to(h, height, width), name=name)


def _function_name(function):
    """Name and keyword arguments of an activation given as a function or a `functools.partial`."""
    keywords = {}
    while isinstance(function, functools.partial):
        keywords = {**function.keywords, **keywords}
        function = function.func
    return getattr(function, "__name__", type(function).__name__), keywords


def _bounded_activation(layer):
    """Describes the bounded activation of `layer`, or returns `None`."""
    if isinstance(layer, keras.layers.Softmax):
        return "a softmax"
    if isinstance(layer, keras.layers.ReLU) and layer.max_value is not None:
        return f"the bounded activation 'relu' with max_value={layer.max_value}"
    for attribute in ("activation", "recurrent_activation"):
        function = getattr(layer, attribute, None)
        if function is None or not callable(function):
            continue
        name, keywords = _function_name(function)
        if name in BOUNDED_ACTIVATIONS:
            return f"the bounded activation {name!r}"
        if name == "relu" and keywords.get("max_value") is not None:
            return f"the bounded activation 'relu' with max_value={keywords['max_value']}"
    return None


def _own_trainable_variables(layer):
    """Trainable variables created by `layer` itself, not by its sub-layers."""
    inner = {
        id(v)
        for sub in layer._flatten_layers(include_self=False, recursive=True)
        for v in sub.trainable_weights
    }
    return [v for v in layer.trainable_weights if id(v) not in inner]


def _bias_problems(layer):
    problems = []
    if getattr(layer, "use_bias", False):
        problems.append(f"layer {layer.name!r} has a bias (use_bias=True)")
    normalization = (
        keras.layers.BatchNormalization,
        keras.layers.LayerNormalization,
        keras.layers.GroupNormalization,
    )
    if isinstance(layer, normalization) and (layer.center or layer.scale):
        problems.append(
            f"normalization layer {layer.name!r} has a learnable shift/scale "
            "(use center=False, scale=False)"
        )
    if isinstance(layer, keras.layers.PReLU):
        # Its slopes can have any rank (one per position of an image), so refuse the layer.
        problems.append(f"layer {layer.name!r} learns its slopes (PReLU); use LeakyReLU")
    if not problems:
        for variable in _own_trainable_variables(layer):
            if len(variable.shape) < 2:
                problems.append(
                    f"layer {layer.name!r} has the learnable {len(variable.shape)}-d variable "
                    f"{variable.name!r} of shape {tuple(variable.shape)} (a shift or a "
                    "per-unit scale)"
                )
    return problems


def check_bias_free(network, allow_bias=False, allow_bounded_activation=False):
    """Raises `ValueError` if `network` can collapse to a constant.

    Refused unless `allow_bias=True`: layers with a bias (`use_bias=True`,
    trainable or not), batch, layer or group normalisation with a learnable
    shift or scale, PReLU, and any other trainable variable of rank < 2 (a
    vector or scalar, e.g. a custom layer's offset): only kernels (rank >= 2)
    may be learned. Refused unless `allow_bounded_activation=True`: the
    activations in `BOUNDED_ACTIVATIONS` (a layer's `activation` or
    `recurrent_activation`, given by name or as a function, also through
    `functools.partial`), `relu` / `keras.layers.ReLU` with a `max_value`,
    and `keras.layers.Softmax`. Activations that cannot be inspected (a
    `lambda`) are not detected.

    Raises:
        ValueError: naming every offending layer and what is wrong with it.
    """
    problems = []
    for layer in network._flatten_layers(include_self=True, recursive=True):
        if not allow_bias:
            problems.extend(_bias_problems(layer))
        if not allow_bounded_activation:
            bounded = _bounded_activation(layer)
            if bounded:
                problems.append(f"layer {layer.name!r} has {bounded}")
    if problems:
        raise ValueError(
            "Deep SVDD networks must be bias-free with unbounded activations, or the "
            "trivial constant solution exists (hypersphere collapse): "
            + "; ".join(problems)
            + ". Pass allow_bias=True / allow_bounded_activation=True to use it anyway."
        )
