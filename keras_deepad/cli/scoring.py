"""The commands that read or score: `models`, `datasets`, `score`, `evaluate`, `beam-score`."""

from __future__ import annotations

import time

from keras_deepad.cli.common import (
    check_output_path,
    check_plot_dir,
    emit,
    evaluate_model,
    load_data,
    load_model,
    metric_lines,
    status,
)


def cmd_models(args):
    from keras_deepad.registry import list_detectors

    detectors = list_detectors()
    emit(args, detectors, [f"{k:<14} {v}" for k, v in detectors.items()])


def cmd_datasets(args):
    from keras_deepad.data import BUILTIN_DATASETS

    emit(args, dict(BUILTIN_DATASETS), [f"{k:<14} {v}" for k, v in BUILTIN_DATASETS.items()])


def cmd_score(args):
    import numpy as np

    if args.output:
        check_output_path(args.output, "--output")
    model = load_model(args.model_file)
    loaded = load_data(args.data, seed=args.seed, label_column=args.label_column)
    x = loaded.x_score
    status(args, f"scoring {len(x):,} rows of {loaded.description.rstrip('.')} ...")
    start = time.perf_counter()
    scores = model.score(x, batch_size=args.batch_size, method=args.method)
    status(args, f"scored {len(x):,} rows in {time.perf_counter() - start:.2f} s")
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
        emit(args, result, [])
    elif args.output:
        print(f"wrote {len(scores)} scores to {args.output}")
    else:
        for i, s in enumerate(scores):
            print(f"{s:.9g}" if labels is None else f"{s:.9g},{labels[i]}")


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
    lines = [f"score method: {method}", *metric_lines(metrics)]
    if plot_dir is not None:
        from keras_deepad.plot import save_all

        paths = save_all(model, loaded.x_eval, loaded.y_eval, plot_dir, method=args.method)
        result["plots"] = [str(p) for p in paths]
        lines += [f"wrote {p}" for p in paths]
    emit(args, result, lines)


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
    emit(
        args,
        summary,
        [
            f"scored {result.rows} rows with {result.model_path} on {result.runner} in "
            f"{result.seconds:.1f} s{rate}; {result.anomalies} flagged as anomalies",
            *(f"wrote {f}" for f in result.files),
        ],
    )
