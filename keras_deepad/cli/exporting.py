"""The `export` command: SavedModel for TF Serving, TFLite for edge devices."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from keras_deepad.cli.common import emit, load_data, load_model, status


def _representative_data(args):
    """Normal rows of --representative-data (label 0 where labels are known)."""
    if args.representative_data is None:
        return None
    loaded = load_data(args.representative_data, seed=args.seed, label_column=args.label_column)
    if loaded.x_eval is not None and loaded.x_eval is loaded.x_train:  # a labelled file
        return loaded.x_train[loaded.y_eval == 0]
    return loaded.x_train


@contextlib.contextmanager
def _quiet_native_output(enabled: bool):
    """Sends what native code (the TFLite converter, TensorFlow's C++ logs) writes to the
    process's stdout and stderr to /dev/null while open; Python's own streams are flushed
    first and restored after, so errors raised inside still print normally."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def cmd_export(args):
    from keras_deepad.export import export_saved_model, export_tflite

    source = Path(args.model_file)
    name = args.name or (source.parent.name if source.is_dir() else source.stem)
    if args.format == "saved_model":
        if args.quantization or args.representative_data or args.output:
            raise ValueError(
                "--quantization, --representative-data and --output need --format tflite."
            )
        status(args, f"exporting {source} as a SavedModel ...")
        target = export_saved_model(
            load_model(args.model_file),
            args.base_dir,
            name,
            version=args.version,
            overwrite=args.overwrite,
        )
        emit(args, {"format": "saved_model", "path": str(target)}, [f"SavedModel: {target}"])
        return
    quantization = args.quantization or "float32"
    if quantization == "int8" and args.representative_data is None:
        raise ValueError(
            "--quantization int8 needs --representative-data DATA: normal training data to "
            "calibrate the integer ranges (e.g. the data the model was trained on)."
        )
    model = source if source.is_dir() else load_model(args.model_file)
    path = args.output or Path(args.base_dir) / f"{name}-{quantization}.tflite"
    representative = _representative_data(args)
    status(args, f"converting {source} to TFLite ({quantization}) ...")
    with _quiet_native_output(not args.verbose):
        artifact = export_tflite(
            model,
            path,
            quantization=quantization,
            representative_data=representative,
            scoring=args.scoring,
            overwrite=args.overwrite,
        )
    result = {
        "format": "tflite",
        "path": str(artifact.path),
        "metadata": str(artifact.metadata_path),
        "size_bytes": artifact.size_bytes,
        "quantization": artifact.quantization,
        "scoring": artifact.scoring,
    }
    emit(
        args,
        result,
        [
            f"TFLite ({quantization}): {artifact.path} ({artifact.size_bytes / 1024:.1f} KiB)",
            "score: "
            + (
                "computed inside the file"
                if artifact.scoring == "graph"
                else "finished on the host by keras_deepad.edge"
            ),
            f"metadata: {artifact.metadata_path}",
        ],
    )
