"""Robust aggregate statistics (Agarwal et al., 2021, arXiv:2108.13264) with rliable's
conventions: the interquartile mean (IQM) pooled over runs x tasks, and percentile confidence
intervals from a bootstrap that resamples runs within each task (stratified).

The IQM is `scipy.stats.trim_mean(scores, 0.25, axis=None)`, exactly rliable's
`aggregate_iqm` (it trims `int(0.25 * n)` values from each end). The bootstrap is
`scipy.stats.bootstrap` with one sample per task, resampled independently (`paired=False`),
which is rliable's `StratifiedBootstrap`; tasks may hold different numbers of finite runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import bootstrap, trim_mean

DEFAULT_REPS = 50_000
"""rliable's default number of bootstrap resamples."""


def iqm(x: np.ndarray) -> float:
    """Interquartile mean of the finite values of `x` (all axes pooled): rliable's IQM.

    Trims `int(0.25 * n)` values from each end (scipy's `trim_mean`), so for n < 4 it is the
    mean. NaN when there is no finite value.
    """
    v = np.asarray(x, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan")
    return float(trim_mean(v, 0.25))


def _iqm_along(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """`trim_mean(x, 0.25, axis)` without scipy's per-call input checks (the bootstrap's hot
    loop): partition at the cut points, mean of the middle."""
    x = np.moveaxis(x, axis, -1)
    n = x.shape[-1]
    cut = int(0.25 * n)
    part = np.partition(x, (cut, n - cut - 1), axis=-1)
    return part[..., cut : n - cut].mean(axis=-1)


def strata_of(scores: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    """The finite values of each task: a [runs, tasks] matrix (a 1-D array is one task) or a
    list of per-task 1-D arrays (ragged). Empty tasks are dropped."""
    if isinstance(scores, np.ndarray) or not isinstance(scores, Sequence):
        s = np.asarray(scores, dtype=np.float64)
        if s.ndim == 1:
            s = s[:, None]
        if s.ndim != 2:
            raise ValueError(f"scores must be [runs, tasks], got shape {s.shape}")
        columns = [s[:, j] for j in range(s.shape[1])]
    else:
        columns = [np.asarray(c, dtype=np.float64).ravel() for c in scores]
    out = [c[np.isfinite(c)] for c in columns]
    return [c for c in out if c.size]


def stratified_bootstrap_ci(
    scores: np.ndarray | Sequence[np.ndarray],
    stat: Callable[[np.ndarray], float] = iqm,
    reps: int = 10_000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile (1 - alpha) CI of `stat` of the pooled scores, runs resampled within tasks.

    Args:
        scores: [runs, tasks] (a 1-D array is one task) or a list of per-task arrays;
            non-finite values are dropped per task.
        stat: statistic of the pooled 1-D sample (`iqm` is vectorised; others are applied per
            resample).
        reps: bootstrap resamples.
        alpha: 0.05 gives a 95% interval.
        seed: seed of the resampling generator.
    """
    strata = strata_of(scores)
    if not strata:
        return float("nan"), float("nan")
    # A task with one run is the same in every resample: pool it as a constant.
    fixed = [s for s in strata if s.size < 2]
    varying = tuple(s for s in strata if s.size >= 2)
    const = np.concatenate(fixed) if fixed else np.empty(0)
    if not varying:
        value = stat(const)
        return float(value), float(value)

    def pooled(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        batch = samples[0].shape[:-1]
        parts = [*samples, np.broadcast_to(const, (*batch, const.size))]
        x = np.concatenate(parts, axis=-1)
        if stat is iqm:
            return _iqm_along(x, axis=-1)
        return np.apply_along_axis(stat, -1, x)

    res = bootstrap(
        varying,
        pooled,
        n_resamples=reps,
        batch=max(1, min(reps, 4_000_000 // sum(s.size for s in strata))),
        vectorized=True,
        paired=False,
        confidence_level=1 - alpha,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    lo, hi = res.confidence_interval
    return float(lo), float(hi)


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval and the number of finite scores behind it."""

    value: float
    low: float
    high: float
    n: int
    tasks: int

    def as_dict(self) -> dict[str, float | int | None]:
        """The estimate as JSON-ready numbers (None for NaN or infinite values)."""

        def f(x: float) -> float | None:
            return float(x) if np.isfinite(x) else None

        return dict(
            iqm=f(self.value), ci_low=f(self.low), ci_high=f(self.high), n=self.n, tasks=self.tasks
        )


def interval_estimate(
    scores: np.ndarray | Sequence[np.ndarray],
    reps: int = DEFAULT_REPS,
    alpha: float = 0.05,
    seed: int = 0,
) -> Estimate:
    """IQM pooled over runs x tasks with its stratified-bootstrap percentile CI."""
    strata = strata_of(scores)
    n = sum(s.size for s in strata)
    if n == 0:
        nan = float("nan")
        return Estimate(nan, nan, nan, 0, 0)
    lo, hi = stratified_bootstrap_ci(strata, reps=reps, alpha=alpha, seed=seed)
    return Estimate(iqm(np.concatenate(strata)), lo, hi, n, len(strata))


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
