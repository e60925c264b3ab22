import keras
from keras import ops

from keras_deepad.utils.replicas import global_draw


@keras.saving.register_keras_serializable(package="keras_deepad")
class Reparameterization(keras.layers.Layer):
    """Draws `z = mu + exp(0.5 * logvar) * eps`, `eps ~ N(0, I)`.

    Under a `tf.distribute` strategy each replica takes its rows of the
    noise drawn for the whole global batch, so training with several
    replicas draws what one process draws for the same global batch.

    Noise is drawn only when `training=True`; at inference the layer returns
    `mu`, so scores and exports are deterministic. The log-variance is clipped
    to `logvar_range` against overflow of `exp`.

    Args:
        logvar_range: `(low, high)` bounds applied to the log-variance.
        seed: integer seed of the layer's `keras.random.SeedGenerator`.

    Example:
        >>> layer = Reparameterization(seed=1)
        >>> z = layer([ops.zeros((4, 2)), ops.zeros((4, 2))], training=True)

    Reference:
        Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
    """

    def __init__(self, logvar_range=(-30.0, 20.0), seed=None, **kwargs):
        super().__init__(**kwargs)
        low, high = (float(v) for v in logvar_range)
        if not low < high:
            raise ValueError(
                f"logvar_range must be (low, high) with low < high. Received: {logvar_range}"
            )
        self.logvar_range = (low, high)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        mu, logvar = inputs
        if not training:
            return mu
        logvar = ops.clip(logvar, *self.logvar_range)
        # Under tf.distribute: this replica's rows of the noise of the whole global batch.
        eps = global_draw(
            lambda rows: keras.random.normal(
                (rows, *mu.shape[1:]), seed=self.seed_generator, dtype=mu.dtype
            ),
            ops.shape(mu)[0],
        )
        return mu + ops.exp(0.5 * logvar) * eps

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "logvar_range": list(self.logvar_range), "seed": self.seed}
