"""Encoders and decoders: functional Keras models without a loss.

Detectors build their networks from a small config through `build_encoder`
and `build_decoder` (the autoencoder families through one `AutoEncoderSpec`),
or take user-supplied `keras.Model`s.
"""

from keras_deepad.networks.conv import build_conv_decoder, build_conv_encoder
from keras_deepad.networks.critic import build_latent_discriminator
from keras_deepad.networks.mlp import build_mlp_decoder, build_mlp_encoder
from keras_deepad.networks.spec import ARCHITECTURES, AutoEncoderSpec


def build_encoder(architecture, input_shape, output_dim, **config):
    """Builds an encoder `input_shape -> (output_dim,)` of the named architecture."""
    if architecture == "mlp":
        return build_mlp_encoder(input_shape, output_dim, **config)
    if architecture == "conv":
        return build_conv_encoder(input_shape, output_dim, **config)
    raise ValueError(f"architecture must be one of {ARCHITECTURES}. Received: {architecture!r}")


def build_decoder(architecture, latent_dim, output_shape, **config):
    """Builds a decoder `(latent_dim,) -> output_shape` mirroring `build_encoder`."""
    if architecture == "mlp":
        return build_mlp_decoder(latent_dim, output_shape, **config)
    if architecture == "conv":
        return build_conv_decoder(latent_dim, output_shape, **config)
    raise ValueError(f"architecture must be one of {ARCHITECTURES}. Received: {architecture!r}")


__all__ = [
    "ARCHITECTURES",
    "AutoEncoderSpec",
    "build_conv_decoder",
    "build_conv_encoder",
    "build_decoder",
    "build_encoder",
    "build_latent_discriminator",
    "build_mlp_decoder",
    "build_mlp_encoder",
]
