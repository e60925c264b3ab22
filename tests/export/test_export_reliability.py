"""Concurrent and killed exports and saves: distinct versions, nothing partial, no scratch left."""

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_deepad.export._tflite_steps as tflite_steps
import keras_deepad.export.saved_model as saved_model_module
from keras_deepad import cli
from keras_deepad.export import export_saved_model, export_tflite, next_version
from keras_deepad.models import AE
from keras_deepad.utils import scratch

ROOT = Path(__file__).resolve().parents[2]
ENV = {
    **os.environ,
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
}
STALE = time.time() - 2 * scratch.STALE_AFTER_S

# Loads a `.keras` detector, waits for the test's go signal (so that every exporter starts
# at the same moment), exports it and prints the version folder. With a third argument, it
# instead stops for good after the graph and variables are written (the metadata is next)
# and creates that file, so the test can kill it mid-export.
EXPORTER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import keras
    import keras_deepad.models  # registers the detector classes
    import keras_deepad.export.saved_model as module

    keras_file, base_dir, ready, go = sys.argv[1:5]
    model = keras.models.load_model(keras_file)
    if len(sys.argv) > 5:
        def hang(*args, **kwargs):
            Path(sys.argv[5]).touch()
            time.sleep(600)
        module.metadata = hang
    Path(ready).touch()
    while not os.path.exists(go):
        time.sleep(0.01)
    print(module.export_saved_model(model, base_dir, "det"), flush=True)
    """
)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A tiny calibrated AE, its `.keras` file and a few rows to score."""
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    model = AE(hidden_units=(8,), latent_dim=2, seed=0)
    model.fit(x, epochs=1, batch_size=32, verbose=0)
    model.calibrate(x, contamination=0.1)
    path = tmp_path_factory.mktemp("small") / "ae.keras"
    model.save(path)
    return model, path, x


def _start(small, base_dir, tag, hang=None):
    work = base_dir.parent
    args = [sys.executable, "-c", EXPORTER, str(small[1]), str(base_dir)]
    args += [str(work / f"ready-{tag}"), str(work / "go")]
    args += [str(hang)] if hang else []
    return subprocess.Popen(
        args, env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for(paths, procs, timeout=120):
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"exporter exited early:\n{proc.communicate()[1][-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {paths}")
        time.sleep(0.05)


def _hidden(model_dir):
    return sorted(p.name for p in Path(model_dir).iterdir() if p.name.startswith("."))


def _numbered(model_dir):
    return sorted(int(p.name) for p in Path(model_dir).iterdir() if p.name.isdigit())


def _check_scores(version_dir, model, x):
    serve = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    np.testing.assert_allclose(
        serve(x=tf.constant(x))["score"].numpy(), model.score(x), rtol=1e-5, atol=1e-6
    )


