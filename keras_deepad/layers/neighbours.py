"""Training embeddings kept with a model, to score a row by its distance to its nearest ones."""

import keras
import numpy as np
from keras import ops

from keras_deepad.layers.code_density import LOG_EPS, log_standardise, spread

#: How many neighbours the score averages over.
NEIGHBOURS = 10
#: How many training embeddings a model keeps (evenly spaced rows of larger training data).
BANK_ROWS = 4096
#: A bank row within this fraction of the bank's typical nearest-neighbour distance (squared)
#: of the scored row is taken to be the row itself, and does not count (see `NeighbourBank`).
SELF_MATCH_FRACTION = 1e-4
#: The self-match tolerance is at least this fraction of the kept rows' mean squared norm
#: (centred): above float32's rounding of a row's squared distance to itself.
ROUNDING_FRACTION = 1e-5
#: Squared distance given to the unused rows of the bank: never among the nearest.
_FAR = 1e30
#: The nearest rows are re-measured exactly among this many times `k + 1` candidates (those
#: nearest by the fast, rounded expansion of the squared distance).
CANDIDATES = 2
#: `CodeNeighbours` takes the spread of its training log distances over at most this many
#: codes (evenly spaced).
STATS_ROWS = 16384


@keras.saving.register_keras_serializable(package="keras_deepad")
class NeighbourBank(keras.layers.Layer):
    """The mean distance of an embedding to its `k` nearest training embeddings.

    `fit` keeps up to `capacity` training embeddings (evenly spaced rows of
    larger data) as non-trainable weights, so the score travels with the
    model's `.keras` file, SavedModel and TFLite graph. The score of a row
    is the mean Euclidean distance to its `k` nearest kept embeddings, the
    kNN detector of Ramaswamy et al. (2000) in the learned space. A kept
    embedding (almost) equal to the row's own, closer than
    `SELF_MATCH_FRACTION` of the bank's median nearest-neighbour distance
    (squared), is taken to be the row itself and skipped, as a kNN
    detector leaves a training row out of its own neighbours: a training
    row scores as a new row from the same data would, so thresholds and
    score quantiles taken on the training data are not biased low. (An
    exact copy of a training row is scored without that copy too.)

    Args:
        dim: the length of an embedding.
        capacity: the most embeddings kept (`BANK_ROWS`).
        k: the number of neighbours averaged (`NEIGHBOURS`); a bank of
            fewer than `k + 1` rows averages over all rows but the row itself.
    """

    def __init__(self, dim, capacity=BANK_ROWS, k=NEIGHBOURS, **kwargs):
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.capacity = int(capacity)
        self.k = int(k)
        if self.dim < 1 or self.k < 1 or self.capacity < self.k + 1:
            raise ValueError(
                "NeighbourBank needs dim >= 1, k >= 1 and capacity >= k + 1. "
                f"Received dim={dim}, k={k}, capacity={capacity}."
            )

    def build(self, input_shape=None):
        self.bank = self.add_weight(
            shape=(self.capacity, self.dim), initializer="zeros", trainable=False, name="bank"
        )
        # The bank's mean (rows are stored centred on it: small squared norms, exact sums),
        # the number of rows kept, the neighbours averaged, the self-match tolerance.
        self.origin = self.add_weight(
            shape=(self.dim,), initializer="zeros", trainable=False, name="origin"
        )
        self.state = self.add_weight(shape=(3,), initializer="zeros", trainable=False, name="state")

    @property
    def is_fitted(self) -> bool:
        return self.built and float(self.state.value.numpy()[0]) > 0

    @property
    def rows(self) -> int:
        """How many training embeddings are kept (0 before `fit`)."""
        return int(self.state.value.numpy()[0]) if self.built else 0

    def kept_rows(self, n):
        """Indices of the rows `fit` keeps of `n`: all, or `capacity` evenly spaced ones."""
        if n <= self.capacity:
            return np.arange(n)
        return np.linspace(0, n - 1, self.capacity).round().astype(np.int64)

    def fit(self, embeddings):
        """Keeps the training `embeddings` `(n, dim)`; evenly spaced rows beyond `capacity`."""
        embeddings = np.asarray(embeddings, dtype=np.float64)
        embeddings = embeddings.reshape(len(embeddings), -1 if embeddings.size else self.dim)
        if len(embeddings) < 1 or embeddings.shape[1] != self.dim:
            raise ValueError(
                f"NeighbourBank.fit needs at least one embedding of length {self.dim}. "
                f"Received shape {embeddings.shape}."
            )
        if not np.isfinite(embeddings).all():
            raise ValueError(
                "NeighbourBank.fit received NaN or infinite embeddings: the network's outputs "
                "on the training data are not finite."
            )
        if not self.built:
            self.build()
        embeddings = embeddings[self.kept_rows(len(embeddings))]
        n = len(embeddings)
        origin = embeddings.mean(axis=0)
        centred = embeddings - origin
        k = min(self.k, max(n - 1, 1))
        bank = np.zeros((self.capacity, self.dim))
        bank[:n] = centred
        self.bank.assign(bank.astype(np.float32))
        self.origin.assign(origin.astype(np.float32))
        self.state.assign(np.asarray([n, k, self_match_tolerance(centred)], dtype=np.float32))

    def squared_distances(self, embeddings):
        """`(batch, capacity)` squared distances to the kept rows (`_FAR` to unused ones)."""
        centred = ops.cast(embeddings, "float32") - self.origin
        bank_norms = ops.sum(ops.square(self.bank), axis=-1)
        squared = (
            ops.sum(ops.square(centred), axis=-1, keepdims=True)
            - 2.0 * ops.matmul(centred, ops.transpose(self.bank))
            + bank_norms[None, :]
        )
        used = ops.cast(ops.arange(self.capacity), "float32") < self.state[0]
        return ops.where(used[None, :], ops.maximum(squared, 0.0), _FAR)

    def call(self, embeddings):
        """The mean distance of each embedding to its `k` nearest kept ones (itself left out).

        The nearest rows are found with the fast expansion of the squared
        distance (`squared_distances`, whose float32 rounding is about
        `ROUNDING_FRACTION` of the rows' squared norm), then their distances
        are taken again from the differences (exact to float32 precision of
        the distance itself: the SavedModel, the TFLite graph and the host
        recipe agree on rows that lie very close together). A squared
        distance within the self-match tolerance counts as the tolerance:
        closer rows are one point to the score.
        """
        n, k, tolerance = self.state[0], self.state[1], self.state[2]
        centred = ops.cast(embeddings, "float32") - self.origin
        candidates = min(CANDIDATES * (self.k + 1), self.capacity)
        index = ops.top_k(-self.squared_distances(embeddings), k=candidates, sorted=False)[1]
        rows = ops.take(self.bank, index, axis=0)  # (batch, candidates, dim)
        squared = ops.sum(ops.square(centred[:, None, :] - rows), axis=-1)
        squared = ops.where(ops.cast(index, "float32") < n, squared, _FAR)
        # The k + 1 smallest squared distances, in increasing order.
        nearest = -ops.top_k(-squared, k=self.k + 1, sorted=True)[0]
        distances = ops.sqrt(ops.clip(nearest, tolerance, _FAR))
        # Skip the first when it is the row itself (and another row is kept to stand in).
        skip = ops.logical_and(nearest[:, :1] <= tolerance, n > 1)
        chosen = ops.where(skip, distances[:, 1:], distances[:, :-1])
        counted = ops.cast(ops.arange(self.k), "float32") < k
        return ops.sum(ops.where(counted[None, :], chosen, 0.0), axis=-1) / k

    def edge_fields(self):
        """The kept rows, origin, k and tolerance, as the host recipes read them (JSON)."""
        rows, k, tolerance = (float(v) for v in self.state.value.numpy())
        return {
            "bank": self.bank.value.numpy()[: int(rows)].reshape(-1).astype(float).tolist(),
            "origin": self.origin.value.numpy().astype(float).tolist(),
            "k": int(k),
            "tolerance": tolerance,
        }

    def load_own_variables(self, store):
        # A model saved before the bank existed has none: stay unfitted.
        if len(store.keys()) == 0:
            return
        super().load_own_variables(store)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "capacity": self.capacity, "k": self.k}


