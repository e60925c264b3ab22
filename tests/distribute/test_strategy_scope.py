"""The Keras pattern `with strategy.scope(): model = ...; model.compile()` then `fit`.

One detector of each family of the shared contract is created and compiled
in a MirroredStrategy scope over two logical CPUs without calling `build`,
and trains. For the detectors with fitted state, one SGD epoch under the strategy
gives the same weights, normaliser statistics, Deep SVDD centre and radius,
OC-NN r and threshold as on one device (SGD: Adam would hide a missing
division of the loss by the number of replicas).
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.models.test_keras_training import FAMILIES

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, ROOT)
    from keras_deepad.models import DeepSVDD, OCNN
    from tests.models.test_contract import FACTORIES
    from tests.models.test_keras_training import FAMILIES
    FAMILIES = sorted(FAMILIES)

    x = np.random.default_rng(0).normal(size=(256, 8)).astype("float32") * 3 + 1
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    for name in FAMILIES:
        with strategy.scope():
            model = FACTORIES[name]()
            model.compile()
        history = model.fit(x[:128], epochs=1, batch_size=64, verbose=0)
        assert np.isfinite(history.history["loss"]).all(), name
        assert np.isfinite(model.score(x[:10])).all(), name
        print(name, "trains in the scope", flush=True)

    PARITY = {
        "deep-svdd": lambda: DeepSVDD(hidden_units=(16,), rep_dim=4, batch_norm=False,
                                      pretrain_epochs=0, seed=0),
        "deep-svdd-soft": lambda: DeepSVDD(objective="soft-boundary", hidden_units=(16,),
                                           rep_dim=4, batch_norm=False, pretrain_epochs=0,
                                           warm_up_epochs=1, seed=0),
        "ocnn": lambda: OCNN(hidden_units=8, seed=0),
    }

    def state(strategy_, factory):
        keras.utils.set_random_seed(0)
        with strategy_.scope():
            model = factory()
            model.compile(keras.optimizers.SGD(0.01))
        model.fit(x, epochs=2, batch_size=64, shuffle=False, verbose=0)
        model.calibrate(x, contamination=0.1)
        values = {"weights": [w.numpy() for w in model.trainable_weights],
                  "offset": model.scaler.offset.numpy(), "scale": model.scaler.scale.numpy(),
                  "threshold": model.threshold}
        for key in ("center", "radius", "rho"):
            if hasattr(model, key):
                values[key] = np.asarray(getattr(model, key).numpy())
        return values

    for name, factory in PARITY.items():
        single = state(tf.distribute.get_strategy(), factory)
        mirrored = state(strategy, factory)
        for key, value in single.items():
            pairs = zip(value, mirrored[key]) if key == "weights" else [(value, mirrored[key])]
            for a, b in pairs:
                np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5, err_msg=f"{name} {key}")
        print(name, "matches the single-device state:", sorted(single), flush=True)
    """
)


def test_every_detector_in_a_strategy_scope(tmp_path):
    script = tmp_path / "scope.py"
    script.write_text(f"ROOT = {str(ROOT)!r}\n" + SCRIPT)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr[-5000:]
    assert result.stdout.count("trains in the scope") == len(FAMILIES), result.stdout
    assert result.stdout.count("matches the single-device state") == 3, result.stdout
