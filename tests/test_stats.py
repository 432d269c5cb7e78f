"""IQM and stratified-bootstrap CIs equal rliable's (Agarwal et al., 2021) on fixed fixtures.

The reference numbers were computed with rliable 1.2.0 (arch 7.2, numpy 2.4, pandas 2.x; rliable
does not import with pandas 3, so it is not a dependency):

    rly.get_interval_estimates({"a": M}, lambda x: np.array([metrics.aggregate_iqm(x)]),
                               reps=50000, random_state=np.random.RandomState(seed))

for seeds 0, 1, 2. The spread over those seeds is the bootstrap's Monte Carlo tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from metarl_cli.analysis.stats import (
    interval_estimate,
    iqm,
    strata_of,
    stratified_bootstrap_ci,
    summarise,
)

# 8 runs x 3 tasks (rounded normal draws, task means 0, 1, 5).
A = np.array(
    [
        [0.126, 0.868, 5.64],
        [0.105, 0.464, 5.362],
        [1.304, 1.947, 4.296],
        [-1.265, 0.377, 5.041],
        [-2.325, 0.781, 3.754],
        [-0.732, 0.456, 4.684],
        [0.412, 2.043, 4.871],
        [1.366, 0.335, 5.352],
    ]
)
# 5 runs x 3 tasks on very different scales: 15 scores, so rliable trims int(3.75) = 3 per end;
# resampling runs without stratification would mix the scales (CI about [4, 69]).
B = np.array(
    [
        [0.35, 11.64, 101.65],
        [-1.3, 11.81, 102.23],
        [-0.54, 11.16, 101.82],
        [0.29, 10.06, 102.73],
        [-0.74, 9.67, 97.59],
    ]
)
RLIABLE = {
    # point, (low per seed), (high per seed)
    "A": (1.5056666666666667, (1.163165, 1.162248, 1.165417), (1.91075, 1.909504, 1.913921)),
    "B": (28.246666666666667, (27.454444, 27.457778, 27.457778), (28.997778, 29.008889, 29.001111)),
}


@pytest.mark.parametrize("name,scores,tol", [("A", A, 0.01), ("B", B, 0.03)])
def test_iqm_and_ci_equal_rliable(name, scores, tol):
    point, lows, highs = RLIABLE[name]
    est = interval_estimate(scores, reps=50_000, seed=3)
    assert est.value == pytest.approx(point, abs=1e-12)
    assert est.low == pytest.approx(np.mean(lows), abs=tol)
    assert est.high == pytest.approx(np.mean(highs), abs=tol)
    assert (est.n, est.tasks) == (scores.size, scores.shape[1])


def test_trimming_is_rliables_not_a_fractional_or_plain_mean():
    # 15 scores: trim_mean drops 3 per end; a fractional-weight IQM or the mean would not.
    middle = np.sort(B.ravel())[3:12]
    assert iqm(B) == pytest.approx(middle.mean())
    assert iqm(B) != pytest.approx(B.mean(), rel=0.05)
    assert iqm([1, 2, 3, 4, 5, 6, 7, 1e9]) == pytest.approx(4.5)


def test_ci_is_stratified_over_tasks():
    lo, hi = stratified_bootstrap_ci(B, reps=20_000, seed=0)
    assert 27.2 < lo < iqm(B) < hi < 29.2
    # The same scores as one task (unstratified) give a far wider interval.
    lo1, hi1 = stratified_bootstrap_ci(B.ravel(), reps=20_000, seed=0)
    assert hi1 - lo1 > 20 * (hi - lo)


def _numpy_stratified_bootstrap(scores, reps, seed, alpha=0.05):
    """Independent oracle: resample each task's runs with replacement (plain NumPy, its own
    generator), take the trimmed-mean IQM of the pooled resample, return the percentiles."""
    runs, tasks = scores.shape
    idx = np.random.default_rng(seed).integers(0, runs, size=(reps, runs, tasks))
    stats = sps.trim_mean(scores[idx, np.arange(tasks)].reshape(reps, -1), 0.25, axis=1)
    return tuple(np.percentile(stats, [100 * alpha / 2, 100 * (1 - alpha / 2)]))


@pytest.mark.parametrize("scores", [A, B], ids=["A", "B"])
def test_ci_is_a_stratified_percentile_bootstrap(scores):
    # Measured over 5 seeds at 20k resamples: the two agree within 0.012 (Monte Carlo error,
    # sd <= 0.006), while a 90% interval moves either end by 0.05-0.11 and an unstratified
    # one far more; 0.025 separates them.
    ours = stratified_bootstrap_ci(scores, reps=20_000, seed=7)
    assert ours == pytest.approx(_numpy_stratified_bootstrap(scores, 20_000, seed=11), abs=0.025)
    narrower = _numpy_stratified_bootstrap(scores, 20_000, seed=11, alpha=0.1)
    assert ours != pytest.approx(narrower, abs=0.025)


def test_ragged_tasks_nan_runs_and_single_runs():
    # NaN runs are dropped per task, not per row; a one-run task is a constant in every resample.
    m = A.copy()
    m[0, 0] = np.nan
    strata = strata_of(m)
    assert [s.size for s in strata] == [7, 8, 8]
    est = interval_estimate(m, reps=2_000)
    assert est.n == 23 and est.value == pytest.approx(sps.trim_mean(m[np.isfinite(m)], 0.25))
    single = interval_estimate([np.array([3.0]), np.array([5.0])], reps=2_000)
    assert (single.value, single.low, single.high) == (4.0, 4.0, 4.0)
    assert np.isnan(interval_estimate([np.array([np.nan])]).value)


def test_other_statistics_are_bootstrapped_too():
    lo, hi = stratified_bootstrap_ci(B, stat=np.mean, reps=2_000)
    assert lo < B.mean() < hi


def test_summarise_keys_are_the_result_schemas():
    s = summarise(np.array([1.0, 2.0, 3.0, np.nan]))
    assert set(s) == {"n", "mean", "iqm", "iqm_ci_low", "iqm_ci_high", "min", "max"}
    assert s["n"] == 3 and s["iqm_ci_low"] <= s["iqm"] <= s["iqm_ci_high"]
