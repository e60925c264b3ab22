"""`python -m keras_deepad.cli`: the `keras-deepad` command."""

import sys

from keras_deepad.cli import main

sys.exit(main())
