"""The commands of `keras-deepad`: one `cmd_<name>(args)` per subcommand, and their helpers.

Only the standard library is imported here; each command imports what it
needs (TensorFlow, the detectors) when it runs, so `keras-deepad --help`
stays fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from keras_deepad.data import LoadedData


# --------------------------------------------------------------------- data
def load_data(spec: str, seed: int = 0, label_column: str | None = None) -> LoadedData:
    """`keras_deepad.data.load_data`, imported when a command needs data (the CLI starts fast)."""
    from keras_deepad.data import load_data as load

    return load(spec, seed=seed, label_column=label_column)


# ------------------------------------------------------------------- models
def save_keras_atomically(model, path) -> Path:
    """Saves a `.keras` file via a temporary file and a rename (never half-written)."""
    from keras_deepad.utils.scratch import save_keras_atomically as save

    return save(model, path)


def check_output_path(path, flag: str, suffix: str | None = None) -> Path:
    """Refuses an output path that cannot be written, before any work is done.

    Checks the suffix, that the path is not a folder, and that its folder
    exists and is writable or can be created (the nearest existing parent is
    a writable folder). `flag` names the option in the message.
    """
    path = Path(path)
    if suffix is not None and path.suffix != suffix:
        raise ValueError(f"{flag} must end in {suffix}. Received: {path}")
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file name.")
    _check_creatable(path.parent, f"{flag} {path}")
    return path


def _check_creatable(folder: Path, what: str):
    """Refuses a folder that neither exists nor can be created: its nearest existing
    ancestor must be a writable folder."""
    parent = folder
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{what}: {parent} is not a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{what}: cannot write in {parent} (permission denied).")


def load_model(path):
    import zipfile

    import keras

    import keras_deepad.models  # noqa: F401  (registers the detector classes)

    path = Path(path)
    if not path.exists():
        raise ValueError(f"model file {path} does not exist.")
    if path.is_dir():
        raise ValueError(
            f"model file {path} is a folder; give a .keras file written by `keras-deepad train`."
        )
    if path.stat().st_size == 0:
        raise ValueError(f"model file {path} is empty (an interrupted save?); train it again.")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"model file {path} is not a .keras file (not a zip archive: truncated or another "
            "format?); give a .keras file written by `keras-deepad train`."
        )
    try:
        return keras.models.load_model(path)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as err:
        raise ValueError(
            f"model file {path} could not be loaded ({type(err).__name__}: {err}); is it a "
            ".keras file written by `keras-deepad train` with this version?"
        ) from err


def train_and_calibrate(args, loaded: LoadedData):
    from keras_deepad.registry import train_detector

    callbacks = []
    if getattr(args, "knee_stopping", False):
        from keras_deepad.callbacks import KneeEarlyStopping

        callbacks.append(KneeEarlyStopping())
    if getattr(args, "backup_dir", None):
        from keras_deepad.distribute import BackupAndRestore

        callbacks.append(BackupAndRestore(args.backup_dir))
    params = dict(args.param or [])
    if getattr(args, "score_method", None):
        params["score_method"] = args.score_method
    start = time.perf_counter()
    model, history = train_detector(
        args.model,
        loaded.x_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        params=params,
        verbose=0 if args.json else (1 if sys.stdout.isatty() else 2),
        callbacks=callbacks,
        strategy=getattr(args, "strategy", None),
    )
    seconds = time.perf_counter() - start
    threshold = model.calibrate(loaded.x_train, contamination=args.contamination, fpr=args.fpr)
    info = {
        "train_seconds": round(seconds, 3),
        "final_loss": float(history.history["loss"][-1]),
        "threshold": threshold,
    }
    if getattr(args, "knee_stopping", False):
        knee = callbacks[0].knee_epoch
        info["epochs_trained"] = len(history.history["loss"])
        info["knee_epoch"] = None if knee is None else knee + 1  # counted from 1
    return model, info


def evaluate_model(model, loaded: LoadedData, method=None):
    from keras_deepad.evaluation import evaluate_scores

    if loaded.y_eval is None:
        return None
    scores = model.score(loaded.x_eval, method=method)
    # The threshold was calibrated on the model's own score method only.
    same = method is None or method == model.score_method
    return evaluate_scores(loaded.y_eval, scores, threshold=model.threshold if same else None)


# ----------------------------------------------------------------- commands
def _emit(args, result: dict, lines: list[str]):
    if args.json:
        print(json.dumps(result, indent=2, default=float))
    else:
        print("\n".join(lines))


def _metric_lines(metrics):
    if not metrics:
        return ["(no labels: nothing to evaluate)"]
    keys = ["auroc", "auprc", "f1", "precision", "recall", "precision_at_n", "flagged_fraction"]
    return [f"  {k:>16}: {metrics[k]:.4f}" for k in keys if k in metrics]


#: scikit-learn baselines of `compare`: name -> description.
BASELINES = {
    "iforest": "scikit-learn IsolationForest (defaults)",
    "lof": "scikit-learn LocalOutlierFactor (novelty=True, defaults)",
    "ocsvm": "scikit-learn OneClassSVM (rbf, defaults)",
}


def _baseline_scores(name, x_train, x_eval, seed):
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import LocalOutlierFactor
    from sklearn.svm import OneClassSVM

    flat_train, flat_eval = x_train.reshape(len(x_train), -1), x_eval.reshape(len(x_eval), -1)
    model = {
        "iforest": lambda: IsolationForest(random_state=seed),
        "lof": lambda: LocalOutlierFactor(novelty=True),
        "ocsvm": lambda: OneClassSVM(),
    }[name]()
    model.fit(flat_train)
    return -model.score_samples(flat_eval)  # higher = more anomalous, as ours


def cmd_compare(args):
    import numpy as np

    from keras_deepad.evaluation import evaluate_scores
    from keras_deepad.registry import list_detectors

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    known = set(list_detectors()) | set(BASELINES)
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(
            f"--models: unknown {', '.join(unknown) or '(empty list)'}; choose from "
            f"{', '.join(sorted(known))}."
        )
    plot_dir = check_plot_dir(args.plot) if args.plot else None
    loaded = load_data(args.data, seed=args.seed, label_column=args.label_column)
    if loaded.y_eval is None:
        raise ValueError(
            "compare needs labels: use a built-in data set, a CSV with --label-column, "
            "or an .npz with 'y'."
        )
    rows, all_scores = [], {}
    for name in names:
        start = time.perf_counter()
        if name in BASELINES:
            scores = _baseline_scores(name, loaded.x_train, loaded.x_eval, args.seed)
        else:
            from keras_deepad.registry import train_detector

            model, _ = train_detector(
                name,
                loaded.x_train,
                epochs=args.epochs,
                batch_size=args.batch_size,
                seed=args.seed,
                verbose=0,
            )
            scores = model.score(loaded.x_eval)
        seconds = time.perf_counter() - start
        metrics = evaluate_scores(loaded.y_eval, np.asarray(scores, np.float64))
        all_scores[name] = scores
        rows.append(
            {
                "model": name,
                "auroc": metrics["auroc"],
                "auprc": metrics["auprc"],
                "seconds": round(seconds, 3),
            }
        )
        if not args.json:
            print(f"  {name}: AUROC {metrics['auroc']:.4f} ({seconds:.1f} s)", file=sys.stderr)
    result = {"data": args.data, "epochs": args.epochs, "seed": args.seed, "results": rows}
    width = max(len(r["model"]) for r in rows)
    lines = [
        f"{loaded.description.rstrip('.')}; {args.epochs} epochs, seed {args.seed}",
        f"{'model':<{width}}  {'AUROC':>7}  {'AUPRC':>7}  {'seconds':>8}",
        *(
            f"{r['model']:<{width}}  {r['auroc']:>7.4f}  {r['auprc']:>7.4f}  {r['seconds']:>8.1f}"
            for r in sorted(rows, key=lambda r: -r["auroc"])
        ),
    ]
    if plot_dir is not None:
        from keras_deepad import plot
        from keras_deepad.utils.scratch import write_atomically

        figures = {}
        for kind, draw in (("roc", plot.roc_curve), ("pr", plot.precision_recall_curve)):
            figure = None
            for name, scores in all_scores.items():
                figure = draw(
                    loaded.y_eval, scores, ax=None if figure is None else figure.axes[0], name=name
                )
            figures[kind] = figure
        plot_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for kind, figure in figures.items():
            path = plot_dir / f"compare-{kind}.png"
            write_atomically(path, lambda tmp, f=figure: f.savefig(tmp, format="png", dpi=100))
            paths.append(path)
        result["plots"] = [str(p) for p in paths]
        lines += [f"wrote {p}" for p in paths]
    _emit(args, result, lines)


def cmd_models(args):
    from keras_deepad.registry import list_detectors

    detectors = list_detectors()
    _emit(args, detectors, [f"{k:<14} {v}" for k, v in detectors.items()])


def cmd_datasets(args):
    from keras_deepad.data import BUILTIN_DATASETS

    _emit(args, dict(BUILTIN_DATASETS), [f"{k:<14} {v}" for k, v in BUILTIN_DATASETS.items()])


def cmd_train(args):
    output = check_output_path(
        args.output or f"saved_models/{args.model}.keras", "--output", ".keras"
    )
    loaded = load_data(args.data, seed=args.seed, label_column=args.label_column)
    model, info = train_and_calibrate(args, loaded)
    # Every step that can still fail runs before the model is written.
    metrics = evaluate_model(model, loaded)
    from keras_deepad.distribute import is_chief, task

    chief = is_chief()
    if chief:
        save_keras_atomically(model, output)
        saved = f"saved: {output}"
    else:
        # Every worker ends with the same weights; only the chief writes them.
        kind, index = task()
        saved = f"not saved: {kind} {index} is not the chief (the chief saves {output})"
    result = {
        "model": args.model,
        "data": args.data,
        "output": str(output),
        "saved": chief,
        **info,
        "metrics": metrics,
    }
    _emit(
        args,
        result,
        [
            f"trained {args.model} on {loaded.description} in {info['train_seconds']:.1f} s",
            *(
                [
                    f"knee stopping: {info['epochs_trained']} epochs trained, knee at epoch "
                    f"{info['knee_epoch'] or '(none found)'}"
                ]
                if "epochs_trained" in info
                else []
            ),
            f"threshold: {info['threshold']:.6g}",
            *_metric_lines(metrics),
            saved,
        ],
    )


def cmd_score(args):
    import numpy as np

    if args.output:
        check_output_path(args.output, "--output")
    model = load_model(args.model_file)
    loaded = load_data(args.data, seed=args.seed, label_column=args.label_column)
    x = loaded.x_score
    _status(args, f"scoring {len(x):,} rows of {loaded.description.rstrip('.')} ...")
    start = time.perf_counter()
    scores = model.score(x, batch_size=args.batch_size, method=args.method)
    _status(args, f"scored {len(x):,} rows in {time.perf_counter() - start:.2f} s")
    threshold = model.threshold
    labels = None if threshold is None else (scores > threshold).astype(int)
    if args.output:
        from keras_deepad.utils.scratch import write_atomically

        columns = [scores] if labels is None else [scores, labels]
        header = "score" if labels is None else "score,is_anomaly"
        write_atomically(
            args.output,
            lambda tmp: np.savetxt(
                tmp,
                np.column_stack(columns),
                delimiter=",",
                header=header,
                comments="",
                fmt=["%.9g"] + (["%d"] if labels is not None else []),
            ),
        )
    result = {
        "n_samples": len(scores),
        "threshold": threshold,
        "output": args.output,
        "scores": None if args.output else scores.tolist(),
        "is_anomaly": None if args.output or labels is None else labels.tolist(),
    }
    if args.json:
        _emit(args, result, [])
    elif args.output:
        print(f"wrote {len(scores)} scores to {args.output}")
    else:
        for i, s in enumerate(scores):
            print(f"{s:.9g}" if labels is None else f"{s:.9g},{labels[i]}")


def check_plot_dir(path) -> Path:
    """Refuses a `--plot` folder that cannot be written (and a missing matplotlib), up front."""
    from keras_deepad import plot

    try:
        plot.require_matplotlib()
    except ImportError as err:
        raise ValueError(f"--plot: {err}") from err
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--plot {path} is a file; give a folder.")
    _check_creatable(path, f"--plot {path}")
    return path


def cmd_evaluate(args):
    plot_dir = check_plot_dir(args.plot) if args.plot else None
    model = load_model(args.model_file)
    loaded = load_data(args.data, seed=args.seed, label_column=args.label_column)
    if loaded.y_eval is None:
        raise ValueError(
            "evaluate needs labels: use a built-in data set, a CSV with --label-column, "
            "or an .npz with 'y'."
        )
    metrics = evaluate_model(model, loaded, method=args.method)
    method = args.method or model.score_method
    result = {"data": args.data, "score_method": method, "metrics": metrics}
    lines = [f"score method: {method}", *_metric_lines(metrics)]
    if plot_dir is not None:
        from keras_deepad.plot import save_all

        paths = save_all(model, loaded.x_eval, loaded.y_eval, plot_dir, method=args.method)
        result["plots"] = [str(p) for p in paths]
        lines += [f"wrote {p}" for p in paths]
    _emit(args, result, lines)


def _read_groups(path, n):
    import numpy as np

    path = Path(path)
    if not path.exists():
        raise ValueError(f"groups file {path} does not exist.")
    if path.suffix.lower() == ".npy":
        groups = np.load(path, allow_pickle=False)
    else:
        groups = np.loadtxt(path, dtype=str, delimiter=",", ndmin=1)
    groups = np.asarray(groups).ravel()
    if len(groups) != n:
        raise ValueError(f"{path} has {len(groups)} group labels for {n} inputs.")
    return groups


def cmd_group(args):
    import numpy as np

    from keras_deepad.evaluation import evaluate_scores
    from keras_deepad.scores import group_anomalies

    if args.output:
        check_output_path(args.output, "--output")
    loaded = load_data(args.data, seed=args.seed, label_column=args.label_column)
    x = loaded.x_score
    groups = None if args.groups is None else _read_groups(args.groups, len(x))
    if args.model_file:
        model, source = load_model(args.model_file), args.model_file
    else:
        from keras_deepad.registry import train_detector

        model, _ = train_detector(
            args.model,
            x,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            seed=args.seed,
            params=dict(args.param or []),
            verbose=0 if args.json else (1 if sys.stdout.isatty() else 2),
        )
        source = f"{args.model} trained {args.epochs} epochs on the inputs"
    result = group_anomalies(
        model,
        x,
        n_references=args.references,
        aggregate=args.aggregate,
        groups=groups,
        seed=args.seed,
    )
    ranks = np.empty(len(x), dtype=np.int64)
    ranks[result.ranking] = np.arange(1, len(x) + 1)
    if args.output:
        from keras_deepad.utils.scratch import write_atomically

        write_atomically(
            args.output,
            lambda tmp: np.savetxt(
                tmp,
                np.column_stack([np.arange(len(x)), result.scores, ranks]),
                delimiter=",",
                header="index,score,rank",
                comments="",
                fmt=["%d", "%.9g", "%d"],
            ),
        )
    top = result.ranking[: args.top]
    metrics = None if loaded.y_eval is None else evaluate_scores(loaded.y_eval, result.scores)
    summary = {
        "model": source,
        "data": args.data,
        "n_inputs": len(x),
        "n_references": args.references,
        "aggregate": args.aggregate,
        "top": [{"index": int(i), "score": float(result.scores[i])} for i in top],
        "metrics": metrics,
        "output": args.output,
    }
    lines = [
        f"group anomalies of {len(x)} inputs ({loaded.description}); model: {source}",
        f"{args.references} references, {args.aggregate} distance; most anomalous first:",
        *(
            f"  {r + 1:>4}. input {int(i):>6}  score {result.scores[i]:.6g}"
            for r, i in enumerate(top)
        ),
    ]
    if groups is not None:
        order = np.argsort(-result.group_scores, kind="stable")
        summary["groups"] = [
            {"group": result.groups[i].item(), "score": float(result.group_scores[i])}
            for i in order
        ]
        lines += ["groups, most anomalous first:"] + [
            f"  {result.groups[i]}: {result.group_scores[i]:.6g}" for i in order[: args.top]
        ]
    if metrics is not None:
        lines += ["against the known labels:", *_metric_lines(metrics)]
    if args.output:
        lines.append(f"wrote {len(x)} scores to {args.output}")
    _emit(args, summary, lines)


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


def _status(args, message: str):
    """A progress line on stderr (not with --json), so stdout stays the result."""
    if not getattr(args, "json", False):
        print(message, file=sys.stderr, flush=True)


def cmd_export(args):
    from keras_deepad.export import export_saved_model, export_tflite

    source = Path(args.model_file)
    name = args.name or (source.parent.name if source.is_dir() else source.stem)
    if args.format == "saved_model":
        if args.quantization or args.representative_data or args.output:
            raise ValueError(
                "--quantization, --representative-data and --output need --format tflite."
            )
        _status(args, f"exporting {source} as a SavedModel ...")
        target = export_saved_model(
            load_model(args.model_file),
            args.base_dir,
            name,
            version=args.version,
            overwrite=args.overwrite,
        )
        _emit(args, {"format": "saved_model", "path": str(target)}, [f"SavedModel: {target}"])
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
    _status(args, f"converting {source} to TFLite ({quantization}) ...")
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
    _emit(
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


def cmd_demo(args):
    from keras_deepad.export import export_saved_model

    out_dir = Path(args.output_dir)
    check_output_path(out_dir / f"{args.model}.keras", "--output-dir", ".keras")
    loaded = load_data(args.data, seed=args.seed)
    model, info = train_and_calibrate(args, loaded)
    metrics = evaluate_model(model, loaded)
    keras_path = save_keras_atomically(model, out_dir / f"{args.model}.keras")
    saved_model = export_saved_model(model, out_dir, args.model, version=1, overwrite=True)
    result = {
        "model": args.model,
        "data": args.data,
        **info,
        "metrics": metrics,
        "keras_file": str(keras_path),
        "saved_model": str(saved_model),
    }
    _emit(
        args,
        result,
        [
            f"keras-deepad demo: {args.model} on {loaded.description}",
            f"trained {args.epochs} epochs in {info['train_seconds']:.1f} s",
            f"threshold (false-positive rate {args.fpr} on normal training data): "
            f"{info['threshold']:.6g}",
            "test metrics:",
            *_metric_lines(metrics),
            f"saved: {keras_path}",
            f"SavedModel (TF Serving): {saved_model}",
        ],
    )


def cmd_beam_score(args):
    try:
        from keras_deepad.beam import run_scoring
    except ImportError as err:
        raise ValueError(str(err)) from err

    pipeline_args = list(args.pipeline_args or [])
    if pipeline_args[:1] == ["--"]:
        pipeline_args = pipeline_args[1:]
    columns = None if args.feature_columns is None else args.feature_columns.split(",")
    key = args.key_column
    if args.no_header:  # columns by 0-based position
        try:
            columns = None if columns is None else [int(c) for c in columns]
            key = None if key is None else int(key)
        except ValueError:
            raise ValueError(
                "with --no-header, --feature-columns and --key-column are 0-based positions."
            ) from None
    result = run_scoring(
        args.model_dir,
        args.input,
        args.output,
        input_format=args.format,
        runner=args.runner,
        pipeline_args=pipeline_args,
        feature_columns=columns,
        key_column=key,
        header=not args.no_header,
        feature_key=args.feature_key,
        block_rows=args.block_rows,
        num_shards=args.num_shards,
        overwrite=args.overwrite,
    )
    summary = {
        "model": result.model_path,
        "input": args.input,
        "runner": result.runner,
        "rows": result.rows,
        "anomalies": result.anomalies,
        "seconds": round(result.seconds, 3),
        "files": list(result.files),
    }
    rate = f" ({result.rows / result.seconds:,.0f} rows/s)" if result.rows else ""
    _emit(
        args,
        summary,
        [
            f"scored {result.rows} rows with {result.model_path} on {result.runner} in "
            f"{result.seconds:.1f} s{rate}; {result.anomalies} flagged as anomalies",
            *(f"wrote {f}" for f in result.files),
        ],
    )
