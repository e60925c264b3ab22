"""Training on several devices and several machines with `tf.distribute`.

Every detector trains with plain `fit` under `MirroredStrategy` (several
GPUs or CPUs of one machine) and `MultiWorkerMirroredStrategy` (several
machines, configured by the standard `TF_CONFIG` environment variable):
create and compile it in `strategy.scope()`, then `fit` as usual. Keras
3.15's `fit` fails across worker processes (keras-team/keras#20585);
`AnomalyDetector` carries the fix (`MultiWorkerFitMixin`), so nothing
changes for the user.

What `fit` computes besides the weights is global: each worker reads the
same training input for the normaliser, Deep SVDD's centre and radius,
OC-NN's r and thresholds (an array, or a file pattern all workers can
read), while Keras shards the training batches across workers (by file for
the file-based pipelines of `keras_deepad.data`, by batch otherwise).

Example (the same script on every machine, each with its own `TF_CONFIG`):

    >>> strategy = get_strategy("multiworker")  # doctest: +SKIP
    >>> with strategy.scope():  # doctest: +SKIP
    ...     model = AE()
    ...     model.compile()
    >>> model.fit(x, epochs=50, batch_size=64 * strategy.num_replicas_in_sync,  # doctest: +SKIP
    ...           callbacks=[BackupAndRestore("gs://bucket/backup")])
    >>> if is_chief():  # doctest: +SKIP
    ...     model.save("model.keras")
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from keras_deepad.choices import STRATEGIES

#: Gradients up to this size travel in one collective all-reduce per step.
PACK_BYTES = 32 * 2**20


def cluster_spec() -> dict:
    """`TF_CONFIG` as a dict (`{}` when it is not set)."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return {}
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {raw[:200]!r}") from None
    if not isinstance(config, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object. Received: {raw[:200]!r}")
    return config


def task() -> tuple[str, int]:
    """This process's `(task type, index)` in `TF_CONFIG`; `("worker", 0)` without one."""
    config = cluster_spec().get("task") or {}
    return str(config.get("type", "worker")), int(config.get("index", 0))


def num_workers() -> int:
    """Processes that train together: the chief and workers of `TF_CONFIG` (1 without one)."""
    cluster = cluster_spec().get("cluster") or {}
    return max(1, len(cluster.get("chief", [])) + len(cluster.get("worker", [])))


def is_chief() -> bool:
    """Whether this process saves and exports: the `chief` task, else worker 0.

    Under `MultiWorkerMirroredStrategy` every worker ends `fit` with the same
    weights; only the chief writes them (`model.save`, `export_saved_model`,
    `export_tflite`), so workers never race on one path.
    """
    kind, index = task()
    cluster = cluster_spec().get("cluster") or {}
    if kind == "chief":
        return True
    return kind == "worker" and index == 0 and not cluster.get("chief")


def get_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """A `tf.distribute` strategy by name.

    Args:
        name: `"multiworker"` (`MultiWorkerMirroredStrategy` from
            `TF_CONFIG`, which must name at least one task), `"mirrored"`
            (every GPU of this machine, or its CPU), `"default"` (no
            distribution), or `"auto"`: multiworker when `TF_CONFIG` names
            several tasks, mirrored when this machine has several GPUs,
            default otherwise.

    Returns:
        The strategy. Create and compile detectors in its `scope()`.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}. Received: {name!r}")
    if name == "auto":
        if num_workers() > 1:
            name = "multiworker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "multiworker":
        if not cluster_spec().get("cluster"):
            raise ValueError(
                "strategy='multiworker' needs TF_CONFIG with the cluster and this process's "
                'task, e.g. {"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
                '"task": {"type": "worker", "index": 0}}.'
            )
        # One all-reduce per step for all gradients (packed), not one per variable.
        options = tf.distribute.experimental.CommunicationOptions(bytes_per_pack=PACK_BYTES)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` that works with several worker processes.

    Keras' callback writes every worker's backup to the same file; this one
    gives each `TF_CONFIG` task a folder of its own under `backup_dir`
    (`backup_dir/worker-1`, ...; `backup_dir` itself without `TF_CONFIG`).
    A restarted job (every worker started again with the same command)
    resumes from the last backed-up epoch; the backups are deleted when
    training finishes (unless `delete_checkpoint=False`).

    Args:
        backup_dir: folder for the backups, shared or local to each worker.
        **kwargs: `keras.callbacks.BackupAndRestore` arguments
            (`save_freq`, `double_checkpoint`, `delete_checkpoint`).
    """

    def __init__(self, backup_dir, **kwargs):
        backup_dir = os.fspath(backup_dir)
        if cluster_spec().get("cluster"):
            kind, index = task()
            backup_dir = os.path.join(backup_dir, f"{kind}-{index}")
        super().__init__(backup_dir, **kwargs)
