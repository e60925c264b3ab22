"""The members of a `DetectorEnsemble`: the default list, the checks of members and
arguments, how their scores are standardised, and their merged training history."""

from __future__ import annotations

import warnings

import keras
import numpy as np

from keras_deepad.models.adversarial_auto_encoder import AAE
from keras_deepad.models.auto_encoder import AE
from keras_deepad.models.base import AnomalyDetector
from keras_deepad.models.deep_svdd import DeepSVDD
from keras_deepad.models.wasserstein_auto_encoder import WAE

STANDARDIZATIONS = ("robust", "zscore")
#: The combination rules of the members' standardised scores; the first is the default.
COMBINES = ("mean", "max")
#: A member whose training-score spread is at most this (relative to its location) is
#: degenerate: it is scaled by 1 (and a warning says so) instead of divided by ~0.
_MIN_RELATIVE_SCALE = 1e-6
_NO_JOINT_OBJECTIVE = (
    "DetectorEnsemble has no joint objective: fit() trains each member with its own "
    "objective; evaluate the members instead ([m.evaluate(x) for m in ensemble.members])."
)


def default_members(seed=None) -> list:
    """The members of `DetectorEnsemble()`: one list, the one place to retune.

    Three reconstruction detectors scored by their `"hybrid_knn"` scores (the
    autoencoder, and the adversarial and Wasserstein autoencoders, whose
    codes are matched to a prior in two different ways) and a one-class
    objective on a pretrained encoder (Deep SVDD), each with its class
    defaults. Chosen on two benchmarks of the real development sets
    together: over 61 one-class tasks (each class of every labelled set
    normal in turn, `benchmarks/results/class_tasks.md`) mean AUROC 0.934,
    against 0.919 for the former members (AE, AAE, VAE and OC-NN; all on the
    current VAE and Deep SVDD defaults), 0.934 with the VAE instead of
    Deep SVDD and 0.926 with the VAE instead of the WAE (IsolationForest
    0.894); on the seven-set suite (`benchmarks/suite.py`, seeds 1-3) 0.688
    against 0.683-0.684 for the other three (IsolationForest 0.685). OC-NN
    left: it ranked below IsolationForest on the one-class tasks (0.816
    against 0.894), and with it the ensemble trailed its best members.
    With OC-NN's current defaults (0.919 there) adding it as a fifth member
    is a wash: suite 0.693 against 0.688, one-class tasks 0.940 against
    0.934 on seed 1 and 0.937 against 0.939 on seed 2, rare-class tasks
    0.617 against 0.621, for a fifth model to train; OC-NN instead of Deep
    SVDD: 0.683 on the suite, 0.941 on the one-class tasks. Since Deep
    SVDD scores by its `"knn"` default (the distance to its nearest
    training embeddings) the same four score 0.695 on the suite (0.693
    with the distance to Deep SVDD's centre), 0.943 on the one-class tasks
    (0.935) and 0.634 on the rare-class ones (0.621), seed 1. With the AE
    on its `"hybrid_knn"` default (its code's distance to the nearest
    training codes) they score 0.695 on the suite (0.695), 0.944 on the
    one-class tasks (0.943) and 0.646 on the rare-class ones (0.634), seed
    1, and 0.921 on one-class Fashion-MNIST (0.923). With the AAE and WAE
    on `"hybrid_knn"` too (their default since) they score 0.696 on the
    suite (0.695), 0.946 on the one-class tasks (0.944) and 0.667 on the
    rare-class ones (0.646), seed 1, and 0.919 on one-class Fashion-MNIST
    (0.921).

    Args:
        seed: `None`, or an int from which each member's seed is derived.

    Returns:
        A new list of new, untrained detectors.
    """

    def member_seed(offset):
        return None if seed is None else int(seed) + offset

    return [
        AE(seed=member_seed(0)),
        AAE(seed=member_seed(1)),
        WAE(seed=member_seed(2)),
        DeepSVDD(seed=member_seed(3)),
    ]


def preset_members(names, seed=None) -> list:
    """New detectors from registered preset names (`keras_deepad.registry`).

    Member i gets the seed `seed + i` (or none). A preset's learning rate, where it
    names one, is what `DetectorEnsemble.compile()` without an optimizer gives that
    member (others get their class's `default_learning_rate`); it is not saved, so
    the members of a loaded ensemble get their class's.
    """
    from keras_deepad.registry import get_detector, get_spec

    members = []
    for i, name in enumerate(names):
        member = get_detector(name, seed=None if seed is None else int(seed) + i)
        member.preset_learning_rate = get_spec(name).fit_params.get("learning_rate")
        members.append(member)
    return members


