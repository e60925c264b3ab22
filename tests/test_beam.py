"""Batch scoring on Apache Beam (`keras_deepad.beam`): real pipelines on the DirectRunner.

One small AE is trained and exported per module; every test scores its rows
through a real Beam pipeline and compares with `model.score` on the same rows.
"""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

beam = pytest.importorskip("apache_beam")

from apache_beam.testing.util import assert_that, equal_to  # noqa: E402

from keras_deepad.beam import (  # noqa: E402
    ReadRows,
    ScoredBlock,
    ScoreResult,
    ScoreWithSavedModel,
    WriteScores,
    load_model_info,
    run_scoring,
)
from keras_deepad.beam.writer import _csv_lines  # noqa: E402
from keras_deepad.cli import main  # noqa: E402
from keras_deepad.data.sharded import write_tfrecords  # noqa: E402
from keras_deepad.export import export_saved_model  # noqa: E402
from keras_deepad.models import AE  # noqa: E402

N_ROWS, N_FEATURES = 3000, 12
COLUMNS = [f"f{i}" for i in range(N_FEATURES)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """`(model, x, model_dir)`: an AE trained and calibrated on `x`, exported for serving."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    z = rng.normal(size=(N_ROWS, 4))
    x = z @ rng.normal(size=(4, N_FEATURES)) + 0.1 * rng.normal(size=(N_ROWS, N_FEATURES))
    x = x.astype(np.float32)
    x[:30] += rng.normal(scale=4.0, size=(30, N_FEATURES)).astype(np.float32)  # anomalies
    model = AE(hidden_units=(16,), latent_dim=4)
    model.fit(x, epochs=2, batch_size=64, verbose=0)
    model.calibrate(x, contamination=0.1)
    base = tmp_path_factory.mktemp("saved_models")
    model_dir = export_saved_model(model, base, "ae", version=1)
    return model, x, model_dir


def write_csv_shards(x, folder, shards=4, header=True, key_column=None):
    """Writes `x` as CSV shards; returns the paths in row order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, rows in enumerate(np.array_split(np.arange(len(x)), shards)):
        path = folder / f"part-{k}.csv"
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            if header:
                writer.writerow(([key_column] if key_column else []) + COLUMNS[: x.shape[1]])
            for i in rows:
                key = [f"id-{i}"] if key_column else []
                writer.writerow(key + [f"{v:.9g}" for v in x[i]])
        paths.append(str(path))
    return paths


def read_output(files):
    """`(header, {key: (score, is_anomaly, threshold)})` of the output shards, keys unique."""
    out, header = {}, None
    for path in files:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            for line in reader:
                key = tuple(line[:-3]) if len(line) > 4 else line[0]
                assert key not in out, f"row {key} scored twice"
                out[key] = (float(line[-3]), int(line[-2]), float(line[-1]))
    return header, out


def global_index(paths, counts):
    """`{(path, row-in-file as str): row of x}` for shards of consecutive rows."""
    index, start = {}, 0
    for path, n in zip(paths, counts, strict=True):
        for r in range(n):
            index[(path, str(r))] = start + r
        start += n
    return index


def score_atol(want):
    """float32 rounding of a graph run in other batches: relative to the largest score, since the
    AE's default "hybrid_knn" score (a sum of standardised logs) crosses 0."""
    return 1e-6 * float(np.max(np.abs(want)))


def assert_matches_model(model, x, scores, flags, thresholds):
    want = model.score(x)
    np.testing.assert_allclose(scores, want, rtol=1e-6, atol=score_atol(want))
    threshold = np.float32(model.threshold)
    np.testing.assert_allclose(thresholds, threshold, rtol=1e-7)
    # is_anomaly must agree wherever rounding cannot move a score across the threshold.
    clear = np.abs(want - threshold) > 1e-5 * abs(threshold)
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(flags[clear], model.is_anomaly(x)[clear])
    assert flags.sum() > 0


def test_sharded_csv_matches_model_score(exported, tmp_path):
    model, x, model_dir = exported
    paths = write_csv_shards(x, tmp_path / "in", shards=4)
    result = run_scoring(
        model_dir, str(tmp_path / "in" / "part-*.csv"), tmp_path / "out" / "ae", block_rows=200
    )
    assert result.rows == N_ROWS and result.runner == "DirectRunner"
    assert result.files and all(f.endswith(".csv") for f in result.files)
    header, out = read_output(result.files)
    assert header == ["file", "row", "score", "is_anomaly", "threshold"]
    assert len(out) == N_ROWS
    counts = [len(part) for part in np.array_split(np.arange(N_ROWS), 4)]
    index = global_index(paths, counts)
    assert set(out) == set(index)
    order = np.array([index[k] for k in out])
    got = np.array(list(out.values()))
    assert sorted(order.tolist()) == list(range(N_ROWS))
    assert_matches_model(model, x[order], got[:, 0], got[:, 1].astype(int), got[:, 2])
    assert result.anomalies == int(got[:, 1].sum())


def test_tfrecord_input(exported, tmp_path):
    model, x, model_dir = exported
    x = x[:900]
    paths = write_tfrecords(x, tmp_path / "in" / "rows", num_shards=3)
    result = run_scoring(
        model_dir.parent,  # the model folder: its highest version is used
        str(tmp_path / "in" / "rows-*.tfrecord"),
        tmp_path / "out" / "ae.csv",
        input_format="tfrecord",
        block_rows=128,  # 3 blocks per file
    )
    assert result.rows == 900 and result.model_path == str(model_dir)
    assert all("/out/ae-" in f for f in result.files)  # a trailing .csv is dropped
    _, out = read_output(result.files)
    index = global_index(paths, [300, 300, 300])
    order = np.array([index[k] for k in out])
    got = np.array(list(out.values()))
    assert sorted(order.tolist()) == list(range(900))
    assert_matches_model(model, x[order], got[:, 0], got[:, 1].astype(int), got[:, 2])


def test_parquet_input_with_a_key_column(exported, tmp_path):
    import pandas as pd

    model, x, model_dir = exported
    x = x[:600]
    frame = pd.DataFrame(x, columns=COLUMNS)
    frame.insert(0, "id", [f"id-{i}" for i in range(len(x))])
    (tmp_path / "in").mkdir()
    frame.iloc[:250].to_parquet(tmp_path / "in" / "a.parquet")
    frame.iloc[250:].to_parquet(tmp_path / "in" / "b.parquet")
    result = run_scoring(
        model_dir,
        str(tmp_path / "in" / "*.parquet"),
        tmp_path / "out" / "ae",
        input_format="parquet",
        key_column="id",
        num_shards=2,
    )
    assert result.rows == 600 and len(result.files) == 2
    header, out = read_output(result.files)
    assert header == ["id", "score", "is_anomaly", "threshold"]
    order = np.array([int(k.removeprefix("id-")) for k in out])
    got = np.array(list(out.values()))
    assert sorted(order.tolist()) == list(range(600))
    assert_matches_model(model, x[order], got[:, 0], got[:, 1].astype(int), got[:, 2])


def test_score_transform_on_keyed_rows(exported, tmp_path):
    model, x, model_dir = exported
    x = x[:60]
    want, flags = model.score(x), model.is_anomaly(x)
    threshold = float(np.float32(model.threshold))
    paths = write_csv_shards(x, tmp_path / "in", shards=2)
    tfrecord = tmp_path / "keyed.tfrecord"
    with tf.io.TFRecordWriter(str(tfrecord)) as writer:
        for i, row in enumerate(x):
            feature = {
                "x": tf.train.Feature(float_list=tf.train.FloatList(value=row)),
                "id": tf.train.Feature(int64_list=tf.train.Int64List(value=[1000 + i])),
            }
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())

    def matches(key_to_row):
        def check(actual):
            assert sorted(r.key for r in actual) == sorted(key_to_row)
            for result in actual:
                assert isinstance(result, ScoreResult)
                i = key_to_row[result.key]
                assert result.score == pytest.approx(float(want[i]), rel=1e-6, abs=score_atol(want))
                assert result.threshold == pytest.approx(threshold)

        return check

    with beam.Pipeline("DirectRunner") as p:
        # In-memory rows with keys of one's own (lists are fine: they become float32).
        created = (
            p
            | beam.Create([(f"k{i:02d}", x[i].tolist()) for i in range(len(x))])
            | "ScoreCreated" >> ScoreWithSavedModel(model_dir, min_batch_size=8, max_batch_size=16)
        )
        assert_that(created, matches({f"k{i:02d}": i for i in range(len(x))}))
        _ = created | "WriteCreated" >> WriteScores(str(tmp_path / "out" / "created"), ["key"])
        counts = created | beam.Map(lambda r: r.is_anomaly) | beam.combiners.Count.PerElement()
        assert_that(counts, equal_to(sorted(_count(flags).items())), label="CountFlags")
        # Rows read from files, keyed by (file, row).
        read = (
            p
            | ReadRows(str(tmp_path / "in" / "*.csv"), n_features=N_FEATURES, block_rows=7)
            | "ScoreRead" >> ScoreWithSavedModel(model_dir)
        )
        keys = {(path, r): 30 * k + r for k, path in enumerate(paths) for r in range(30)}
        assert_that(read, matches(keys), label="CheckRead")
        # TFRecords with a key feature of their own (read one example at a time).
        tfrecords = (
            p
            | "ReadTFRecords"
            >> ReadRows(str(tfrecord), "tfrecord", key_column="id", n_features=N_FEATURES)
            | "ScoreTFRecords" >> ScoreWithSavedModel(model_dir)
        )
        assert_that(tfrecords, matches({1000 + i: i for i in range(len(x))}), label="CheckTF")
    header, out = read_output(sorted(map(str, tmp_path.glob("out/created-*-of-*.csv"))))
    assert header == ["key", "score", "is_anomaly", "threshold"] and len(out) == len(x)
    assert out["k07"][0] == pytest.approx(float(want[7]), rel=1e-6, abs=score_atol(want))


