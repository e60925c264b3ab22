"""Knees of loss curves (Kneedle) and the running means they are found on.

Used by `keras_deepad.callbacks.KneeEarlyStopping`; numpy only.

Reference:
    V. Satopää, J. Albrecht, D. Irwin, B. Raghavan, "Finding a 'Kneedle' in
    a Haystack: Detecting Knee Points in System Behavior", ICDCS Workshops
    2011.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["find_knee", "running_mean"]


def running_mean(y, window="cumulative"):
    """Smooths a curve by a running mean.

    Args:
        y: 1-D sequence of numbers.
        window: `"cumulative"` (the mean of all values so far, as a public
            re-implementation of Merrill & Eskandarian smooths the loss), or
            a positive int `w` (the mean of the last `w` values, fewer at the
            start; `1` leaves the curve unchanged).

    Returns:
        A float64 array of the same length as `y`.

    Example:
        >>> running_mean([4.0, 2.0, 0.0])
        array([4., 3., 2.])
        >>> running_mean([4.0, 2.0, 0.0], window=2)
        array([4., 3., 1.])
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    sums = np.concatenate([[0.0], np.cumsum(y)])
    if window == "cumulative":
        return sums[1:] / np.arange(1, len(y) + 1)
    _check_window(window)
    ends = np.arange(1, len(y) + 1)
    starts = np.maximum(ends - int(window), 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def _check_window(window):
    if isinstance(window, bool) or not isinstance(window, numbers.Integral) or int(window) < 1:
        raise ValueError(
            "smoothing must be 'cumulative' or a positive int window. "
            f"Received: smoothing={window!r}"
        )


def find_knee(y, x=None, sensitivity=1.0):
    """The knee of a convex, decreasing curve by Kneedle (offline), or `None`.

    Both axes are scaled to [0, 1]; the difference curve
    `d_i = (1 - y_i) - x_i` (the gap between the curve and the chord from
    its first to its last point) has local maxima at knee candidates. A
    candidate `i` is accepted when `d` falls below
    `d_i - sensitivity * mean(diff(x))` before the next local minimum of
    `d`; the first accepted candidate is returned. The end points are never
    knees. A straight line, a curve that barely bends or one that is
    still bending at its end has no knee.

    Args:
        y: 1-D curve values (e.g. the smoothed loss per epoch), at least 3.
        x: increasing abscissae of the same length (default `0, 1, ...`).
        sensitivity: Kneedle's S; larger values need a sharper knee.

    Returns:
        The index of the knee in `y`, or `None` when there is none.

    Example:
        >>> find_knee([10, 8, 6, 4, 2, 1.8, 1.6, 1.4, 1.2, 1.0])
        4
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    x = np.arange(len(y), dtype=np.float64) if x is None else np.asarray(x, np.float64).ravel()
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length. Received: {len(x)} and {len(y)}")
    if not (np.isfinite(y).all() and np.isfinite(x).all()):
        raise ValueError("find_knee needs finite values.")
    if sensitivity < 0:
        raise ValueError(f"sensitivity must be >= 0. Received: sensitivity={sensitivity}")
    if len(y) < 3 or np.ptp(y) == 0:
        return None
    if np.any(np.diff(x) <= 0):
        raise ValueError("x must be strictly increasing.")
    x_n = (x - x[0]) / (x[-1] - x[0])
    y_n = (y - y.min()) / np.ptp(y)
    diff = (1.0 - y_n) - x_n  # convex, decreasing: the flipped curve minus the chord
    inner = np.arange(1, len(diff) - 1)
    maxima = inner[(diff[inner] >= diff[inner - 1]) & (diff[inner] >= diff[inner + 1])]
    minima = inner[(diff[inner] <= diff[inner - 1]) & (diff[inner] <= diff[inner + 1])]
    if not len(maxima):
        return None
    step = np.mean(np.diff(x_n))
    threshold, candidate = None, None
    for i in range(int(maxima[0]), len(diff) - 1):
        if i in maxima:
            candidate, threshold = i, diff[i] - sensitivity * step
        if i in minima:
            threshold = None  # past a local minimum: wait for the next candidate
        if threshold is not None and diff[i + 1] < threshold:
            return int(candidate)
    return None


# ------------------------------------------------------------------ callbacks
