"""What each detector family exports besides its score: one table, one line per family.

An export needs three things from a detector, and they differ by family:

- **extra SavedModel signatures** on the raw input `x` (`reconstruct` and
  `feature_scores` for reconstruction models, `embed` for one-class models,
  `member_scores` for ensembles);
- the **graph score** written into `serving_default` and the float TFLite
  files. It is `model.compute_scores(x, method)` unless the family needs a
  TFLite-compatible rewrite (the VAE's Monte-Carlo scores draw fixed noise
  with stateless random ops that TFLite lacks; the export bakes the same
  draws in as a constant);
- an **edge head** for full-integer TFLite: the part of the network that
  quantises well (a reconstruction in normalised units, an embedding, the
  decoder outputs), run on normalised input, plus a JSON *scoring recipe*
  that `keras_deepad.edge` applies on the host in float to turn the head's
  outputs into exactly the detector's score (see `keras_deepad.edge.SCORINGS`).

Families are looked up by class name along the detector's MRO, so a subclass
inherits its parent's entry and a new reconstruction detector (any
`ReconstructionDetector` whose score is the mse/mae/max reconstruction error
of its `reconstruct_normalised`) needs no entry at all. Registering a new
family is one line::

    EXPORT_FAMILIES["MyDetector"] = ExportFamily(embedding_endpoints, hypersphere_head)

or `register_export_family("MyDetector", ExportFamily(...))`. Every edge
head is checked against `compute_scores` on probe inputs when exported; a
head that does not reproduce the score is left out (int8 export then says
why) rather than exported wrong.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from keras import ops

from keras_deepad.scores.generative import monte_carlo_noise

#: Reconstruction score methods the generic edge head reproduces: method -> error kind
#: (per-sample error between the normalised input and `reconstruct_normalised`).
RECONSTRUCTION_ERROR_METHODS = {"mse": "mse", "mae": "mae", "max": "max", "reconstruction": "mse"}
#: int8 calibration headroom of heads whose score grows with the output (embeddings, codes):
#: on blobs the VAE latent score kept AUROC 0.930 / 0.985 / 0.994 with headroom 1 / 2 / 4
#: (float: 0.994).
EMBEDDING_HEADROOM = 4.0


@dataclasses.dataclass(frozen=True)
class EdgeHead:
    """The part of a detector that a full-integer TFLite file runs.

    Attributes:
        fn: maps a batch of *normalised* inputs to a dict of output tensors,
            each with the batch as its first axis.
        scoring: a JSON-serialisable recipe (`{"kind": ..., constants}`) that
            `keras_deepad.edge.score_from_outputs` turns into the score.
        calibration_headroom: default int8 calibration headroom (see
            `export_tflite`): 1 where clipping outputs to the normal range
            only raises anomalous scores (a reconstruction compared with the
            unclipped input), more where the score grows with the output
            itself (an embedding, a latent code) and clipping would hide
            anomalies.
    """

    fn: Callable
    scoring: dict
    calibration_headroom: float = 1.0


def no_endpoints(model) -> dict:
    return {}


def no_head(model, method):
    return None


def default_graph_score(model, method):
    return lambda x: model.compute_scores(x, method)


@dataclasses.dataclass(frozen=True)
class ExportFamily:
    """How a detector family is exported.

    Attributes:
        endpoints: `model -> {signature name: fn(x) -> {output name: tensor}}`,
            extra SavedModel signatures on raw input.
        edge_head: `(model, score_method) -> EdgeHead | None`; `None` means
            no host-scored (int8) export for that method.
        graph_score: `(model, score_method) -> fn(x) -> scores`, the score
            written into `serving_default` (must convert to TFLite builtins).
        no_head_hint: what to use instead, said when `edge_head` returns
            `None` (default: how to register a family with a head).
    """

    endpoints: Callable = no_endpoints
    edge_head: Callable = no_head
    graph_score: Callable = default_graph_score
    no_head_hint: str = ""


# ------------------------------------------------------------------ pieces
def _floats(value) -> list:
    return np.asarray(ops.convert_to_numpy(value), dtype=np.float64).tolist()


def reconstruction_endpoints(model) -> dict:
    return {
        "reconstruct": lambda x: {"reconstruction": model(x, training=False)},
        "feature_scores": lambda x: {"feature_scores": model.compute_feature_scores(x)},
    }


def embedding_endpoints(model) -> dict:
    return {"embed": lambda x: {"embedding": model.compute_embedding(x)}}


def reconstruction_head(model, method):
    """Reconstruction in normalised units; the host takes the error."""
    if method == "hybrid":
        return hybrid_head(model)
    error = RECONSTRUCTION_ERROR_METHODS.get(method)
    if error is None:
        return None
    return EdgeHead(
        fn=lambda x_norm: {"reconstruction": model.reconstruct_normalised(x_norm)},
        scoring={"kind": "reconstruction_error", "error": error, "output": "reconstruction"},
    )


def hybrid_head(model):
    """Reconstruction and code; the host takes the error, the distance and their sum."""
    density = model.code_density

    def head(x_norm):
        code, reconstruction = model.code_and_reconstruction(x_norm)
        return {"reconstruction": reconstruction, "code": code}

    return EdgeHead(
        fn=head,
        scoring={
            "kind": "hybrid",
            "output": "reconstruction",
            "code_output": "code",
            "mean": _floats(density.mean),
            "precision": _floats(ops.reshape(density.precision, (-1,))),
            "log_stats": _floats(density.log_stats),
        },
        # The code grows with the anomaly: clipping it to the normal range would hide some.
        calibration_headroom=EMBEDDING_HEADROOM,
    )


def hypersphere_head(model, method):
    """Deep SVDD: `phi` of the normalised input; the host takes `||e - c||^2 (- R^2)`."""
    radius = float(ops.convert_to_numpy(model.radius))
    return EdgeHead(
        fn=lambda x_norm: {"embedding": model.network(x_norm, training=False)},
        scoring={
            "kind": "center_distance",
            "output": "embedding",
            "center": _floats(model.center),
            "radius_squared": radius**2 if method == "boundary" else 0.0,
        },
        calibration_headroom=EMBEDDING_HEADROOM,
    )


def margin_head(model, method):
    """OC-NN: the host takes `r - <w, g(V x)>`.

    Linear and sigmoid `g`: the head is `g(V x)` of the normalised input.
    Cosine features: the head is the phase `V x + b` and the host takes the
    cosine (`cosine_margin`), since TFLite has no integer cosine (it would
    run in float between a dequantise and a quantise).
    """
    scoring = {
        "weights": _floats(model.output_weights),
        "offset": float(ops.convert_to_numpy(model.rho)),
    }
    if model.activation == "cos":
        return EdgeHead(
            fn=lambda x_norm: {"phase": model.preactivation_normalised(x_norm)},
            scoring={
                "kind": "cosine_margin",
                "output": "phase",
                "scale": model.feature_scale,
                **scoring,
            },
            calibration_headroom=EMBEDDING_HEADROOM,
        )
    return EdgeHead(
        fn=lambda x_norm: {"embedding": model.embed_normalised(x_norm)},
        scoring={"kind": "linear_margin", "output": "embedding", **scoring},
        calibration_headroom=EMBEDDING_HEADROOM,
    )


# -------------------------------------------------------------------- VAE
VAE_MONTE_CARLO_METHODS = ("reconstruction_probability", "elbo")


def _vae_score_noise(model):
    """The VAE's fixed score draws `eps_l`, shape `(L, latent_dim)`, as a constant.

    `VAE.mc_nll` draws them with a stateless op from `score_seed`; evaluating
    it once here gives the same values without a random op in the graph.
    """
    eps = monte_carlo_noise(model.mc_samples, model.latent_dim, model.score_seed)
    return np.asarray(ops.convert_to_numpy(eps), dtype=np.float32)


def _vae_decoded_samples(model, x_norm, eps):
    """Decoder outputs for `z_l = mu + sigma * eps_l`, shape `(batch, L, *feature_shape)`."""
    mu, logvar = model.posterior(x_norm)
    z = mu[:, None, :] + ops.exp(0.5 * logvar)[:, None, :] * ops.convert_to_tensor(eps)[None]
    decoded = model.decoder(ops.reshape(z, (-1, model.latent_dim)))
    return mu, logvar, ops.reshape(decoded, (-1, model.mc_samples, *model.feature_shape))


def vae_graph_score(model, method):
    if method not in VAE_MONTE_CARLO_METHODS:
        return default_graph_score(model, method)
    from keras_deepad.losses import gaussian_kl

    eps = _vae_score_noise(model)

    def score(x):
        x_norm = model.scaler(x)
        mu, logvar = model.posterior(x_norm)
        nll = model.mc_nll(x_norm, mu, logvar, eps=eps)
        return nll if method == "reconstruction_probability" else nll + gaussian_kl(mu, logvar)

    return score


def vae_head(model, method):
    if method == "reconstruction":
        return reconstruction_head(model, method)
    if method == "latent":
        return EdgeHead(
            fn=lambda x_norm: {"mu": model.posterior(x_norm)[0]},
            scoring={"kind": "standard_normal_nll", "output": "mu"},
            calibration_headroom=EMBEDDING_HEADROOM,
        )
    if method not in VAE_MONTE_CARLO_METHODS:
        return None
    eps = _vae_score_noise(model)

    def head(x_norm):
        mu, logvar, decoded = _vae_decoded_samples(model, x_norm, eps)
        return {"decoded": decoded, "mu": mu, "logvar": logvar}

    scoring = {
        "kind": "vae_monte_carlo",
        "likelihood": model.likelihood,
        "include_kl": method == "elbo",
        "outputs": {"decoded": "decoded", "mu": "mu", "logvar": "logvar"},
    }
    if model.likelihood == "gaussian":
        scoring["decoder_logvar"] = _floats(model.clipped_decoder_logvar())
    return EdgeHead(fn=head, scoring=scoring)


# --------------------------------------------------------------- ensemble
ENSEMBLE_NO_HEAD_HINT = (
    "an ensemble is scored in one graph that combines its members' scores, and int8 "
    "exports are scored on the host; export it with quantization='float32', 'float16' or "
    "'dynamic-int8' (scoring='graph', which keras_deepad.edge also runs), or export each "
    "member on its own for int8"
)


def _ensemble_member_scores(model):
    """`fn(x) -> (batch, n_members)`: each member's own graph score, standardised."""
    member_fns = [family_of(m)[1].graph_score(m, m.score_method) for m in model.members]
    return lambda x: model.compute_member_scores(x, member_fns)


