"""Deep SVDD's state outside gradient training (`DeepSVDD` calls these): the autoencoder
pretraining of `phi`, the centre's rule, the radius quantile and the collapse guard."""

import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_deepad.models.base import MultiWorkerFitMixin
from keras_deepad.networks.bias_free import (
    build_bias_free_conv_decoder,
    build_bias_free_mlp_decoder,
)

#: Centre entries closer to zero than this are pushed to +-eps: a zero
#: coordinate is trivially reachable by a network with zero weights.
CENTER_EPS = 0.1


def adjust_center(center, eps=CENTER_EPS):
    """Pushes entries with `|c_i| < eps` to `+-eps`, keeping their sign (0 goes to +eps)."""
    center = np.asarray(center, dtype=np.float32).copy()
    small = np.abs(center) < eps
    center[small & (center < 0)] = -eps
    center[small & (center >= 0)] = eps
    return center


def radius_quantile(squared_distances, nu) -> float:
    """R: the `(1 - nu)` quantile of the distances `sqrt(squared_distances)`."""
    distances = np.sqrt(np.maximum(np.asarray(squared_distances, np.float64), 0.0))
    return float(np.quantile(distances, 1.0 - nu))


def warn_if_collapsed(squared_distances, tolerance) -> bool:
    """Warns (`RuntimeWarning`) and returns True if the distances have (almost) no spread."""
    distances = np.asarray(squared_distances, np.float64)
    spread, mean = float(np.std(distances)), float(np.mean(distances))
    collapsed = spread <= tolerance * abs(mean) + 1e-8
    if collapsed:
        warnings.warn(
            "Deep SVDD hypersphere collapse: the distances of the training data to the "
            f"centre are (nearly) constant (mean {mean:.3g}, std {spread:.3g}), so the "
            "scores cannot separate anything. Use a bias-free network with unbounded "
            "activations, keep pretraining on, or lower the learning rate.",
            RuntimeWarning,
            stacklevel=4,
        )
    return collapsed


class PretrainingAutoEncoder(MultiWorkerFitMixin, keras.Model):
    """Deep SVDD's network and a decoder, trained on the reconstruction (a functional model)."""


def build_pretraining_decoder(detector):
    """The decoder `rep_dim -> input`: the user's, else the mirror of the bias-free network."""
    if detector.decoder is not None:
        return detector.decoder
    if detector.architecture == "conv" and not detector._user_network:
        return build_bias_free_conv_decoder(
            detector.rep_dim,
            detector.feature_shape,
            filters=detector.conv_filters[::-1],
            kernel_size=detector.kernel_size,
            batch_norm=detector.batch_norm,
            output_activation=detector.decoder_output_activation,
        )
    return build_bias_free_mlp_decoder(
        detector.rep_dim,
        detector.feature_shape,
        hidden_units=detector.hidden_units[::-1],
        batch_norm=detector.batch_norm,
        output_activation=detector.decoder_output_activation,
    )


def pretrain(detector, x, epochs, batch_size=None, verbose=0, sample_weight=None):
    """`DeepSVDD.pretrain(x, ...)` (documented there) for `detector`."""
    detector.require_built("pretrain")
    if detector._user_network and detector.decoder is None:
        raise ValueError(
            "pretraining a user network needs a decoder: pass decoder=... or pretrain_epochs=0."
        )
    if not detector.scaler.is_adapted:
        detector.scaler.adapt(x)
    # In the detector's strategy: the decoder and Adam's slots are mirrored like phi.
    with detector.distribute_strategy.scope():
        with detector.seeded_construction(offset=1):
            decoder = build_pretraining_decoder(detector)
        inputs = keras.Input(shape=detector.feature_shape)
        autoencoder = PretrainingAutoEncoder(
            inputs, decoder(detector.network(inputs)), name="pretraining"
        )
        autoencoder.compile(
            optimizer=keras.optimizers.Adam(detector.pretrain_learning_rate), loss="mse"
        )
        # Slots made now, not in the first traced step (which tf.function then retraces).
        autoencoder.optimizer.build(autoencoder.trainable_variables)
    return autoencoder.fit(
        scaled_pairs(detector, x, batch_size, sample_weight),
        epochs=int(epochs),
        verbose=verbose,
        shuffle=False,
    )


def scaled_pairs(detector, x, batch_size, sample_weight=None):
    """`(scaled x, scaled x[, weight])` batches of `x` (array or dataset) for the autoencoder."""
    if isinstance(x, tf.data.Dataset):
        data = x.map(lambda *batch: (batch[0], *batch[2:3]))
    else:
        columns = (np.asarray(x, dtype=np.float32),)
        if sample_weight is not None:
            columns += (np.asarray(sample_weight, dtype=np.float32),)
        data = tf.data.Dataset.from_tensor_slices(columns)
        data = data.shuffle(min(len(x), 10_000), seed=detector.seed).batch(int(batch_size or 32))
    scaler = detector.scaler

    def pair(batch, *weights):
        scaled = scaler(tf.cast(batch, tf.float32))
        return (scaled, scaled, *weights)

    return data.map(pair).prefetch(tf.data.AUTOTUNE)
