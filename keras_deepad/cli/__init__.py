"""The `keras-deepad` command: train, score, evaluate and export detectors without code.

`parser` declares the subcommands and their arguments (from shared groups),
`commands` runs them; `main` turns what a user can fix into one line and
exit status 2.
"""

from __future__ import annotations

import os
import sys

from keras_deepad.cli.common import (  # noqa: F401  (the command-line helpers, importable here)
    check_output_path,
    evaluate_model,
    load_data,
    load_model,
    save_keras_atomically,
    train_and_calibrate,
)
from keras_deepad.cli.help_text import DESCRIPTION, EXAMPLES  # noqa: F401
from keras_deepad.cli.parser import build_parser  # noqa: F401


def _quiet_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


_FLAG_SPELLINGS = (
    ("pass overwrite=True", "pass --overwrite"),
    ("overwrite=True", "--overwrite"),
)

#: Errors a user can cause and fix (bad input, paths, a diverged fit): one line, exit 2.
USER_ERRORS = (ValueError, TypeError, OSError, FloatingPointError, KeyError, LookupError)


def _message(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    if isinstance(err, KeyError) and len(err.args) == 1:
        text = f"missing key {err.args[0]!r}"
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        text = f"{err.strerror}: {err.filename}"
    for python, flag in _FLAG_SPELLINGS:
        text = text.replace(python, flag)
    return " ".join(text.split())


def main(argv=None) -> int:
    """Runs one command. Exit status: 0 done, 2 a user error (one line on stderr, no
    traceback; `--debug` shows it), 1 an internal error, 130 interrupted."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv[: argv.index("--")] if "--" in argv else "--debug" in argv
    if debug:
        argv.remove("--debug")
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_tensorflow()
    try:
        args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"keras-deepad {args.command}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        if debug:
            raise
        message = _message(err)
        if "features per sample but the model expects" in message and (
            getattr(args, "label_column", "") is None
        ):
            message += " If one column of the file is a 0/1 label, name it with --label-column."
        print(f"keras-deepad {args.command}: error: {message}", file=sys.stderr)
        return 2
    except Exception as err:  # a bug: still one line, the traceback with --debug
        if debug:
            raise
        print(
            f"keras-deepad {args.command}: internal error: {type(err).__name__}: "
            f"{_message(err)} (run again with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    return 0