def _check_members(members, seed=None) -> list:
    if isinstance(members, AnomalyDetector) or not isinstance(members, list | tuple):
        raise ValueError(
            "members must be a list of detectors (AnomalyDetector instances) or of "
            f"registered preset names. Received: members of type {type(members).__name__}"
        )
    members = list(members)
    if members and all(isinstance(m, str) for m in members):
        members = preset_members(members, seed)
    if not members:
        raise ValueError("members must hold at least one detector. Received: members=[]")
    for i, member in enumerate(members):
        if isinstance(member, type) and issubclass(member, AnomalyDetector):
            raise ValueError(
                f"members[{i}] is the class {member.__name__}, not a detector: pass an instance "
                f"such as {member.__name__}()."
            )
        if not isinstance(member, AnomalyDetector):
            raise ValueError(
                f"members[{i}] is not a keras_deepad detector (an AnomalyDetector instance). "
                f"Received: {type(member).__name__}"
                + (
                    " (preset names and detectors cannot be mixed)"
                    if isinstance(member, str)
                    else ""
                )
            )
    seen = {}
    for i, member in enumerate(members):
        if id(member) in seen:
            raise ValueError(
                f"members[{i}] is the same detector object as members[{seen[id(member)]}]: "
                "each member must be its own instance."
            )
        seen[id(member)] = i
    shapes = {
        i: member.feature_shape
        for i, member in enumerate(members)
        if member.built and member.feature_shape is not None
    }
    if len(set(shapes.values())) > 1:
        described = ", ".join(f"members[{i}] {shape}" for i, shape in shapes.items())
        raise ValueError(
            "members were built for samples of different shapes; an ensemble's members must "
            f"all read the same samples. Received: {described}"
        )
    return members


def _location_scale(scores, standardization):
    """`(location, scale, kind of scale)` of one member's training scores."""
    if standardization == "robust":
        q25, location, q75 = np.quantile(scores, [0.25, 0.5, 0.75])
        scale, kind = q75 - q25, "IQR"
    else:
        location, scale, kind = np.mean(scores), np.std(scores), "standard deviation"
    floor = _MIN_RELATIVE_SCALE * max(1.0, abs(float(location)))
    if scale <= floor and standardization == "robust" and np.std(scores) > floor:
        scale, kind = np.std(scores), "standard deviation (the IQR is 0)"
    if scale <= floor:
        return float(location), 1.0, None
    return float(location), float(scale), kind


def _plain(value):
    """Tuples as lists, recursively: a config equals itself after a JSON round trip."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _copy_optimizer(optimizer):
    if isinstance(optimizer, keras.optimizers.Optimizer):
        return type(optimizer).from_config(optimizer.get_config())
    return keras.optimizers.get(optimizer)


def member_standardization(members, x, standardization, batch_size=None):
    """`(locations, scales)`: each member's score location and scale on `x` (warns for a
    member that scores `x` constantly; refuses one whose scores are not finite)."""
    locations, scales = [], []
    for i, member in enumerate(members):
        scores = member.score(x, batch_size=batch_size).astype(np.float64)
        if not np.isfinite(scores).all():
            raise ValueError(
                f"members[{i}] ({member.name}) gives non-finite scores on x: train it "
                "first (fit the ensemble, or fit the member before fit_standardization)."
            )
        location, scale, kind = _location_scale(scores, standardization)
        if kind is None:
            warnings.warn(
                f"members[{i}] ({member.name}) scores the training data (almost) "
                f"constantly (around {location:.4g}); it is scaled by 1 and adds nothing "
                "but a constant to the ensemble.",
                RuntimeWarning,
                stacklevel=3,
            )
        locations.append(location)
        scales.append(scale)
    return locations, scales


def merged_history(ensemble, histories, epochs):
    """One `History` of the members' fits: each member's logs as `"<i>:<name>/<key>"`, and
    `"loss"`, the mean of the members' losses per epoch."""
    logs = {}
    for i, (member, history) in enumerate(zip(ensemble.members, histories, strict=True)):
        for key, values in history.history.items():
            logs[f"{i}:{member.name}/{key}"] = [float(v) for v in values]
    losses = [h.history["loss"] for h in histories if "loss" in h.history]
    n_epochs = min((len(loss) for loss in losses), default=0)
    history = keras.callbacks.History()
    history.set_model(ensemble)
    history.epoch = list(range(n_epochs))
    history.params = {"epochs": int(epochs), "members": len(ensemble.members)}
    history.history = {
        "loss": [float(np.mean([loss[e] for loss in losses])) for e in range(n_epochs)],
        **logs,
    }
    return history


def members_without_feature_scores(members) -> list[str]:
    """The members that have no per-feature scores (`compute_feature_scores`), described."""
    return [
        f"members[{i}] {member.name} ({type(member).__name__})"
        for i, member in enumerate(members)
        if not callable(getattr(member, "compute_feature_scores", None))
    ]


def check_member_feature_scores(members) -> None:
    """A `ValueError` naming the members without per-feature scores, if any."""
    missing = members_without_feature_scores(members)
    if missing:
        raise ValueError(
            "feature_scores needs per-feature scores from every member; these members "
            f"have none: {missing}. Use member_scores(x) for a per-member breakdown instead."
        )


def check_ensemble_arguments(combine, score_method, normalization, standardization) -> str:
    """The combination rule `DetectorEnsemble(...)` uses; a `ValueError` naming a bad argument."""
    if combine is not None and score_method is not None and combine != score_method:
        raise ValueError(
            "combine and score_method name the same choice and disagree. "
            f"Received: combine={combine!r}, score_method={score_method!r}"
        )
    combine = combine or score_method or COMBINES[0]
    if combine not in COMBINES:
        raise ValueError(f"combine must be one of {COMBINES}. Received: combine={combine!r}")
    if normalization is not None:
        raise ValueError(
            "DetectorEnsemble takes no normalization: each member normalises its own "
            f"input (pass normalization to the members). Received: normalization="
            f"{normalization!r}"
        )
    if standardization not in STANDARDIZATIONS:
        raise ValueError(
            f"standardization must be one of {STANDARDIZATIONS}. "
            f"Received: standardization={standardization!r}"
        )
    return combine
