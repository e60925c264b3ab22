"""What a detector gives its exports: the `AnomalyDetector` hooks `keras_deepad.export` calls.

An export needs three things from a detector, and they differ by family; each
is a method of the detector, with a default here that the families override:

- `export_endpoints()`: **extra SavedModel signatures** on the raw input `x`
  (`reconstruct` and `feature_scores` for reconstruction models, `embed` for
  one-class models, `member_scores` for ensembles);
- `export_graph_score(method)`: the **graph score** written into
  `serving_default` and the float TFLite files. It is
  `compute_scores(x, method)` unless the family needs a TFLite-compatible
  rewrite (the VAE's Monte-Carlo scores draw fixed noise with stateless random
  ops that TFLite lacks; its export bakes the same draws in as a constant);
- `export_edge_head(method)`: an **edge head** for full-integer TFLite, the part
  of the network that quantises well (a reconstruction in normalised units, an
  embedding, the decoder outputs), run on normalised input, plus a JSON
  *scoring recipe* that `keras_deepad.edge` applies on the host in float to
  turn the head's outputs into exactly the detector's score (see
  `keras_deepad.edge.SCORINGS`); `None` where there is none, and then
  `no_edge_head_hint` says what to use instead.

Every edge head and graph score is checked against `compute_scores` on probe
inputs when exported: one that does not reproduce the score is left out (int8
export then says why) or refused, never exported wrong.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from keras import ops

#: Reconstruction score methods the generic edge head reproduces: method -> error kind
#: (per-sample error between the normalised input and `reconstruct_normalised`).
RECONSTRUCTION_ERROR_METHODS = {"mse": "mse", "mae": "mae", "max": "max", "reconstruction": "mse"}
#: int8 calibration headroom of heads whose score grows with the output (embeddings, codes):
#: on blobs the VAE latent score kept AUROC 0.930 / 0.985 / 0.994 with headroom 1 / 2 / 4
#: (float: 0.994).
EMBEDDING_HEADROOM = 4.0
#: The hooks below; the nearest class that defines one of them names the export family.
EXPORT_HOOKS = ("export_endpoints", "export_graph_score", "export_edge_head", "no_edge_head_hint")


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


def floats(value) -> list:
    """A tensor or array as a (nested) list of Python floats, for a scoring recipe."""
    return np.asarray(ops.convert_to_numpy(value), dtype=np.float64).tolist()
