"""`EdgeDetector.drift` and `score_drift`: a window of scores against the export's quantile grid."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from keras_deepad import edge
from keras_deepad.edge import MIN_DRIFT_WINDOW, DriftReport, EdgeDetector, score_drift

ROOT = Path(__file__).resolve().parents[2]
LEVELS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)  # SCORE_QUANTILES


def _normal_grid():
    """The quantile grid of a standard normal score, cut at +-3.5 (as an export stores it)."""
    values = [-3.5, *stats.norm.ppf(LEVELS[1:-1]), 3.5]
    return {str(level): float(value) for level, value in zip(LEVELS, values, strict=True)}


def _grid_arrays(grid):
    return np.array([float(k) for k in grid]), np.array(list(grid.values()))


@pytest.fixture(scope="module")
def normal_rows(blobs):
    """Fresh normal rows: the blobs test set's normal part (the models never saw them)."""
    return blobs.x_test[blobs.y_test == 0]


# ----------------------------------------------------------- on exported files
@pytest.mark.parametrize("fmt", ["float32", "int8"])
def test_fresh_normal_data_has_not_drifted(zoo, normal_rows, fmt):
    detector = EdgeDetector(zoo["ae"].tflite[fmt].path)
    report = detector.drift(normal_rows)
    assert isinstance(report, DriftReport)
    assert not report.drifted and report.p_value > 0.01, report
    assert report.n == len(normal_rows) == 500
    assert report.statistic < 0.1
    assert abs(report.median_shift) < 0.5
    assert report.expected_flagged_fraction == pytest.approx(0.1, abs=0.02)
    assert abs(report.flagged_fraction - report.expected_flagged_fraction) < 0.05
    assert report.message.startswith("scores look like the calibration data"), report.message
    # Scores computed beforehand give the same report.
    assert detector.drift(scores=detector.score(normal_rows)) == report


def test_anomalies_have_drifted(zoo):
    e = zoo["ae"]
    detector = EdgeDetector(e.tflite["float32"].path)
    report = detector.drift(e.x[e.y == 1], alpha=0.01)
    assert report.drifted and report.p_value < 1e-10, report
    assert report.n == 50 and report.statistic > 0.9
    assert report.flagged_fraction > 0.9 and report.median_shift > 3
    assert report.message.startswith("scores drifted higher than the calibration data")
    assert "(KS p" in report.message and "above the threshold" in report.message


def test_shifted_normal_data_has_drifted(zoo, normal_rows):
    detector = EdgeDetector(zoo["ae"].tflite["float32"].path)
    report = detector.drift(normal_rows[:200] + 1.5)
    assert report.drifted and report.p_value < 1e-10, report
    assert report.median_shift > 1
    assert report.flagged_fraction > 3 * report.expected_flagged_fraction


def test_training_quantiles_are_the_fallback_reference(zoo, normal_rows):
    """Without representative quantiles: the model's calibration grid, treated as exact."""
    artifact = zoo["ae"].tflite["float32"]
    meta = {**artifact.metadata, "representative_score_quantiles": None}
    detector = EdgeDetector(artifact.path, metadata=meta, verify=False)
    scores = detector.score(normal_rows)
    report = detector.drift(scores=scores)
    assert not report.drifted, report
    expected = score_drift(scores, meta["training_score_quantiles"], detector.threshold)
    assert report == expected
    # With the representative grid, the reference's own noise (1000 scores) widens the test.
    with_size = EdgeDetector(artifact.path).drift(scores=scores)
    grid = artifact.metadata["representative_score_quantiles"]
    assert with_size.p_value > score_drift(scores, grid, detector.threshold).p_value


def test_detector_errors(zoo, normal_rows):
    artifact = zoo["ae"].tflite["float32"]
    detector = EdgeDetector(artifact.path)
    with pytest.raises(ValueError, match=f"at least {MIN_DRIFT_WINDOW} scores, got 19"):
        detector.drift(normal_rows[:19])
    assert detector.drift(normal_rows[:MIN_DRIFT_WINDOW]).n == MIN_DRIFT_WINDOW
    with pytest.raises(TypeError, match="exactly one"):
        detector.drift()
    with pytest.raises(TypeError, match="exactly one"):
        detector.drift(normal_rows, scores=np.zeros(100))
    for alpha in (0, 1, -0.5, 1.5):
        with pytest.raises(ValueError, match="alpha"):
            detector.drift(scores=np.zeros(100), alpha=alpha)
    with pytest.raises(ValueError, match="inf"):
        detector.drift(np.full((30, 16), np.inf))  # bad input: refused by score()
    nan_scores = np.zeros(100)
    nan_scores[[3, 7]] = np.nan
    with pytest.raises(ValueError, match="2 of 100 scores are NaN"):
        detector.drift(scores=nan_scores)
    uncalibrated = {
        **artifact.metadata,
        "training_score_quantiles": None,
        "representative_score_quantiles": None,
    }
    bare = EdgeDetector(artifact.path, metadata=uncalibrated, verify=False)
    assert bare.score_quantiles is None
    with pytest.raises(ValueError, match=r"without calibration score quantiles.*calibrate"):
        bare.drift(normal_rows)


