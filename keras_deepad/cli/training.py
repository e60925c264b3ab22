"""The commands that train: `train`, `compare` (with scikit-learn baselines), `demo`, `group`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from keras_deepad.cli.common import (
    check_output_path,
    check_plot_dir,
    emit,
    evaluate_model,
    load_data,
    load_model,
    metric_lines,
    save_keras_atomically,
    train_and_calibrate,
)

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
    emit(args, result, lines)


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
    emit(
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
            *metric_lines(metrics),
            saved,
        ],
    )


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
        lines += ["against the known labels:", *metric_lines(metrics)]
    if args.output:
        lines.append(f"wrote {len(x)} scores to {args.output}")
    emit(args, summary, lines)


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
    emit(
        args,
        result,
        [
            f"keras-deepad demo: {args.model} on {loaded.description}",
            f"trained {args.epochs} epochs in {info['train_seconds']:.1f} s",
            f"threshold (false-positive rate {args.fpr} on normal training data): "
            f"{info['threshold']:.6g}",
            "test metrics:",
            *metric_lines(metrics),
            f"saved: {keras_path}",
            f"SavedModel (TF Serving): {saved_model}",
        ],
    )