def test_concurrent_exports_get_distinct_complete_versions(small, tmp_path):
    model, _, x = small
    base = tmp_path / "serving"
    procs = [_start(small, base, i) for i in range(2)]
    try:
        _wait_for([tmp_path / f"ready-{i}" for i in range(2)], procs)
        (tmp_path / "go").touch()
        outs = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for proc, (_, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    paths = sorted(Path(out.strip().splitlines()[-1]) for out, _ in outs)
    assert paths == [base / "det" / str(v) for v in (1, 2)]
    assert _numbered(base / "det") == [1, 2] and _hidden(base / "det") == []
    for path in paths:
        _check_scores(path, model, x)


def test_a_killed_export_leaves_no_version_and_its_scratch_is_cleaned(small, tmp_path):
    model, _, x = small
    base = tmp_path / "serving"
    model_dir = base / "det"
    writing = tmp_path / "writing"
    (tmp_path / "go").touch()
    proc = _start(small, base, "k", hang=writing)
    try:
        _wait_for([writing], [proc])
        # Graph and variables are written: kill it before the metadata and the rename.
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.communicate()
    assert _numbered(model_dir) == []
    leftover = _hidden(model_dir)
    assert leftover[0] == ".reserved-1" and re.fullmatch(r"\.tmp-1-[0-9a-f]{32}", leftover[1])
    assert (model_dir / leftover[1] / "saved_model.pb").is_file()
    assert next_version(model_dir) == 2

    # A fresh leftover may be a live export: it is kept, and its version skipped.
    assert export_saved_model(model, base, "det") == model_dir / "2"
    assert _hidden(model_dir) == leftover
    # Once stale, the next export removes it.
    for name in leftover:
        os.utime(model_dir / name, (STALE, STALE))
    assert export_saved_model(model, base, "det") == model_dir / "3"
    assert _hidden(model_dir) == [] and _numbered(model_dir) == [2, 3]
    _check_scores(model_dir / "3", model, x)


def test_reservations_are_respected(small, tmp_path):
    model = small[0]
    model_dir = tmp_path / "det"
    model_dir.mkdir()
    (model_dir / ".reserved-4").mkdir()  # another export is writing version 4
    assert next_version(model_dir) == 5
    with pytest.raises(FileExistsError, match=r"being written by another export"):
        export_saved_model(model, tmp_path, "det", version=4)
    assert export_saved_model(model, tmp_path, "det") == model_dir / "5"
    assert export_saved_model(model, tmp_path, "det", version=2) == model_dir / "2"
    assert _hidden(model_dir) == [".reserved-4"]


def test_explicit_existing_version_is_refused_by_path(small, tmp_path):
    model = small[0]
    first = export_saved_model(model, tmp_path, "det", version=7)
    with pytest.raises(FileExistsError) as info:
        export_saved_model(model, tmp_path, "det", version=7)
    assert str(first) in str(info.value) and "overwrite=True" in str(info.value)
    assert _hidden(tmp_path / "det") == []


@pytest.mark.parametrize("swap", [True, False], ids=["exchange", "two-renames"])
def test_overwrite_replaces_in_place(small, tmp_path, monkeypatch, swap):
    model, _, x = small
    first = export_saved_model(model, tmp_path, "det", version=1)
    (first / "marker").write_text("old")
    if not swap:
        monkeypatch.setattr(scratch, "exchange_paths", lambda a, b: False)
    assert export_saved_model(model, tmp_path, "det", version=1, overwrite=True) == first
    assert not (first / "marker").exists()
    assert _numbered(tmp_path / "det") == [1] and _hidden(tmp_path / "det") == []
    _check_scores(first, model, x)


def test_a_version_lost_mid_swap_is_restored(small, tmp_path):
    # A killed two-rename overwrite: the old version moved aside, the new one not yet in.
    model = small[0]
    first = export_saved_model(model, tmp_path, "det", version=1)
    aside = first.with_name(f".old-1-{'a' * 32}")
    os.rename(first, aside)
    os.utime(aside, (STALE, STALE))
    assert export_saved_model(model, tmp_path, "det") == tmp_path / "det" / "2"
    assert _numbered(tmp_path / "det") == [1, 2] and _hidden(tmp_path / "det") == []
    assert (first / "saved_model.pb").is_file()


def test_a_failure_anywhere_in_an_export_leaves_nothing(small, tmp_path, monkeypatch):
    model = small[0]

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    # During the write of the graph: partial files in the scratch folder.
    archive = type(keras.export.ExportArchive())  # the backend's class

    def write_half(self, filepath, *args, **kwargs):
        Path(filepath, "variables").mkdir(parents=True)
        Path(filepath, "variables", "partial").write_bytes(b"x")
        raise RuntimeError("disk full")

    monkeypatch.setattr(archive, "write_out", write_half)
    with pytest.raises(RuntimeError, match="disk full"):
        export_saved_model(model, tmp_path, "det")
    with pytest.raises(RuntimeError, match="disk full"):
        export_tflite(model, tmp_path / "new" / "sub" / "m.tflite")
    monkeypatch.undo()
    assert os.listdir(tmp_path / "det") == []
    assert not (tmp_path / "new").exists()  # folders made for the file are removed again

    # In the TFLite conversion, after the scratch SavedModel is written.
    monkeypatch.setattr(tflite_steps, "_converter", crash)
    before = set(os.listdir(tmp_path))
    with pytest.raises(RuntimeError, match="disk full"):
        export_tflite(model, tmp_path / "m.tflite")
    assert set(os.listdir(tmp_path)) == before


def test_stale_tflite_scratch_is_removed_and_fresh_kept(small, tmp_path):
    model = small[0]
    hexes = iter(f"{i:032x}" for i in range(10))
    stale = [
        tmp_path / f".m.tflite.scratch-{next(hexes)}",
        tmp_path / f".m.tflite.tmp-{next(hexes)}",
        tmp_path / f".m.tflite.json.tmp-{next(hexes)}",
    ]
    fresh = [
        tmp_path / f".m.tflite.scratch-{next(hexes)}",
        tmp_path / f".m.tflite.tmp-{next(hexes)}",
    ]
    other = tmp_path / f".n.tflite.scratch-{next(hexes)}"  # another file's: not ours to judge
    for path in [*stale, *fresh, other]:
        if "scratch" in path.name:
            (path / "model").mkdir(parents=True)
        else:
            path.write_bytes(b"partial")
    for path in [*stale, other]:
        os.utime(path, (STALE, STALE))
    export_tflite(model, tmp_path / "m.tflite")
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["m.tflite", "m.tflite.json", *(p.name for p in [*fresh, other])]
    )


