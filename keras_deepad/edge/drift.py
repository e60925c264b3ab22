"""Whether recent scores still look like the calibration scores (`score_drift`)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .metadata import _got, _is_number

#: The smallest window of scores `EdgeDetector.drift` tests.
MIN_DRIFT_WINDOW = 20


@dataclasses.dataclass(frozen=True)
class DriftReport:
    """The result of comparing a window of scores with the calibration scores (`score_drift`).

    Attributes:
        drifted: `p_value < alpha`: the window's scores are unlikely to come from
            the calibration score distribution.
        p_value: of the Kolmogorov-Smirnov test (see `score_drift`).
        statistic: the KS statistic `D`, the largest gap between the window's
            empirical CDF and the reference CDF (0 to 1).
        n: the window size.
        flagged_fraction: the fraction of the window above the threshold
            (`None` without a threshold).
        expected_flagged_fraction: the fraction of calibration scores above the
            threshold, read from the quantile grid (`None` without a threshold).
        median_shift: the window's median minus the calibration median, in
            units of the calibration interquartile range (`+inf`/`-inf` when
            that range is 0 and the medians differ).
        message: one sentence saying what was found.
    """

    drifted: bool
    p_value: float
    statistic: float
    n: int
    flagged_fraction: float | None
    expected_flagged_fraction: float | None
    median_shift: float
    message: str


def _quantile_grid(quantiles, where="quantiles"):
    """`(levels, values)` of a `{level: value}` grid, sorted by level; a `ValueError` if bad."""
    if not isinstance(quantiles, dict) or len(quantiles) < 2:
        raise ValueError(
            f"{where} must be a {{level: value}} mapping with at least the levels 0 and 1, "
            f"got {_got(quantiles)}."
        )
    grid = {}
    for key, value in quantiles.items():
        try:
            level = float(key)
        except (TypeError, ValueError):
            level = math.nan
        if not 0.0 <= level <= 1.0:
            raise ValueError(f"{where}: key {key!r} is not a quantile level in [0, 1].")
        if level in grid:
            raise ValueError(f"{where}: the level {level} appears twice.")
        if not _is_number(value) and not isinstance(value, np.floating | np.integer):
            raise ValueError(f"{where}[{key!r}] must be a finite number, got {_got(value)}.")
        if not math.isfinite(value):
            raise ValueError(f"{where}[{key!r}] must be a finite number, got {value}.")
        grid[level] = float(value)
    levels = np.array(sorted(grid), dtype=np.float64)
    values = np.array([grid[level] for level in levels], dtype=np.float64)
    if levels[0] != 0.0 or levels[-1] != 1.0:
        raise ValueError(
            f"{where} must include the levels 0 and 1 (the smallest and largest calibration "
            f"scores), got levels {levels.tolist()}."
        )
    if np.any(np.diff(values) < 0):
        pairs = dict(zip(levels.tolist(), values.tolist(), strict=True))
        raise ValueError(f"{where} decrease with the level: {pairs}.")
    return levels, values


def _grid_cdf(levels, values, x, left=False) -> np.ndarray:
    """The reference CDF at `x` (its left limit with `left`), linear between grid points.

    It is 0 below the smallest value and 1 at or above the largest. Tied values
    (a jump in the CDF) are handled: the right-continuous CDF takes the highest
    level of a tie, its left limit the lowest.
    """
    u, start = np.unique(values, return_index=True)
    end = np.append(start[1:], len(values)) - 1
    lo, hi = levels[start], levels[end]  # the CDF just below / at each distinct value
    x = np.asarray(x, dtype=np.float64)
    j = np.searchsorted(u, x, side="left" if left else "right") - 1
    out = np.where(j < 0, 0.0, 1.0)
    inside = (j >= 0) & (j < len(u) - 1)
    if inside.any():
        k = j[inside]
        t = (x[inside] - u[k]) / (u[k + 1] - u[k])
        out[inside] = hi[k] + t * (lo[k + 1] - hi[k])
    return out


def _kolmogorov_sf(lam: float) -> float:
    """`P(K > lam)` for the Kolmogorov distribution `K` (the limit of `sqrt(n) D`), numpy only."""
    if lam <= 0.0:
        return 1.0
    k = np.arange(1, 9, dtype=np.float64)
    if lam < 1.18:  # the CDF's theta-function form converges fast for small lam
        terms = np.exp(-((2 * k - 1) ** 2) * math.pi**2 / (8 * lam**2))
        cdf = math.sqrt(2.0 * math.pi) / lam * float(np.sum(terms))
        return float(min(max(1.0 - cdf, 0.0), 1.0))
    sf = 2.0 * np.sum((-1.0) ** (k - 1) * np.exp(-2.0 * k**2 * lam**2))
    return float(min(max(sf, 0.0), 1.0))


def _ks_pvalue(statistic: float, n: float) -> float:
    """Two-sided KS p-value of `statistic` for (effective) sample size `n`.

    The exact distribution (`scipy.stats.kstwo`) where SciPy is installed;
    otherwise the asymptotic Kolmogorov distribution with Stephens' small-sample
    correction, `P(K > (sqrt(n) + 0.12 + 0.11 / sqrt(n)) D)`, good to about 1e-2
    relative for the p-values that matter (< 0.2).
    """
    try:
        from scipy.stats import kstwo
    except ImportError:
        root = math.sqrt(n)
        return _kolmogorov_sf((root + 0.12 + 0.11 / root) * statistic)
    return float(kstwo.sf(statistic, max(1, round(n))))


def score_drift(scores, quantiles, threshold=None, alpha=0.01, reference_size=None) -> DriftReport:
    """Compares a window of scores with a grid of calibration score quantiles.

    A one-sample Kolmogorov-Smirnov test of the window against the reference
    CDF interpolated linearly between the grid's points (0 below the smallest
    calibration score, 1 above the largest), plus two readable statistics: the
    fraction of the window above `threshold` against the fraction the grid
    predicts, and the shift of the median in interquartile ranges.

    The grid is coarse (11 levels in exports), so the reference CDF between
    levels is an approximation; with windows of many thousands of scores the
    test starts to see that approximation. Windows of a few hundred scores are
    the intended use.

    Args:
        scores: 1-D window of scores, in the same units as `quantiles` (at
            least `MIN_DRIFT_WINDOW`). `+inf`/`-inf` lie beyond the grid; NaN is
            an error.
        quantiles: `{level: score}` with the levels 0 and 1 among them, e.g.
            `EdgeDetector.score_quantiles` (keys may be strings, as in JSON).
        threshold: the anomaly threshold, or `None` to skip the flagged fractions.
        alpha: the test's significance level, in (0, 1).
        reference_size: how many scores the quantiles were computed from, if
            known: the p-value then uses the two-sample effective size
            `n m / (n + m)`, which allows for the noise in the reference
            itself. `None` treats the grid as exact.

    Returns:
        A `DriftReport`; `drifted` is `p_value < alpha`.

    Raises:
        ValueError: for fewer than `MIN_DRIFT_WINDOW` scores, NaN scores, a bad
            `alpha`, `threshold` or `reference_size`, or a malformed grid.
    """
    levels, values = _quantile_grid(quantiles)
    if not _is_number(alpha) and not isinstance(alpha, np.floating):
        raise ValueError(f"alpha must be a number in (0, 1), got {_got(alpha)}.")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}.")
    if threshold is not None and not (
        (_is_number(threshold) or isinstance(threshold, np.floating)) and math.isfinite(threshold)
    ):
        raise ValueError(f"threshold must be a finite number or None, got {_got(threshold)}.")
    if reference_size is not None and not (
        isinstance(reference_size, int | np.integer)
        and not isinstance(reference_size, bool)
        and reference_size >= 1
    ):
        raise ValueError(
            f"reference_size must be a positive integer or None, got {_got(reference_size)}."
        )
    try:
        x = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"scores must be a 1-D array of numbers, got {type(scores).__name__}."
        ) from None
    if x.ndim > 1:
        raise ValueError(f"scores must be 1-D (one score per sample), got shape {x.shape}.")
    x = np.sort(x.reshape(-1))
    n = len(x)
    n_nan = int(np.isnan(x).sum())
    if n_nan:
        raise ValueError(
            f"{n_nan} of {n} scores are NaN: a NaN score cannot be compared with the "
            "calibration scores; drop those samples (and check them: the input or the model "
            "is broken)."
        )
    if n < MIN_DRIFT_WINDOW:
        raise ValueError(
            f"the drift test needs a window of at least {MIN_DRIFT_WINDOW} scores, got {n}: "
            "collect more samples before testing (a few hundred give a sensitive test)."
        )
    cdf = _grid_cdf(levels, values, x)
    cdf_left = _grid_cdf(levels, values, x, left=True)
    rank = np.arange(1, n + 1, dtype=np.float64)
    below = float(np.max(rank / n - cdf))  # window CDF above the reference: lower scores
    above = float(np.max(cdf_left - (rank - 1) / n))  # window CDF below it: higher scores
    statistic = min(max(below, above, 0.0), 1.0)
    effective = n if reference_size is None else n * reference_size / (n + reference_size)
    p_value = _ks_pvalue(statistic, effective)
    drifted = bool(p_value < alpha)

    q25, q50, q75 = np.interp([0.25, 0.5, 0.75], levels, values)
    shift = float(np.median(x)) - float(q50)
    spread = float(q75 - q25)
    if spread > 0:
        median_shift = shift / spread
    else:
        median_shift = 0.0 if shift == 0 else math.copysign(math.inf, shift)
    flagged = expected = None
    if threshold is not None:
        flagged = float(np.mean(x > threshold))
        expected = float(1.0 - _grid_cdf(levels, values, [threshold])[0])

    p_text = f"p={p_value:.2g}" if p_value > 0 else "p<1e-300"  # 0: below float range
    what = f"median {median_shift:+.2f} IQR from the calibration median"
    if threshold is not None:
        what += f", {flagged:.1%} above the threshold ({expected:.1%} expected)"
    if drifted:
        direction = "higher" if above >= below else "lower"
        message = (
            f"scores drifted {direction} than the calibration data: {what} "
            f"(KS {p_text}, D={statistic:.3f}, n={n})"
        )
    else:
        message = f"scores look like the calibration data: {what} (KS {p_text}, n={n})"
    return DriftReport(
        drifted=drifted,
        p_value=float(p_value),
        statistic=float(statistic),
        n=n,
        flagged_fraction=flagged,
        expected_flagged_fraction=expected,
        median_shift=float(median_shift),
        message=message,
    )