def self_match_tolerance(centred):
    """The squared distance under which a kept row is taken to be the scored row itself.

    `SELF_MATCH_FRACTION` times the median squared distance of a kept row to
    its nearest other row (over at most 1,024 evenly spaced rows, exact
    duplicates ignored), and at least `ROUNDING_FRACTION` times the rows'
    mean squared norm (about the float32 rounding of a row's distance to
    itself in `squared_distances`).
    """
    centred = np.asarray(centred, dtype=np.float64)
    scale = float(np.mean(np.sum(centred**2, axis=1)))
    floor = max(ROUNDING_FRACTION * scale, 1e-12)
    if len(centred) < 2:
        return floor
    index = np.linspace(0, len(centred) - 1, min(len(centred), 1024)).round().astype(np.int64)
    probe = centred[index]
    squared = (
        np.sum(probe**2, axis=1)[:, None] - 2.0 * probe @ centred.T + np.sum(centred**2, axis=1)
    )
    squared[np.arange(len(index)), index] = np.inf  # a row is not its own neighbour
    squared = np.where(squared > floor, squared, np.inf)  # nor is a copy of it
    nearest = squared.min(axis=1)
    nearest = nearest[np.isfinite(nearest)]
    if len(nearest) == 0:
        return floor
    return max(SELF_MATCH_FRACTION * float(np.median(nearest)), floor)


