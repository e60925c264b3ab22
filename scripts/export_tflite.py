#!/usr/bin/env python
"""Export a trained .keras detector (or a SavedModel version folder) as a TFLite file.

Usage:
    python scripts/export_tflite.py MODEL.keras [--quantization float32|float16|dynamic-int8|int8]
        [--representative-data DATA] [--scoring auto|graph|host] [--base-dir saved_models]
        [--name NAME] [--output PATH.tflite] [--overwrite] [--json]

Writes saved_models/<name>-<quantization>.tflite and its metadata <file>.json by default.
A thin wrapper over `keras-deepad export --format tflite` (same options); score the file with
`keras_deepad.edge.EdgeDetector`.
"""

import sys

from keras_deepad.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", "--format", "tflite", "--model-file", *sys.argv[1:]]))