def test_scored_block_results_and_csv_lines():
    block = ScoredBlock(
        "a,b.csv", 10, None, np.array([0.5, 2.0], np.float32), np.array([0, 1]), 1.0
    )
    assert list(block.results()) == [
        ScoreResult(("a,b.csv", 10), 0.5, 0, 1.0),
        ScoreResult(("a,b.csv", 11), 2.0, 1, 1.0),
    ]
    assert _csv_lines(block) == '"a,b.csv",10,0.5,0,1\n"a,b.csv",11,2,1,1'
    keyed = block._replace(keys=['x"1', "y"])
    assert _csv_lines(keyed) == '"x""1",0.5,0,1\ny,2,1,1'
    assert _csv_lines(ScoreResult(7, 0.25, 0, 1.0)) == "7,0.25,0,1"


def _count(flags):
    return {int(v): int((flags == v).sum()) for v in np.unique(flags)}


def test_score_transform_rejects_a_short_row(exported):
    _, x, model_dir = exported
    with pytest.raises(ValueError, match=r"row 'bad' has 11 values; the model expects 12"):
        with beam.Pipeline("DirectRunner") as p:
            _ = p | beam.Create([("ok", x[0]), ("bad", x[1, :-1])]) | ScoreWithSavedModel(model_dir)