def test_drift_runs_without_scipy_tensorflow_or_keras(zoo, normal_rows, tmp_path):
    """The device path: numpy + LiteRT only, the p-value from the asymptotic distribution."""
    script = textwrap.dedent(
        """
        import json, sys
        import importlib.abc

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("scipy", "tensorflow", "keras", "jax", "torch"):
                    raise ImportError(f"{name} is not installed on this device")
                return None

        sys.meta_path.insert(0, Block())
        import numpy as np
        from keras_deepad.edge import EdgeDetector

        detector = EdgeDetector(sys.argv[1])
        x = np.load(sys.argv[2])
        reports = [detector.drift(x), detector.drift(x[:50] + 1.5)]
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("scipy", "tensorflow"))
        assert not heavy, heavy
        print(json.dumps([[r.drifted, r.p_value, r.statistic] for r in reports]))
        """
    )
    (tmp_path / "drift.py").write_text(script)
    np.save(tmp_path / "x.npy", normal_rows)
    path = zoo["ae"].tflite["float32"].path
    run = subprocess.run(
        [sys.executable, "drift.py", str(path), "x.npy"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (normal, shifted) = json.loads(run.stdout.strip().splitlines()[-1])
    detector = EdgeDetector(path)
    here = detector.drift(normal_rows)
    assert normal[0] is False and normal[2] == pytest.approx(here.statistic)
    assert normal[1] == pytest.approx(here.p_value, rel=0.1, abs=0.02)
    assert shifted[0] is True and shifted[1] < 1e-6


# ------------------------------------------------------- on a synthetic grid
def test_statistic_and_p_value_match_a_direct_ks_test():
    grid = _grid_arrays(_normal_grid())
    levels, values = grid

    def cdf(s):
        return np.interp(s, values, levels, left=0.0, right=1.0)

    rng = np.random.default_rng(0)
    for window in (
        rng.standard_normal(200),
        rng.standard_normal(60) * 1.3 + 0.4,
        rng.standard_t(3, size=500),  # tails beyond the grid's ends: CDF 0 / 1 there
    ):
        report = score_drift(window, _normal_grid())
        reference = stats.kstest(window, cdf)
        assert report.statistic == pytest.approx(reference.statistic, abs=1e-12)
        assert report.p_value == pytest.approx(reference.pvalue, rel=1e-9, abs=1e-300)
        # The same by hand: the largest gap on either side of each step of the window's CDF.
        x = np.sort(window)
        i = np.arange(1, len(x) + 1)
        direct = max(np.max(i / len(x) - cdf(x)), np.max(cdf(x) - (i - 1) / len(x)))
        assert report.statistic == pytest.approx(direct, abs=1e-12)
        assert report.drifted == (report.p_value < 0.01)


def test_readable_statistics_on_a_synthetic_grid():
    grid = _normal_grid()
    iqr = grid["0.75"] - grid["0.25"]
    window = np.linspace(-1.0, 1.0, 101) + grid["0.5"] + 2 * iqr
    report = score_drift(window, grid, threshold=grid["0.9"])
    assert report.median_shift == pytest.approx(2.0)
    assert report.expected_flagged_fraction == pytest.approx(0.1)
    assert report.flagged_fraction == pytest.approx(np.mean(window > grid["0.9"]))
    assert report.drifted and "drifted higher" in report.message and "+2.00 IQR" in report.message
    assert "10.0% expected" in report.message
    low = score_drift(-window, grid, threshold=grid["0.9"])
    assert low.drifted and "drifted lower" in low.message and low.median_shift < 0
    no_threshold = score_drift(window, grid)
    assert no_threshold.flagged_fraction is None and no_threshold.expected_flagged_fraction is None
    assert "threshold" not in no_threshold.message
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.drifted = False


def test_scores_beyond_the_grid_and_infinities():
    grid = _normal_grid()
    above = score_drift(np.full(30, 10.0), grid, threshold=grid["0.9"])
    assert above.statistic == 1.0 and above.flagged_fraction == 1.0 and above.drifted
    below = score_drift(np.full(30, -10.0), grid)
    assert below.statistic == 1.0 and "lower" in below.message
    # +-inf lie beyond the ends like any score there; the rest is as without them.
    window = np.random.default_rng(0).standard_normal(300)
    with_inf = window.copy()
    with_inf[:2] = [np.inf, -np.inf]
    report = score_drift(with_inf, grid)
    assert np.isfinite(report.statistic) and np.isfinite(report.p_value)
    assert not report.drifted


def test_a_grid_with_tied_values_is_a_cdf_with_a_jump():
    """Scores that are often exactly 0 (a clipped score): quantiles 0 up to level 0.5."""
    levels = np.array(LEVELS)
    values = np.where(levels <= 0.5, 0.0, levels - 0.5)
    grid = {str(k): float(v) for k, v in zip(levels, values, strict=True)}
    assert edge.drift._grid_cdf(levels, values, [0.0])[0] == 0.5
    assert edge.drift._grid_cdf(levels, values, [0.0], left=True)[0] == 0.0
    assert edge.drift._grid_cdf(levels, values, [0.25, -1.0, 0.5, 9.0]).tolist() == [0.75, 0, 1, 1]
    rng = np.random.default_rng(0)
    window = np.where(rng.random(400) < 0.5, 0.0, rng.uniform(0.0, 0.5, 400))
    assert not score_drift(window, grid).drifted
    assert score_drift(rng.uniform(0.0, 0.5, 400), grid).drifted  # lost its zeros
    constant = {"0.0": 1.0, "0.5": 1.0, "1.0": 1.0}
    same = score_drift(np.ones(50), constant)
    assert same.statistic == 0.0 and same.median_shift == 0.0 and not same.drifted
    other = score_drift(np.full(50, 2.0), constant)
    assert other.statistic == 1.0 and other.median_shift == np.inf


def test_asymptotic_p_value_without_scipy(monkeypatch):
    for lam in (0.2, 0.5, 0.8, 1.0, 1.17, 1.19, 1.5, 2.0, 3.0):
        assert edge.drift._kolmogorov_sf(lam) == pytest.approx(stats.kstwobign.sf(lam), abs=1e-12)
    assert edge.drift._kolmogorov_sf(0.0) == 1.0
    exact = {
        (n, d): edge.drift._ks_pvalue(d, n) for n in (20, 100, 1000) for d in (0.05, 0.1, 0.2, 0.3)
    }
    monkeypatch.setitem(sys.modules, "scipy.stats", None)  # `from scipy.stats import` fails
    for (n, d), p in exact.items():
        if p > 1e-6:
            assert edge.drift._ks_pvalue(d, n) == pytest.approx(p, rel=0.05, abs=1e-3), (n, d)
    report = score_drift(np.random.default_rng(0).standard_normal(200), _normal_grid())
    assert 0.0 <= report.p_value <= 1.0


@pytest.mark.parametrize(
    ("scores", "quantiles", "kwargs", "message"),
    [
        (np.zeros((30, 2)), None, {}, r"1-D .* shape \(30, 2\)"),
        (np.zeros(5), None, {}, f"at least {MIN_DRIFT_WINDOW}"),
        (3.0, None, {}, f"at least {MIN_DRIFT_WINDOW}"),
        (["a"] * 30, None, {}, "array of numbers"),
        (np.zeros(30), {"0.0": 0.0, "0.5": 1.0}, {}, "levels 0 and 1"),
        (np.zeros(30), {"0.0": 0.0, "x": 0.5, "1.0": 1.0}, {}, "not a quantile level"),
        (np.zeros(30), {"0.0": 0.0, "1.5": 0.5, "1.0": 1.0}, {}, "not a quantile level"),
        (np.zeros(30), {"0.0": 0.0, "0.5": 2.0, "1.0": 1.0}, {}, "decrease"),
        (np.zeros(30), {"0.0": 0.0, "0.5": float("nan"), "1.0": 1.0}, {}, "finite"),
        (np.zeros(30), {"0": 0.0, "0.0": 0.1, "1.0": 1.0}, {}, "twice"),
        (np.zeros(30), {}, {}, "at least the levels 0 and 1"),
        (np.zeros(30), None, {"threshold": float("inf")}, "threshold"),
        (np.zeros(30), None, {"reference_size": 0}, "reference_size"),
        (np.zeros(30), None, {"alpha": "0.05"}, "alpha"),
    ],
)
def test_score_drift_errors(scores, quantiles, kwargs, message):
    with pytest.raises(ValueError, match=message):
        score_drift(scores, _normal_grid() if quantiles is None else quantiles, **kwargs)
