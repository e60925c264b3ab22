"""Training under MirroredStrategy over two logical CPU devices.

A deterministic detector (AE) takes exactly the single-device SGD step; a
VAE (whose sampling noise differs per replica) trains to finite weights.
"""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from keras_deepad.models import AE, VAE

    x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")

    def one_step(cls, strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            # No dropout: both steps must see the same deterministic network.
            model = cls(hidden_units=(8,), latent_dim=2, seed=0, **(
                {"dropout": 0.0, "latent_activation": None, "normalization": "minmax"}
                if cls is AE else {"beta": 0.0}))
            model.build((None, 8))
            model.compile(keras.optimizers.SGD(0.1))
        model.scaler.adapt(x)
        data = tf.data.Dataset.from_tensor_slices(x).batch(64)
        model.fit(data, epochs=1, verbose=0)
        return [w.numpy() for w in model.trainable_weights]

    # One strategy for the whole process: a second one reuses collective keys.
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    for cls in (AE, VAE):
        single = one_step(cls, tf.distribute.get_strategy())
        mirrored = one_step(cls, strategy)
        diff = max(float(np.abs(a - b).max()) for a, b in zip(single, mirrored))
        print(cls.__name__, diff)
        assert all(np.isfinite(w).all() for w in mirrored)
        if cls is AE:
            assert diff < 1e-6, diff
    """
)


def test_mirrored_step_matches_single_device(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