def ensemble_endpoints(model) -> dict:
    member_scores = _ensemble_member_scores(model)
    endpoints = {"member_scores": lambda x: {"member_scores": member_scores(x)}}
    if model.has_feature_scores:
        endpoints["feature_scores"] = lambda x: {"feature_scores": model.compute_feature_scores(x)}
    return endpoints


def ensemble_graph_score(model, method):
    member_scores = _ensemble_member_scores(model)
    return lambda x: model.combine_scores(member_scores(x), method)


# ------------------------------------------------------------------- table
#: Class name -> export family. Looked up along the detector's MRO.
EXPORT_FAMILIES: dict[str, ExportFamily] = {
    "AnomalyDetector": ExportFamily(),
    "ReconstructionDetector": ExportFamily(reconstruction_endpoints, reconstruction_head),
    "VAE": ExportFamily(reconstruction_endpoints, vae_head, vae_graph_score),
    "DeepSVDD": ExportFamily(embedding_endpoints, hypersphere_head),
    "OCNN": ExportFamily(embedding_endpoints, margin_head),
    "DetectorEnsemble": ExportFamily(
        ensemble_endpoints, no_head, ensemble_graph_score, ENSEMBLE_NO_HEAD_HINT
    ),
}


def register_export_family(class_name: str, family: ExportFamily) -> None:
    """Registers (or replaces) the export family of detectors named `class_name`."""
    if not isinstance(family, ExportFamily):
        raise TypeError(f"family must be an ExportFamily. Received: {type(family).__name__}")
    EXPORT_FAMILIES[class_name] = family


def family_of(model) -> tuple[str, ExportFamily]:
    """`(class name of the entry, ExportFamily)` for a detector, nearest class first."""
    for klass in type(model).__mro__:
        if klass.__name__ in EXPORT_FAMILIES:
            return klass.__name__, EXPORT_FAMILIES[klass.__name__]
    raise TypeError(
        f"{type(model).__name__} is not a keras_deepad detector (no export family found)."
    )
