"""Robust aggregate statistics (Agarwal et al., 2021, arXiv:2108.13264): IQM and stratified
bootstrap confidence intervals. NumPy only."""

from __future__ import annotations

import numpy as np


def iqm(x: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of values (25% trimmed each side).

    Uses fractional weights at the quartile boundaries (as scipy's `trim_mean` would for n
    divisible by 4), so it is defined for every n >= 1; non-finite values are ignored.
    """
    v = np.sort(np.asarray(x, dtype=np.float64).ravel())
    v = v[np.isfinite(v)]
    n = v.size
    if n == 0:
        return float("nan")
    lo, hi = 0.25 * n, 0.75 * n
    # Weight of element i = overlap of [i, i+1) with [lo, hi).
    idx = np.arange(n)
    w = np.clip(np.minimum(idx + 1, hi) - np.maximum(idx, lo), 0.0, 1.0)
    return float((w * v).sum() / w.sum())


def stratified_bootstrap_ci(
    scores: np.ndarray,
    stat=iqm,
    reps: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile CI of `stat` over a [runs, tasks] score matrix.

    Runs are resampled with replacement within each task (stratum) independently, then `stat`
    is applied to the whole resampled matrix. A 1-D input is one task.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        s = s[:, None]
    s = s[np.isfinite(s).all(axis=1)] if s.shape[1] > 1 else s[np.isfinite(s[:, 0])]
    n, tasks = s.shape
    if n == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(reps, n, tasks))
    samples = np.take_along_axis(s[None], idx, axis=1)
    values = np.array([stat(m) for m in samples])
    return float(np.quantile(values, alpha / 2)), float(np.quantile(values, 1 - alpha / 2))


def summarise(x: np.ndarray, seed: int = 0) -> dict[str, float | int | None]:
    """Mean, IQM (with a 95% bootstrap CI), min, max and count of the finite values of `x`."""
    v = np.asarray(x, dtype=np.float64).ravel()
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        return dict(n=0, mean=None, iqm=None, iqm_ci_low=None, iqm_ci_high=None, min=None, max=None)
    lo, hi = stratified_bootstrap_ci(finite, seed=seed)
    return dict(
        n=int(finite.size),
        mean=float(finite.mean()),
        iqm=iqm(finite),
        iqm_ci_low=lo,
        iqm_ci_high=hi,
        min=float(finite.min()),
        max=float(finite.max()),
    )