@keras.saving.register_keras_serializable(package="keras_deepad")
class CodeNeighbours(NeighbourBank):
    """A `NeighbourBank` of training codes with the spread of their log distances.

    The code half of the autoencoders' `"hybrid_knn"` score: the log mean
    distance of a code to its `k` nearest kept training codes, standardised
    by the mean and standard deviation of that log over the training codes
    (each scored without itself, as `NeighbourBank` does), so that it adds to
    the standardised log reconstruction error in the same unit
    (`keras_deepad.layers.CodeDensity`). Where the Mahalanobis distance of
    `"hybrid"` measures a code against one Gaussian, this sees codes of
    several clusters, or a curved one, as the training data spreads them.
    """

    def build(self, input_shape=None):
        super().build(input_shape)
        # Mean and standard deviation of the log distances of the training codes.
        self.log_stats = self.add_weight(
            shape=(2,),
            initializer=keras.initializers.Constant([0.0, 1.0]),
            trainable=False,
            name="log_stats",
        )

    def fit(self, embeddings, batch_size=4096):
        """Keeps the training codes and the spread of their (leave-one-out) log distances.

        The spread is taken over at most `STATS_ROWS` evenly spaced codes.
        """
        super().fit(embeddings)
        embeddings = np.asarray(embeddings, dtype=np.float32).reshape(len(embeddings), self.dim)
        if len(embeddings) > STATS_ROWS:
            index = np.linspace(0, len(embeddings) - 1, STATS_ROWS).round().astype(np.int64)
            embeddings = embeddings[index]
        distances = np.concatenate(
            [
                np.asarray(ops.convert_to_numpy(self.distance(embeddings[i : i + batch_size])))
                for i in range(0, len(embeddings), batch_size)
            ]
        ).astype(np.float64)
        logs = np.log(np.maximum(distances, 0.0) + LOG_EPS)
        self.log_stats.assign(np.asarray([logs.mean(), spread(logs)], dtype=np.float32))

    def invalidate(self):
        """NaN statistics (marked fitted): every score is NaN, for a network that diverged."""
        if not self.built:
            self.build()
        self.state.assign(np.asarray([1.0, 1.0, 0.0], dtype=np.float32))
        self.log_stats.assign(np.full(2, np.nan, dtype=np.float32))

    def distance(self, embeddings):
        """The mean distance to the `k` nearest kept codes (`NeighbourBank.call`)."""
        return super().call(embeddings)

    def call(self, embeddings):
        """The standardised log mean distance of each code to its nearest training codes."""
        return log_standardise(self.distance(embeddings), self.log_stats[0], self.log_stats[1])
