"""The option values the library accepts, in a module that imports nothing heavy.

Each module checks its arguments against these (and re-exports its own under
its usual name); the command line offers them as `choices` without importing
TensorFlow, so `keras-deepad --help` stays fast.
"""

#: `export_tflite(quantization=...)`.
QUANTIZATIONS = ("float32", "float16", "dynamic-int8", "int8")
#: `export_tflite(scoring=...)`: in the file (`graph`) or finished by `keras_deepad.edge` (`host`).
TFLITE_SCORINGS = ("auto", "graph", "host")
#: `keras_deepad.distribute.get_strategy(name)`.
STRATEGIES = ("auto", "default", "mirrored", "multiworker")
#: `group_anomalies(aggregate=...)`: the combination of the per-reference distances.
AGGREGATES = ("mean", "median", "min", "max")
#: `keras_deepad.beam` input formats.
BEAM_INPUT_FORMATS = ("csv", "tfrecord", "parquet")
#: `keras-deepad export --format`.
EXPORT_FORMATS = ("saved_model", "tflite")