def test_cli_beam_score(exported, tmp_path, capsys):
    model, x, model_dir = exported
    x = x[:400]
    write_csv_shards(x, tmp_path / "in", shards=2, header=False, key_column=None)
    args = [
        "beam-score",
        "--model-dir",
        str(model_dir),
        "--input",
        str(tmp_path / "in" / "part-*.csv"),
        "--output",
        str(tmp_path / "out" / "ae"),
        "--no-header",
        "--runner",
        "direct",
        "--json",
        "--",
        "--direct_num_workers=1",
        "--job_name=keras-deepad-test",
    ]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 400 and summary["runner"] == "DirectRunner"
    _, out = read_output(summary["files"])
    assert len(out) == 400
    # Existing output is kept unless --overwrite.
    assert main(args) == 2
    assert "already exist" in capsys.readouterr().err
    assert main([*args[:-4], "--overwrite", *args[-4:]]) == 0


def test_wrong_feature_count_fails_before_the_pipeline(exported, tmp_path):
    _, x, model_dir = exported
    write_csv_shards(x[:20, :-1], tmp_path / "in", shards=2)  # one feature short
    with pytest.raises(ValueError, match=r"11 feature columns .* the model expects 12 features"):
        run_scoring(model_dir, str(tmp_path / "in" / "*.csv"), tmp_path / "out" / "ae")
    with pytest.raises(ValueError, match=r"\['nope'\] not found"):
        run_scoring(
            model_dir,
            str(tmp_path / "in" / "*.csv"),
            tmp_path / "out" / "ae",
            feature_columns=["nope"],
        )
    # The same in TFRecords, found by the reader.
    write_tfrecords(x[:20, :-1], tmp_path / "tf" / "rows", num_shards=2)
    with pytest.raises(ValueError, match=r"record 0: feature 'x' has 11 values; expected 12"):
        run_scoring(
            model_dir, str(tmp_path / "tf" / "*"), tmp_path / "out" / "ae", input_format="tfrecord"
        )
    with pytest.raises(ValueError, match=r"record 0: no float feature 'rows' \(found \['x'\]\)"):
        run_scoring(
            model_dir,
            str(tmp_path / "tf" / "*"),
            tmp_path / "out" / "ae",
            input_format="tfrecord",
            feature_key="rows",
        )
    # A missing value in the first file: found before the pipeline starts too.
    write_csv_shards(x[:20], tmp_path / "in2", shards=2)
    shard = tmp_path / "in2" / "part-0.csv"
    lines = shard.read_text().splitlines()
    lines[1] = lines[1][lines[1].index(",") :]  # row 0: f0 empty
    shard.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"part-0\.csv', data row 0: column 'f0' is missing"):
        run_scoring(model_dir, str(tmp_path / "in2" / "*.csv"), tmp_path / "out" / "ae")
    assert not (tmp_path / "out").exists()


