#!/usr/bin/env python
"""Export a trained .keras detector as a SavedModel for TF Serving.

Usage:
    python scripts/export_saved_model.py MODEL.keras [--base-dir saved_models] [--name NAME]
        [--version N] [--overwrite]

A thin wrapper over `keras-deepad export` (same options).
"""

import sys

from keras_deepad.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", "--model-file", *sys.argv[1:]]))
