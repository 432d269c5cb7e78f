"""Registries resolve aliases and suggest close matches; IQM and bootstrap CIs are right."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from metarl_cli.analysis.stats import iqm, stratified_bootstrap_ci, summarise
from metarl_cli.envs import ENVS, resolve_envs
from metarl_cli.errors import UnknownNameError


def test_aliases_and_ids_resolve():
    assert resolve_envs("ant,breakout,classic/cartpole,walker") == [
        "brax/ant",
        "minatar/breakout",
        "classic/cartpole",
        "brax/walker2d",
    ]
    assert resolve_envs("ant, ANT ,brax/ant") == ["brax/ant"]
    assert len(ENVS.names()) == 10 + 8  # the paper's ten and eight gridworld distributions


def test_unknown_env_lists_close_matches():
    with pytest.raises(UnknownNameError, match=r"did you mean.*breakout"):
        resolve_envs("breakot")
    with pytest.raises(UnknownNameError, match="known: brax/ant"):
        resolve_envs("zzzzzz")


@pytest.mark.parametrize("n", [4, 8, 16, 100])
def test_iqm_matches_trimmed_mean(n):
    x = np.random.default_rng(n).normal(size=n)
    assert iqm(x) == pytest.approx(sps.trim_mean(x, 0.25))


def test_iqm_small_and_nonfinite():
    assert iqm([3.0]) == 3.0
    assert iqm([1.0, 3.0]) == 2.0
    assert iqm([1.0, np.nan, 3.0]) == 2.0
    assert np.isnan(iqm([np.nan]))


def test_iqm_ignores_outliers():
    assert iqm([1, 2, 3, 4, 5, 6, 7, 1e9]) == pytest.approx(4.5)


def test_bootstrap_ci_brackets_the_estimate_and_is_stratified():
    rng = np.random.default_rng(0)
    scores = np.stack([rng.normal(0, 1, 32), rng.normal(10, 1, 32)], axis=1)
    lo, hi = stratified_bootstrap_ci(scores, seed=1)
    assert lo < iqm(scores) < hi
    assert hi - lo < 2.0
    assert stratified_bootstrap_ci(np.full(8, 5.0)) == (5.0, 5.0)


def test_summary_of_no_finite_values_is_none():
    s = summarise(np.array([np.nan, np.nan]))
    assert s["n"] == 0 and s["mean"] is None
    s = summarise(np.array([1.0, 2.0, np.nan]))
    assert (s["n"], s["min"], s["max"], s["mean"]) == (2, 1.0, 2.0, 1.5)