def test_keras_saves_are_atomic_and_clean_stale_temporary_files(small, tmp_path, monkeypatch):
    model, _, x = small
    target = tmp_path / "m.keras"
    model.save(target)
    content = target.read_bytes()
    stale = tmp_path / f".m.tmp-{'0' * 32}.keras"  # left by a killed save
    fresh = tmp_path / f".m.tmp-{'1' * 32}.keras"  # maybe a save in progress
    other = tmp_path / f".n.tmp-{'2' * 32}.keras"  # another file's
    for path in (stale, fresh, other):
        path.write_bytes(b"partial")
    for path in (stale, other):
        os.utime(path, (STALE, STALE))

    def write_half(self, filepath, *args, **kwargs):
        Path(filepath).write_bytes(b"half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(keras.Model, "save", write_half)
    with pytest.raises(OSError, match="disk full"):
        model.save(target)
    monkeypatch.undo()
    assert target.read_bytes() == content
    assert sorted(os.listdir(tmp_path)) == sorted(["m.keras", fresh.name, other.name])

    model.save(str(target))
    loaded = keras.models.load_model(target)
    np.testing.assert_allclose(loaded.score(x), model.score(x), rtol=1e-6)
    # The CLI saves to a temporary name itself: stale siblings of the final name go too.
    os.utime(fresh, (STALE, STALE))
    cli.save_keras_atomically(model, target)
    assert sorted(os.listdir(tmp_path)) == sorted(["m.keras", other.name])
    stale.write_bytes(b"partial")
    os.utime(stale, (STALE, STALE))
    scratch.save_keras_atomically(model, target)
    assert sorted(os.listdir(tmp_path)) == sorted(["m.keras", other.name])
    np.testing.assert_allclose(keras.models.load_model(target).score(x), model.score(x), rtol=1e-6)


def test_versions_taken_between_scan_and_reservation_are_skipped(small, tmp_path, monkeypatch):
    """The races of two exporters, replayed: each scan below returns a version that another
    export reserved, or published, after the scan."""
    model = small[0]
    model_dir = tmp_path / "det"
    export_saved_model(model, tmp_path, "det", version=1)  # published, marker removed
    (model_dir / ".reserved-2").mkdir()  # being written
    scans = iter([1, 2])
    real = saved_model_module.next_version
    monkeypatch.setattr(saved_model_module, "next_version", lambda d: next(scans, None) or real(d))
    assert export_saved_model(model, tmp_path, "det") == model_dir / "3"
    assert _hidden(model_dir) == [".reserved-2"]


def test_a_version_published_under_a_lost_reservation_is_not_overwritten(
    small, tmp_path, monkeypatch
):
    # Another export published our version while we wrote (possible only if our
    # reservation was taken for stale): the rename refuses, the next version is taken.
    model, _, x = small
    model_dir = tmp_path / "det"
    real = saved_model_module.metadata
    theirs = [1, 5]

    def publish_meanwhile(*args, **kwargs):
        for version in theirs:
            (model_dir / str(version)).mkdir(exist_ok=True)
            (model_dir / str(version) / "theirs").write_text("x")
        return real(*args, **kwargs)

    monkeypatch.setattr(saved_model_module, "metadata", publish_meanwhile)
    assert export_saved_model(model, tmp_path, "det") == model_dir / "6"
    theirs[:] = [2]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_saved_model(model, tmp_path, "det", version=2)
    monkeypatch.undo()
    for version in (1, 2, 5):
        assert sorted(os.listdir(model_dir / str(version))) == ["theirs"]
    assert _numbered(model_dir) == [1, 2, 5, 6] and _hidden(model_dir) == []
    _check_scores(model_dir / "6", model, x)
