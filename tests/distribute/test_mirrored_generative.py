"""AAE and WAE under MirroredStrategy over two logical CPU devices.

The reconstruction update runs before any prior draw, so the decoder after
one SGD step must equal the single-device step exactly (losses divided by
the replica count); the adversarial updates draw prior samples per replica
and are only checked to run with every optimizer built in the strategy
(WAE-GAN shares the AAE's discriminator update).
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
    from keras_deepad.models import AAE, WAE

    x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    makers = {
        "aae": lambda: AAE(hidden_units=(8,), latent_dim=2, dropout=0.0, seed=0),
        "wae-mmd": lambda: WAE(hidden_units=(8,), latent_dim=2, dropout=0.0, lambda_=0.0, seed=0),
    }

    def one_step(name, strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = makers[name]()
            model.build((None, 8))
            model.compile(keras.optimizers.SGD(0.1))
        model.scaler.adapt(x)
        model.fit(tf.data.Dataset.from_tensor_slices(x).batch(64), epochs=1, verbose=0)
        for opt in ["optimizer", *model.extra_optimizers]:
            assert int(getattr(model, opt).iterations.numpy()) == 1, (name, opt)
        assert all(np.isfinite(w.numpy()).all() for w in model.trainable_weights), name
        return model

    # One strategy for the whole process: a second one reuses collective keys.
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    for name in makers:
        single = one_step(name, tf.distribute.get_strategy())
        mirrored = one_step(name, strategy)
        pairs = list(zip(single.decoder.weights, mirrored.decoder.weights))
        if name == "wae-mmd":  # lambda = 0: the whole step is deterministic
            pairs += list(zip(single.encoder.weights, mirrored.encoder.weights))
        pairs.append((single.error_moment, mirrored.error_moment))
        diff = max(float(np.abs(a.numpy() - b.numpy()).max()) for a, b in pairs)
        print(name, diff)
        assert diff < 1e-6, (name, diff)
        assert float(mirrored.error_steps.numpy()) == 1.0
    """
)


def test_mirrored_generative_step_matches_single_device(tmp_path):
    script = tmp_path / "mirrored_generative.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
