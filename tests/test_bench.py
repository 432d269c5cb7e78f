"""`metarl bench` end to end at a tiny budget: output structure and self-consistent figures.

No timing thresholds: the figures must be finite, positive and agree with each other (steps/s
is steps over run time, the speedup and compile ratio are the ratios of the reported times), so
a mislabelled column or a swapped ratio fails here on any machine.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields

import pytest

from metarl_cli.cli.app import main

SCALE = 0.01  # CartPole 5e5 -> 5,000 steps per seed (9 updates of 4 envs x 128 steps)


@pytest.fixture
def one_case(monkeypatch):
    """Only the 2-seed CartPole case (sharded over the suite's 2 host devices)."""
    import metarl_cli.bench as bench

    monkeypatch.setattr(bench, "CASES", [("classic/cartpole", 2, 5e5)])


def test_bench_reports_consistent_finite_figures(one_case, tmp_path, capsys):
    from metarl_cli.bench import BenchRow
    from metarl_cli.config import build_config

    path = tmp_path / "bench.json"
    code = main(["bench", "--scale", str(SCALE), "-o", str(path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "benchmarking classic/cartpole, 2 seed(s)" in captured.err

    rows = json.loads(path.read_text())
    assert len(rows) == 1
    row = rows[0]
    assert set(row) == {f.name for f in fields(BenchRow)}
    cfg = build_config("classic/cartpole", timesteps=round(5e5 * SCALE))
    assert (row["env_id"], row["seeds"], row["devices"]) == ("classic/cartpole", 2, 2)
    assert row["num_envs"] == cfg.num_envs == 4
    assert row["env_steps"] == 2 * cfg.env_steps == 2 * 9 * 512

    for side in ("baseline", "metarl"):
        for what in ("compile_s", "run_s", "steps_per_s"):
            value = row[f"{side}_{what}"]
            assert math.isfinite(value) and value > 0, (side, what, value)
        rate = row["env_steps"] / row[f"{side}_run_s"]
        assert row[f"{side}_steps_per_s"] == pytest.approx(rate, rel=1e-9)
    for ratio in ("speedup", "compile_ratio"):
        assert math.isfinite(row[ratio]) and row[ratio] > 0
    assert row["speedup"] == pytest.approx(row["baseline_run_s"] / row["metarl_run_s"])
    assert row["speedup"] == pytest.approx(row["metarl_steps_per_s"] / row["baseline_steps_per_s"])
    assert row["compile_ratio"] == pytest.approx(
        row["metarl_compile_s"] / row["baseline_compile_s"]
    )

    # The table on stdout shows the same row, formatted.
    table = captured.out
    line = next(ln for ln in table.splitlines() if "cartpole" in ln)
    for cell in (
        f"{row['baseline_steps_per_s']:,.0f}",
        f"{row['metarl_steps_per_s']:,.0f}",
        f"{row['speedup']:.2f}x",
        f"{row['baseline_compile_s']:.1f} / {row['metarl_compile_s']:.1f}",
    ):
        assert cell in line, (cell, line)
    assert "metarl vs a PureJaxRL-style" in table
