"""Anomaly scores beyond the detectors' defaults: generative-model scores and group anomalies."""

from keras_deepad.scores.generative import (
    DISCRIMINATOR_SCORES,
    decoder_log_volume,
    discriminator_score,
    jacodeco,
    latent_score,
    monte_carlo,
    negative_elbo,
)
from keras_deepad.scores.group import GroupAnomalies, aggregate_posterior, group_anomalies

__all__ = [
    "DISCRIMINATOR_SCORES",
    "GroupAnomalies",
    "aggregate_posterior",
    "decoder_log_volume",
    "discriminator_score",
    "group_anomalies",
    "jacodeco",
    "latent_score",
    "monte_carlo",
    "negative_elbo",
]
