"""One description of an autoencoder's networks, checked once and built in one place.

The autoencoder families (`AE`, `VAE` and the latent autoencoders `AAE` and
`WAE`) take the same architecture arguments. `AutoEncoderSpec` holds them:
`AutoEncoderSpec.checked(...)` validates them (each refusal names the
argument), `config(names)` is their part of a detector's `get_config`, and
`build(feature_shape, code_dim)` makes the encoder and the mirrored decoder.
A new architecture option is a field here, its check and its use in
`build`; a family offers it by naming it in its constructor.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from keras_deepad.networks.conv import build_conv_decoder, build_conv_encoder
from keras_deepad.networks.mlp import build_mlp_decoder, build_mlp_encoder
from keras_deepad.utils.validation import check_number, check_units

#: The architecture arguments every autoencoder family takes (a family may add others).
COMMON_ARGUMENTS = (
    "architecture",
    "hidden_units",
    "latent_dim",
    "activation",
    "conv_filters",
    "kernel_size",
    "dropout",
)
#: What every autoencoder family accepts as `architecture`.
ARCHITECTURES = ("mlp", "conv")
#: The one-hidden-layer form `min ||X - f(XU)V||_F^2` (sigmoid `f`, no biases), `AE` only.
SEED_ARCHITECTURE = "seed"


def check_latent_dim(latent_dim, *, multiple=True, owner="the autoencoder"):
    """A positive int, or (when `multiple`) a multiple of the input size such as `"10x"`."""
    if isinstance(latent_dim, str):
        try:
            ok = latent_dim.endswith("x") and float(latent_dim[:-1]) > 0
        except ValueError:
            ok = False
    else:
        ok = isinstance(latent_dim, int | np.integer) and not isinstance(latent_dim, bool)
        ok = ok and latent_dim > 0
    if not ok:
        raise ValueError(
            "latent_dim must be a positive int or a multiple of the input size such as '10x'. "
            f"Received: latent_dim={latent_dim!r}"
        )
    if isinstance(latent_dim, str):
        if not multiple:
            raise ValueError(f"{owner} latent_dim must be an int. Received: {latent_dim!r}")
        return latent_dim
    return int(latent_dim)


def resolve_latent_dim(latent_dim, feature_shape):
    """An int, or a string `"<k>x"` meaning k times the number of input features."""
    if isinstance(latent_dim, str):
        if not latent_dim.endswith("x"):
            raise ValueError(f"latent_dim must be an int or like '10x'. Received: {latent_dim!r}")
        return max(1, round(float(latent_dim[:-1]) * math.prod(feature_shape)))
    return int(latent_dim)


def check_dropout(dropout):
    """Refuse a dropout rate outside [0, 1) (NaN included)."""
    return check_number("dropout", dropout, low=0, high=1, high_open=True)


@dataclasses.dataclass(frozen=True)
class AutoEncoderSpec:
    """The architecture of an autoencoder: encoder `x -> code`, decoder `code -> x`.

    Attributes:
        architecture: `"mlp"` (dense), `"conv"` (images `(H, W, C)`) or, for
            `AE` only, `"seed"` (no hidden layer, sigmoid code, no biases).
        hidden_units: dense layer sizes of the encoder, input side first;
            the decoder mirrors them.
        latent_dim: size of the code (the decoder's input), or a string
            such as `"10x"` for a multiple of the input size.
        activation: activation of the hidden layers.
        conv_filters: filters of the strided convolutions (conv only).
        kernel_size: convolution kernel size (conv only).
        dropout: dropout rate after dense hidden layers (encoder and decoder).
        latent_activation: activation of the encoder's output (`None`: linear).
        latent_l1: L1 activity penalty on the encoder's output.
        output_activation: activation of the reconstruction (`None`: linear).
    """

    architecture: str = "mlp"
    hidden_units: tuple[int, ...] = (64,)
    latent_dim: int | str = 16
    activation: str | None = "relu"
    conv_filters: tuple[int, ...] = (32, 64)
    kernel_size: int = 3
    dropout: float = 0.0
    latent_activation: str | None = None
    latent_l1: float = 0.0
    output_activation: str | None = None

    @classmethod
    def checked(cls, *, architectures=ARCHITECTURES, latent_multiple=True, owner=None, **arguments):
        """A spec from constructor arguments, each checked (a `ValueError` names the argument).

        Args:
            architectures: the `architecture` values the family accepts.
            latent_multiple: whether `latent_dim` may be a multiple such as `"10x"`.
            owner: the family's name, for messages.
            **arguments: any of the fields; the others keep their defaults.
        """
        unknown = sorted(set(arguments) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise TypeError(f"unknown network arguments {unknown}.")
        spec = cls(**arguments)
        if spec.architecture not in architectures:
            raise ValueError(
                f"architecture must be one of {tuple(architectures)}. "
                f"Received: architecture={spec.architecture!r}"
            )
        return dataclasses.replace(
            spec,
            hidden_units=check_units("hidden_units", spec.hidden_units),
            latent_dim=check_latent_dim(
                spec.latent_dim, multiple=latent_multiple, owner=owner or "the autoencoder"
            ),
            conv_filters=check_units("conv_filters", spec.conv_filters),
            kernel_size=check_number("kernel_size", spec.kernel_size, low=1, integer=True),
            dropout=float(check_dropout(spec.dropout)),
            latent_l1=check_number("latent_l1", spec.latent_l1, low=0),
        )

    def config(self, names):
        """The fields `names` as a detector's `get_config` stores them (lists, not tuples)."""
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name in names
            for value in [getattr(self, name)]
        }

    def code_size(self, feature_shape) -> int:
        """The decoder's input size for inputs of `feature_shape` (`"10x"` resolved)."""
        return resolve_latent_dim(self.latent_dim, feature_shape)

    def build(self, feature_shape, code_dim=None):
        """`(encoder, decoder)` for inputs of `feature_shape`.

        `code_dim` is the encoder's output size when it differs from the
        decoder's input (a Gaussian encoder outputs mean and log-variance,
        `2 * latent_dim`); by default both are `code_size(feature_shape)`.
        """
        latent = self.code_size(feature_shape)
        code_dim = latent if code_dim is None else int(code_dim)
        if self.architecture == SEED_ARCHITECTURE:
            encoder = build_mlp_encoder(
                feature_shape,
                code_dim,
                hidden_units=(),
                output_activation="sigmoid",
                use_bias=False,
            )
            return encoder, build_mlp_decoder(
                latent, feature_shape, hidden_units=(), use_bias=False
            )
        if self.architecture == "mlp":
            build_enc, build_dec = build_mlp_encoder, build_mlp_decoder
            enc_cfg = {"hidden_units": self.hidden_units, "dropout": self.dropout}
            dec_cfg = {"hidden_units": self.hidden_units[::-1], "dropout": self.dropout}
        else:
            build_enc, build_dec = build_conv_encoder, build_conv_decoder
            enc_cfg = {"filters": self.conv_filters, "kernel_size": self.kernel_size}
            dec_cfg = {"filters": self.conv_filters[::-1], "kernel_size": self.kernel_size}
        encoder = build_enc(
            feature_shape,
            code_dim,
            activation=self.activation,
            output_activation=self.latent_activation,
            output_l1=self.latent_l1,
            **enc_cfg,
        )
        decoder = build_dec(
            latent,
            feature_shape,
            activation=self.activation,
            output_activation=self.output_activation,
            **dec_cfg,
        )
        return encoder, decoder
