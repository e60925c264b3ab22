"""VAE, AAE and WAE under MirroredStrategy over two logical CPU devices.

Their steps draw noise (the VAE's and stochastic encoders' samples, prior
samples) and the WAE-MMD takes a statistic of the whole batch. Each replica
takes its rows of the noise drawn for the global batch and the MMD is taken
over the gathered batch, so two epochs of SGD on two replicas end with the
weights of one device with the same global batch (every weight, every
optimizer; losses divided by the replica count). The input is not
shuffled: under `MirroredStrategy` tf.data's seeded shuffle does not give
one device's order (across worker processes it does: tests/distribute/
test_multiworker.py shuffles).
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
    from keras_deepad.models import AAE, VAE, WAE

    x = np.random.default_rng(0).normal(size=(256, 8)).astype("float32") * 3 + 1
    small = {"hidden_units": (8,), "latent_dim": 2, "seed": 0}
    makers = {
        "vae": lambda: VAE(**small),
        "aae": lambda: AAE(prior="mog", stochastic_encoder=True, dropout=0.0, **small),
        "wae-mmd": lambda: WAE(prior="normal", dropout=0.0, lambda_=10.0, **small),
        "wae-gan": lambda: WAE(penalty="gan", prior="normal", dropout=0.0, **small),
    }

    def train(name, strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = makers[name]()
            model.compile(keras.optimizers.SGD(0.05))
        model.fit(x, batch_size=64, epochs=2, shuffle=False, verbose=0)
        for opt in ["optimizer", *getattr(model, "extra_optimizers", ())]:
            assert int(getattr(model, opt).iterations.numpy()) == 8, (name, opt)
        return model

    # One strategy for the whole process: a second one reuses collective keys.
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    for name in makers:
        single = train(name, tf.distribute.get_strategy())
        mirrored = train(name, strategy)
        for a, b in zip(single.weights, mirrored.weights):
            # NaN where both are NaN: the threshold before calibrate.
            np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=0, atol=1e-5, err_msg=name)
        print(name, "equal")
    """
)


def test_mirrored_generative_training_matches_single_device(tmp_path):
    script = tmp_path / "mirrored_generative.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
