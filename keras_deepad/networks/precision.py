"""Mixed precision: networks compute in the global policy's dtype and return float32."""

import keras


def is_mixed_precision() -> bool:
    """Whether the global Keras dtype policy computes in a dtype other than float32."""
    return keras.mixed_precision.global_policy().compute_dtype != "float32"


def float32_model(inputs, outputs, name):
    """`keras.Model(inputs, outputs)` whose outputs are float32 under a mixed policy.

    Under `mixed_float16` / `mixed_bfloat16` the layers compute in half
    precision; the network's output is cast back to float32 by a final
    linear `Activation` with a float32 policy (Keras' advice for model
    outputs), so losses, scores and the detector's fitted state (Deep SVDD's
    centre, OC-NN's r) stay in float32. Under a float32 policy nothing is
    added, so the network is the same as without mixed precision.
    """
    if is_mixed_precision():
        outputs = keras.layers.Activation("linear", dtype="float32", name="float32_output")(outputs)
    return keras.Model(inputs, outputs, name=name)
