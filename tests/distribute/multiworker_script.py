"""One process of a multi-worker test (run by test_multiworker.py, not collected by pytest).

Usage: python multiworker_script.py MODE OUT_DIR [ARGS]

With `TF_CONFIG` set the detectors train under `MultiWorkerMirroredStrategy`;
without it (`single`) on one device, for the reference values. Each mode
saves what it trained as `OUT_DIR/<name>-<task index or "single">.npz`.
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_deepad import distribute  # noqa: E402
from keras_deepad.models import AAE, AE, OCNN, VAE, WAE, DeepSVDD  # noqa: E402

#: Detectors whose step is deterministic: under two workers (one replica each, half the
#: global batch) they must take the single-process SGD steps.
DETERMINISTIC = {
    "ae": lambda: AE(hidden_units=(8,), latent_dim=2, dropout=0.0, seed=0),
    "deep-svdd": lambda: DeepSVDD(
        hidden_units=(16,), rep_dim=4, batch_norm=False, pretrain_epochs=0, seed=0
    ),
    "deep-svdd-soft": lambda: DeepSVDD(
        objective="soft-boundary",
        hidden_units=(16,),
        rep_dim=4,
        batch_norm=False,
        pretrain_epochs=0,
        warm_up_epochs=1,
        seed=0,
    ),
    "ocnn": lambda: OCNN(hidden_units=8, seed=0),
}
#: Detectors that draw noise in their step (the VAE's and stochastic encoders' samples, prior
#: samples) or take statistics of the whole batch (the WAE's MMD): each replica takes its rows
#: of the noise drawn for the global batch and the MMD is taken over the gathered batch, so
#: they too must take the single-process steps. Dropout is off: Keras' Dropout layers draw
#: their masks per replica.
STOCHASTIC = {
    "vae": lambda: VAE(hidden_units=(8,), latent_dim=2, seed=0),
    "aae": lambda: AAE(
        hidden_units=(8,), latent_dim=2, prior="mog", stochastic_encoder=True, dropout=0.0, seed=0
    ),
    "wae": lambda: WAE(hidden_units=(8,), latent_dim=2, prior="normal", dropout=0.0, seed=0),
    "wae-gan": lambda: WAE(
        penalty="gan", hidden_units=(8,), latent_dim=2, prior="normal", dropout=0.0, seed=0
    ),
    "deep-svdd-pretrained": lambda: DeepSVDD(
        hidden_units=(16,), rep_dim=4, batch_norm=False, pretrain_epochs=1, seed=0
    ),
}


def data(rows=256, features=8):
    return np.random.default_rng(0).normal(size=(rows, features)).astype("float32") * 3 + 1


def state(model) -> dict:
    values = {f"weight{i}": w.numpy() for i, w in enumerate(model.trainable_weights)}
    values["offset"] = model.scaler.offset.numpy()
    values["scale"] = model.scaler.scale.numpy()
    values["threshold"] = np.asarray(model.threshold, np.float32)
    for key in ("center", "radius", "rho"):
        if hasattr(model, key):
            values[key] = np.asarray(getattr(model, key).numpy())
    return values


def train(strategy, factory, x, **fit_kwargs):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = factory()
        model.compile(keras.optimizers.SGD(0.01))
    history = model.fit(x, batch_size=64, verbose=0, **fit_kwargs)
    model.calibrate(data(), contamination=0.1)
    return model, history.history["loss"]


def families(strategy, out, tag, names):
    for name in names.split(","):
        factory = {**DETERMINISTIC, **STOCHASTIC}[name]
        model, losses = train(strategy, factory, data(), epochs=2, shuffle=False)
        assert np.isfinite(losses).all(), (name, losses)
        np.savez(os.path.join(out, f"{name}-{tag}.npz"), **state(model))
        print(tag, name, "trained", losses, flush=True)


def files(strategy, out, tag, pattern):
    """An AE trained from sharded TFRecord files (each worker reads its own files)."""
    from keras_deepad.data import tfrecord_dataset

    per_replica = 32
    dataset = tfrecord_dataset(pattern, (8,), batch_size=per_replica * distribute.num_workers())
    model, losses = train(strategy, DETERMINISTIC["ae"], dataset, epochs=2)
    np.savez(os.path.join(out, f"files-{tag}.npz"), **state(model))
    print(tag, "files trained", losses, flush=True)


class Stall(keras.callbacks.Callback):
    """Marks the end of epoch `epoch` with a file, then waits there to be killed."""

    def __init__(self, marker, epoch):
        super().__init__()
        self.marker, self.epoch = marker, epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            with open(self.marker, "w") as handle:
                handle.write(str(epoch))
            time.sleep(600)


def resume(strategy, out, tag, stall_after):
    """Trains with per-worker backups; optionally stalls (to be killed) after an epoch."""
    callbacks = [distribute.BackupAndRestore(os.path.join(out, "backup"))]
    stall_after = int(stall_after)
    if stall_after >= 0:
        callbacks.append(Stall(os.path.join(out, f"stalled-{tag}"), stall_after))
    epochs_run = []
    record = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, _: epochs_run.append(e))
    callbacks.append(record)
    model, losses = train(strategy, DETERMINISTIC["ae"], data(), epochs=6, callbacks=callbacks)
    np.savez(os.path.join(out, f"resume-{tag}.npz"), epochs=np.array(epochs_run), **state(model))
    print(tag, "resumed epochs", epochs_run, flush=True)


def main():
    mode, out, *args = sys.argv[1:]
    if os.environ.get("TF_CONFIG"):
        strategy = distribute.get_strategy("multiworker")
        tag = str(distribute.task()[1])
    else:
        strategy, tag = tf.distribute.get_strategy(), "single"
    {"families": families, "files": files, "resume": resume}[mode](strategy, out, tag, *args)


if __name__ == "__main__":
    main()