def test_a_bad_row_in_a_later_shard_names_the_file_and_row(exported, tmp_path):
    _, x, model_dir = exported
    paths = write_csv_shards(x[:40], tmp_path / "in", shards=2)
    shard = Path(paths[1])
    lines = shard.read_text().splitlines()
    fields = lines[4].split(",")
    fields[2] = "abc"
    lines[4] = ",".join(fields)
    shard.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        ValueError, match=r"part-1\.csv', data row 3: column 'f2' is not a number \('abc'\)"
    ):
        run_scoring(model_dir, str(tmp_path / "in" / "*.csv"), tmp_path / "out" / "ae")
    # No output shards, and Beam's temporary folder is cleaned up.
    assert not list(tmp_path.glob("out/*"))


def test_missing_input_and_model(exported, tmp_path, capsys):
    _, _, model_dir = exported
    with pytest.raises(FileNotFoundError, match="no input files match"):
        run_scoring(model_dir, str(tmp_path / "nothing-*.csv"), tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="no SavedModel found"):
        load_model_info(tmp_path)
    code = main(
        ["beam-score", "--model-dir", str(model_dir), "--input", str(tmp_path / "x-*.csv")]
        + ["--output", str(tmp_path / "out")]
    )
    assert code == 2 and "no input files match" in capsys.readouterr().err
    with pytest.raises(ValueError, match="input_format must be one of"):
        run_scoring(model_dir, str(tmp_path / "*.csv"), tmp_path / "out", input_format="avro")
